"""boto3 against a real ``ecrstore serve``: the lifecycle policy operations and their errors, a
preview that equals what ``ecrstore lifecycle run`` removes, gc reclaiming the expired images'
blobs, and the server's periodic lifecycle runs."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from server_fixtures import (
    KEY_A,
    KEY_OTHER_REGISTRY,
    REGISTRY_A,
    TARGET,
    push_layer,
    repo_name,
    sign_request,
    start_server,
    unique_bytes,
)
from storeutil import blob_files

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def policy(*rules):
    return json.dumps({"rules": list(rules)}, indent=2)


def rule(priority, status, number, **selection):
    return {"rulePriority": priority, "description": f"rule {priority}",
            "selection": {"tagStatus": status, "countType": "imageCountMoreThan", "countNumber": number, **selection},
            "action": {"type": "expire"}}


UNTAGGED_KEEP_1 = policy(rule(1, "untagged", 1))


def push_image(ecr, repo, tag=None, size=3000):
    """A config and one layer of fresh bytes, and their manifest; the image digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": unique_bytes(8).hex()}).encode()
    layer = unique_bytes(size)
    cfg, lay = push_layer(ecr, repo, config), push_layer(ecr, repo, layer)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "size": len(config), "digest": cfg},
                           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                       "size": len(layer), "digest": lay}]})
    kw = {"imageTag": tag} if tag else {}
    return ecr.put_image(repositoryName=repo, imageManifest=manifest, **kw)["image"]["imageId"]["imageDigest"]


def digests(ecr, repo):
    pages = ecr.get_paginator("describe_images").paginate(repositoryName=repo)
    return {d["imageDigest"] for page in pages for d in page["imageDetails"]}


def error(call, **kw):
    with pytest.raises(ClientError) as info:
        call(**kw)
    return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]


def ecrstore(*argv):
    env = {k: v for k, v in os.environ.items() if k != "ECRSTORE_STORE"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    done = subprocess.run([sys.executable, "-m", "ecrstore.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout


@pytest.fixture
def ecr(ecr_server):
    return ecr_server.client()


@pytest.fixture
def repo(ecr):
    name = repo_name("lifecycle")
    ecr.create_repository(repositoryName=name)
    yield name
    ecr.delete_repository(repositoryName=name, force=True)


def test_put_get_delete_policy(ecr, repo):
    put = ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=UNTAGGED_KEEP_1)
    assert (put["registryId"], put["repositoryName"], put["lifecyclePolicyText"]) == (REGISTRY_A, repo,
                                                                                      UNTAGGED_KEEP_1)
    got = ecr.get_lifecycle_policy(repositoryName=repo)
    assert got["lifecyclePolicyText"] == UNTAGGED_KEEP_1 and "lastEvaluatedAt" not in got
    replaced = policy(rule(1, "tagged", 5, tagPatternList=["v*"]))
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=replaced)
    deleted = ecr.delete_lifecycle_policy(repositoryName=repo)
    assert deleted["lifecyclePolicyText"] == replaced and deleted["repositoryName"] == repo
    code, message = error(ecr.get_lifecycle_policy, repositoryName=repo)
    assert code == "LifecyclePolicyNotFoundException"
    assert message == (f"Lifecycle policy does not exist for the repository with name '{repo}' in the registry "
                       f"with id '{REGISTRY_A}'")
    assert error(ecr.delete_lifecycle_policy, repositoryName=repo)[0] == "LifecyclePolicyNotFoundException"


def test_errors_of_every_operation(ecr, ecr_server, repo):
    missing = repo_name("missing")
    for call, kw in [(ecr.put_lifecycle_policy, {"lifecyclePolicyText": UNTAGGED_KEEP_1}),
                     (ecr.get_lifecycle_policy, {}), (ecr.delete_lifecycle_policy, {}),
                     (ecr.start_lifecycle_policy_preview, {}), (ecr.get_lifecycle_policy_preview, {})]:
        assert error(call, repositoryName=missing, **kw) == (
            "RepositoryNotFoundException",
            f"The repository with name '{missing}' does not exist in the registry with id '{REGISTRY_A}'")
    code, message = error(ecr.put_lifecycle_policy, repositoryName=repo,
                          lifecyclePolicyText=policy(rule(1, "tagged", 1)))
    assert code == "InvalidParameterException"
    assert message == ("Invalid parameter at 'lifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy "
                       "validation failure: a rule at /rules/0/selection with tagStatus 'tagged' needs exactly one "
                       "of tagPrefixList and tagPatternList'")
    code, message = error(ecr.start_lifecycle_policy_preview, repositoryName=repo,
                          lifecyclePolicyText=policy(rule(1, "any", 1), rule(2, "untagged", 1)))
    assert code == "InvalidParameterException" and "must have the highest rulePriority" in message
    code, message = error(ecr.start_lifecycle_policy_preview, repositoryName=repo)
    assert code == "LifecyclePolicyNotFoundException"
    code, message = error(ecr.get_lifecycle_policy_preview, repositoryName=repo)
    assert code == "LifecyclePolicyPreviewNotFoundException"
    assert message == (f"Lifecycle policy preview for the repository with name '{repo}' does not exist in the "
                       f"registry with id '{REGISTRY_A}'")
    # Nothing was stored by the refused calls.
    assert error(ecr.get_lifecycle_policy, repositoryName=repo)[0] == "LifecyclePolicyNotFoundException"
    ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=UNTAGGED_KEEP_1)
    code, message = error(ecr.get_lifecycle_policy_preview, repositoryName=repo, maxResults=101)
    assert (code, message) == ("InvalidParameterException", "Invalid parameter at 'maxResults' failed to satisfy "
                                                            "constraint: 'Member must have value between 1 and 100'")
    code, message = error(ecr.get_lifecycle_policy_preview, repositoryName=repo, nextToken="bent")
    assert (code, message) == ("InvalidParameterException",
                               "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'")
    code, _ = error(ecr.get_lifecycle_policy_preview, repositoryName=repo, filter={"tagStatus": "SOME"})
    assert code == "InvalidParameterException"
    # Another registry's caller does not see this registry's repository.
    other = ecr_server.client(KEY_OTHER_REGISTRY)
    assert error(other.get_lifecycle_policy, repositoryName=repo)[0] == "RepositoryNotFoundException"


def raw_call(server, operation, body: bytes):
    url = f"{server.endpoint}/"
    headers = sign_request("POST", url, body, {"X-Amz-Target": TARGET + operation,
                                               "Content-Type": "application/x-amz-json-1.1"}, KEY_A)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_malformed_members_are_client_errors_and_change_nothing(ecr, ecr_server, repo):
    nested = "[" * 5000 + "]" * 5000
    bad_texts = [5, [], {"rules": []}, nested, '{"rules": [' + "1e400," * 30 + "1]}",
                 policy(rule(1, "untagged", 2**63)), policy(rule(1, "untagged", 1)).replace("1,", "NaN,", 1),
                 policy(rule(1, "untagged", 1)).replace("rule 1", "\ud800"), "x" * 40000]
    cases = [("PutLifecyclePolicy", {"lifecyclePolicyText": t}) for t in bad_texts]
    cases += [("StartLifecyclePolicyPreview", {"lifecyclePolicyText": t}) for t in bad_texts]
    cases += [("GetLifecyclePolicyPreview", extra) for extra in (
        {"imageIds": "x"}, {"imageIds": [{}]}, {"imageIds": [{"imageTag": 5}]}, {"imageIds": [{"imageTag": "a"}] * 101},
        {"maxResults": 0}, {"maxResults": 10**30}, {"maxResults": "5"}, {"filter": "TAGGED"},
        {"filter": {"tagStatus": ["ANY"]}}, {"nextToken": "A" * 5000}, {"nextToken": 7})]
    cases += [(op, {"repositoryName": name}) for op in ("GetLifecyclePolicy", "DeleteLifecyclePolicy")
              for name in (5, "UPPER", "a" * 300, None)]
    for operation, members in cases:
        body = json.dumps({"repositoryName": repo, **members}).encode()
        status, doc = raw_call(ecr_server, operation, body)
        assert 400 <= status < 500 and doc["__type"] in (
            "InvalidParameterException", "RepositoryNotFoundException", "LifecyclePolicyNotFoundException",
            "LifecyclePolicyPreviewNotFoundException", "SerializationException"), (operation, members, status, doc)
    assert error(ecr.get_lifecycle_policy, repositoryName=repo)[0] == "LifecyclePolicyNotFoundException"
    assert error(ecr.get_lifecycle_policy_preview, repositoryName=repo)[0] == \
        "LifecyclePolicyPreviewNotFoundException"


def test_preview_equals_what_lifecycle_run_removes(ecr, ecr_server, repo):
    tagged = [push_image(ecr, repo, f"build-{n}") for n in range(4)]
    untagged = [push_image(ecr, repo) for _ in range(3)]
    text = policy(rule(1, "untagged", 1), rule(2, "tagged", 2, tagPrefixList=["build"]))
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text)
    started = ecr.start_lifecycle_policy_preview(repositoryName=repo)
    assert started["status"] == "COMPLETE" and started["lifecyclePolicyText"] == text
    results, kw = [], {}
    while True:  # one result a page
        page = ecr.get_lifecycle_policy_preview(repositoryName=repo, maxResults=1, **kw)
        assert page["status"] == "COMPLETE" and page["summary"]["expiringImageTotalCount"] == 4
        results += page["previewResults"]
        if "nextToken" not in page:
            break
        kw = {"nextToken": page["nextToken"]}
    assert all(r["action"] == {"type": "EXPIRE"} for r in results)
    assert {(r["imageDigest"], r["appliedRulePriority"]) for r in results} == {
        *((d, 1) for d in untagged[:2]), *((d, 2) for d in tagged[:2])}
    assert {r["imageDigest"]: r["imageTags"] for r in results}[tagged[0]] == ["build-0"]
    tagged_only = ecr.get_lifecycle_policy_preview(repositoryName=repo, filter={"tagStatus": "TAGGED"})
    assert {r["imageDigest"] for r in tagged_only["previewResults"]} == set(tagged[:2])
    by_id = ecr.get_lifecycle_policy_preview(repositoryName=repo, imageIds=[{"imageTag": "build-1"}])
    assert [r["imageDigest"] for r in by_id["previewResults"]] == [tagged[1]]

    out = json.loads(ecrstore("lifecycle", "run", "--store", str(ecr_server.store), "--registry-id", REGISTRY_A,
                              "--repository", repo, "--json"))
    removed = {r["imageDigest"] for r in out["repositories"][0]["expired"]}
    assert removed == {r["imageDigest"] for r in results}
    assert digests(ecr, repo) == set(tagged + untagged) - removed
    assert "lastEvaluatedAt" in ecr.get_lifecycle_policy(repositoryName=repo)


def test_expired_images_blobs_are_reclaimed_by_gc(tmp_path):
    server = start_server(tmp_path, keys=[KEY_A], extra=["--lifecycle-interval", "0"])
    try:
        ecr = server.client()
        ecr.create_repository(repositoryName="app")
        old = [push_image(ecr, "app", f"v{n}", size=20000 + n) for n in range(3)]
        kept = push_image(ecr, "app", "v3", size=20003)
        before = set(blob_files(server.store))
        ecr.put_lifecycle_policy(repositoryName="app",
                                 lifecyclePolicyText=policy(rule(1, "tagged", 1, tagPatternList=["v*"])))
        other_policy = tmp_path / "policy.json"
        other_policy.write_text(policy(rule(1, "tagged", 3, tagPrefixList=["v"])))
        preview = ecrstore("lifecycle", "preview", "--store", str(server.store), "--registry-id", REGISTRY_A,
                           "--repository", "app", "--policy", str(other_policy))
        assert f"{REGISTRY_A}/app: the policy expires 1 image(s)" in preview and old[0] in preview
        stored = json.loads(ecrstore("lifecycle", "preview", "--store", str(server.store), "--registry-id",
                                     REGISTRY_A, "--repository", "app", "--json"))
        assert [r["imageDigest"] for r in stored["previewResults"]] == old
        assert ecr.get_lifecycle_policy_preview(repositoryName="app")["summary"]["expiringImageTotalCount"] == 3
        dry = ecrstore("lifecycle", "run", "--store", str(server.store), "--dry-run")
        assert dry.count("sha256:") == 3 and "would expire 3 image(s)" in dry
        assert set(blob_files(server.store)) == before
        out = ecrstore("lifecycle", "run", "--store", str(server.store), "--gc")
        assert f"{REGISTRY_A}/app: expired 3 image(s)" in out
        # Each expired image had its own config and layer: six blobs went, two stay.
        assert "deleted 6 blob(s)" in out
        after = set(blob_files(server.store))
        assert len(before - after) == 6 and len(after) == len(before) - 6
        assert digests(ecr, "app") == {kept}
        stats = json.loads(ecrstore("stats", "--store", str(server.store), "--json"))
        assert stats["blobs"] == len(after) and stats["reclaimable_bytes"] == 0
        assert all(d not in out for d in [kept])
        assert {d for d in old if d in out} == set(old)
    finally:
        server.stop()


def test_the_server_expires_images_periodically(tmp_path):
    server = start_server(tmp_path, keys=[KEY_A, KEY_OTHER_REGISTRY], extra=["--lifecycle-interval", "1"])
    try:
        ecrs = {"a": server.client(KEY_A), "b": server.client(KEY_OTHER_REGISTRY)}
        pushed = {}
        for name, ecr in ecrs.items():
            ecr.create_repository(repositoryName="app")
            pushed[name] = [push_image(ecr, "app") for _ in range(3)]
            ecr.put_lifecycle_policy(repositoryName="app", lifecyclePolicyText=UNTAGGED_KEEP_1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(digests(ecr, "app") == {pushed[name][-1]} for name, ecr in ecrs.items()):
                break
            time.sleep(0.25)
        for name, ecr in ecrs.items():  # every registry's policies apply
            assert digests(ecr, "app") == {pushed[name][-1]}, server.log()
            assert "lastEvaluatedAt" in ecr.get_lifecycle_policy(repositoryName="app")
        assert "lifecycle policy of" in server.log()
    finally:
        server.stop()
