"""The OCI distribution API (``/v2/``) of a real ``ecrstore serve``, endpoint by endpoint,
against the status codes and headers of the distribution-spec v1.1 (end-1 … end-13).

Raw HTTP on 127.0.0.1 (:mod:`oci_http`), each answer checked for the spec's error body and
for never being a 5xx. Covered: ECR's docker login (GetAuthorizationToken and the AWS CLI's
get-login-password as HTTP Basic ``AWS:<password>``; tampered, forged, expired and revoked
passwords), blob reads with ranges and deletes, every upload form (single POST, POST then
PUT, chunked PATCHes of any size with and without Content-Range, chunked transfer encoding),
out-of-order chunks, upload status and cancellation, cross-repository mounts and their
tenancy, manifests of the Docker and OCI media types by tag and digest with Accept
negotiation, immutable tags, deletes, tag and catalog pages, referrers with their filter and
the referrers tag schema; one store seen through both ``/v2/`` and the JSON API; uploads
shared by the workers of one server; and malformed requests answered without a 5xx.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from oci_http import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Registry,
    basic,
    descriptor,
    digest_of,
    expect_error,
    login_password,
)
from server_fixtures import (
    KEY_A,
    KEY_B,
    REGISTRY_A,
    REGISTRY_B,
    push_layer,
    repo_name,
    start_server,
    unique_bytes,
)

from ecrstore import Store
from ecrstore.limits import MAX_LAYER_BYTES, MAX_MANIFEST_CHARS
from ecrstore.server.auth.credentials import Credential
from ecrstore.server.auth.registry_tokens import RegistryTokens


@pytest.fixture(scope="module")
def ecr_server(ecr_server_per_backend):
    """This module runs on both backend pairs."""
    return ecr_server_per_backend


pytestmark = pytest.mark.timeout(120)

MIB = 1 << 20


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ecr_a(ecr_server):
    return ecr_server.client(KEY_A)


@pytest.fixture(scope="module")
def ecr_b(ecr_server):
    return ecr_server.client(KEY_B)


@pytest.fixture(scope="module")
def a(ecr_server, ecr_a) -> Registry:
    """``/v2/`` logged in to registry A."""
    return Registry(ecr_server.port, login_password(ecr_a))


@pytest.fixture(scope="module")
def b(ecr_server, ecr_b) -> Registry:
    """``/v2/`` logged in to registry B."""
    return Registry(ecr_server.port, login_password(ecr_b))


@pytest.fixture
def repo(ecr_a) -> str:
    """A new repository of registry A."""
    name = repo_name("oci")
    ecr_a.create_repository(repositoryName=name)
    return name


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """A server without authentication whose uploads expire after one idle second."""
    server = start_server(tmp_path_factory.mktemp("oci-open"), no_auth=True, store_options={"upload_ttl": 1})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pushing_server(tmp_path_factory):
    """A server with ``--create-on-push``."""
    server = start_server(tmp_path_factory.mktemp("oci-create"), keys=[KEY_A], extra=["--create-on-push"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("oci-workers"), keys=[KEY_A], workers=2)
    yield server
    server.stop()


def password_of(key: tuple[str, str, str], *, registry: str | None = None, secret: str | None = None,
                clock_offset: float = 0.0) -> str:
    """A password as the server would issue it for ``key`` — or, with the arguments, one it
    never issued: claiming another registry, signed with another secret, issued in the past."""
    credential = Credential(key[0], secret or key[1], registry or key[2])
    return RegistryTokens({key[0]: credential}, clock=lambda: time.time() + clock_offset).issue(credential)[0]


def aws_cli_env(tmp_path: Path, key: tuple[str, str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1], "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"), "AWS_PAGER": ""})
    return env


def next_link(reply) -> str | None:
    """The target of a ``Link: <...>; rel="next"`` header, or None."""
    value = reply.header("link")
    if value is None:
        return None
    m = re.fullmatch(r'<([^>]+)>;\s*rel="next"', value.strip())
    assert m, f"not an RFC 5988 next link: {value!r}"
    return m.group(1)


# --- end-1: the base endpoint and docker login ---------------------------------------------


@pytest.mark.parametrize("authorization", [
    None, "", "Basic", "Basic !!!not-base64!!!", "Bearer sometoken", basic("ecr1.x.y"), basic("", user=""),
], ids=["none", "empty", "basic-no-value", "not-base64", "bearer", "not-a-password", "empty-user"])
def test_base_without_valid_credentials_is_401_with_a_basic_challenge(a, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = Registry(a.port).get("/v2/", headers)
    expect_error(reply, 401, "UNAUTHORIZED")
    assert re.match(r'Basic realm="[^"]+"', reply.header("www-authenticate") or ""), str(reply)


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/v2/_catalog", None),
    ("GET", "/v2/{repo}/tags/list", None),
    ("HEAD", "/v2/{repo}/manifests/latest", None),
    ("PUT", "/v2/{repo}/manifests/latest", b"{}"),
    ("GET", "/v2/{repo}/blobs/sha256:" + "0" * 64, None),
    ("POST", "/v2/{repo}/blobs/uploads/", b""),
    ("PATCH", "/v2/{repo}/blobs/uploads/" + str(uuid.UUID(int=7)), b"chunk"),
    ("GET", "/v2/{repo}/referrers/sha256:" + "0" * 64, None),
    ("GET", "/v2/no/such/endpoint", None),
])
def test_every_endpoint_asks_for_credentials(a, repo, method, path, body):
    reply = Registry(a.port).request(method, path.format(repo=repo), body)
    expect_error(reply, 401, "UNAUTHORIZED")
    assert (reply.header("www-authenticate") or "").startswith("Basic realm=")


def test_base_with_the_get_authorization_token_password_is_200(ecr_server, ecr_a):
    data = ecr_a.get_authorization_token()["authorizationData"]
    assert len(data) == 1
    assert abs(data[0]["expiresAt"].timestamp() - (time.time() + 12 * 3600)) < 120
    assert data[0]["proxyEndpoint"] == ecr_server.endpoint
    password = login_password(ecr_a)
    reply = Registry(ecr_server.port, password).get("/v2/")
    assert reply.status == 200, str(reply)
    assert reply.header("docker-distribution-api-version") == "registry/2.0"
    assert Registry(ecr_server.port, password).head("/v2/").status == 200


def test_base_with_a_password_signed_with_the_keys_secret_is_200(a):
    assert a.get("/v2/", authorization=basic(password_of(KEY_A))).status == 200


def tampered(password: str, position: int) -> str:
    char = password[position]
    return password[:position] + ("A" if char != "A" else "B") + password[position + 1:]


@pytest.mark.parametrize("kind", ["payload-byte", "mac-byte", "truncated", "forged", "expired",
                                  "other-registry", "unknown-key", "other-user"])
def test_base_with_a_tampered_forged_or_expired_password_is_401(a, kind):
    good = a.password
    assert good is not None
    password, user = {
        "payload-byte": (tampered(good, good.index(".") + 10), "AWS"),
        "mac-byte": (tampered(good, len(good) - 5), "AWS"),
        "truncated": (good[:-1], "AWS"),
        "forged": (password_of(KEY_A, secret="not the secret"), "AWS"),
        "expired": (password_of(KEY_A, clock_offset=-13 * 3600), "AWS"),
        "other-registry": (password_of(KEY_A, registry=REGISTRY_B), "AWS"),
        "unknown-key": (password_of(("AKIANOSUCHKEYXXXXXXX", "whatever", REGISTRY_A)), "AWS"),
        "other-user": (good, "admin"),
    }[kind]
    assert password != good or user != "AWS"
    reply = a.get("/v2/", authorization=basic(password, user=user))
    expect_error(reply, 401, "UNAUTHORIZED")
    assert (reply.header("www-authenticate") or "").startswith("Basic realm=")


def test_base_with_the_aws_cli_login_password_is_200(ecr_server, tmp_path):
    aws = Path(sys.executable).parent / "aws"
    if not aws.exists():
        pytest.skip("the AWS CLI is not installed in this environment")
    done = subprocess.run([str(aws), "ecr", "get-login-password", "--endpoint-url", ecr_server.endpoint],
                          env=aws_cli_env(tmp_path, KEY_B), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reply = Registry(ecr_server.port, done.stdout.strip()).get("/v2/")
    assert reply.status == 200, str(reply)


def test_a_password_stops_working_when_its_key_leaves_the_credentials_file(tmp_path):
    server = start_server(tmp_path, keys=[KEY_A, KEY_B])
    try:
        kept = Registry(server.port, login_password(server.client(KEY_A)))
        revoked = Registry(server.port, login_password(server.client(KEY_B)))
        assert revoked.get("/v2/").status == 200
        assert server.credentials is not None
        server.credentials.write_text(f"{KEY_A[0]} {KEY_A[1]} {KEY_A[2]}\n")
        deadline = time.monotonic() + 10
        while (reply := revoked.get("/v2/")).status == 200:
            assert time.monotonic() < deadline, "the removed key's password kept working"
            time.sleep(0.2)
        expect_error(reply, 401, "UNAUTHORIZED")
        assert kept.get("/v2/").status == 200
    finally:
        server.stop()


def test_a_server_without_authentication_answers_without_credentials(open_server):
    reply = Registry(open_server.port).get("/v2/")
    assert reply.status == 200, str(reply)
    assert reply.json() == {}


def test_get_authorization_token_refuses_another_registry_and_malformed_ids(ecr_a):
    with pytest.raises(ecr_a.exceptions.ClientError) as denied:
        ecr_a.get_authorization_token(registryIds=[REGISTRY_B])
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ecr_a.exceptions.InvalidParameterException):
        ecr_a.get_authorization_token(registryIds=["not-a-registry"])
    ids = ecr_a.get_authorization_token(registryIds=[REGISTRY_A])["authorizationData"]
    assert len(ids) == 1


def test_each_password_acts_in_its_own_registry(a, b, repo, ecr_b):
    digest, raw = a.push_image(repo, "v1")
    layer = json.loads(raw)["layers"][0]["digest"]
    session = a.start_upload(repo)
    assert a.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]
    expect_error(b.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")
    expect_error(b.get(f"/v2/{repo}/blobs/{layer}"), 404, "NAME_UNKNOWN")
    expect_error(b.request("POST", f"/v2/{repo}/blobs/uploads/", b""), 404, "NAME_UNKNOWN")
    ecr_b.create_repository(repositoryName=repo)  # the same name in registry B: still none of A's content
    assert b.get(f"/v2/{repo}/tags/list").json()["tags"] == []
    expect_error(b.get(f"/v2/{repo}/blobs/{layer}"), 404, "BLOB_UNKNOWN")
    expect_error(b.get(f"/v2/{repo}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    expect_error(b.get(session), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(b.request("PATCH", session, b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(b.delete(session), 404, "BLOB_UPLOAD_UNKNOWN")
    assert a.get(session).status == 204
    assert a.get(f"/v2/{repo}/blobs/{layer}").status == 200


# --- end-2, end-10: blobs ------------------------------------------------------------------


def test_blob_get_and_head_answer_its_bytes_length_and_digest(a, repo):
    data = unique_bytes(3000)
    digest = a.push_blob(repo, data)
    got = a.get(f"/v2/{repo}/blobs/{digest}")
    assert got.status == 200, str(got)
    assert got.body == data
    assert got.header("content-length") == str(len(data))
    assert got.header("docker-content-digest") == digest
    head = a.head(f"/v2/{repo}/blobs/{digest}")
    assert head.status == 200 and head.body == b""
    assert head.header("content-length") == str(len(data))
    assert head.header("docker-content-digest") == digest


def test_blob_range_requests_answer_206_and_416(a, repo):
    data = unique_bytes(1000)
    digest = a.push_blob(repo, data)
    part = a.get(f"/v2/{repo}/blobs/{digest}", {"Range": "bytes=10-19"})
    assert part.status == 206, str(part)
    assert part.body == data[10:20]
    assert part.header("content-range") == "bytes 10-19/1000"
    assert part.header("content-length") == "10"
    tail = a.get(f"/v2/{repo}/blobs/{digest}", {"Range": "bytes=-5"})
    assert tail.status == 206 and tail.body == data[-5:]
    for method in ("GET", "HEAD"):
        beyond = a.request(method, f"/v2/{repo}/blobs/{digest}", None, {"Range": "bytes=1000-"})
        expect_error(beyond, 416, "SIZE_INVALID")
        assert beyond.header("content-range") == "bytes */1000"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_an_unknown_blob_is_404_blob_unknown(a, repo, method):
    reply = a.request(method, f"/v2/{repo}/blobs/{digest_of(uuid.uuid4().bytes)}")
    expect_error(reply, 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize("reference", ["nonsense", "sha256:abc", "sha256:" + "g" * 64, "sha256" + "0" * 64,
                                       "sha256:" + "0" * 65])
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_a_malformed_blob_digest_is_400_digest_invalid(a, repo, reference, method):
    expect_error(a.request(method, f"/v2/{repo}/blobs/{reference}"), 400, "DIGEST_INVALID")


def test_a_blob_is_readable_only_in_the_repositories_holding_it(a, repo, ecr_a):
    data = unique_bytes(500)
    digest = a.push_blob(repo, data)
    other = repo_name("oci-other")
    ecr_a.create_repository(repositoryName=other)
    expect_error(a.get(f"/v2/{other}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    expect_error(a.head(f"/v2/{other}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    a.push_blob(other, data)
    assert a.get(f"/v2/{other}/blobs/{digest}").body == data


def test_blob_delete_is_202_then_404(a, repo):
    data = unique_bytes(200)
    digest = a.push_blob(repo, data)
    reply = a.delete(f"/v2/{repo}/blobs/{digest}")
    assert reply.status == 202, str(reply)
    expect_error(a.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    expect_error(a.delete(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    a.push_blob(repo, data)  # the same blob again, after its delete
    assert a.get(f"/v2/{repo}/blobs/{digest}").body == data


def test_deleting_a_blob_an_image_references_is_405(a, repo):
    doc = a.image_doc(repo)
    a.push_manifest(repo, "v1", doc)
    layer = doc["layers"][0]["digest"]
    expect_error(a.delete(f"/v2/{repo}/blobs/{layer}"), 405, "UNSUPPORTED")
    assert a.head(f"/v2/{repo}/blobs/{layer}").status == 200


# --- end-4a, end-4b, end-6: starting uploads, monolithic uploads ---------------------------


def test_post_starts_an_upload_session(a, repo):
    reply = a.request("POST", f"/v2/{repo}/blobs/uploads/", b"")
    assert reply.status == 202, str(reply)
    location = reply.header("location")
    session = reply.header("docker-upload-uuid")
    assert location and session and location.endswith("/" + session)
    assert location.startswith(f"/v2/{repo}/blobs/uploads/")
    assert reply.header("range") == "0-0"
    assert reply.header("content-length") == "0"
    status = a.get(location)
    assert status.status == 204, str(status)


def test_a_single_post_with_the_digest_stores_the_blob(a, repo):
    data = unique_bytes(5000)
    digest = digest_of(data)
    reply = a.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data,
                      {"Content-Type": "application/octet-stream"})
    assert reply.status == 201, str(reply)
    assert reply.header("location") == f"/v2/{repo}/blobs/{digest}"
    assert reply.header("docker-content-digest") == digest
    assert a.get(reply.header("location")).body == data


def test_a_single_post_with_a_wrong_digest_is_400_and_stores_nothing(a, repo):
    data = unique_bytes(300)
    wrong = digest_of(data + b"x")
    reply = a.request("POST", f"/v2/{repo}/blobs/uploads/?digest={wrong}", data)
    expect_error(reply, 400, "DIGEST_INVALID")
    expect_error(a.head(f"/v2/{repo}/blobs/{wrong}"), 404, "BLOB_UNKNOWN")
    expect_error(a.head(f"/v2/{repo}/blobs/{digest_of(data)}"), 404, "BLOB_UNKNOWN")


def test_post_then_a_single_put_with_the_whole_body(a, repo):
    data = unique_bytes(70_000)
    location = a.start_upload(repo)
    reply = a.request("PUT", f"{location}?digest={digest_of(data)}", data,
                      {"Content-Type": "application/octet-stream"})
    assert reply.status == 201, str(reply)
    assert reply.header("location") == f"/v2/{repo}/blobs/{digest_of(data)}"
    assert reply.header("docker-content-digest") == digest_of(data)
    assert a.get(f"/v2/{repo}/blobs/{digest_of(data)}").body == data
    expect_error(a.get(location), 404, "BLOB_UPLOAD_UNKNOWN")  # the session is consumed


# --- end-5, end-13: chunked uploads --------------------------------------------------------


def patch(registry: Registry, location: str, chunk: bytes, first: int, form: str | None = "{0}-{1}"):
    """PATCH ``chunk`` as the bytes from ``first`` on, with a Content-Range of ``form`` (None: without)."""
    headers = {"Content-Type": "application/octet-stream"}
    if form is not None:
        headers["Content-Range"] = form.format(first, first + len(chunk) - 1)
    return registry.request("PATCH", location, chunk, headers)


def chunked_upload(registry: Registry, repo: str, data: bytes, sizes: list[int], *, last_in_put: bool,
                   form: str | None = "{0}-{1}"):
    """Upload ``data`` in chunks of ``sizes`` (the last one in the closing PUT when
    ``last_in_put``); the PUT's reply."""
    location = registry.start_upload(repo)
    offset = 0
    for i, size in enumerate(sizes):
        chunk = data[offset:offset + size]
        if last_in_put and i == len(sizes) - 1:
            break
        reply = patch(registry, location, chunk, offset, form)
        assert reply.status == 202, str(reply)
        offset += len(chunk)
        assert reply.header("range") == f"0-{offset - 1}"
        assert reply.header("location")
        location = reply.header("location")
    rest = data[offset:]
    headers = {}
    if rest and form is not None:
        headers["Content-Range"] = form.format(offset, len(data) - 1)
    return registry.request("PUT", f"{location}?digest={digest_of(data)}", rest or None, headers)


@pytest.mark.parametrize("last_in_put", [False, True], ids=["put-without-body", "last-chunk-in-put"])
@pytest.mark.parametrize("sizes", [[1, 1, 1, 1], [3, 3, 3, 2], [7 * MIB, 1000]], ids=["1-byte", "3-byte", "7MiB"])
def test_chunked_upload_takes_chunks_of_any_size(a, repo, sizes, last_in_put):
    data = unique_bytes(sum(sizes))
    reply = chunked_upload(a, repo, data, sizes, last_in_put=last_in_put)
    assert reply.status == 201, str(reply)
    assert reply.header("location") == f"/v2/{repo}/blobs/{digest_of(data)}"
    assert reply.header("docker-content-digest") == digest_of(data)
    got = a.get(f"/v2/{repo}/blobs/{digest_of(data)}")
    assert got.status == 200 and got.body == data


@pytest.mark.parametrize("form", ["{0}-{1}", "bytes={0}-{1}", "bytes {0}-{1}", "bytes {0}-{1}/*", None],
                         ids=["spec-form", "bytes=", "bytes-space", "with-total", "no-content-range"])
def test_chunked_upload_accepts_each_content_range_form(a, repo, form):
    data = unique_bytes(20)
    reply = chunked_upload(a, repo, data, [5, 5, 5, 5], last_in_put=True, form=form)
    assert reply.status == 201, str(reply)
    assert a.get(f"/v2/{repo}/blobs/{digest_of(data)}").body == data


def test_a_patch_in_chunked_transfer_encoding_appends_its_whole_body(a, repo):
    data = unique_bytes(300_000)
    location = a.start_upload(repo)
    pieces = [data[i:i + 65_000] for i in range(0, len(data), 65_000)]
    reply = a.request("PATCH", location, iter(pieces), {"Content-Type": "application/octet-stream"})
    assert reply.status == 202, str(reply)
    assert reply.header("range") == f"0-{len(data) - 1}"
    done = a.request("PUT", f"{reply.header('location')}?digest={digest_of(data)}")
    assert done.status == 201, str(done)
    assert a.get(f"/v2/{repo}/blobs/{digest_of(data)}").body == data


def test_out_of_order_and_repeated_chunks_are_416_with_the_upload_range(a, repo):
    data = unique_bytes(30)
    location = a.start_upload(repo)
    assert patch(a, location, data[:10], 0).status == 202
    gap = patch(a, location, data[15:20], 15)
    expect_error(gap, 416, "BLOB_UPLOAD_INVALID")
    assert gap.header("range") == "0-9"
    again = patch(a, location, data[:10], 0)
    expect_error(again, 416, "BLOB_UPLOAD_INVALID")
    assert again.header("range") == "0-9"
    overlap = patch(a, location, data[5:15], 5)
    expect_error(overlap, 416, "BLOB_UPLOAD_INVALID")
    assert overlap.header("range") == "0-9"
    status = a.get(location)
    assert status.status == 204 and status.header("range") == "0-9"
    assert patch(a, location, data[10:], 10).status == 202
    assert a.request("PUT", f"{location}?digest={digest_of(data)}").status == 201
    assert a.get(f"/v2/{repo}/blobs/{digest_of(data)}").body == data


def test_upload_status_is_204_with_range_and_location(a, repo):
    location = a.start_upload(repo)
    fresh = a.get(location)
    assert fresh.status == 204, str(fresh)
    assert fresh.header("range") == "0-0"
    assert fresh.header("location") == location
    assert patch(a, location, b"12345", 0).status == 202
    status = a.get(location)
    assert status.status == 204, str(status)
    assert status.header("range") == "0-4"
    assert status.header("location") == location
    assert status.body == b""


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
@pytest.mark.parametrize("upload", ["unknown", "not-an-id", "other-repository"])
def test_an_unknown_upload_is_404_blob_upload_unknown(a, repo, ecr_a, method, upload):
    if upload == "other-repository":
        other = repo_name("oci-other")
        ecr_a.create_repository(repositoryName=other)
        session = a.start_upload(other).rsplit("/", 1)[1]
    else:
        session = str(uuid.uuid4()) if upload == "unknown" else "not-an-upload-id"
    path = f"/v2/{repo}/blobs/uploads/{session}"
    body = b"abc" if method in ("PATCH", "PUT") else None
    if method == "PUT":
        path += f"?digest={digest_of(b'abc')}"
    expect_error(a.request(method, path, body), 404, "BLOB_UPLOAD_UNKNOWN")


def test_an_expired_upload_is_404_blob_upload_unknown(open_server):
    registry = Registry(open_server.port)
    name = repo_name("oci-ttl")
    open_server.client().create_repository(repositoryName=name)
    location = registry.start_upload(name)
    assert patch(registry, location, b"abc", 0).status == 202
    time.sleep(1.6)
    expect_error(registry.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(patch(registry, location, b"def", 3), 404, "BLOB_UPLOAD_UNKNOWN")


def test_delete_upload_is_204_then_404(a, repo):
    location = a.start_upload(repo)
    assert patch(a, location, b"some bytes", 0).status == 202
    reply = a.delete(location)
    assert reply.status == 204, str(reply)
    expect_error(a.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(a.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    expect_error(a.request("PUT", f"{location}?digest={digest_of(b'some bytes')}"), 404, "BLOB_UPLOAD_UNKNOWN")


def test_put_with_a_wrong_digest_is_400_and_the_upload_completes_with_the_right_one(a, repo):
    data = unique_bytes(2048)
    location = a.start_upload(repo)
    assert patch(a, location, data, 0).status == 202
    wrong = a.request("PUT", f"{location}?digest={digest_of(b'other')}")
    expect_error(wrong, 400, "DIGEST_INVALID")
    assert a.get(location).header("range") == f"0-{len(data) - 1}"
    right = a.request("PUT", f"{location}?digest={digest_of(data)}")
    assert right.status == 201, str(right)
    assert a.get(f"/v2/{repo}/blobs/{digest_of(data)}").body == data


@pytest.mark.parametrize("query", ["", "?digest=", "?other=1", "?digest=sha256:nothex"])
def test_put_without_a_valid_digest_is_400(a, repo, query):
    location = a.start_upload(repo)
    assert patch(a, location, b"abc", 0).status == 202
    expect_error(a.request("PUT", location + query), 400, "DIGEST_INVALID")
    assert a.get(location).status == 204  # the upload is still there


# --- end-11: cross-repository mounts -------------------------------------------------------


def test_mount_from_a_repository_holding_the_blob_is_201(a, repo, ecr_a):
    source = repo_name("oci-src")
    ecr_a.create_repository(repositoryName=source)
    data = unique_bytes(4000)
    digest = a.push_blob(source, data)
    reply = a.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}", b"")
    assert reply.status == 201, str(reply)
    assert reply.header("location") == f"/v2/{repo}/blobs/{digest}"
    assert reply.header("docker-content-digest") == digest
    assert a.get(f"/v2/{repo}/blobs/{digest}").body == data


@pytest.mark.parametrize("case", ["source-lacks-it", "source-missing", "source-in-another-registry"])
def test_a_mount_that_cannot_happen_is_a_202_upload_session(a, b, ecr_a, ecr_b, case):
    data = unique_bytes(1500)
    digest = digest_of(data)
    source = repo_name("oci-src")
    if case == "source-lacks-it":
        ecr_a.create_repository(repositoryName=source)
        a.push_blob(source, unique_bytes(10))
    elif case == "source-in-another-registry":
        ecr_a.create_repository(repositoryName=source)
        a.push_blob(source, data)
    caller, client = (b, ecr_b) if case == "source-in-another-registry" else (a, ecr_a)
    target = repo_name("oci-dst")
    client.create_repository(repositoryName=target)
    if case == "source-in-another-registry":
        client.create_repository(repositoryName=source)  # the same name in registry B, without the blob
    reply = caller.request("POST", f"/v2/{target}/blobs/uploads/?mount={digest}&from={source}", b"")
    assert reply.status == 202, str(reply)
    assert reply.header("range") == "0-0"
    location = reply.header("location")
    expect_error(caller.head(f"/v2/{target}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    done = caller.request("PUT", f"{location}?digest={digest}", data)
    assert done.status == 201, str(done)
    assert caller.get(f"/v2/{target}/blobs/{digest}").body == data


# --- end-3, end-7, end-9: manifests --------------------------------------------------------


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST], ids=["oci", "docker"])
def test_manifest_put_by_tag_then_get_and_head_by_tag_and_digest(a, repo, media_type):
    raw = json.dumps(a.image_doc(repo, media_type=media_type), indent=3).encode()  # bytes kept as sent
    put = a.put_manifest(repo, "v1.0", raw, media_type)
    assert put.status == 201, str(put)
    assert put.header("docker-content-digest") == digest_of(raw)
    assert put.header("location") == f"/v2/{repo}/manifests/{digest_of(raw)}"
    assert put.header("oci-subject") is None
    for reference in ("v1.0", digest_of(raw)):
        got = a.get(f"/v2/{repo}/manifests/{reference}", {"Accept": media_type})
        assert got.status == 200, str(got)
        assert got.body == raw
        assert got.header("content-type") == media_type
        assert got.header("docker-content-digest") == digest_of(raw)
        head = a.head(f"/v2/{repo}/manifests/{reference}", {"Accept": media_type})
        assert head.status == 200 and head.body == b""
        assert head.header("content-length") == str(len(raw))
        assert head.header("docker-content-digest") == digest_of(raw)
    assert a.get(put.header("location")).body == raw


def test_a_manifest_without_media_type_takes_the_content_type_without_its_parameters(a, repo):
    doc = a.image_doc(repo)
    del doc["mediaType"]
    raw = json.dumps(doc).encode()
    put = a.put_manifest(repo, "plain", raw, OCI_MANIFEST + "; charset=utf-8")
    assert put.status == 201, str(put)
    got = a.get(f"/v2/{repo}/manifests/plain", {"Accept": OCI_MANIFEST})
    assert got.status == 200 and got.body == raw
    assert got.header("content-type") == OCI_MANIFEST


def test_re_pushing_a_manifest_and_moving_a_mutable_tag(a, repo):
    first, raw = a.push_image(repo, "latest")
    again = a.put_manifest(repo, "latest", raw, OCI_MANIFEST)
    assert again.status == 201 and again.header("docker-content-digest") == first
    second, _ = a.push_image(repo, "latest")
    assert a.get(f"/v2/{repo}/manifests/latest").header("docker-content-digest") == second
    assert a.get(f"/v2/{repo}/manifests/{first}").body == raw


def test_a_manifest_put_by_digest_is_stored_untagged(a, repo):
    raw = json.dumps(a.image_doc(repo)).encode()
    put = a.put_manifest(repo, digest_of(raw), raw, OCI_MANIFEST)
    assert put.status == 201, str(put)
    assert put.header("docker-content-digest") == digest_of(raw)
    assert put.header("location") == f"/v2/{repo}/manifests/{digest_of(raw)}"
    assert a.get(f"/v2/{repo}/manifests/{digest_of(raw)}").body == raw
    assert a.get(f"/v2/{repo}/tags/list").json()["tags"] == []
    again = a.put_manifest(repo, digest_of(raw), raw, OCI_MANIFEST)
    assert again.status == 201, str(again)


@pytest.mark.parametrize("index_type, child_type", [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)],
                         ids=["oci-index", "docker-list"])
def test_an_index_of_pushed_manifests_is_served_as_its_type(a, repo, index_type, child_type):
    children = []
    for arch in ("amd64", "arm64"):
        _, raw = a.push_manifest(repo, None, a.image_doc(repo, media_type=child_type))
        children.append(descriptor(child_type, raw, platform={"architecture": arch, "os": "linux"}))
    digest, raw = a.push_manifest(repo, "multi", {"schemaVersion": 2, "mediaType": index_type,
                                                  "manifests": children})
    got = a.get(f"/v2/{repo}/manifests/multi", {"Accept": index_type})
    assert got.status == 200 and got.body == raw
    assert got.header("content-type") == index_type
    for child in children:
        assert a.get(f"/v2/{repo}/manifests/{child['digest']}").status == 200


def test_an_index_of_a_manifest_not_pushed_is_400_manifest_blob_unknown(a, repo):
    missing = descriptor(OCI_MANIFEST, b'{"not": "pushed"}')
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [missing]}).encode()
    expect_error(a.put_manifest(repo, "multi", raw, OCI_INDEX), 400, "MANIFEST_BLOB_UNKNOWN")


@pytest.mark.parametrize("accept, found", [
    ([DOCKER_MANIFEST], False),
    ([DOCKER_MANIFEST, OCI_INDEX], False),
    ([DOCKER_MANIFEST, OCI_MANIFEST], True),
    ([f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"], True),
    ([f"{DOCKER_MANIFEST};q=0.9, {OCI_MANIFEST};q=0.5"], True),
    ([DOCKER_LIST, f"{OCI_INDEX}, {OCI_MANIFEST}"], True),
    (["*/*"], True),
    (["application/*"], True),
    ([], True),
], ids=["docker-only", "two-others", "two-headers", "comma-list", "with-q", "list-in-second-header", "any",
        "application-any", "no-accept"])
def test_a_manifest_is_served_only_to_an_accept_that_allows_its_type(a, repo, accept, found):
    digest, raw = a.push_image(repo, "v1")
    for reference in ("v1", digest):
        for method in ("GET", "HEAD"):
            reply = a.request(method, f"/v2/{repo}/manifests/{reference}", None, [("Accept", v) for v in accept])
            if found:
                assert reply.status == 200, str(reply)
                assert reply.header("content-type") == OCI_MANIFEST
                assert method == "HEAD" or reply.body == raw
            else:
                expect_error(reply, 404, "MANIFEST_UNKNOWN")


def test_a_manifest_referencing_a_missing_blob_is_400_manifest_blob_unknown(a, repo):
    doc = a.image_doc(repo)
    doc["layers"].append(descriptor(doc["layers"][0]["mediaType"], b"never pushed"))
    raw = json.dumps(doc).encode()
    error = expect_error(a.put_manifest(repo, "v1", raw, OCI_MANIFEST), 400, "MANIFEST_BLOB_UNKNOWN")
    assert digest_of(b"never pushed") in error["message"]
    expect_error(a.get(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("body, content_type", [
    (b"not json", OCI_MANIFEST),
    (b"\xff\xfe\x00 not utf-8", OCI_MANIFEST),
    (b"[1, 2, 3]", OCI_MANIFEST),
    (b"{}", OCI_MANIFEST),
    (json.dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}).encode(),
     "application/vnd.docker.distribution.manifest.v1+json"),
    (json.dumps({"schemaVersion": 2, "mediaType": "application/x-unknown"}).encode(), "application/x-unknown"),
    (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": "nope", "layers": []}).encode(),
     OCI_MANIFEST),
    (b"[" * 100_000 + b"]" * 100_000, OCI_MANIFEST),
], ids=["not-json", "not-utf8", "array", "empty-object", "schema-1", "unknown-type", "bad-descriptor",
        "deep-nesting"])
def test_an_invalid_manifest_is_400_manifest_invalid(a, repo, body, content_type):
    expect_error(a.put_manifest(repo, "v1", body, content_type), 400, "MANIFEST_INVALID")


def test_a_content_type_contradicting_the_manifest_is_400_manifest_invalid(a, repo):
    raw = json.dumps(a.image_doc(repo)).encode()
    expect_error(a.put_manifest(repo, "v1", raw, DOCKER_MANIFEST), 400, "MANIFEST_INVALID")


def test_a_manifest_put_under_another_digest_is_400_digest_invalid(a, repo):
    raw = json.dumps(a.image_doc(repo)).encode()
    wrong = digest_of(raw + b" ")
    expect_error(a.put_manifest(repo, wrong, raw, OCI_MANIFEST), 400, "DIGEST_INVALID")
    expect_error(a.get(f"/v2/{repo}/manifests/{digest_of(raw)}"), 404, "MANIFEST_UNKNOWN")


def test_an_immutable_tag_cannot_move_but_takes_its_own_manifest_again(a, ecr_a):
    name = repo_name("oci-immutable")
    ecr_a.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")
    first, raw = a.push_image(name, "v1")
    again = a.put_manifest(name, "v1", raw, OCI_MANIFEST)
    assert again.status == 201, str(again)
    assert again.header("docker-content-digest") == first
    other = json.dumps(a.image_doc(name)).encode()
    error = expect_error(a.put_manifest(name, "v1", other, OCI_MANIFEST), 400, "TAG_INVALID")
    assert "immutable" in error["message"]
    assert a.get(f"/v2/{name}/manifests/v1").header("docker-content-digest") == first
    assert a.put_manifest(name, "v2", other, OCI_MANIFEST).status == 201  # a new tag is fine


def test_delete_by_tag_removes_the_tag_and_keeps_the_image(a, repo):
    digest, raw = a.push_image(repo, "keep")
    assert a.put_manifest(repo, "drop", raw, OCI_MANIFEST).status == 201
    reply = a.delete(f"/v2/{repo}/manifests/drop")
    assert reply.status == 202, str(reply)
    expect_error(a.get(f"/v2/{repo}/manifests/drop"), 404, "MANIFEST_UNKNOWN")
    assert a.get(f"/v2/{repo}/manifests/keep").body == raw
    assert a.delete(f"/v2/{repo}/manifests/keep").status == 202  # its last tag
    assert a.get(f"/v2/{repo}/manifests/{digest}").body == raw
    assert a.get(f"/v2/{repo}/tags/list").json()["tags"] == []
    expect_error(a.delete(f"/v2/{repo}/manifests/keep"), 404, "MANIFEST_UNKNOWN")


def test_delete_by_digest_is_202_then_404(a, repo):
    digest, raw = a.push_image(repo, "v1")
    reply = a.delete(f"/v2/{repo}/manifests/{digest}")
    assert reply.status == 202, str(reply)
    expect_error(a.get(f"/v2/{repo}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    expect_error(a.head(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    expect_error(a.delete(f"/v2/{repo}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_an_unknown_manifest_is_404_manifest_unknown(a, repo, method):
    for reference in ("no-such-tag", digest_of(uuid.uuid4().bytes)):
        expect_error(a.request(method, f"/v2/{repo}/manifests/{reference}"), 404, "MANIFEST_UNKNOWN")


def test_a_missing_repository_is_404_name_unknown_on_push_and_pull(a, repo):
    digest, raw = a.push_image(repo, "v1")
    layer = json.loads(raw)["layers"][0]["digest"]
    missing = repo_name("oci-missing")
    data = unique_bytes(100)
    for method, path, body in [
        ("POST", f"/v2/{missing}/blobs/uploads/", b""),
        ("POST", f"/v2/{missing}/blobs/uploads/?digest={digest_of(data)}", data),
        ("POST", f"/v2/{missing}/blobs/uploads/?mount={layer}&from={repo}", b""),
        ("PUT", f"/v2/{missing}/manifests/v1", raw),
        ("GET", f"/v2/{missing}/manifests/v1", None),
        ("HEAD", f"/v2/{missing}/manifests/{digest}", None),
        ("GET", f"/v2/{missing}/blobs/{layer}", None),
        ("DELETE", f"/v2/{missing}/manifests/{digest}", None),
        ("GET", f"/v2/{missing}/tags/list", None),
    ]:
        expect_error(a.request(method, path, body, {"Content-Type": OCI_MANIFEST}), 404, "NAME_UNKNOWN")


def test_a_create_on_push_server_creates_the_repository_on_the_first_push(pushing_server):
    client = pushing_server.client(KEY_A)
    registry = Registry(pushing_server.port, login_password(client))
    name = repo_name("team/created")
    digest, raw = registry.push_image(name, "v1")
    assert registry.get(f"/v2/{name}/manifests/v1").body == raw
    described = client.describe_repositories(repositoryNames=[name])["repositories"]
    assert described[0]["repositoryName"] == name
    session = repo_name("team/session")
    assert registry.request("POST", f"/v2/{session}/blobs/uploads/", b"").status == 202
    assert client.describe_repositories(repositoryNames=[session])["repositories"]
    expect_error(registry.get(f"/v2/{repo_name('team/never')}/tags/list"), 404, "NAME_UNKNOWN")


# --- end-8: tags and the catalog -----------------------------------------------------------


def pages(registry: Registry, path: str) -> list:
    """Every page of a listing, following its ``Link`` headers."""
    out = []
    while path:
        reply = registry.get(path)
        assert reply.status == 200, str(reply)
        out.append(reply)
        link = next_link(reply)
        assert link is None or link.startswith(path.split("?")[0] + "?"), link
        path = link
        assert len(out) < 100
    return out


def test_tags_list_in_order_with_n_last_and_link(a, repo):
    tags = ["v2", "alpha", "v10", "beta", "latest", "1.0"]
    digest, raw = a.push_image(repo, tags[0])
    for tag in tags[1:]:
        assert a.put_manifest(repo, tag, raw, OCI_MANIFEST).status == 201
    ordered = sorted(tags)
    whole = a.get(f"/v2/{repo}/tags/list")
    assert whole.status == 200
    assert whole.json() == {"name": repo, "tags": ordered}
    assert whole.header("link") is None
    first = a.get(f"/v2/{repo}/tags/list?n=2")
    assert first.json()["tags"] == ordered[:2]
    assert next_link(first) == f"/v2/{repo}/tags/list?n=2&last={ordered[1]}"
    paged = pages(a, f"/v2/{repo}/tags/list?n=2")
    assert [t for p in paged for t in p.json()["tags"]] == ordered
    assert all(len(p.json()["tags"]) == 2 for p in paged)
    assert next_link(paged[-1]) is None
    after = a.get(f"/v2/{repo}/tags/list?last={ordered[2]}")
    assert after.json()["tags"] == ordered[3:]
    window = a.get(f"/v2/{repo}/tags/list?n=2&last={ordered[0]}")
    assert window.json()["tags"] == ordered[1:3]
    exact = a.get(f"/v2/{repo}/tags/list?n={len(tags)}")
    assert exact.json()["tags"] == ordered and next_link(exact) is None
    zero = a.get(f"/v2/{repo}/tags/list?n=0")
    assert zero.status == 200 and zero.json()["tags"] == [] and zero.header("link") is None
    assert a.get(f"/v2/{repo}/tags/list?last=zzz").json()["tags"] == []


@pytest.mark.parametrize("n", ["abc", "-1", "1.5", "0x10"])
def test_tags_list_with_a_bad_n_is_400(a, repo, n):
    reply = a.get(f"/v2/{repo}/tags/list?n={n}")
    assert reply.status == 400, str(reply)


def test_tags_list_of_an_empty_repository_is_an_empty_list(a, repo):
    reply = a.get(f"/v2/{repo}/tags/list")
    assert reply.status == 200, str(reply)
    assert reply.json() == {"name": repo, "tags": []}


def test_tags_list_of_an_unknown_repository_is_404_name_unknown(a):
    expect_error(a.get(f"/v2/{repo_name('oci-none')}/tags/list"), 404, "NAME_UNKNOWN")


def test_catalog_pages_and_tenancy(a, b, ecr_a, ecr_b):
    mine = sorted(repo_name("oci-cat/a") for _ in range(3))
    theirs = repo_name("oci-cat/b")
    for name in mine:
        ecr_a.create_repository(repositoryName=name)
    ecr_b.create_repository(repositoryName=theirs)
    whole = a.get("/v2/_catalog").json()["repositories"]
    assert whole == sorted(whole)
    assert set(mine) <= set(whole) and theirs not in whole
    paged = pages(a, "/v2/_catalog?n=2")
    assert [r for p in paged for r in p.json()["repositories"]] == whole
    assert all(len(p.json()["repositories"]) <= 2 for p in paged)
    zero = a.get("/v2/_catalog?n=0")
    assert zero.json()["repositories"] == [] and zero.header("link") is None
    in_b = [r for p in pages(b, "/v2/_catalog?n=1") for r in p.json()["repositories"]]
    assert theirs in in_b and not set(mine) & set(in_b)
    assert a.get("/v2/_catalog?n=many").status == 400


# --- end-12: referrers ---------------------------------------------------------------------

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE_CONFIG = "application/vnd.example.signature.config.v1+json"


def referrers(registry: Registry, repo: str, subject: str, artifact_type: str | None = None):
    query = f"?artifactType={quote(artifact_type, safe='')}" if artifact_type else ""
    reply = registry.get(f"/v2/{repo}/referrers/{subject}{query}")
    assert reply.status == 200, str(reply)
    assert reply.header("content-type") == OCI_INDEX
    doc = reply.json()
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == OCI_INDEX
    return reply, sorted(doc["manifests"], key=lambda d: d["digest"])


def test_referrers_list_the_manifests_with_a_subject(a, repo):
    subject, subject_raw = a.push_image(repo, "app")
    about = descriptor(OCI_MANIFEST, subject_raw)
    sbom_doc = a.image_doc(repo, artifactType=SBOM, subject=about, annotations={"org.example.format": "spdx"})
    sbom, sbom_raw = a.push_manifest(repo, None, sbom_doc)
    put = a.put_manifest(repo, sbom, sbom_raw, OCI_MANIFEST)
    assert put.header("oci-subject") == subject
    signature, signature_raw = a.push_manifest(repo, None, a.image_doc(repo, config_type=SIGNATURE_CONFIG,
                                                                       subject=about))
    index, index_raw = a.push_manifest(repo, None, {
        "schemaVersion": 2, "mediaType": OCI_INDEX, "subject": about, "annotations": {"kind": "bundle"},
        "manifests": [descriptor(OCI_MANIFEST, sbom_raw)]})
    a.push_image(repo, "unrelated")
    reply, found = referrers(a, repo, subject)
    assert reply.header("oci-filters-applied") is None
    expected = [
        descriptor(OCI_MANIFEST, sbom_raw, artifactType=SBOM, annotations={"org.example.format": "spdx"}),
        descriptor(OCI_MANIFEST, signature_raw, artifactType=SIGNATURE_CONFIG),
        descriptor(OCI_INDEX, index_raw, annotations={"kind": "bundle"}),
    ]
    assert found == sorted(expected, key=lambda d: d["digest"])


def test_a_manifest_put_with_a_subject_answers_oci_subject(a, repo):
    subject, subject_raw = a.push_image(repo, "app")
    put = a.put_manifest(repo, "sig", json.dumps(a.image_doc(repo, subject=descriptor(OCI_MANIFEST, subject_raw))
                                                  ).encode(), OCI_MANIFEST)
    assert put.status == 201, str(put)
    assert put.header("oci-subject") == subject


def test_referrers_filtered_by_artifact_type(a, repo):
    subject, subject_raw = a.push_image(repo, "app")
    about = descriptor(OCI_MANIFEST, subject_raw)
    sbom, sbom_raw = a.push_manifest(repo, None, a.image_doc(repo, artifactType=SBOM, subject=about))
    a.push_manifest(repo, None, a.image_doc(repo, config_type=SIGNATURE_CONFIG, subject=about))
    reply, found = referrers(a, repo, subject, SBOM)
    assert reply.header("oci-filters-applied") == "artifactType"
    assert found == [descriptor(OCI_MANIFEST, sbom_raw, artifactType=SBOM)]
    reply, found = referrers(a, repo, subject, SIGNATURE_CONFIG)
    assert [d["artifactType"] for d in found] == [SIGNATURE_CONFIG]
    reply, found = referrers(a, repo, subject, "application/vnd.example.none")
    assert found == [] and reply.header("oci-filters-applied") == "artifactType"


def test_a_referrer_pushed_before_its_subject(a, repo):
    later = a.image_doc(repo)
    later_raw = json.dumps(later).encode()
    early, early_raw = a.push_manifest(repo, None, a.image_doc(repo, artifactType=SBOM,
                                                               subject=descriptor(OCI_MANIFEST, later_raw)))
    _, found = referrers(a, repo, digest_of(later_raw))
    assert [d["digest"] for d in found] == [early]
    assert a.put_manifest(repo, "later", later_raw, OCI_MANIFEST).status == 201
    _, found = referrers(a, repo, digest_of(later_raw))
    assert [d["digest"] for d in found] == [early]


def test_referrers_of_a_digest_without_any_are_an_empty_index(a, repo):
    subject, _ = a.push_image(repo, "app")
    for digest in (subject, digest_of(uuid.uuid4().bytes)):
        reply, found = referrers(a, repo, digest)
        assert found == [] and reply.json()["manifests"] == []


def test_a_deleted_referrer_leaves_the_list(a, repo):
    subject, subject_raw = a.push_image(repo, "app")
    about = descriptor(OCI_MANIFEST, subject_raw)
    gone, _ = a.push_manifest(repo, None, a.image_doc(repo, artifactType=SBOM, subject=about))
    kept, _ = a.push_manifest(repo, None, a.image_doc(repo, artifactType=SBOM, subject=about))
    assert a.delete(f"/v2/{repo}/manifests/{gone}").status == 202
    _, found = referrers(a, repo, subject)
    assert [d["digest"] for d in found] == [kept]


@pytest.mark.parametrize("reference", ["latest", "sha256:abc", "sha256:" + "z" * 64])
def test_referrers_of_a_malformed_digest_is_400(a, repo, reference):
    expect_error(a.get(f"/v2/{repo}/referrers/{reference}"), 400, "DIGEST_INVALID")


def test_the_referrers_tag_schema_works_as_plain_tags(a, repo):
    subject, subject_raw = a.push_image(repo, "app")
    about = descriptor(OCI_MANIFEST, subject_raw)
    sbom, sbom_raw = a.push_manifest(repo, None, a.image_doc(repo, artifactType=SBOM, subject=about))
    fallback = "sha256-" + subject.split(":", 1)[1]
    listing, listing_raw = a.push_manifest(repo, fallback, {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, sbom_raw, artifactType=SBOM)]})
    got = a.get(f"/v2/{repo}/manifests/{fallback}", {"Accept": OCI_INDEX})
    assert got.status == 200 and got.body == listing_raw
    assert got.header("content-type") == OCI_INDEX
    assert fallback in a.get(f"/v2/{repo}/tags/list").json()["tags"]
    _, found = referrers(a, repo, subject)
    assert [d["digest"] for d in found] == [sbom]


# --- one store, two protocols --------------------------------------------------------------


def test_an_image_pushed_on_v2_is_the_json_apis_image(a, repo, ecr_a):
    digest, raw = a.push_image(repo, "v1", media_type=DOCKER_MANIFEST)
    described = ecr_a.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["imageDetails"][0]
    assert described["imageDigest"] == digest
    assert described["imageTags"] == ["v1"]
    assert described["imageManifestMediaType"] == DOCKER_MANIFEST
    got = ecr_a.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": digest}])["images"][0]
    assert got["imageManifest"].encode() == raw
    layers = [d["digest"] for d in json.loads(raw)["layers"]]
    availability = ecr_a.batch_check_layer_availability(repositoryName=repo, layerDigests=layers)["layers"]
    assert [x["layerAvailability"] for x in availability] == ["AVAILABLE"]


def test_an_image_put_with_the_json_api_pulls_on_v2_byte_exact(a, repo, ecr_a):
    layer, config = unique_bytes(3000), b'{"architecture": "amd64", "os": "linux"}'
    layer_digest, config_digest = push_layer(ecr_a, repo, layer), push_layer(ecr_a, repo, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                      "size": len(config), "digest": config_digest},
                           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                       "size": len(layer), "digest": layer_digest}]}, indent=2)
    ecr_a.put_image(repositoryName=repo, imageManifest=manifest, imageTag="from-json")
    got = a.get(f"/v2/{repo}/manifests/from-json", {"Accept": DOCKER_MANIFEST})
    assert got.status == 200 and got.body == manifest.encode()
    assert got.header("docker-content-digest") == digest_of(manifest.encode())
    assert a.get(f"/v2/{repo}/blobs/{layer_digest}").body == layer
    assert a.get(f"/v2/{repo}/blobs/{config_digest}").body == config


def test_the_json_api_keeps_its_part_minimum_while_v2_takes_any_chunk(a, repo, ecr_a):
    data = unique_bytes(20)
    upload = ecr_a.initiate_layer_upload(repositoryName=repo)["uploadId"]
    for first in (0, 10):
        ecr_a.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=first,
                                partLastByte=first + 9, layerPartBlob=data[first:first + 10])
    with pytest.raises(ecr_a.exceptions.LayerPartTooSmallException):
        ecr_a.complete_layer_upload(repositoryName=repo, uploadId=upload, layerDigests=[digest_of(data)])
    reply = chunked_upload(a, repo, data, [10, 10], last_in_put=False)
    assert reply.status == 201, str(reply)


# --- uploads across the workers of one server ----------------------------------------------


def test_an_upload_continues_on_any_worker(two_workers):
    client = two_workers.client(KEY_A)
    registry = Registry(two_workers.port, login_password(client))
    name = repo_name("oci-workers")
    client.create_repository(repositoryName=name)
    data = unique_bytes(24 * 1000)
    location = registry.start_upload(name)
    for offset in range(0, len(data), 1000):
        reply = patch(registry, location, data[offset:offset + 1000], offset)
        assert reply.status == 202, str(reply)
        status = registry.get(location)
        assert status.status == 204 and status.header("range") == f"0-{offset + 999}"
    done = registry.request("PUT", f"{location}?digest={digest_of(data)}")
    assert done.status == 201, str(done)
    assert registry.get(f"/v2/{name}/blobs/{digest_of(data)}").body == data


def test_concurrent_pushes_of_one_blob_both_succeed_and_store_it_once(two_workers):
    client = two_workers.client(KEY_A)
    registry = Registry(two_workers.port, login_password(client))
    name = repo_name("oci-race")
    client.create_repository(repositoryName=name)
    data = unique_bytes(3 * MIB)
    with Store(two_workers.store, read_only=True, registry_id=REGISTRY_A) as store:
        before = store.stats()
    barrier = threading.Barrier(2)
    replies = []

    def push() -> None:
        barrier.wait()
        replies.append(registry.request("POST", f"/v2/{name}/blobs/uploads/?digest={digest_of(data)}", data))

    threads = [threading.Thread(target=push) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status for r in replies] == [201, 201], [str(r) for r in replies]
    with Store(two_workers.store, read_only=True, registry_id=REGISTRY_A) as store:
        after = store.stats()
        assert list(store.list_layers(name)) == [(digest_of(data), len(data))]
    assert after.blobs == before.blobs + 1
    assert after.blob_bytes == before.blob_bytes + len(data)
    assert after.uploads_in_progress == before.uploads_in_progress
    assert registry.get(f"/v2/{name}/blobs/{digest_of(data)}").body == data


# --- malformed and abusive requests --------------------------------------------------------


def test_a_manifest_body_over_the_limit_is_413_before_it_is_read(a, repo):
    started = time.monotonic()
    reply = Registry(a.port, a.password, timeout=10).request(
        "PUT", f"/v2/{repo}/manifests/v1", None, {"Content-Type": OCI_MANIFEST,
                                                    "Content-Length": str(MAX_MANIFEST_CHARS + 1)})
    expect_error(reply, 413, "SIZE_INVALID")
    assert reply.header("connection") == "close"
    assert time.monotonic() - started < 5
    assert a.get("/v2/").status == 200
    expect_error(a.get(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("value", ["abc", "5-2", "-3", "0-", "bytes=a-b", "1-2-3", "0--1", "", " - "])
def test_a_malformed_content_range_is_416(a, repo, value):
    location = a.start_upload(repo)
    reply = a.request("PATCH", location, b"abc", {"Content-Range": value})
    expect_error(reply, 416, "BLOB_UPLOAD_INVALID")
    assert a.get(location).header("range") == "0-0"


def test_a_content_range_disagreeing_with_the_body_is_refused_and_changes_nothing(a, repo):
    location = a.start_upload(repo)
    assert patch(a, location, b"abc", 0).status == 202
    expect_error(a.request("PATCH", location, b"defghi", {"Content-Range": "3-5"}), 416, "BLOB_UPLOAD_INVALID")
    chunked = a.request("PATCH", location, iter([b"def", b"ghi"]), {"Content-Range": "3-5"})
    expect_error(chunked, 400, "BLOB_UPLOAD_INVALID")
    assert a.get(location).header("range") == "0-2"
    assert patch(a, location, b"def", 3).status == 202
    assert a.request("PUT", f"{location}?digest={digest_of(b'abcdef')}").status == 201


def test_a_blob_body_over_the_layer_limit_is_413_before_it_is_read(a, repo):
    location = a.start_upload(repo)
    reply = Registry(a.port, a.password, timeout=10).request(
        "PATCH", location, None, {"Content-Length": str(MAX_LAYER_BYTES + 1)})
    expect_error(reply, 413, "SIZE_INVALID")
    assert a.get(location).header("range") == "0-0"


@pytest.mark.parametrize("path", ["/v2/x", "/v2/x/unknown/y", "/v2/x/blobs", "/v2/x/manifests", "/v2/x/tags",
                                  "/v2/_catalog/more", "/v2/x/referrers", "/v2x", "/v2/x/blobs/uploads/a/b"])
def test_unknown_endpoints_are_404_json(a, path):
    reply = a.get(path)
    assert reply.status == 404, str(reply)


@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", "/v2/", {"GET", "HEAD"}),
    ("DELETE", "/v2/_catalog", {"GET"}),
    ("POST", "/v2/{repo}/manifests/latest", {"GET", "HEAD", "PUT", "DELETE"}),
    ("PATCH", "/v2/{repo}/blobs/sha256:" + "0" * 64, {"GET", "HEAD", "DELETE"}),
    ("GET", "/v2/{repo}/blobs/uploads/", {"POST"}),
    ("POST", "/v2/{repo}/tags/list", {"GET"}),
    ("DELETE", "/v2/{repo}/referrers/sha256:" + "0" * 64, {"GET"}),
    ("HEAD", "/v2/{repo}/blobs/uploads/" + str(uuid.UUID(int=1)), {"GET", "PATCH", "PUT", "DELETE"}),
    ("OPTIONS", "/v2/", {"GET", "HEAD"}),
])
def test_a_wrong_method_is_405_with_allow(a, repo, method, path, allowed):
    reply = a.request(method, path.format(repo=repo))
    expect_error(reply, 405, "UNSUPPORTED")
    assert {m.strip() for m in (reply.header("allow") or "").split(",")} == allowed


@pytest.mark.parametrize("method, path, body, headers", [
    ("GET", "/v2/{repo}/manifests/bad!tag", None, {}),
    ("PUT", "/v2/{repo}/manifests/bad!tag", b"{}", {"Content-Type": OCI_MANIFEST}),
    ("GET", "/v2/{repo}/manifests/" + "t" * 300, None, {}),
    ("GET", "/v2/UPPER/tags/list", None, {}),
    ("GET", "/v2/" + "n" * 300 + "/tags/list", None, {}),
    ("GET", "/v2/a//b/tags/list", None, {}),
    ("GET", "/v2/{repo}/tags/list?n=99999999999999999999999999", None, {}),
    ("GET", "/v2/{repo}/tags/list?last=%FF%FE", None, {}),
    ("GET", "/v2/_catalog?last=%00", None, {}),
    ("GET", "/v2/{repo}/manifests/sha256:" + "A" * 64, None, {}),
    ("GET", "/v2/{repo}/blobs/sha512:" + "0" * 128, None, {}),
    ("POST", "/v2/{repo}/blobs/uploads/?mount=garbage&from=x", b"", {}),
    ("POST", "/v2/{repo}/blobs/uploads/?digest=garbage", b"abc", {}),
    ("POST", "/v2/{repo}/blobs/uploads/?digest=sha256:" + "0" * 64, b"", {}),
    ("GET", "/v2/{repo}/referrers/sha256:" + "0" * 64 + "?artifactType=%FF", None, {}),
    ("GET", "/v2/{repo}/blobs/sha256:" + "0" * 64, None, {"Range": "bytes=99999999999999999999999-"}),
    ("PUT", "/v2/{repo}/manifests/v1", json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                                   "config": {"digest": "x"}, "layers": [{}]}).encode(), {}),
    ("PUT", "/v2/{repo}/manifests/v1", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                   "manifests": "nope"}).encode(), {}),
    ("PUT", "/v2/{repo}/manifests/v1", json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                                   "subject": "nope"}).encode(), {}),
    ("PUT", "/v2/{repo}/manifests/v1", b"{}", {"Content-Type": "text/plain; charset=utf-8"}),
    ("GET", "/v2/", None, {"Authorization": "Basic " + "A" * 5000}),
])
def test_malformed_requests_are_answered_without_a_server_error(a, repo, method, path, body, headers):
    reply = a.request(method, path.format(repo=repo), body, headers)
    assert reply.status < 500, str(reply)


@pytest.mark.parametrize("mount, source", [(digest_of(b"x"), "Not..Valid!"), ("garbage", "{repo}"),
                                           ("sha512:" + "0" * 128, "{repo}"), (digest_of(b"x"), "a" * 300)],
                         ids=["invalid-source-name", "not-a-digest", "not-sha256", "overlong-source-name"])
def test_a_mount_with_invalid_arguments_falls_back_to_an_upload(a, repo, mount, source):
    reply = a.request("POST", f"/v2/{repo}/blobs/uploads/?mount={mount}&from={source.format(repo=repo)}", b"")
    assert reply.status == 202, str(reply)
    data = unique_bytes(10)
    assert a.request("PUT", f"{reply.header('location')}?digest={digest_of(data)}", data).status == 201
