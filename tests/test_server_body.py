"""Request bodies: the layer-part fast path decodes exactly what the full JSON parser does, and
the body hash computed while the body arrives is the body's sha256."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_fixtures import KEY_A, TARGET, asgi_call, sign_request

from ecrstore.server.awsjson.decode import FAST_PATH_MIN_BYTES, Base64Span, decode_request
from ecrstore.server.awsjson.operations import OPERATIONS
from ecrstore.server.http.hasher import BodyHasher

MEMBER = "layerPartBlob"
UPLOAD_ID = "0b5e7a62-1a2b-4c3d-8e9f-0123456789ab"
BLOB = os.urandom(FAST_PATH_MIN_BYTES)  # large enough for the fast path once in base64
B64 = base64.b64encode(BLOB).decode()


def resolved(value):
    """A decoded request with any Base64Span turned back into the str the full parser gives."""
    if isinstance(value, dict):
        return {k: resolved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v) for v in value]
    if isinstance(value, Base64Span):
        return value.view.tobytes().decode("ascii")
    return value


def part(**over) -> dict:
    return {"repositoryName": "team/app", "uploadId": UPLOAD_ID, "partFirstByte": 0,
            "partLastByte": len(BLOB) - 1, MEMBER: B64, **over}


def test_fast_path_gives_a_span_of_the_raw_body():
    body = bytearray(orjson.dumps(part()))
    request = decode_request(body, MEMBER)
    assert isinstance(request[MEMBER], Base64Span)
    assert request[MEMBER].view.obj is body  # a view of the buffer, not a copy
    assert request[MEMBER].view.readonly
    assert resolved(request) == orjson.loads(body)
    assert OPERATIONS["UploadLayerPart"].bind(request)["layer_part_blob"] == BLOB


@pytest.mark.parametrize("body", [
    # what botocore sends: compact, the blob last
    orjson.dumps(part()),
    # the blob first, spaces and newlines around the colon
    ('{ "layerPartBlob" :\n "' + B64 + '" , "repositoryName": "team/app", "uploadId": "' + UPLOAD_ID +
     '", "partFirstByte": 0, "partLastByte": 1}').encode(),
    json.dumps(part(), indent=4).encode(),
])
def test_fast_path_layouts(body):
    request = decode_request(body, MEMBER)
    assert isinstance(request[MEMBER], Base64Span)
    assert resolved(request) == orjson.loads(body)


@pytest.mark.parametrize("body, why", [
    (orjson.dumps(part(layerPartBlob=B64.replace("/", "\\/"))).replace(b"\\\\/", b"\\/"), "escaped slashes"),
    (orjson.dumps(part(repositoryName='team/"app"')), "an escaped quote elsewhere"),
    (orjson.dumps({"nested": {MEMBER: "AAAA"}, **part()}), "the member name nested too"),
    (orjson.dumps(part(uploadId=MEMBER)), "the member name as a value"),
    (b'{"layerPartBlob": "AAAA", ' + orjson.dumps(part())[1:], "the member twice"),
    (orjson.dumps(part(layerPartBlob=12345)) + b" " * FAST_PATH_MIN_BYTES, "not a string"),
    (orjson.dumps(part())[:-1] + b', "x": }', "malformed after the blob"),
])
def test_fallback_matches_the_full_parser(body, why):
    try:
        expected = orjson.loads(body)
    except orjson.JSONDecodeError:
        with pytest.raises(orjson.JSONDecodeError):
            decode_request(body, MEMBER)
        return
    request = decode_request(body, MEMBER)
    assert resolved(request) == expected, why
    if b"\\" in body or why == "the member twice" or why == "the member name nested too":
        assert not isinstance(request.get(MEMBER), Base64Span), why


def test_escaped_base64_still_decodes_to_the_same_bytes():
    body = orjson.dumps(part()).replace(b"/", b"\\/")  # a client escaping every '/'
    request = decode_request(body, MEMBER)
    assert isinstance(request[MEMBER], str)
    assert OPERATIONS["UploadLayerPart"].bind(request)["layer_part_blob"] == BLOB


def test_small_bodies_take_the_full_parser():
    body = orjson.dumps(part(layerPartBlob="eHh4", partLastByte=2))
    assert decode_request(body, MEMBER) == orjson.loads(body)


def test_span_is_checked_like_a_string():
    bad = B64[:-8] + "!!!!!!!!"
    for body in (orjson.dumps(part(layerPartBlob=bad)), orjson.dumps(part(layerPartBlob=B64 + "A"))):
        fast = decode_request(body, MEMBER)
        assert isinstance(fast[MEMBER], Base64Span)
        errors = []
        for request in (fast, orjson.loads(body)):
            with pytest.raises(Exception) as e:
                OPERATIONS["UploadLayerPart"].bind(request)
            errors.append((type(e.value), str(e.value)))
        assert errors[0] == errors[1]


_json_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), _json_text)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", MEMBER, "uploadId", "b/c"]), inner, max_size=3)),
    max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(extra=st.dictionaries(st.sampled_from(["repositoryName", "uploadId", "x", "y/z", "registryId"]), _values,
                             max_size=4),
       blob_first=st.booleans(), pretty=st.booleans(), escape_slash=st.booleans(), cut=st.integers(0, 40))
def test_fast_and_full_paths_agree(extra, blob_first, pretty, escape_slash, cut):
    members = {MEMBER: B64, **extra} if blob_first else {**extra, MEMBER: B64}
    text = json.dumps(members, indent=2 if pretty else None, ensure_ascii=bool(cut % 2))
    if escape_slash:
        text = text.replace("/", "\\/")
    body = text.encode()
    if cut > 30:  # also malformed bodies: cut somewhere in the tail
        body = body[:len(body) - (cut - 30)]
    try:
        expected = orjson.loads(body)
    except orjson.JSONDecodeError:
        with pytest.raises(orjson.JSONDecodeError):
            decode_request(body, MEMBER)
        return
    assert resolved(decode_request(bytearray(body), MEMBER)) == expected


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 700_000), min_size=1, max_size=12), step=st.sampled_from([1, 4096, 1 << 20]))
def test_body_hasher_equals_hashlib(sizes, step):
    data = os.urandom(sum(sizes))
    with ThreadPoolExecutor(2) as pool:
        hasher = BodyHasher(pool, step)
        pos = 0
        for n in sizes:
            hasher.feed(data[pos:pos + n])
            pos += n
        assert hasher.fed == len(data)
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_body_hasher_works_while_the_buffer_grows():
    # The hasher keeps the chunks themselves, never a view of the body buffer: the buffer may
    # grow (reallocate) while a step is being hashed in a pool thread.
    chunks = [os.urandom(300_001) for _ in range(12)]
    buf = bytearray()
    with ThreadPoolExecutor(1) as pool:
        hasher = BodyHasher(pool, step=1 << 16)
        for chunk in chunks:
            buf += chunk
            hasher.feed(chunk)
        assert hasher.hexdigest() == hashlib.sha256(buf).hexdigest()


# --- through the app -----------------------------------------------------------------------------


class PartStore:
    def __init__(self):
        self.blobs: list[bytes] = []

    def upload_layer_part(self, repository_name, upload_id, part_first_byte, part_last_byte, layer_part_blob,
                          **kwargs):
        from ecrstore import models

        self.blobs.append(bytes(layer_part_blob))
        return models.UploadLayerPartResult(kwargs.get("registry_id") or "000000000000", repository_name,
                                            upload_id, part_last_byte)


def make_app():
    from ecrstore.server.auth.credentials import Credential
    from ecrstore.server.auth.sigv4 import SigV4Verifier
    from ecrstore.server.config import ServerConfig
    from ecrstore.server.factory import compose

    store = PartStore()
    verifier = SigV4Verifier({KEY_A[0]: Credential(*KEY_A)})
    config = ServerConfig(store_path="/nonexistent", auth=True, credentials_file="/unused")
    return compose(store, config, verifier), store


@pytest.mark.parametrize("chunk", [1 << 14, 300_001, 1 << 22])
def test_signed_large_part_in_chunks(chunk):
    blob = os.urandom(3 << 20)
    body = orjson.dumps({"repositoryName": "team/app", "uploadId": UPLOAD_ID, "partFirstByte": 0,
                         "partLastByte": len(blob) - 1, MEMBER: base64.b64encode(blob).decode()})
    headers = sign_request("POST", "http://127.0.0.1:5000/", body, {
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + "UploadLayerPart"}, KEY_A)
    app, store = make_app()
    chunks = [body[i:i + chunk] for i in range(0, len(body), chunk)]
    r = asgi_call(app, chunks, target="UploadLayerPart", headers=headers)
    assert r.status == 200, r.body
    assert store.blobs == [blob]

    tampered = bytearray(body)
    tampered[len(body) // 2] ^= 0x01  # one base64 character changed after signing
    app, store = make_app()
    r = asgi_call(app, [bytes(tampered)], target="UploadLayerPart", headers=headers)
    assert r.status == 403 and r.json()["__type"] == "InvalidSignatureException"
    assert not store.blobs
