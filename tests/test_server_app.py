"""The ASGI app in process, over a recording fake store: protocol, limits, errors, tenancy."""

from __future__ import annotations

import base64
import logging
import re
import time

import orjson
import pytest
from server_fixtures import KEY_A, KEY_OTHER_REGISTRY, TARGET, asgi_call, sign_request

from ecrstore import models
from ecrstore.errors import InvalidLayerPartException
from ecrstore.server.auth.credentials import Credential
from ecrstore.server.auth.sigv4 import SigV4Verifier
from ecrstore.server.config import ServerConfig
from ecrstore.server.factory import compose

UPLOAD_ID = "0b5e7a62-1a2b-4c3d-8e9f-0123456789ab"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


class FakeStore:
    """Records calls; answers fixed results, or raises what ``fail`` holds."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.fail: BaseException | None = None
        self.closed = False

    def _record(self, name, **kwargs):
        self.calls.append((name, kwargs))
        if self.fail is not None:
            raise self.fail

    def describe_repositories(self, **kwargs):
        self._record("describe_repositories", **kwargs)
        return models.DescribeRepositoriesResult(repositories=())

    def initiate_layer_upload(self, repository_name, **kwargs):
        self._record("initiate_layer_upload", repository_name=repository_name, **kwargs)
        return models.InitiateLayerUploadResult(UPLOAD_ID, 1024)

    def upload_layer_part(self, repository_name, upload_id, part_first_byte, part_last_byte, layer_part_blob,
                          **kwargs):
        self._record("upload_layer_part", repository_name=repository_name, blob=bytes(layer_part_blob), **kwargs)
        return models.UploadLayerPartResult(kwargs.get("registry_id") or "000000000000", repository_name,
                                            upload_id, part_last_byte)

    def close(self):
        self.closed = True


def make_app(*, auth=False, **config):
    store = FakeStore()
    verifier = None
    if auth:
        verifier = SigV4Verifier({k: Credential(k, s, r) for k, s, r in (KEY_A, KEY_OTHER_REGISTRY)})
    cfg = ServerConfig(store_path="/nonexistent", auth=auth, credentials_file="/unused" if auth else None,
                       **config)
    return compose(store, cfg, verifier), store


def part_body(size=3, **over):
    body = {"repositoryName": "team/app", "uploadId": UPLOAD_ID, "partFirstByte": 0,
            "partLastByte": size - 1, "layerPartBlob": base64.b64encode(b"x" * size).decode(), **over}
    return orjson.dumps(body)


def test_success_has_json_and_request_id():
    app, store = make_app()
    r = asgi_call(app, b'{"repositoryName": "team/app"}', target="InitiateLayerUpload")
    assert r.status == 200
    assert r.json() == {"uploadId": UPLOAD_ID, "partSize": 1024}
    assert r.headers["content-type"] == "application/x-amz-json-1.1"
    assert UUID_RE.fullmatch(r.headers["x-amzn-requestid"])
    assert store.calls == [("initiate_layer_upload", {"repository_name": "team/app"})]


def test_request_ids_differ():
    app, _ = make_app()
    ids = {asgi_call(app, target="DescribeRepositories").headers["x-amzn-requestid"] for _ in range(5)}
    assert len(ids) == 5


def test_empty_body_means_no_members():
    app, store = make_app()
    assert asgi_call(app, b"", target="DescribeRepositories").status == 200
    assert store.calls == [("describe_repositories", {})]


@pytest.mark.parametrize("body", [b"{", b"[]", b'"text"', b"\xff\xfe", b"{'a': 1}"])
def test_malformed_json_is_serialization_exception(body):
    app, store = make_app()
    r = asgi_call(app, body, target="DescribeRepositories")
    assert r.status == 400 and r.json()["__type"] == "SerializationException"
    assert not store.calls


@pytest.mark.parametrize("target", ["AmazonEC2ContainerRegistry_V20150921.Nope", "Other_V1.DescribeRepositories",
                                    None])
def test_unknown_target(target):
    app, _ = make_app()
    r = asgi_call(app, target=target)
    assert r.status == 400 and r.json()["__type"] == "UnknownOperationException"


def test_only_post_slash_is_served():
    app, _ = make_app()
    assert asgi_call(app, b"", method="GET", target="DescribeRepositories").json()["__type"] == \
        "UnknownOperationException"
    assert asgi_call(app, path="/other", target="DescribeRepositories").status == 400


def test_engine_errors_keep_their_code_status_and_fields():
    app, store = make_app()
    store.fail = InvalidLayerPartException("bad range", registry_id="000000000000", repository_name="team/app",
                                           upload_id=UPLOAD_ID, last_valid_byte_received=1023)
    r = asgi_call(app, part_body(), target="UploadLayerPart")
    assert r.status == 400
    assert r.json() == {"__type": "InvalidLayerPartException", "message": "bad range", "registryId": "000000000000",
                        "repositoryName": "team/app", "uploadId": UPLOAD_ID, "lastValidByteReceived": 1023}


def test_unexpected_exception_is_a_500_without_traceback(caplog):
    app, store = make_app()
    store.fail = ZeroDivisionError("boom")
    with caplog.at_level(logging.ERROR, logger="ecrstore.server"):
        r = asgi_call(app, target="DescribeRepositories")
    assert r.status == 500
    body = r.json()
    assert body["__type"] == "ServerException"
    assert r.headers["x-amzn-requestid"] in body["message"]
    assert "Traceback" not in r.body.decode() and "boom" not in r.body.decode()
    assert any("ZeroDivisionError" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)


def test_blob_is_decoded_for_the_store():
    app, store = make_app()
    r = asgi_call(app, part_body(5), target="UploadLayerPart")
    assert r.status == 200 and r.json()["lastByteReceived"] == 4
    assert store.calls[0][1]["blob"] == b"xxxxx"


def test_invalid_base64_blob():
    app, store = make_app()
    r = asgi_call(app, part_body(layerPartBlob="not base64!"), target="UploadLayerPart")
    assert r.status == 400 and r.json()["__type"] == "SerializationException"
    assert not store.calls


def test_oversized_content_length_is_refused_unread():
    app, store = make_app(max_body_bytes=1000)
    r = asgi_call(app, [b"x" * 10], target="UploadLayerPart", content_length=5000)
    assert r.status == 400 and r.json()["__type"] == "InvalidParameterException"
    assert "exceeds the limit of 1000 bytes" in r.json()["message"]
    assert r.received == 0  # not a byte read
    assert r.headers["connection"] == "close"


def test_oversized_chunked_body_is_refused_by_counting():
    app, store = make_app(max_body_bytes=1000)
    r = asgi_call(app, [b"x" * 400] * 10, target="UploadLayerPart", content_length=None)
    assert r.status == 400 and r.json()["__type"] == "InvalidParameterException"
    assert r.received == 3 and r.headers["connection"] == "close"
    assert not store.calls


def test_chunked_body_within_limit_is_accepted():
    app, store = make_app()
    body = part_body(300)
    chunks = [body[i:i + 64] for i in range(0, len(body), 64)]
    r = asgi_call(app, chunks, target="UploadLayerPart", content_length=None)
    assert r.status == 200
    assert store.calls[0][1]["blob"] == b"x" * 300


def test_stalled_body_times_out_with_408():
    app, store = make_app(body_idle_timeout=0.2)
    body = part_body(100)
    started = time.monotonic()
    r = asgi_call(app, [body[:10], body[10:]], target="UploadLayerPart", stall_after=1)
    assert time.monotonic() - started < 5
    assert r.status == 408 and r.json()["__type"] == "RequestTimeoutException"
    assert r.headers["connection"] == "close"
    assert not store.calls


def test_total_body_timeout_bounds_a_trickling_client():
    app, _ = make_app(body_idle_timeout=5, body_total_timeout=0.3)
    body = part_body(100)
    r = asgi_call(app, [body[:10], body[10:]], target="UploadLayerPart", stall_after=1)
    assert r.status == 408


def test_disconnect_mid_body_sends_nothing_and_calls_nothing():
    app, store = make_app()
    body = part_body(100)
    r = asgi_call(app, [body[:10], body[10:]], target="UploadLayerPart", disconnect_after=1)
    assert r.status is None and not store.calls


def test_lifespan_shutdown_closes_the_store():
    import asyncio

    app, store = make_app()
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert store.closed


def test_fault_hook_answers_500_after_storing():
    app, store = make_app(fail_upload_parts=1)
    first = asgi_call(app, part_body(), target="UploadLayerPart")
    assert first.status == 500 and first.json()["__type"] == "ServerException"
    second = asgi_call(app, part_body(), target="UploadLayerPart")
    assert second.status == 200
    assert len(store.calls) == 2  # the failed answer came after the store call


# --- authentication and tenancy ---------------------------------------------------------------


def signed(body: bytes, operation: str, key=KEY_A, **kw):
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + operation}
    return sign_request("POST", "http://127.0.0.1:5000/", body, headers, key, **kw)


def test_signed_request_acts_on_the_keys_registry():
    app, store = make_app(auth=True)
    body = b'{"repositoryName": "team/app"}'
    r = asgi_call(app, body, target="InitiateLayerUpload", headers=signed(body, "InitiateLayerUpload"))
    assert r.status == 200, r.body
    assert store.calls == [("initiate_layer_upload", {"repository_name": "team/app", "registry_id": KEY_A[2]})]


def test_naming_the_own_registry_is_allowed():
    app, store = make_app(auth=True)
    body = orjson.dumps({"repositoryName": "team/app", "registryId": KEY_A[2]})
    r = asgi_call(app, body, target="InitiateLayerUpload", headers=signed(body, "InitiateLayerUpload"))
    assert r.status == 200


def test_another_registry_is_access_denied():
    app, store = make_app(auth=True)
    body = orjson.dumps({"repositoryName": "team/app", "registryId": KEY_OTHER_REGISTRY[2]})
    r = asgi_call(app, body, target="InitiateLayerUpload", headers=signed(body, "InitiateLayerUpload"))
    assert r.status == 403 and r.json()["__type"] == "AccessDeniedException"
    assert "ecr:InitiateLayerUpload" in r.json()["message"]
    assert not store.calls


def test_auth_refusals_come_before_the_body_is_buffered():
    app, store = make_app(auth=True)
    body = part_body(1000)
    headers = signed(body, "UploadLayerPart", key=("AKIAUNKNOWNKEY000000", "x", "1"))
    chunks = [body[i:i + 100] for i in range(0, len(body), 100)]
    r = asgi_call(app, chunks, target="UploadLayerPart", headers=headers)
    assert r.status == 403 and r.json()["__type"] == "UnrecognizedClientException"
    assert "connection" not in r.headers  # the body was drained: the connection stays usable
    assert not store.calls


def test_unsigned_request_is_refused():
    app, store = make_app(auth=True)
    r = asgi_call(app, target="DescribeRepositories")
    assert r.status == 403 and r.json() == {"__type": "MissingAuthenticationTokenException",
                                            "message": "Missing Authentication Token"}


def test_body_changed_after_signing_is_refused():
    app, store = make_app(auth=True)
    body = b'{"repositoryName": "team/app"}'
    headers = signed(body, "InitiateLayerUpload")
    r = asgi_call(app, b'{"repositoryName": "team/xyz"}', target="InitiateLayerUpload", headers=headers)
    assert r.status == 403 and r.json()["__type"] == "InvalidSignatureException"
    assert not store.calls


def test_no_auth_passes_the_requested_registry_through():
    app, store = make_app()
    body = orjson.dumps({"repositoryName": "team/app", "registryId": "999999999999"})
    assert asgi_call(app, body, target="InitiateLayerUpload").status == 200
    assert store.calls[0][1]["registry_id"] == "999999999999"
