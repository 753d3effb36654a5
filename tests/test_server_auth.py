"""Authentication and tenancy against a real server: boto3 and raw HTTP requests."""

from __future__ import annotations

import http.client
import json
import os
import re
import stat
import time

import pytest
from botocore.exceptions import ClientError
from server_fixtures import (
    KEY_A,
    KEY_OTHER_REGISTRY,
    TARGET,
    digest_of,
    push_layer,
    repo_name,
    sign_request,
    start_server,
    unique_bytes,
)

pytestmark = pytest.mark.timeout(120)


def raw_post(server, body: bytes, headers: dict[str, str]) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(data)
    finally:
        conn.close()


def signed_headers(server, body: bytes, operation: str, key=KEY_A, **kw) -> dict[str, str]:
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + operation}
    return sign_request("POST", server.endpoint + "/", body, headers, key, **kw)


def client_error(call, *args, **kwargs) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as e:
        call(*args, **kwargs)
    r = e.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


# --- boto3 -------------------------------------------------------------------------------------


def test_wrong_secret(ecr_server):
    ecr = ecr_server.client((KEY_A[0], "wrong-secret-wrong-secret-wrong-secret00", KEY_A[2]))
    code, status, message = client_error(ecr.describe_repositories)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith("The request signature we calculated does not match the signature you provided.")


def test_unknown_access_key(ecr_server):
    ecr = ecr_server.client(("AKIAUNKNOWNUNKNOWN00", "whatever", "123456789012"))
    code, status, message = client_error(ecr.describe_repositories)
    assert (code, status, message) == ("UnrecognizedClientException", 403,
                                       "The security token included in the request is invalid.")


def test_another_registry_is_access_denied(ecr_server):
    ecr = ecr_server.client(KEY_A)
    code, status, message = client_error(ecr.create_repository, repositoryName=repo_name(),
                                         registryId=KEY_OTHER_REGISTRY[2])
    assert (code, status) == ("AccessDeniedException", 403)
    assert "ecr:CreateRepository" in message


def test_keys_see_only_their_own_registry(ecr_server):
    a, b = ecr_server.client(KEY_A), ecr_server.client(KEY_OTHER_REGISTRY)
    name = repo_name("tenant")
    assert a.create_repository(repositoryName=name)["repository"]["registryId"] == KEY_A[2]
    assert a.create_repository(repositoryName=repo_name(), registryId=KEY_A[2])  # naming one's own is fine
    # The same name in the other registry is another repository.
    assert b.create_repository(repositoryName=name)["repository"]["registryId"] == KEY_OTHER_REGISTRY[2]
    data = unique_bytes(1500)
    push_layer(a, name, data)
    seen_by_b = b.batch_check_layer_availability(repositoryName=name, layerDigests=[digest_of(data)])
    assert not [layer for layer in seen_by_b["layers"] if layer["layerAvailability"] == "AVAILABLE"]
    b.delete_repository(repositoryName=name, force=True)
    assert a.describe_repositories(repositoryNames=[name])["repositories"][0]["registryId"] == KEY_A[2]


# --- raw requests ------------------------------------------------------------------------------


def test_unsigned_request(ecr_server):
    status, headers, body = raw_post(ecr_server, b"{}", {"X-Amz-Target": TARGET + "DescribeRepositories",
                                                          "Content-Type": "application/x-amz-json-1.1"})
    assert status == 403
    assert body == {"__type": "MissingAuthenticationTokenException", "message": "Missing Authentication Token"}
    assert "x-amzn-requestid" in headers


@pytest.mark.parametrize("authorization", [
    "AWS4-HMAC-SHA256 Credential=AKIATESTKEYAAAAAAAAA/20240101/us-east-1/ecr/aws4_request",
    "AWS4-HMAC-SHA256 Credential=nonsense, SignedHeaders=host, Signature=00",
    "Bearer abc",
])
def test_malformed_authorization_header(ecr_server, authorization):
    headers = signed_headers(ecr_server, b"{}", "DescribeRepositories")
    headers["Authorization"] = authorization
    status, _, body = raw_post(ecr_server, b"{}", headers)
    assert status == 403 and body["__type"] == "IncompleteSignatureException"


def test_expired_signature(ecr_server):
    headers = signed_headers(ecr_server, b"{}", "DescribeRepositories", when=time.time() - 20 * 60)
    status, _, body = raw_post(ecr_server, b"{}", headers)
    assert status == 403 and body["__type"] == "InvalidSignatureException"
    assert re.fullmatch(r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z "
                        r"\(\d{8}T\d{6}Z - 15 min\.\)", body["message"])


def test_signed_raw_request_succeeds_and_tampering_fails(ecr_server):
    body = b"{}"
    headers = signed_headers(ecr_server, body, "DescribeRepositories")
    status, _, answer = raw_post(ecr_server, body, headers)
    assert status == 200 and "repositories" in answer
    status, _, answer = raw_post(ecr_server, b'{"maxResults": 1}', headers)
    assert status == 403 and answer["__type"] == "InvalidSignatureException"


def test_refusal_keeps_the_connection_usable(ecr_server):
    conn = http.client.HTTPConnection("127.0.0.1", ecr_server.port, timeout=30)
    try:
        body = json.dumps({"repositoryName": "x" * 5000}).encode()
        conn.request("POST", "/", body=body, headers={"X-Amz-Target": TARGET + "CreateRepository"})
        first = conn.getresponse()
        first.read()
        assert first.status == 403
        good = b"{}"
        conn.request("POST", "/", body=good, headers=signed_headers(ecr_server, good, "DescribeRepositories"))
        second = conn.getresponse()
        assert second.status == 200, second.read()
        second.read()
    finally:
        conn.close()


# --- credentials the server creates, and --no-auth ----------------------------------------------


def test_server_creates_credentials_and_explains_them(tmp_path):
    server = start_server(tmp_path, store_options={"registry_id": "123456789012"})
    try:
        path = server.store / "credentials"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
        key_id, secret, registry = lines[0].split()
        assert re.fullmatch(r"AKIA[A-Z2-7]{16}", key_id) and len(secret) == 40 and registry == "123456789012"
        log = server.log()
        assert f"export AWS_ACCESS_KEY_ID={key_id}" in log
        assert f"export AWS_SECRET_ACCESS_KEY={secret}" in log
        assert f"export AWS_ENDPOINT_URL_ECR=http://127.0.0.1:{server.port}" in log
        assert "export AWS_DEFAULT_REGION=" in log
        ecr = server.client((key_id, secret, registry))
        assert ecr.create_repository(repositoryName="made-with-generated-key")["repository"]["registryId"] == registry
    finally:
        server.stop()
    # A restart keeps the same key, and names the file instead of printing the secret again.
    server = start_server(tmp_path, store=tmp_path / "store", store_options={"registry_id": "123456789012"})
    try:
        assert server.client((key_id, secret, registry)).describe_repositories()["repositories"]
        restart_log = server.log()
        assert secret not in restart_log
        assert f"export AWS_ACCESS_KEY_ID={key_id}" in restart_log and str(path) in restart_log
    finally:
        server.stop()


def test_no_auth_accepts_any_signature_and_none(tmp_path):
    server = start_server(tmp_path, no_auth=True)
    try:
        ecr = server.client(("AKIAANYTHINGATALL000", "no-secret-needed", ""))
        assert ecr.create_repository(repositoryName="open")["repository"]["registryId"] == "000000000000"
        status, _, body = raw_post(server, b"{}", {"X-Amz-Target": TARGET + "DescribeRepositories"})
        assert status == 200 and [r["repositoryName"] for r in body["repositories"]] == ["open"]
        other = ecr.create_repository(repositoryName="open", registryId="999999999999")["repository"]
        assert other["registryId"] == "999999999999"
    finally:
        server.stop()
