"""SigV4 verification against requests signed by botocore itself (no server, no store)."""

from __future__ import annotations

import hashlib
import time

import pytest
from server_fixtures import KEY_A, KEY_OTHER_REGISTRY, TARGET, sign_request

from ecrstore.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from ecrstore.server.auth.credentials import Credential
from ecrstore.server.auth.sigv4 import SigV4Verifier, parse_authorization
from ecrstore.server.awsjson.codec import http_status

URL = "http://127.0.0.1:5000/"
BODY = b'{"repositoryName": "team/app"}'
BASE_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": TARGET + "CreateRepository",
}


def creds(*keys):
    return {k: Credential(k, s, r) for k, s, r in keys}


def verifier(*keys, clock=time.time):
    return SigV4Verifier(creds(*(keys or (KEY_A,))), clock=clock)


def received(signed: dict[str, str]) -> dict[str, str]:
    """Headers as the server sees them: lower-case names, plus Host as an HTTP client sends it."""
    out = {k.lower(): v for k, v in signed.items()}
    out.setdefault("host", "127.0.0.1:5000")
    return out


def check(v: SigV4Verifier, headers: dict[str, str], body: bytes = BODY, *, method="POST", path="/", query=""):
    pending = v.check_headers(headers)
    return v.verify(pending, method, path, query, list(headers.items()), hashlib.sha256(body).hexdigest())


def test_request_signed_by_botocore_verifies():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_A))
    cred = check(verifier(KEY_A, KEY_OTHER_REGISTRY), headers)
    assert cred.access_key_id == KEY_A[0] and cred.registry_id == KEY_A[2]


def test_second_key_maps_to_its_registry():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_OTHER_REGISTRY))
    assert check(verifier(KEY_A, KEY_OTHER_REGISTRY), headers).registry_id == KEY_OTHER_REGISTRY[2]


def test_empty_body_verifies():
    headers = received(sign_request("POST", URL, b"", BASE_HEADERS, KEY_A))
    check(verifier(), headers, b"")


def test_a_scope_naming_another_region_is_refused():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_A, region="eu-west-3"))
    with pytest.raises(InvalidSignatureException, match="valid region"):
        check(verifier(), headers)
    other = SigV4Verifier(creds(KEY_A), region="eu-west-3")
    check(other, headers)  # a server of that region takes it


def _authorization(signed_headers: str) -> dict[str, str]:
    now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return {
        "host": "127.0.0.1:5000", "x-amz-date": now, "x-amz-target": TARGET + "BatchDeleteImage",
        "authorization": f"AWS4-HMAC-SHA256 Credential={KEY_A[0]}/{now[:8]}/us-east-1/ecr/aws4_request, "
                         f"SignedHeaders={signed_headers}, Signature=" + "0" * 64,
    }


@pytest.mark.parametrize("signed, missing", [
    ("host;x-amz-date", "X-Amz-Target"),  # a captured call replayed as another operation
    ("host;x-amz-target", "X-Amz-Date"),
    ("x-amz-date;x-amz-target", "Host"),
])
def test_the_signature_must_cover_host_date_and_target(signed, missing):
    with pytest.raises(IncompleteSignatureException, match=f"'{missing}' must be a 'SignedHeader'"):
        verifier().check_headers(_authorization(signed))


def test_a_security_token_sent_must_be_signed():
    headers = _authorization("host;x-amz-date;x-amz-target")
    headers["x-amz-security-token"] = "FQoG..."
    with pytest.raises(IncompleteSignatureException, match="'X-Amz-Security-Token' must be a 'SignedHeader'"):
        verifier().check_headers(headers)


def test_a_replayed_signature_with_the_target_swapped_is_refused_end_to_end():
    get_image = {**BASE_HEADERS, "X-Amz-Target": TARGET + "BatchGetImage"}
    signed = received(sign_request("POST", URL, BODY, get_image, KEY_A))
    signed["x-amz-target"] = TARGET + "BatchDeleteImage"
    with pytest.raises(InvalidSignatureException):
        check(verifier(), signed)


def test_query_string_is_part_of_the_signature():
    headers = received(sign_request("POST", URL + "?b=2&a=1", BODY, BASE_HEADERS, KEY_A))
    check(verifier(), headers, query="b=2&a=1")
    with pytest.raises(InvalidSignatureException):
        check(verifier(), headers, query="a=2&b=1")


def test_tampered_body_is_refused():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_A))
    with pytest.raises(InvalidSignatureException, match="does not match the signature you provided"):
        check(verifier(), headers, BODY.replace(b"app", b"evil"))


def test_tampered_signed_header_is_refused():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_A))
    headers["x-amz-target"] = TARGET + "DeleteRepository"
    with pytest.raises(InvalidSignatureException):
        check(verifier(), headers)


def test_unsigned_extra_header_is_ignored():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_A))
    headers["user-agent"] = "something else"
    headers["x-forwarded-for"] = "10.0.0.1"
    check(verifier(), headers)


def test_header_value_whitespace_is_canonicalised():
    signed = sign_request("POST", URL, BODY, {**BASE_HEADERS, "X-Custom": "a  b"}, KEY_A)
    headers = received(signed)
    headers["x-custom"] = "  a b "
    check(verifier(), headers)


def test_wrong_secret_is_refused():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, (KEY_A[0], "not-the-secret", KEY_A[2])))
    with pytest.raises(InvalidSignatureException) as e:
        check(verifier(), headers)
    assert http_status(e.value) == 403


def test_unknown_key_is_refused_before_the_body():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, ("AKIAUNKNOWNUNKNOWN00", "x", KEY_A[2])))
    with pytest.raises(UnrecognizedClientException, match="The security token included in the request is invalid."):
        verifier().check_headers(headers)


def test_unsigned_request_is_refused():
    with pytest.raises(MissingAuthenticationTokenException, match="Missing Authentication Token"):
        verifier().check_headers(received(BASE_HEADERS))


@pytest.mark.parametrize("value", [
    "AWS4-HMAC-SHA256",
    "AWS4-HMAC-SHA256 Credential=AKIATESTKEYAAAAAAAAA/20240101/us-east-1/ecr/aws4_request",
    "AWS4-HMAC-SHA256 Credential=AKIATESTKEYAAAAAAAAA/20240101/us-east-1/ecr/aws4_request, SignedHeaders=host",
    "AWS4-HMAC-SHA256 Credential=AKIATESTKEYAAAAAAAAA/us-east-1/ecr, SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA256 Credential=A/20240101/us-east-1/ecr/aws4_request, SignedHeaders=x-amz-date, Signature=00",
    "Basic dXNlcjpwYXNz",
    "garbage",
])
def test_malformed_authorization_is_incomplete(value):
    headers = received({**BASE_HEADERS, "Authorization": value, "X-Amz-Date": "20240101T000000Z"})
    with pytest.raises(IncompleteSignatureException) as e:
        verifier().check_headers(headers)
    assert http_status(e.value) == 403


def test_missing_or_malformed_date_is_incomplete():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_A))
    del headers["x-amz-date"]
    with pytest.raises(IncompleteSignatureException, match="X-Amz-Date"):
        verifier().check_headers(headers)
    headers["x-amz-date"] = "2024-01-01T00:00:00Z"
    with pytest.raises(IncompleteSignatureException, match="ISO-8601"):
        verifier().check_headers(headers)


def test_expired_signature():
    now = time.time()
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_A, when=now - 16 * 60))
    with pytest.raises(InvalidSignatureException, match=r"^Signature expired: \d{8}T\d{6}Z is now earlier than "
                                                        r"\d{8}T\d{6}Z \(\d{8}T\d{6}Z - 15 min\.\)$"):
        verifier().check_headers(headers)


def test_signature_from_the_future():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_A, when=time.time() + 16 * 60))
    with pytest.raises(InvalidSignatureException, match="Signature not yet current"):
        verifier().check_headers(headers)


def test_skew_within_fifteen_minutes_is_accepted():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_A, when=time.time() - 14 * 60))
    check(verifier(), headers)


def test_service_scope_must_be_ecr():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_A, service="s3"))
    with pytest.raises(InvalidSignatureException, match="correct service: 'ecr'"):
        verifier().check_headers(headers)


def test_signed_content_sha256_header_must_match_body():
    good = {**BASE_HEADERS, "X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()}
    headers = received(sign_request("POST", URL, BODY, good, KEY_A))
    assert "x-amz-content-sha256" in headers["authorization"]
    check(verifier(), headers)
    bad = {**BASE_HEADERS, "X-Amz-Content-SHA256": hashlib.sha256(b"other").hexdigest()}
    headers = received(sign_request("POST", URL, BODY, bad, KEY_A))
    with pytest.raises(InvalidSignatureException, match="x-amz-content-sha256"):
        check(verifier(), headers)


def test_unsigned_payload_marker_is_honoured():
    headers = received(sign_request("POST", URL, BODY, {**BASE_HEADERS, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
                                    KEY_A))
    check(verifier(), headers, b"any body at all")


def test_signed_header_missing_from_request_is_refused():
    headers = received(sign_request("POST", URL, BODY, BASE_HEADERS, KEY_A))
    del headers["x-amz-target"]
    with pytest.raises(InvalidSignatureException):
        check(verifier(), headers)


def test_parse_authorization_parts():
    header = parse_authorization(
        "AWS4-HMAC-SHA256 Credential=AKID/20240102/us-west-2/ecr/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature=" + "ab" * 32
    )
    assert (header.access_key_id, header.scope_date, header.region, header.service) == \
        ("AKID", "20240102", "us-west-2", "ecr")
    assert header.signed_headers == ("content-type", "host", "x-amz-date")
    assert header.signature == "ab" * 32
