"""boto3 against a real server: PutReplicationConfiguration, DescribeRegistry,
DescribeImageReplicationStatus, and a push in registry A replicated into registry B (its
manifest byte for byte, its layers downloadable by B's key, no blob stored twice)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.request

import pytest
from botocore.exceptions import ClientError
from oci_http import Registry, login_password
from server_fixtures import (
    KEY_A,
    KEY_OTHER_REGISTRY,
    REGISTRY_A,
    REGISTRY_B,
    TARGET,
    digest_of,
    push_layer,
    repo_name,
    sign_request,
    start_server,
    unique_bytes,
)
from storeutil import blob_files, open_store, push

from ecrstore.models import ReplicationConfiguration, ReplicationDestination, ReplicationRule

pytestmark = pytest.mark.timeout(120)

REGION = "us-east-1"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
LAYER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "replication", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{REGISTRY_A}:root"},
    "Action": ["ecr:ReplicateImage", "ecr:CreateRepository"],
    "Resource": f"arn:aws:ecr:{REGION}:{REGISTRY_B}:repository/*"}]})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server of its own: the replication configuration of registry A applies to every push."""
    srv = start_server(tmp_path_factory.mktemp("replication"), keys=[KEY_A, KEY_OTHER_REGISTRY])
    yield srv
    srv.stop()


@pytest.fixture
def a(server):
    return server.client(KEY_A)


@pytest.fixture
def b(server):
    return server.client(KEY_OTHER_REGISTRY)


@pytest.fixture
def b_permits(b):
    b.put_registry_policy(policyText=POLICY)
    yield
    b.delete_registry_policy()


def configure(a, prefix: str | None = None, region: str = REGION) -> None:
    rule = {"destinations": [{"region": region, "registryId": REGISTRY_B}]}
    if prefix is not None:
        rule["repositoryFilters"] = [{"filter": prefix, "filterType": "PREFIX_MATCH"}]
    a.put_replication_configuration(replicationConfiguration={"rules": [rule]})


def push_image(a, repo: str) -> tuple[str, list[tuple[str, bytes]]]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": unique_bytes(8).hex()}).encode()
    config_digest = push_layer(a, repo, config)
    layers = [(push_layer(a, repo, data), data) for data in (unique_bytes(2500), unique_bytes(1800))]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": config_digest},
        "layers": [{"mediaType": LAYER_GZ, "size": len(data), "digest": d} for d, data in layers],
    }, indent=3)
    return manifest, layers


def status_of(a, repo: str, tag: str) -> list[dict]:
    return a.describe_image_replication_status(repositoryName=repo, imageId={"imageTag": tag})["replicationStatuses"]


def error_of(call, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        call(*args, **kwargs)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def test_describe_registry_and_configuration_round_trip(a, b):
    assert b.describe_registry()["registryId"] == REGISTRY_B
    assert b.describe_registry()["replicationConfiguration"] == {"rules": []}
    conf = {"rules": [{"destinations": [{"region": REGION, "registryId": REGISTRY_B},
                                        {"region": "eu-west-1", "registryId": REGISTRY_A}],
                       "repositoryFilters": [{"filter": "prod", "filterType": "PREFIX_MATCH"}]}]}
    assert a.put_replication_configuration(replicationConfiguration=conf)["replicationConfiguration"] == conf
    got = a.describe_registry()
    assert got["registryId"] == REGISTRY_A and got["replicationConfiguration"] == conf
    assert b.describe_registry()["replicationConfiguration"] == {"rules": []}  # per registry


@pytest.mark.parametrize("rules, member", [
    ([{"destinations": [{"region": REGION, "registryId": REGISTRY_B}]}] * 26, "replicationConfiguration.rules"),
    ([{"destinations": [{"region": "US_EAST_1", "registryId": REGISTRY_B}]}],
     "replicationConfiguration.rules.1.destinations.1.region"),
    ([{"destinations": [{"region": REGION, "registryId": "22222"}]}],
     "replicationConfiguration.rules.1.destinations.1.registryId"),
    ([{"destinations": [{"region": REGION, "registryId": REGISTRY_A}]}],
     "replicationConfiguration.rules.1.destinations.1"),
    ([{"destinations": [{"region": REGION, "registryId": REGISTRY_B}] * 2}],
     "replicationConfiguration.rules.1.destinations.2"),
    ([{"destinations": [{"region": REGION, "registryId": REGISTRY_B}],
       "repositoryFilters": [{"filter": "prod", "filterType": "WILDCARD"}]}],
     "replicationConfiguration.rules.1.repositoryFilters.1.filterType"),
    ([{"destinations": [{"region": REGION, "registryId": REGISTRY_B}],
       "repositoryFilters": [{"filter": "Prod*", "filterType": "PREFIX_MATCH"}]}],
     "replicationConfiguration.rules.1.repositoryFilters.1.filter"),
])
def test_invalid_configurations(a, rules, member):
    before = a.describe_registry()["replicationConfiguration"]
    code, message = error_of(a.put_replication_configuration, replicationConfiguration={"rules": rules})
    assert code == "InvalidParameterException"
    assert message.startswith(f"Invalid parameter at '{member}' failed to satisfy constraint: '")
    assert a.describe_registry()["replicationConfiguration"] == before


def test_the_source_itself_is_refused_by_name(a):
    _, message = error_of(a.put_replication_configuration, replicationConfiguration={
        "rules": [{"destinations": [{"region": REGION, "registryId": REGISTRY_A}]}]})
    assert "cannot be the source registry itself" in message


def test_a_push_in_a_appears_in_b_byte_for_byte(server, a, b, b_permits):
    repo = repo_name("rep/web")
    a.create_repository(repositoryName=repo, imageTagMutability="IMMUTABLE",
                        imageScanningConfiguration={"scanOnPush": True})
    configure(a, "rep/")
    manifest, layers = push_image(a, repo)
    blobs = len(blob_files(server.store))
    put = a.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")["image"]
    digest = put["imageId"]["imageDigest"]
    assert digest == digest_of(manifest.encode())

    got = b.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert got["failures"] == [] and got["images"][0]["imageManifest"] == manifest
    assert got["images"][0]["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    for layer_digest, data in layers:
        url = b.get_download_url_for_layer(repositoryName=repo, layerDigest=layer_digest)["downloadUrl"]
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read() == data
    assert len(blob_files(server.store)) == blobs  # the bytes are stored once
    created = b.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert created["registryId"] == REGISTRY_B and created["imageTagMutability"] == "IMMUTABLE"
    assert created["imageScanningConfiguration"] == {"scanOnPush": True}
    assert status_of(a, repo, "v1") == [{"region": REGION, "registryId": REGISTRY_B, "status": "COMPLETE"}]
    by_digest = a.describe_image_replication_status(repositoryName=repo, imageId={"imageDigest": digest})
    assert by_digest["repositoryName"] == repo and by_digest["imageId"]["imageDigest"] == digest
    assert by_digest["replicationStatuses"][0]["status"] == "COMPLETE"


def test_a_v2_manifest_put_is_replicated_too(server, a, b, b_permits):
    repo = repo_name("rep/oci")
    a.create_repository(repositoryName=repo)
    configure(a, "rep/")
    digest, raw = Registry(server.port, login_password(a)).push_image(repo, "v1")
    got = b.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"]
    assert [(i["imageId"]["imageDigest"], i["imageManifest"].encode()) for i in got] == [(digest, raw)]
    assert status_of(a, repo, "v1")[0]["status"] == "COMPLETE"


def test_without_b_registry_policy_nothing_appears_in_b(a, b):
    repo = repo_name("rep/denied")
    a.create_repository(repositoryName=repo)
    configure(a, "rep/")
    manifest, _ = push_image(a, repo)
    a.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")
    assert status_of(a, repo, "v1") == [{"region": REGION, "registryId": REGISTRY_B, "status": "FAILED",
                                         "failureCode": "REPLICATION_NOT_PERMITTED"}]
    code, _ = error_of(b.describe_repositories, repositoryNames=[repo])
    assert code == "RepositoryNotFoundException"


def test_filters_are_respected(a, b, b_permits):
    chosen, other = repo_name("rep/chosen"), repo_name("elsewhere")
    configure(a, "rep/")
    for repo in (chosen, other):
        a.create_repository(repositoryName=repo)
        manifest, _ = push_image(a, repo)
        a.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")
    assert status_of(a, chosen, "v1")[0]["status"] == "COMPLETE"
    assert status_of(a, other, "v1") == []
    names = {r["repositoryName"] for r in b.describe_repositories()["repositories"]}
    assert chosen in names and other not in names


def test_another_region_fails_as_not_served(a, b_permits):
    repo = repo_name("rep/region")
    a.create_repository(repositoryName=repo)
    configure(a, "rep/", region="eu-west-1")
    manifest, _ = push_image(a, repo)
    a.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")
    assert status_of(a, repo, "v1") == [{"region": "eu-west-1", "registryId": REGISTRY_B, "status": "FAILED",
                                         "failureCode": "REGION_NOT_SERVED"}]


def test_status_errors(a):
    code, message = error_of(a.describe_image_replication_status, repositoryName="no-such-repo",
                             imageId={"imageTag": "v1"})
    assert code == "RepositoryNotFoundException"
    assert message == f"The repository with name 'no-such-repo' does not exist in the registry with id '{REGISTRY_A}'"
    repo = repo_name("rep/errors")
    a.create_repository(repositoryName=repo)
    code, message = error_of(a.describe_image_replication_status, repositoryName=repo, imageId={"imageTag": "v9"})
    assert code == "ImageNotFoundException"
    assert message == (f"The image with imageId {{imageTag=v9}} does not exist within the repository with name "
                       f"'{repo}' in the registry with id '{REGISTRY_A}'")
    code, _ = error_of(a.describe_image_replication_status, repositoryName=repo, imageId={})
    assert code == "InvalidParameterException"


_CRASHING_PUSH = """
import os, sys
sys.path.insert(0, {tests!r})
from storeutil import open_store
store = open_store({path!r})
store.policies.registry_permits = lambda *a: os._exit(9)  # dies once the push is committed
store.put_image({repo!r}, {manifest!r}, image_tag="v1", registry_id={registry!r})
"""


def test_serve_completes_what_a_crash_left_in_progress(tmp_path):
    path, repo = tmp_path / "store", "crashed/app"
    with open_store(path) as s:
        s.create_repository(repo, registry_id=REGISTRY_A)
        s.replication.put_replication_configuration(ReplicationConfiguration((ReplicationRule(
            (ReplicationDestination(REGION, REGISTRY_B),)),)), registry_id=REGISTRY_A)
        s.policies.put_registry_policy(POLICY, registry_id=REGISTRY_B)
        config = b'{"architecture": "amd64", "os": "linux"}'
        layer = unique_bytes(3000)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
            "digest": push(s, repo, config, registry_id=REGISTRY_A)}, "layers": [{
            "mediaType": LAYER_GZ, "size": len(layer), "digest": push(s, repo, layer, registry_id=REGISTRY_A)}]})
    script = _CRASHING_PUSH.format(tests=os.path.dirname(__file__), path=str(path), repo=repo, manifest=manifest,
                                   registry=REGISTRY_A)
    assert subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True).returncode == 9
    srv = start_server(tmp_path / "serve", keys=[KEY_A, KEY_OTHER_REGISTRY], store=path)
    try:
        a, b = srv.client(KEY_A), srv.client(KEY_OTHER_REGISTRY)
        assert status_of(a, repo, "v1") == [{"region": REGION, "registryId": REGISTRY_B, "status": "COMPLETE"}]
        got = b.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"]
        assert [i["imageManifest"] for i in got] == [manifest]
    finally:
        srv.stop()


_CONF = "replicationConfiguration"


@pytest.mark.parametrize("operation, body", [
    ("PutReplicationConfiguration", {_CONF: "rules"}),
    ("PutReplicationConfiguration", {_CONF: {"rules": "all"}}),
    ("PutReplicationConfiguration", {_CONF: {"rules": [None, 3]}}),
    ("PutReplicationConfiguration", {_CONF: {"rules": [{"destinations": [{"region": 5, "registryId": "1"}]}]}}),
    ("PutReplicationConfiguration", {_CONF: {"rules": [{"destinations": [{"region": REGION}]}]}}),
    ("PutReplicationConfiguration", {_CONF: {"rules": [{"destinations": [], "repositoryFilters": [
        {"filter": "a\ud800b", "filterType": "PREFIX_MATCH"}]}]}}),
    ("PutReplicationConfiguration", {_CONF: {"rules": [{"destinations": [], "repositoryFilters": [
        {"filter": "x" * 300, "filterType": "PREFIX_MATCH"}]}]}}),
    ("PutReplicationConfiguration", {_CONF: {"rules": [{"destinations": [], "deleteReplication": {"enabled": 1}}]}}),
    ("PutReplicationConfiguration", {_CONF: {"rules": [{"destinations": [{"region": "r" * 26,
                                                                          "registryId": REGISTRY_B}]}]}}),
    ("DescribeImageReplicationStatus", {"repositoryName": "some-repo", "imageId": "latest"}),
    ("DescribeImageReplicationStatus", {"repositoryName": "some-repo", "imageId": {"imageDigest": 5}}),
    ("DescribeImageReplicationStatus", {"repositoryName": "Not A Name", "imageId": {"imageTag": "v1"}}),
    ("DescribeImageReplicationStatus", {"repositoryName": "some-repo", "imageId": {"imageTag": "t" * 301}}),
    ("DescribeImageReplicationStatus", {"repositoryName": "some-repo", "imageId": {"imageDigest": "sha256:zz"}}),
    ("DescribeImageReplicationStatus", {"imageId": {"imageTag": "v1"}}),
    ("DescribeRegistry", {"registryId": "not-an-account"}),
])
def test_malformed_requests_are_client_errors(server, a, operation, body):
    before = a.describe_registry()["replicationConfiguration"]
    raw = json.dumps(body).encode()
    headers = sign_request("POST", server.endpoint + "/", raw, {
        "X-Amz-Target": TARGET + operation, "Content-Type": "application/x-amz-json-1.1"}, KEY_A)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/", body=raw, headers=headers)
        response = conn.getresponse()
        status, doc = response.status, json.loads(response.read())
    finally:
        conn.close()
    assert 400 <= status < 500, doc  # a registryId the caller may not use is a 403 AccessDenied
    assert doc["__type"] in ("InvalidParameterException", "SerializationException", "AccessDeniedException"), doc
    assert a.describe_registry()["replicationConfiguration"] == before
