"""The repository settings area of the engine (``store.settings``): resource tags on repository
ARNs with ECR's limits, tag mutability and scan on push after creation (PutImage honouring the
change at once), ListImageReferrers' pages, and the Repository shape every repository call
answers."""

from __future__ import annotations

import json
import threading

import pytest
from storeutil import digest_of, open_store, push, random_bytes

from ecrstore import EncryptionConfiguration, ExclusionFilter, ImageScanningConfiguration, Store, Tag, errors
from ecrstore.manifest import OCI_MANIFEST
from ecrstore.models import ImageReferrer, ListImageReferrersFilter, SubjectIdentifier

REGION = "us-east-1"
REGISTRY = "000000000000"
OTHER = "123456789012"
SIGNATURE = "application/vnd.example.signature.v1"
SBOM = "application/vnd.example.sbom.v1"


def arn(name: str = "app", registry: str = REGISTRY, region: str = REGION) -> str:
    return f"arn:aws:ecr:{region}:{registry}:repository/{name}"


@pytest.fixture
def store(tmp_path, backends):
    with open_store(tmp_path / "store", **backends) as s:
        s.create_repository("app")
        s.create_repository("app", registry_id=OTHER)
        yield s


def tags_of(store: Store, name: str = "app", registry: str | None = None) -> dict[str, str]:
    listed = store.settings.list_tags_for_resource(arn(name, registry or REGISTRY), registry_id=registry)
    return {t.key: t.value for t in listed.tags}


# --- resource tags -----------------------------------------------------------------------------


def test_tags_given_at_creation_are_listed_and_merged(store):
    store.create_repository("tagged", tags=[Tag("team", "infra"), Tag("env", "dev")])
    listed = store.settings.list_tags_for_resource(arn("tagged")).tags
    assert listed == (Tag("team", "infra"), Tag("env", "dev"))
    store.settings.tag_resource(arn("tagged"), [Tag("env", "prod"), Tag("cost", "42")])
    assert store.settings.list_tags_for_resource(arn("tagged")).tags == (
        Tag("team", "infra"), Tag("env", "prod"), Tag("cost", "42"))  # a value replaced in place
    store.settings.untag_resource(arn("tagged"), ["team", "absent"])  # an absent key is fine
    assert tags_of(store, "tagged") == {"env": "prod", "cost": "42"}
    store.settings.untag_resource(arn("tagged"), [])
    assert tags_of(store, "tagged") == {"env": "prod", "cost": "42"}


def test_tags_follow_ecr_character_rules(store):
    allowed = [Tag("k" * 128, "v" * 256), Tag("café ünïcode ١٢", ""), Tag("a_b.c:d/e=f+g-h@i", "x y\u00a0z")]
    store.settings.tag_resource(arn(), allowed)
    assert tags_of(store) == {t.key: t.value for t in allowed}
    for bad in (Tag("", "v"), Tag("k" * 129, "v"), Tag("k", "v" * 257), Tag("semi;colon", "v"),
                Tag("k", "star*"), Tag("aws:owner", "x"), Tag("AWS:Owner", "x"), Tag("tab\t", "v")):
        with pytest.raises(errors.InvalidTagParameterException):
            store.settings.tag_resource(arn(), [Tag("fine", "1"), bad])
        assert "fine" not in tags_of(store)  # nothing of a refused request is applied
    with pytest.raises(errors.InvalidTagParameterException, match="reserved"):
        store.settings.untag_resource(arn(), ["aws:owner"])
    with pytest.raises(errors.InvalidTagParameterException):
        store.create_repository("bad-chars", tags=[Tag("a<b", "v")])
    with pytest.raises(errors.RepositoryNotFoundException):
        store.describe_repositories(repository_names=["bad-chars"])


def test_fifty_tags_count_existing_and_new_after_merging(store):
    store.settings.tag_resource(arn(), [Tag(f"k{i}", "v") for i in range(45)])
    # Five new keys and three that merge with existing ones: 50 in all.
    store.settings.tag_resource(arn(), [Tag(f"k{i}", "new") for i in range(3)] +
                                [Tag(f"n{i}", "v") for i in range(5)])
    assert len(tags_of(store)) == 50 and tags_of(store)["k0"] == "new"
    with pytest.raises(errors.TooManyTagsException, match="at most 50 tags; it would have 51"):
        store.settings.tag_resource(arn(), [Tag("one-more", "v")])
    store.settings.tag_resource(arn(), [Tag("k1", "again")])  # replacing stays within the limit
    with pytest.raises(errors.TooManyTagsException):
        store.create_repository("many", tags=[Tag(f"k{i}", "v") for i in range(51)])
    store.create_repository("dups", tags=[Tag("k", "1"), Tag("k", "2")])
    assert tags_of(store, "dups") == {"k": "2"}  # the last of a repeated key wins


@pytest.mark.parametrize("bad, reason", [
    ("garbage", "is not a valid repository ARN"),
    ("", "greater than or equal to 1"),
    ("arn:aws:s3:::bucket", "is not a valid repository ARN"),
    ("arn:aws:ecr:us-east-1:000000000000:registry/app", "is not a valid repository ARN"),
    ("arn:aws-cn:ecr:us-east-1:000000000000:repository/app", "is not a valid repository ARN"),
    ("arn:aws:ecr:eu-west-1:000000000000:repository/app", "region 'eu-west-1' is not this registry's region"),
    ("arn:aws:ecr:us-east-1:123456789012:repository/app", "registry '123456789012' is not the caller's"),
    ("arn:aws:ecr:us-east-1:12345:repository/app", "regular expression pattern: [0-9]{12}"),
    ("arn:aws:ecr:us-east-1:000000000000:repository/UPPER", "regular expression pattern"),
    ("arn:aws:ecr:us-east-1:000000000000:repository/" + "a" * 2048, "less than or equal to 2048"),
    (42, "Member must be a string"),
])
def test_an_arn_of_anything_but_the_callers_repository_is_refused(store, bad, reason):
    for call in (lambda: store.settings.list_tags_for_resource(bad),
                 lambda: store.settings.tag_resource(bad, [Tag("k", "v")]),
                 lambda: store.settings.untag_resource(bad, ["k"])):
        with pytest.raises(errors.InvalidParameterException) as e:
            call()
        assert e.value.message.startswith("Invalid parameter at 'resourceArn' failed to satisfy constraint: '")
        assert reason in e.value.message


def test_tags_are_per_registry_and_unknown_repositories_are_not_found(store):
    store.settings.tag_resource(arn(registry=OTHER), [Tag("owner", "b")], registry_id=OTHER)
    assert tags_of(store) == {} and tags_of(store, registry=OTHER) == {"owner": "b"}
    with pytest.raises(errors.RepositoryNotFoundException,
                       match="The repository with name 'nope' does not exist in the registry with id '000000000000'"):
        store.settings.tag_resource(arn("nope"), [Tag("k", "v")])
    with pytest.raises(errors.RepositoryNotFoundException):
        store.settings.list_tags_for_resource(arn("nope"))
    with pytest.raises(errors.RepositoryNotFoundException):
        store.settings.untag_resource(arn("nope"), ["k"])


def test_tags_go_with_their_repository(store):
    store.settings.tag_resource(arn(), [Tag("k", "v")])
    store.delete_repository("app")
    store.create_repository("app")
    assert tags_of(store) == {}


def test_concurrent_tag_writers_lose_nothing_and_uploads_start_meanwhile(store):
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        for i in range(5):
            store.settings.tag_resource(arn(), [Tag(f"w{n}-{i}", str(i))])

    def uploader() -> None:
        try:  # the repository stays the same one while its tags change
            for _ in range(20):
                store.initiate_layer_upload("app")
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)] + [threading.Thread(target=uploader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == [] and len(tags_of(store)) == 20


def test_tags_and_settings_survive_reopening(tmp_path):
    with open_store(tmp_path / "s") as s:
        s.create_repository("app")
        s.settings.tag_resource(arn(), [Tag("k", "v")])
        s.settings.put_image_scanning_configuration("app", ImageScanningConfiguration(True))
    with open_store(tmp_path / "s", read_only=True) as s:
        assert tags_of(s) == {"k": "v"}
        assert s.describe_repositories().repositories[0].image_scanning_configuration.scan_on_push is True
        with pytest.raises(errors.ServerException):
            s.settings.tag_resource(arn(), [Tag("k2", "v")])


# --- tag mutability and scan on push -----------------------------------------------------------


def image(store: Store, seed: int) -> str:
    config, layer = json.dumps({"seed": seed}).encode(), random_bytes(300, seed=seed)
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                                  "digest": push(store, "app", config)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                   "size": len(layer), "digest": push(store, "app", layer)}]})


def test_tag_mutability_applies_to_the_next_push(store):
    a, b = image(store, 1), image(store, 2)
    store.put_image("app", a, image_tag="v1")
    got = store.settings.put_image_tag_mutability("app", "IMMUTABLE")
    assert (got.registry_id, got.repository_name, got.image_tag_mutability,
            got.image_tag_mutability_exclusion_filters) == (REGISTRY, "app", "IMMUTABLE", None)
    with pytest.raises(errors.ImageTagAlreadyExistsException):
        store.put_image("app", b, image_tag="v1")
    got = store.settings.put_image_tag_mutability(
        "app", "IMMUTABLE_WITH_EXCLUSION", image_tag_mutability_exclusion_filters=[ExclusionFilter("latest*")])
    assert got.image_tag_mutability_exclusion_filters == (ExclusionFilter("latest*", "WILDCARD"),)
    store.put_image("app", a, image_tag="latest")
    store.put_image("app", b, image_tag="latest")  # excluded: moves
    with pytest.raises(errors.ImageTagAlreadyExistsException):
        store.put_image("app", b, image_tag="v1")
    (repo,) = store.describe_repositories(repository_names=["app"]).repositories
    assert repo.image_tag_mutability == "IMMUTABLE_WITH_EXCLUSION"
    assert repo.image_tag_mutability_exclusion_filters == (ExclusionFilter("latest*"),)
    got = store.settings.put_image_tag_mutability("app", "MUTABLE")  # clears the filters
    assert got.image_tag_mutability_exclusion_filters is None
    store.put_image("app", b, image_tag="v1")
    (repo,) = store.describe_repositories(repository_names=["app"]).repositories
    assert repo.image_tag_mutability_exclusion_filters is None


def test_tag_mutability_errors_change_nothing(store):
    store.settings.put_image_tag_mutability("app", "IMMUTABLE")
    cases = [
        (dict(image_tag_mutability="SOMETIMES"), "Member must satisfy enum value set: [MUTABLE, IMMUTABLE"),
        (dict(image_tag_mutability="MUTABLE", image_tag_mutability_exclusion_filters=[ExclusionFilter("x")]),
         "need a *_WITH_EXCLUSION"),
        (dict(image_tag_mutability="MUTABLE_WITH_EXCLUSION"), "needs at least one exclusion filter"),
        (dict(image_tag_mutability="MUTABLE_WITH_EXCLUSION",
              image_tag_mutability_exclusion_filters=[ExclusionFilter("a b")]), "^[0-9a-zA-Z._*-]{1,128}"),
        (dict(image_tag_mutability="MUTABLE_WITH_EXCLUSION",
              image_tag_mutability_exclusion_filters=[ExclusionFilter("x", "REGEX")]), "[WILDCARD]"),
        (dict(image_tag_mutability="MUTABLE_WITH_EXCLUSION",
              image_tag_mutability_exclusion_filters=[ExclusionFilter(f"f{i}") for i in range(6)]), "at most 5"),
    ]
    for kw, reason in cases:
        with pytest.raises(errors.InvalidParameterException) as e:
            store.settings.put_image_tag_mutability("app", **kw)
        assert reason in e.value.message
    with pytest.raises(errors.InvalidParameterException, match="at 'repositoryName'"):
        store.settings.put_image_tag_mutability("A", "MUTABLE")
    with pytest.raises(errors.RepositoryNotFoundException):
        store.settings.put_image_tag_mutability("nope", "MUTABLE")
    assert store.describe_repositories(repository_names=["app"]).repositories[0].image_tag_mutability == "IMMUTABLE"


def test_scan_on_push_setting(store):
    got = store.settings.put_image_scanning_configuration("app", ImageScanningConfiguration(True))
    assert (got.registry_id, got.repository_name, got.image_scanning_configuration) == (
        REGISTRY, "app", ImageScanningConfiguration(True))
    assert store.describe_repositories().repositories[0].image_scanning_configuration.scan_on_push is True
    for bad in (ImageScanningConfiguration("yes"), None, {"scanOnPush": True}):  # type: ignore[arg-type]
        with pytest.raises(errors.InvalidParameterException, match="imageScanningConfiguration"):
            store.settings.put_image_scanning_configuration("app", bad)
    with pytest.raises(errors.RepositoryNotFoundException):
        store.settings.put_image_scanning_configuration("nope", ImageScanningConfiguration(False))
    got = store.settings.put_image_scanning_configuration("app", ImageScanningConfiguration(), registry_id=OTHER)
    assert got.registry_id == OTHER and got.image_scanning_configuration.scan_on_push is False
    assert store.describe_repositories().repositories[0].image_scanning_configuration.scan_on_push is True


# --- the Repository shape ----------------------------------------------------------------------


def test_repository_shape_reports_filters_and_the_aws_managed_kms_key(store):
    created = store.create_repository("kms", encryption_configuration=EncryptionConfiguration("KMS"),
                                      image_tag_mutability="MUTABLE_WITH_EXCLUSION",
                                      image_tag_mutability_exclusion_filters=[ExclusionFilter("rel-*")])
    managed = f"arn:aws:kms:{REGION}:{REGISTRY}:alias/aws/ecr"
    assert created.encryption_configuration == EncryptionConfiguration("KMS", managed)
    assert created.image_tag_mutability_exclusion_filters == (ExclusionFilter("rel-*"),)
    assert store.describe_repositories(repository_names=["kms"]).repositories == (created,)
    own = "arn:aws:kms:us-east-1:000000000000:key/abc"
    named = store.create_repository("kms2", encryption_configuration=EncryptionConfiguration("KMS_DSSE", own))
    assert named.encryption_configuration == EncryptionConfiguration("KMS_DSSE", own)
    plain = store.create_repository("plain")
    assert plain.encryption_configuration == EncryptionConfiguration("AES256", None)
    assert plain.image_tag_mutability_exclusion_filters is None
    assert store.delete_repository("kms") == created


# --- ListImageReferrers ------------------------------------------------------------------------


def referrer(store: Store, subject: str, seed: int, artifact_type: str | None) -> str:
    config, layer = b"{}", random_bytes(100, seed=1000 + seed)
    if store.batch_check_layer_availability("app", [digest_of(config)]).failures:
        push(store, "app", config)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": digest_of(config)},
           "layers": [{"mediaType": "application/octet-stream", "size": 100, "digest": push(store, "app", layer)}],
           "subject": {"mediaType": OCI_MANIFEST, "size": len(subject.encode()),
                       "digest": digest_of(subject.encode())},
           "annotations": {"n": str(seed)}}
    if artifact_type:
        doc["artifactType"] = artifact_type
    text = json.dumps(doc)
    store.put_image("app", text)
    return text


def test_list_image_referrers_pages_and_filters(store):
    base = image(store, 7)
    store.put_image("app", base, image_tag="v1")
    subject = SubjectIdentifier(digest_of(base.encode()))
    made = [referrer(store, base, i, SIGNATURE if i % 2 else SBOM) for i in range(7)]
    expected = sorted((ImageReferrer(digest_of(t.encode()), OCI_MANIFEST, len(t.encode()),
                                     SIGNATURE if i % 2 else SBOM, {"n": str(i)}) for i, t in enumerate(made)),
                      key=lambda r: r.digest)
    assert store.settings.list_image_referrers("app", subject).referrers == tuple(expected)
    pages, token = [], None
    while True:
        page = store.settings.list_image_referrers("app", subject, max_results=3, next_token=token)
        pages.append(page.referrers)
        token = page.next_token
        if token is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1] and sum(pages, ()) == tuple(expected)
    only = store.settings.list_image_referrers("app", subject, filter=ListImageReferrersFilter([SIGNATURE]))
    assert only.referrers == tuple(r for r in expected if r.artifact_type == SIGNATURE)
    both = store.settings.list_image_referrers("app", subject, filter=ListImageReferrersFilter([SIGNATURE, SBOM]))
    assert both.referrers == tuple(expected)
    for status, n in (("ANY", 7), ("ACTIVE", 7), ("ARCHIVED", 0), ("ACTIVATING", 0)):
        got = store.settings.list_image_referrers("app", subject, filter=ListImageReferrersFilter(None, status))
        assert len(got.referrers) == n
    none = store.settings.list_image_referrers("app", SubjectIdentifier(digest_of(b"nothing refers to this")))
    assert none.referrers == () and none.next_token is None


def test_list_image_referrers_errors(store):
    subject = SubjectIdentifier(digest_of(b"x"))
    cases = [
        (dict(subject_id=SubjectIdentifier("sha256:xyz")), "at 'subjectId.imageDigest'"),
        (dict(subject_id=SubjectIdentifier("v1")), "at 'subjectId.imageDigest'"),
        (dict(subject_id="sha256:" + "a" * 64), "at 'subjectId'"),
        (dict(subject_id=subject, max_results=0), "Member must have value between 1 and 50"),
        (dict(subject_id=subject, max_results=51), "Member must have value between 1 and 50"),
        (dict(subject_id=subject, max_results=True), "Member must be an integer"),
        (dict(subject_id=subject, next_token="bogus"), "at 'nextToken'"),
        (dict(subject_id=subject, filter=ListImageReferrersFilter([f"t{i}" for i in range(6)])), "artifactTypes"),
        (dict(subject_id=subject, filter=ListImageReferrersFilter([""])), "artifactTypes"),
        (dict(subject_id=subject, filter=ListImageReferrersFilter(None, "GONE")), "artifactStatus"),
    ]
    for kw, where in cases:
        with pytest.raises(errors.InvalidParameterException) as e:
            store.settings.list_image_referrers("app", **kw)
        assert e.value.message.startswith("Invalid parameter at '") and where in e.value.message
    with pytest.raises(errors.RepositoryNotFoundException):
        store.settings.list_image_referrers("nope", subject)
    # A token of another listing (another subject) is refused, not misread.
    base = image(store, 8)
    store.put_image("app", base)
    for i in range(2):
        referrer(store, base, 20 + i, SIGNATURE)
    token = store.settings.list_image_referrers("app", SubjectIdentifier(digest_of(base.encode())),
                                                max_results=1).next_token
    assert token is not None
    with pytest.raises(errors.InvalidParameterException, match="nextToken"):
        store.settings.list_image_referrers("app", subject, next_token=token)
