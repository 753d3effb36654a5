"""ECR's lifecycle policy language: validation (code and message) and evaluation, over plain
image states and over a real store's images (pushed_at from the engine, ``now`` injected)."""

from __future__ import annotations

import json

import pytest
from storeutil import open_store, push

from ecrstore.errors import InvalidParameterException, LifecyclePolicyNotFoundException
from ecrstore.lifecycle_rules import ImageState, evaluate, parse_policy, tag_pattern_matches

pytestmark = pytest.mark.timeout(60)

DAY = 86400.0
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def rule(priority=1, *, status="tagged", prefixes=None, patterns=None, count_type="imageCountMoreThan",
         number=1, unit=None, action="expire", **extra):
    sel = {"tagStatus": status, "countType": count_type, "countNumber": number}
    if prefixes is not None:
        sel["tagPrefixList"] = prefixes
    if patterns is not None:
        sel["tagPatternList"] = patterns
    if unit is not None:
        sel["countUnit"] = unit
    return {"rulePriority": priority, "description": "a rule of the tests", "selection": sel,
            "action": {"type": action}, **extra}


def policy(*rules, **top):
    return json.dumps({"rules": list(rules), **top}, indent=2)


def refused(text):
    with pytest.raises(InvalidParameterException) as info:
        parse_policy(text)
    return info.value.message


PREFIX = ("Invalid parameter at 'lifecyclePolicyText' failed to satisfy constraint: "
          "'Lifecycle policy validation failure: ")


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, reason", [
    ("{" + " " * 120, "not valid JSON"),
    (json.dumps([rule()] * 1, indent=4), "must be a JSON object"),
    (json.dumps({"rulez": [rule()]}, indent=4), 'properties which are not allowed by the schema: ["rulez"]'),
    (json.dumps({"rules": [], "padding": "x" * 100}), 'properties which are not allowed'),
    (policy(rule(), extra=1), 'properties which are not allowed by the schema: ["extra"]'),
    (json.dumps({"rules": []}, indent=40) + " " * 100, 'missing required properties (["rules"])'),
    (policy({"selection": rule()["selection"], "action": {"type": "expire"}}),
     'missing required properties (["rulePriority"])'),
    (policy(rule(0, prefixes=["a"])), "lower than the required minimum (minimum: 1, found: 0)"),
    (policy(rule("1", prefixes=["a"])), 'allowed: ["integer"]'),
    (policy(rule(True, prefixes=["a"])), 'allowed: ["integer"]'),
    (policy(rule(1.5, prefixes=["a"])), 'allowed: ["integer"]'),
    (policy(rule(2, prefixes=["a"]), rule(2, prefixes=["b"])), "rulePriority must be unique, 2"),
    (policy(rule(1, status="any"), rule(2, prefixes=["b"])), "tagStatus 'any' must have the highest rulePriority"),
    (policy(rule(1, status="untagged"), rule(2, status="untagged")), "only one rule may select untagged images"),
    (policy(rule(status="Tagged", prefixes=["a"])), 'instance value ("Tagged")'),
    (policy(rule()), "needs exactly one of tagPrefixList and tagPatternList"),
    (policy(rule(prefixes=["a"], patterns=["a*"])), "needs exactly one of tagPrefixList and tagPatternList"),
    (policy(rule(status="untagged", prefixes=["a"])), "not allowed at /rules/0/selection with tagStatus 'untagged'"),
    (policy(rule(status="any", patterns=["a*"])), "not allowed at /rules/0/selection with tagStatus 'any'"),
    (policy(rule(prefixes=[])), "tagPrefixList must be a non-empty array"),
    (policy(rule(prefixes=[""])), "non-empty strings"),
    (policy(rule(patterns=["a*b*c*d*e*f"])), "more than 4 wildcards"),
    (policy(rule(prefixes=["a"], count_type="sinceImagePulled")), 'not found in enum (possible values: '
                                                                  '["imageCountMoreThan","sinceImagePushed"])'),
    (policy(rule(prefixes=["a"], number=0)), "lower than the required minimum (minimum: 1, found: 0)"),
    (policy(rule(prefixes=["a"], count_type="sinceImagePushed")), "countUnit is required"),
    (policy(rule(prefixes=["a"], unit="days")), "countUnit is not allowed"),
    (policy(rule(prefixes=["a"], count_type="sinceImagePushed", unit="hours")), 'instance value ("hours")'),
    (policy(rule(prefixes=["a"], action="transition")), 'instance value ("transition")'),
    (policy({**rule(prefixes=["a"]), "action": {}}), 'missing required properties (["type"])'),
])
def test_invalid_policies_are_refused_with_ecr_wording(text, reason):
    message = refused(text)
    assert message.startswith(PREFIX), message
    assert reason in message, message


def test_the_length_bounds_are_the_models():
    assert refused('{"rules": []}') == ("Invalid parameter at 'lifecyclePolicyText' failed to satisfy constraint: "
                                        "'Member must have length greater than or equal to 100'")
    big = policy(rule(prefixes=["a"], description="x" * 30720))
    assert refused(big).endswith("'Member must have length less than or equal to 30720'")
    assert refused(None).endswith("'Member must be a string'")


def test_a_valid_policy_is_parsed_in_priority_order():
    days = rule(3, status="untagged", count_type="sinceImagePushed", unit="days", number=7)
    parsed = parse_policy(policy(rule(9, status="any", number=5), days,
                                 rule(5, patterns=["*test*1*2*3", "test*1*2*3*"])))
    assert [r.priority for r in parsed.rules] == [3, 5, 9]
    assert parsed.rules[0].count_unit == "days" and parsed.rules[1].tag_patterns == ("*test*1*2*3", "test*1*2*3*")


# --- evaluation over image states ----------------------------------------------------------------


def img(name, pushed, *tags, referenced_by=()):
    return ImageState(f"sha256:{name}", tuple(tags), pushed, tuple(f"sha256:{r}" for r in referenced_by))


def expired(pol, images, now=100 * DAY):
    return [(e.image.digest.partition(":")[2], e.rule_priority) for e in evaluate(parse_policy(pol), images, now)]


def test_image_count_keeps_the_most_recently_pushed():
    images = [img(f"i{n}", n, f"v{n}") for n in range(5)]
    assert expired(policy(rule(prefixes=["v"], number=2)), images) == [("i0", 1), ("i1", 1), ("i2", 1)]


def test_since_image_pushed_expires_images_older_than_n_days():
    now = 100 * DAY
    images = [img("old", now - 15 * DAY, "prod-1"), img("edge", now - 14 * DAY + 1, "prod-2"),
              img("new", now, "prod-3")]
    pol = policy(rule(patterns=["prod*"], count_type="sinceImagePushed", unit="days", number=14))
    assert expired(pol, images, now) == [("old", 1)]


def test_an_image_kept_by_an_earlier_rule_is_not_expired_by_a_later_one():
    # ECR's documented example: A [beta-1, prod-1], B [beta-2, prod-2], C [beta-3], oldest first.
    images = [img("A", 1, "beta-1", "prod-1"), img("B", 2, "beta-2", "prod-2"), img("C", 3, "beta-3")]
    pol = policy(rule(1, prefixes=["prod"]), rule(2, prefixes=["beta"]))
    # Rule 2 counts A, B and C and marks A and B; A is rule 1's, B was kept by rule 1.
    assert expired(pol, images) == [("A", 1)]


def test_later_rules_count_images_earlier_rules_matched():
    images = [img("p1", 1, "prod-1"), img("p2", 2, "prod-2"), img("u1", 3), img("u2", 4)]
    pol = policy(rule(1, prefixes=["prod"], number=5), rule(2, status="any", number=2))
    # "any" sees all four, marks the two oldest, but both are prod images rule 1 kept.
    assert expired(pol, images) == []
    pol = policy(rule(1, status="untagged", number=5), rule(2, status="any", number=1))
    assert expired(pol, images) == [("p1", 2), ("p2", 2)]


def test_rules_apply_by_priority_not_by_position():
    images = [img("a", 1, "x-1"), img("b", 2, "x-2"), img("c", 3, "x-3")]
    pol = policy(rule(7, prefixes=["x"], number=2), rule(3, patterns=["x-*"], count_type="sinceImagePushed",
                                                                 unit="days", number=1))
    now = 2 + 0.5 * DAY
    # priority 3 (listed second) sees all three as younger than a day and keeps them.
    assert expired(pol, images, now) == []
    assert expired(pol, images, 3 + 2 * DAY) == [("a", 3), ("b", 3), ("c", 3)]


def test_tag_status_selects_tagged_untagged_or_any():
    images = [img("t", 1, "v1"), img("u", 2), img("t2", 3, "v2"), img("u2", 4)]
    assert expired(policy(rule(status="untagged")), images) == [("u", 1)]
    assert expired(policy(rule(prefixes=["v"])), images) == [("t", 1)]
    assert expired(policy(rule(status="any", number=3)), images) == [("t", 1)]


def test_prefix_lists_need_every_prefix_matched_by_a_tag():
    images = [img("both", 1, "prod-1", "release-1"), img("prod", 2, "prod-2"), img("rel", 3, "release-3"),
              img("newest", 4, "release-4", "prod-4")]
    assert expired(policy(rule(prefixes=["prod", "release"])), images) == [("both", 1)]


def test_pattern_lists_match_whole_tags_with_wildcards_and_need_every_pattern():
    assert tag_pattern_matches("prod*", "prod") and tag_pattern_matches("prod*", "prod1")
    assert not tag_pattern_matches("prod", "prod1") and not tag_pattern_matches("*prod", "prod1")
    assert tag_pattern_matches("*test*1*2*3", "mytest-1-2-3") and tag_pattern_matches("a.b*", "a.b-x")
    assert not tag_pattern_matches("a.b*", "axb")  # only * is special
    images = [img("a", 1, "prod", "rc-1"), img("b", 2, "prod1"), img("c", 3, "prod2", "x-rc-2"), img("d", 4, "prod3")]
    assert expired(policy(rule(patterns=["prod*"], number=1)), images) == [("a", 1), ("b", 1), ("c", 1)]
    assert expired(policy(rule(patterns=["prod*", "*rc*"], number=1)), images) == [("a", 1)]


def test_images_a_kept_manifest_list_references_stay():
    images = [img("child1", 1, referenced_by=["list"]), img("child2", 2, referenced_by=["list"]),
              img("list", 3, "multi"), img("loose", 4)]
    # Untagged children are selected, but the tagged list that references them stays.
    assert expired(policy(rule(status="untagged")), images) == []
    images.append(img("loose2", 5))
    assert expired(policy(rule(status="untagged")), images) == [("loose", 1)]


def test_a_manifest_list_is_expired_before_the_images_it_references():
    images = [img("child1", 1, referenced_by=["list"]), img("child2", 2, referenced_by=["list"]),
              img("list", 3), img("keep", 9)]
    assert expired(policy(rule(status="untagged")), images) == [("list", 1), ("child1", 1), ("child2", 1)]


# --- evaluation over a real store ----------------------------------------------------------------


def push_image(store, repo, n, tag=None):
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": n}).encode()
    layer = f"layer {n} ".encode() * 50
    cfg, lay = push(store, repo, config), push(store, repo, layer)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "size": len(config), "digest": cfg},
                           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                       "size": len(layer), "digest": lay}]})
    return store.put_image(repo, manifest, image_tag=tag).image.image_id.image_digest


def push_list(store, repo, children, tag=None):
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "size": 100, "digest": d,
         "platform": {"architecture": f"arch{i}", "os": "linux"}} for i, d in enumerate(children)]})
    return store.put_image(repo, manifest, image_tag=tag).image.image_id.image_digest


def remaining(store, repo):
    return {d.image_digest for d in store.describe_images(repo).image_details}


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "store") as s:
        s.create_repository("app")
        yield s


def test_days_rules_use_the_engines_push_times(store):
    digests = [push_image(store, "app", n, f"v{n}") for n in range(3)]
    pushed = {d.image_digest: d.image_pushed_at for d in store.describe_images("app").image_details}
    store.lifecycle.put_lifecycle_policy("app", policy(rule(patterns=["v*"], count_type="sinceImagePushed",
                                                             unit="days", number=3)))
    assert store.lifecycle.run(now=pushed[digests[2]] + 2 * DAY).expired_count == 0
    # Just over three days after the second push: the first two are older than three days.
    report = store.lifecycle.run(now=pushed[digests[1]] + 3 * DAY + 0.001)
    assert [r.image_digest for r in report.repositories[0].expired] == digests[:2]
    assert remaining(store, "app") == {digests[2]}
    assert store.lifecycle.get_lifecycle_policy("app").last_evaluated_at == pushed[digests[1]] + 3 * DAY + 0.001


def test_preview_and_dry_run_answer_what_the_run_removes(store):
    tagged = [push_image(store, "app", n, f"rel-{n}") for n in range(4)]
    untagged = [push_image(store, "app", 10 + n) for n in range(3)]
    store.lifecycle.put_lifecycle_policy("app", policy(rule(1, status="untagged"), rule(2, prefixes=["rel"], number=2)))
    store.lifecycle.start_lifecycle_policy_preview("app")
    preview = store.lifecycle.get_lifecycle_policy_preview("app")
    dry = store.lifecycle.run(dry_run=True)
    assert remaining(store, "app") == set(tagged + untagged)  # the dry run changed nothing
    assert store.lifecycle.get_lifecycle_policy("app").last_evaluated_at is None
    run = store.lifecycle.run()
    want = [(d, 1) for d in untagged[:2]] + [(d, 2) for d in tagged[:2]]
    for results in (preview.preview_results, dry.repositories[0].expired, run.repositories[0].expired):
        assert sorted((r.image_digest, r.applied_rule_priority) for r in results) == sorted(want)
    assert preview.summary.expiring_image_total_count == 4
    assert remaining(store, "app") == {untagged[2], *tagged[2:]}


def test_a_run_never_deletes_a_child_a_manifest_list_still_references(store):
    a, b = push_image(store, "app", 1), push_image(store, "app", 2)
    index = push_list(store, "app", [a, b])  # untagged too: the rule selects all three
    newest = push_image(store, "app", 3)
    store.lifecycle.put_lifecycle_policy("app", policy(rule(status="untagged", number=1)))
    report = store.lifecycle.run()
    # The list goes first, then its children, in one transaction.
    assert [r.image_digest for r in report.repositories[0].expired] == [index, a, b]
    assert remaining(store, "app") == {newest}
    c = push_image(store, "app", 4)
    push_list(store, "app", [c], tag="multi")
    push_image(store, "app", 5)
    assert store.lifecycle.run().expired_count == 1  # newest goes; c stays under the tagged list
    assert c in remaining(store, "app")


def test_an_image_retagged_between_evaluation_and_deletion_is_left(store):
    old = push_image(store, "app", 1, "tmp-1")
    push_image(store, "app", 2, "tmp-2")
    store.lifecycle.put_lifecycle_policy("app", policy(rule(prefixes=["tmp"])))
    manifest = store.get_manifest("app", old).manifest.decode()
    index = store._index
    real_write = index.write

    def write_after_a_retag(fn):
        # A push tags the image between the run's snapshot and its transaction.
        index.write = real_write
        store.put_image("app", manifest, image_tag="release-1")
        return real_write(fn)

    index.write = write_after_a_retag
    try:
        report = store.lifecycle.run()
    finally:
        index.write = real_write
    assert report.repositories[0].expired == () and report.repositories[0].skipped == (old,)
    assert old in remaining(store, "app")


def test_run_names_one_repository_or_every_one_with_a_policy(store):
    store.create_repository("other")
    push_image(store, "other", 1)
    push_image(store, "other", 2)
    with pytest.raises(LifecyclePolicyNotFoundException) as info:
        store.lifecycle.run(repository_name="other")
    assert info.value.message == ("Lifecycle policy does not exist for the repository with name 'other' in the "
                                  "registry with id '000000000000'")
    assert store.lifecycle.run().repositories == ()
    store.lifecycle.put_lifecycle_policy("other", policy(rule(status="untagged")))
    store.lifecycle.put_lifecycle_policy("app", policy(rule(status="untagged")))
    report = store.lifecycle.run()
    assert [(r.repository_name, len(r.expired)) for r in report.repositories] == [("app", 0), ("other", 1)]
    store.delete_repository("other", force=True)
    store.create_repository("other")  # a new repository: the old one's policy went with it
    assert [r.repository_name for r in store.lifecycle.run().repositories] == ["app"]
