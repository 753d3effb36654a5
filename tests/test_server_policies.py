"""boto3 and a /v2/ client against a real server: the policy operations and their errors, and
cross-registry access as repository policies allow it (registry A's repositories, a key and
a registry token of registry B)."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from oci_http import Reply, basic, expect_error, login_password
from server_fixtures import (
    KEY_A,
    KEY_OTHER_REGISTRY,
    REGISTRY_A,
    REGISTRY_B,
    TARGET,
    digest_of,
    repo_name,
    sign_request,
    unique_bytes,
)

pytestmark = pytest.mark.timeout(120)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
LAYER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
USER_A = f"arn:aws:iam::{REGISTRY_A}:user/{KEY_A[0]}"
USER_B = f"arn:aws:iam::{REGISTRY_B}:user/{KEY_OTHER_REGISTRY[0]}"
PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability", "ecr:ListImages",
        "ecr:DescribeImages"]
PUSH = ["ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"]


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, indent=2)


def allow(principal, action, **extra) -> dict:
    return {"Effect": "Allow", "Principal": principal, "Action": action, **extra}


def deny(principal, action, **extra) -> dict:
    return {"Effect": "Deny", "Principal": principal, "Action": action, **extra}


def error_of(e: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def denied_message(op: str, repo: str, *, explicit: bool = False, user: str = USER_B,
                   registry: str = REGISTRY_A) -> str:
    why = ("with an explicit deny in a resource-based policy" if explicit
           else f"because no resource-based policy allows the ecr:{op} action")
    return (f"User: {user} is not authorized to perform: ecr:{op} on resource: "
            f"arn:aws:ecr:us-east-1:{registry}:repository/{repo} {why}")


def body(response: dict) -> dict:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


@pytest.fixture
def a(ecr_server):
    return ecr_server.client(KEY_A)


@pytest.fixture
def b(ecr_server):
    return ecr_server.client(KEY_OTHER_REGISTRY)


@pytest.fixture
def repo(a):
    name = repo_name("policies")
    a.create_repository(repositoryName=name)
    yield name
    a.delete_repository(repositoryName=name, force=True)


def upload(client, repo: str, data: bytes, **registry) -> str:
    upload_id = client.initiate_layer_upload(repositoryName=repo, **registry)["uploadId"]
    client.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=0, partLastByte=len(data) - 1,
                             layerPartBlob=data, **registry)
    digest = digest_of(data)
    client.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[digest], **registry)
    return digest


def push_image(client, repo: str, tag: str, **registry) -> tuple[str, bytes, str]:
    """A one-layer image under ``tag``; (manifest text, layer bytes, layer digest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": unique_bytes(8).hex()}).encode()
    layer = unique_bytes(3000)
    config_digest, layer_digest = upload(client, repo, config, **registry), upload(client, repo, layer, **registry)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": config_digest},
        "layers": [{"mediaType": LAYER_GZ, "size": len(layer), "digest": layer_digest}],
    }, indent=3)
    client.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag, **registry)
    return manifest, layer, layer_digest


# --- the operations -------------------------------------------------------------------------


def test_repository_policy_operations_and_errors(a, repo):
    with pytest.raises(ClientError) as e:
        a.get_repository_policy(repositoryName=repo)
    assert error_of(e) == ("RepositoryPolicyNotFoundException", "Repository policy does not exist for the repository "
                           f"with name '{repo}' in the registry with id '{REGISTRY_A}'")
    text = policy(allow({"AWS": REGISTRY_B}, PULL))
    expected = {"registryId": REGISTRY_A, "repositoryName": repo, "policyText": text}
    assert body(a.set_repository_policy(repositoryName=repo, policyText=text)) == expected
    assert body(a.get_repository_policy(repositoryName=repo)) == expected
    assert body(a.get_repository_policy(repositoryName=repo, registryId=REGISTRY_A)) == expected

    for bad in ("{", "[]", policy(allow("*", "s3:GetObject")), policy(allow({"AWS": "bob"}, "ecr:*")),
                json.dumps({"Version": "2001-01-01", "Statement": [allow("*", "ecr:*")]})):
        with pytest.raises(ClientError) as e:
            a.set_repository_policy(repositoryName=repo, policyText=bad)
        assert error_of(e) == ("InvalidParameterException", "Invalid parameter at 'PolicyText' failed to satisfy "
                               "constraint: 'Invalid repository policy provided'")
    with pytest.raises(ClientError) as e:
        a.set_repository_policy(repositoryName=repo, policyText=text + " " * 10240)
    assert error_of(e) == ("InvalidParameterException", "Invalid parameter at 'policyText' failed to satisfy "
                           "constraint: 'Member must have length less than or equal to 10240'")
    with pytest.raises(ClientError) as e:
        a.set_repository_policy(repositoryName="missing-" + repo, policyText=text)
    assert error_of(e) == ("RepositoryNotFoundException", f"The repository with name 'missing-{repo}' does not exist "
                           f"in the registry with id '{REGISTRY_A}'")
    lockout = policy(allow({"AWS": REGISTRY_B}, PULL), deny("*", "ecr:SetRepositoryPolicy"))
    with pytest.raises(ClientError) as e:
        a.set_repository_policy(repositoryName=repo, policyText=lockout)
    code, message = error_of(e)
    assert code == "InvalidParameterException" and "set force" in message
    assert body(a.get_repository_policy(repositoryName=repo)) == expected  # unchanged

    assert body(a.delete_repository_policy(repositoryName=repo)) == expected
    with pytest.raises(ClientError) as e:
        a.delete_repository_policy(repositoryName=repo)
    assert e.value.response["Error"]["Code"] == "RepositoryPolicyNotFoundException"
    with pytest.raises(ClientError) as e:
        a.get_repository_policy(repositoryName="missing-" + repo)
    assert e.value.response["Error"]["Code"] == "RepositoryNotFoundException"


def test_force_sets_a_policy_that_locks_the_owner_out(a, repo):
    lockout = policy(deny("*", "ecr:SetRepositoryPolicy"))
    assert a.set_repository_policy(repositoryName=repo, policyText=lockout, force=True)["policyText"] == lockout
    with pytest.raises(ClientError) as e:
        a.set_repository_policy(repositoryName=repo, policyText=policy(allow("*", "ecr:*")), force=True)
    assert error_of(e) == ("AccessDeniedException",
                           denied_message("SetRepositoryPolicy", repo, explicit=True, user=USER_A))
    assert a.delete_repository_policy(repositoryName=repo)["policyText"] == lockout  # not denied


def test_registry_policy_operations_and_errors(b):
    # Registry B's policy: registry A's is left alone for the tests that share the server.
    with pytest.raises(ClientError) as e:
        b.get_registry_policy()
    assert error_of(e) == ("RegistryPolicyNotFoundException",
                           f"Registry policy does not exist in the registry with id '{REGISTRY_B}'")
    text = policy(allow({"AWS": f"arn:aws:iam::{REGISTRY_A}:root"}, ["ecr:ReplicateImage", "ecr:CreateRepository"],
                        Resource=f"arn:aws:ecr:us-east-1:{REGISTRY_B}:repository/*"))
    try:
        assert body(b.put_registry_policy(policyText=text)) == {"registryId": REGISTRY_B, "policyText": text}
        assert body(b.get_registry_policy()) == {"registryId": REGISTRY_B, "policyText": text}
        with pytest.raises(ClientError) as e:
            b.put_registry_policy(policyText=policy(allow({"AWS": REGISTRY_A}, "ecr:BatchGetImage")))
        assert error_of(e) == ("InvalidParameterException", "Invalid parameter at 'PolicyText' failed to satisfy "
                               "constraint: 'Invalid registry policy provided'")
        assert b.get_registry_policy()["policyText"] == text
    finally:
        assert body(b.delete_registry_policy()) == {"registryId": REGISTRY_B, "policyText": text}
    with pytest.raises(ClientError) as e:
        b.delete_registry_policy()
    assert e.value.response["Error"]["Code"] == "RegistryPolicyNotFoundException"


# --- cross-registry access over the JSON API ------------------------------------------------


def test_cross_registry_pull_denied_then_allowed_byte_exact(a, b, repo):
    manifest, layer, layer_digest = push_image(a, repo, "v1")
    on_a = {"repositoryName": repo, "registryId": REGISTRY_A}
    with pytest.raises(ClientError) as e:
        b.batch_get_image(imageIds=[{"imageTag": "v1"}], **on_a)
    assert error_of(e) == ("AccessDeniedException", denied_message("BatchGetImage", repo))

    a.set_repository_policy(repositoryName=repo, policyText=policy(allow({"AWS": REGISTRY_B}, PULL)))
    got = b.batch_get_image(imageIds=[{"imageTag": "v1"}], **on_a)["images"][0]
    assert got["imageManifest"] == manifest and got["registryId"] == REGISTRY_A
    url = b.get_download_url_for_layer(layerDigest=layer_digest, **on_a)["downloadUrl"]
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == layer
    assert b.batch_check_layer_availability(layerDigests=[layer_digest], **on_a)["layers"][0]["layerAvailability"] \
        == "AVAILABLE"
    assert [i["imageTag"] for i in b.list_images(**on_a)["imageIds"]] == ["v1"]
    assert b.describe_images(**on_a)["imageDetails"][0]["registryId"] == REGISTRY_A

    with pytest.raises(ClientError) as e:
        b.initiate_layer_upload(**on_a)
    assert error_of(e) == ("AccessDeniedException", denied_message("InitiateLayerUpload", repo))
    with pytest.raises(ClientError) as e:
        b.batch_delete_image(imageIds=[{"imageTag": "v1"}], **on_a)
    assert error_of(e) == ("AccessDeniedException", denied_message("BatchDeleteImage", repo))
    with pytest.raises(ClientError) as e:
        b.get_repository_policy(**on_a)
    assert error_of(e) == ("AccessDeniedException", denied_message("GetRepositoryPolicy", repo))


def test_cross_registry_push_when_the_policy_allows_it(a, b, repo):
    a.set_repository_policy(repositoryName=repo, policyText=policy(allow({"AWS": USER_B}, PUSH + PULL)))
    manifest, _, _ = push_image(b, repo, "from-b", registryId=REGISTRY_A)
    assert a.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "from-b"}])["images"][0]["imageManifest"] \
        == manifest
    with pytest.raises(ClientError) as e:  # the repository B's key names is in registry B: not there
        b.list_images(repositoryName=repo)
    assert e.value.response["Error"]["Code"] == "RepositoryNotFoundException"


def test_an_explicit_deny_beats_an_allow(a, b, repo):
    push_image(a, repo, "v1")
    a.set_repository_policy(repositoryName=repo, policyText=policy(
        allow("*", "ecr:*"), deny({"AWS": REGISTRY_B}, "ecr:BatchGetImage"), deny({"AWS": USER_A}, "ecr:PutImage")))
    on_a = {"repositoryName": repo, "registryId": REGISTRY_A}
    with pytest.raises(ClientError) as e:
        b.batch_get_image(imageIds=[{"imageTag": "v1"}], **on_a)
    assert error_of(e) == ("AccessDeniedException", denied_message("BatchGetImage", repo, explicit=True))
    assert b.list_images(**on_a)["imageIds"]
    # The owner's own key is held to an explicit deny naming it, and to nothing else.
    with pytest.raises(ClientError) as e:
        a.put_image(repositoryName=repo, imageManifest="{}", imageTag="x")
    assert error_of(e) == ("AccessDeniedException", denied_message("PutImage", repo, explicit=True, user=USER_A))
    assert a.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["images"]


def test_not_action_allows_everything_but_what_it_names(a, b, repo):
    push_image(a, repo, "v1")
    a.set_repository_policy(repositoryName=repo, policyText=policy(
        {"Effect": "Allow", "Principal": {"AWS": REGISTRY_B}, "NotAction": ["ecr:PutImage", "ecr:*Layer*"]}))
    on_a = {"repositoryName": repo, "registryId": REGISTRY_A}
    assert b.batch_get_image(imageIds=[{"imageTag": "v1"}], **on_a)["images"]
    for call, kwargs, op in ((b.put_image, {"imageManifest": "{}"}, "PutImage"),
                             (b.initiate_layer_upload, {}, "InitiateLayerUpload")):
        with pytest.raises(ClientError) as e:
            call(**kwargs, **on_a)
        assert error_of(e) == ("AccessDeniedException", denied_message(op, repo))


def test_registry_level_operations_stay_denied_across_registries(ecr_server, a, b, repo):
    a.set_repository_policy(repositoryName=repo, policyText=policy(allow("*", "ecr:*")))
    calls = [
        ("DescribeRepositories", "*", lambda: b.describe_repositories(registryId=REGISTRY_A)),
        ("CreateRepository", repo, lambda: b.create_repository(repositoryName=repo, registryId=REGISTRY_A)),
        ("CreateRepository", "new-" + repo,
         lambda: b.create_repository(repositoryName="new-" + repo, registryId=REGISTRY_A)),
        ("ListImages", "missing-" + repo, lambda: b.list_images(repositoryName="missing-" + repo,
                                                                registryId=REGISTRY_A)),
    ]
    for op, resource, call in calls:
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e) == ("AccessDeniedException", denied_message(op, resource)), op
    # With the policy allowing ecr:* the repository's own policy operations are open to B.
    assert b.get_repository_policy(repositoryName=repo, registryId=REGISTRY_A)["registryId"] == REGISTRY_A
    # Registry policies have no registryId in the model (boto3 cannot send one): sent anyway, refused.
    for op, payload in (("GetRegistryPolicy", {}), ("DeleteRegistryPolicy", {}),
                        ("PutRegistryPolicy", {"policyText": policy(allow("*", "ecr:ReplicateImage"))})):
        status, answer = signed_call(ecr_server, KEY_OTHER_REGISTRY, op, {"registryId": REGISTRY_A, **payload})
        assert (status, answer["__type"], answer["message"]) == (403, "AccessDeniedException", denied_message(op, "*"))
    with pytest.raises(ClientError) as e:
        a.get_registry_policy()
    assert e.value.response["Error"]["Code"] == "RegistryPolicyNotFoundException"  # nothing was put


def signed_call(server, key, operation: str, payload: dict) -> tuple[int, dict]:
    """One JSON call signed with ``key``, with members boto3 would not send."""
    data = json.dumps(payload).encode()
    headers = sign_request("POST", server.endpoint + "/", data, {
        "X-Amz-Target": TARGET + operation, "Content-Type": "application/x-amz-json-1.1"}, key)
    request = urllib.request.Request(server.endpoint + "/", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# --- cross-registry access over /v2/ -------------------------------------------------------


def v2(port: int, method: str, path: str, password: str, host: str, data: bytes | None = None,
       headers: dict[str, str] | None = None) -> Reply:
    """One /v2/ request with the ``Host`` given (ECR's host names address a registry)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.putheader("Authorization", basic(password))
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if data is not None:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders()
        if data:
            conn.send(data)
        response = conn.getresponse()
        return Reply(method, path, response.status, response.headers, response.read())
    finally:
        conn.close()


def test_v2_cross_registry_pull_denied_then_allowed(ecr_server, a, b, repo):
    manifest, layer, layer_digest = push_image(a, repo, "v1")
    password = login_password(b)
    port = ecr_server.port
    host_a = f"{REGISTRY_A}.localhost:{port}"
    accept = {"Accept": DOCKER_MANIFEST}

    denied = expect_error(v2(port, "GET", f"/v2/{repo}/manifests/v1", password, host_a, headers=accept), 403, "DENIED")
    assert USER_B in denied["message"] and "ecr:BatchGetImage" in denied["message"]
    expect_error(v2(port, "GET", f"/v2/{repo}/blobs/{layer_digest}", password, host_a), 403, "DENIED")
    # Its own registry (any other host): no such repository there.
    expect_error(v2(port, "GET", f"/v2/{repo}/manifests/v1", password, f"localhost:{port}", headers=accept),
                 404, "NAME_UNKNOWN")
    assert v2(port, "GET", "/v2/", password, host_a).status == 200

    a.set_repository_policy(repositoryName=repo, policyText=policy(allow({"AWS": REGISTRY_B}, PULL)))
    got = v2(port, "GET", f"/v2/{repo}/manifests/v1", password, host_a, headers=accept)
    assert got.status == 200 and got.body == manifest.encode()
    assert got.header("docker-content-digest") == digest_of(manifest.encode())
    blob = v2(port, "GET", f"/v2/{repo}/blobs/{layer_digest}", password, host_a)
    assert blob.status == 200 and blob.body == layer
    assert v2(port, "HEAD", f"/v2/{repo}/blobs/{layer_digest}", password, host_a).status == 200
    assert json.loads(v2(port, "GET", f"/v2/{repo}/tags/list", password, host_a).body)["tags"] == ["v1"]

    # Pulling is not pushing; the catalog names no repository.
    expect_error(v2(port, "POST", f"/v2/{repo}/blobs/uploads/", password, host_a, b""), 403, "DENIED")
    expect_error(v2(port, "PUT", f"/v2/{repo}/manifests/v2", password, host_a, manifest.encode(),
                    {"Content-Type": DOCKER_MANIFEST}), 403, "DENIED")
    expect_error(v2(port, "GET", "/v2/_catalog", password, host_a), 403, "DENIED")


def test_v2_cross_registry_push_when_allowed(ecr_server, a, b, repo):
    a.set_repository_policy(repositoryName=repo, policyText=policy(allow({"AWS": REGISTRY_B}, PUSH + PULL)))
    password, port = login_password(b), ecr_server.port
    host_a = f"{REGISTRY_A}.dkr.ecr.us-east-1.localhost:{port}"
    data = unique_bytes(2000)
    digest = digest_of(data)
    pushed = v2(port, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", password, host_a, data,
                {"Content-Type": "application/octet-stream"})
    assert pushed.status == 201, str(pushed)
    listed = a.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest])["layers"]
    assert listed[0]["layerAvailability"] == "AVAILABLE"
    # A layer DELETE has no ECR action to allow it: refused across registries.
    expect_error(v2(port, "DELETE", f"/v2/{repo}/blobs/{digest}", password, host_a), 403, "DENIED")
