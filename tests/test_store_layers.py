"""Layer upload semantics of the engine: parts, completion and its errors in check order,
per-repository availability, reads, expiry and recovery of a damaged midstate."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from storeutil import damage_blob, digest_of, open_store, push, stored_blobs, stored_uploads

from ecrstore import Store, Tag, errors


@pytest.fixture
def store(tmp_path, backends):
    with open_store(tmp_path / "store", **backends) as s:
        s.create_repository("app")
        yield s


@pytest.fixture
def local_store(tmp_path):
    """A store on the embedded default, for what only it has (its LMDB records, its files)."""
    with open_store(tmp_path / "store") as s:
        s.create_repository("app")
        yield s


def data(n: int, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed * 7 + (i >> 8)) & 0xFF for i in range(n))


def test_whole_flow_and_read_back(store, backends):
    payload = data(5000)
    up = store.initiate_layer_upload("app")
    assert up.part_size == 1024
    uuid.UUID(up.upload_id)
    r = store.upload_layer_part("app", up.upload_id, 0, 2047, payload[:2048])
    assert (r.registry_id, r.repository_name, r.upload_id, r.last_byte_received) == (
        "000000000000", "app", up.upload_id, 2047)
    r = store.upload_layer_part("app", up.upload_id, 2048, 4999, bytearray(payload[2048:]))
    assert r.last_byte_received == 4999
    done = store.complete_layer_upload("app", up.upload_id, [digest_of(payload).upper().replace("SHA256", "sha256")])
    assert done.layer_digest == digest_of(payload)
    check = store.batch_check_layer_availability("app", [done.layer_digest])
    assert check.failures == ()
    (layer,) = check.layers
    assert (layer.layer_digest, layer.layer_availability, layer.layer_size) == (done.layer_digest, "AVAILABLE", 5000)
    with store.open_layer("app", done.layer_digest) as rd:
        assert rd.size == 5000
        assert rd.read(10) == payload[:10]
        assert rd.read() == payload[10:]
        assert b"".join(rd.iter_chunks(777)) == payload
        assert b"".join(rd.iter_chunks(777, 100, 5)) == payload[100:105]
        if backends:  # a remote object: read in ranges, never mapped
            assert rd.view() is None
        else:
            assert bytes(rd.view()) == payload
            assert os.pread(rd.fileno(), 5, 100) == payload[100:105]


def test_completion_never_rereads_the_layer(store, monkeypatch):
    """Completion finalises the stored midstate: hash_file (the re-read path) is not called."""
    from ecrstore import uploads

    payload = data(4096)
    up = store.initiate_layer_upload("app").upload_id
    store.upload_layer_part("app", up, 0, 4095, payload)
    monkeypatch.setattr(uploads, "hash_file", lambda *a, **k: pytest.fail("completion re-read the layer"))
    assert store.complete_layer_upload("app", up, [digest_of(payload)]).layer_digest == digest_of(payload)


def test_part_errors_carry_last_valid_byte(store):
    up = store.initiate_layer_upload("app").upload_id
    with pytest.raises(errors.InvalidLayerPartException) as ei:
        store.upload_layer_part("app", up, 5, 9, b"12345")
    e = ei.value
    assert e.last_valid_byte_received is None  # nothing received yet
    assert (e.registry_id, e.repository_name, e.upload_id) == ("000000000000", "app", up)
    store.upload_layer_part("app", up, 0, 1023, data(1024))
    for first, last, blob in [
        (1025, 1030, b"123456"),     # gap
        (1000, 1100, data(101)),     # overlap
        (1024, 1030, b"12"),         # size does not match the range
        (1024, 1020, b"12345"),      # last < first
        (1024, 1024, b""),           # empty
    ]:
        with pytest.raises(errors.InvalidLayerPartException) as ei:
            store.upload_layer_part("app", up, first, last, blob)
        assert ei.value.last_valid_byte_received == 1023
    with pytest.raises(errors.InvalidParameterException):
        store.upload_layer_part("app", up, 1024, 1024 + 4096, data(4097))  # over max_part_size
    with pytest.raises(errors.InvalidParameterException):
        store.upload_layer_part("app", up, -1, 3, b"1234")
    with pytest.raises(errors.InvalidParameterException):
        store.upload_layer_part("app", up, 1024, 1027, "text")
    # nothing changed: the next contiguous part is still accepted
    assert store.upload_layer_part("app", up, 1024, 1027, b"1234").last_byte_received == 1027


def test_exact_resend_of_last_part_is_idempotent(store):
    payload = data(3000)
    up = store.initiate_layer_upload("app").upload_id
    store.upload_layer_part("app", up, 0, 1023, payload[:1024])
    store.upload_layer_part("app", up, 1024, 2047, payload[1024:2048])
    again = store.upload_layer_part("app", up, 1024, 2047, payload[1024:2048])
    assert again.last_byte_received == 2047
    # same range, other bytes: refused; an older part: refused
    with pytest.raises(errors.InvalidLayerPartException):
        store.upload_layer_part("app", up, 1024, 2047, bytes(1024))
    with pytest.raises(errors.InvalidLayerPartException):
        store.upload_layer_part("app", up, 0, 1023, payload[:1024])
    store.upload_layer_part("app", up, 2048, 2999, payload[2048:])
    assert store.complete_layer_upload("app", up, [digest_of(payload)]).layer_digest == digest_of(payload)


def test_completion_errors_in_check_order(store):
    payload = data(2500)
    good = digest_of(payload)
    up = store.initiate_layer_upload("app").upload_id
    # 1. repository before anything about the upload
    with pytest.raises(errors.RepositoryNotFoundException):
        store.complete_layer_upload("nope", up, [good])
    # 2. upload: unknown, or another repository's
    store.create_repository("other")
    with pytest.raises(errors.UploadNotFoundException):
        store.complete_layer_upload("app", str(uuid.uuid4()), [good])
    with pytest.raises(errors.UploadNotFoundException):
        store.complete_layer_upload("other", up, [good])
    # 3. no parts, even with a wrong digest
    with pytest.raises(errors.EmptyUploadException) as ei:
        store.complete_layer_upload("app", up, ["sha256:" + "0" * 64])
    assert ei.value.message == (
        f"The upload with id '{up}' in the repository with name 'app' in registry with id "
        "'000000000000' cannot be completed because it does not have any parts"
    )
    # 4. a small part before the last, even with a wrong digest
    store.upload_layer_part("app", up, 0, 99, payload[:100])
    store.upload_layer_part("app", up, 100, 2499, payload[100:])
    with pytest.raises(errors.LayerPartTooSmallException):
        store.complete_layer_upload("app", up, ["sha256:" + "0" * 64])
    # 5. digest mismatch (only sha256 digests can match)
    up2 = store.initiate_layer_upload("app").upload_id
    store.upload_layer_part("app", up2, 0, 2047, payload[:2048])
    store.upload_layer_part("app", up2, 2048, 2499, payload[2048:])
    with pytest.raises(errors.InvalidLayerException) as ei:
        store.complete_layer_upload("app", up2, ["sha256:" + "0" * 64, "sha512:" + good[7:]])
    assert ei.value.message == "None of the provided layer digests match the calculated layer digest"
    # validation errors left the upload intact
    assert store.complete_layer_upload("app", up2, ["sha512:ab", good]).layer_digest == good
    # 6. already a layer here: consumes the upload
    up3 = store.initiate_layer_upload("app").upload_id
    store.upload_layer_part("app", up3, 0, 2499, payload)
    with pytest.raises(errors.LayerAlreadyExistsException):
        store.complete_layer_upload("app", up3, [good])
    with pytest.raises(errors.UploadNotFoundException):
        store.complete_layer_upload("app", up3, [good])
    # a finished upload is gone
    with pytest.raises(errors.UploadNotFoundException):
        store.upload_layer_part("app", up2, 2500, 2500, b"x")


@pytest.mark.parametrize(
    "digests",
    [[], ["sha256"], ["sha256:xyz"], [""], [42], ["sha256:" + "a" * 64] * 101, "sha256:" + "a" * 64],
)
def test_completion_parameter_errors(store, digests):
    up = store.initiate_layer_upload("app").upload_id
    store.upload_layer_part("app", up, 0, 3, b"abcd")
    with pytest.raises(errors.InvalidParameterException):
        store.complete_layer_upload("app", up, digests)
    with pytest.raises(errors.InvalidParameterException):
        store.complete_layer_upload("app", "not-a-uuid", [digest_of(b"abcd")])
    assert store.complete_layer_upload("app", up, [digest_of(b"abcd")]).layer_digest == digest_of(b"abcd")


def test_layers_are_per_repository_and_stored_once(store, tmp_path):
    store.create_repository("bb")
    payload = data(3000, seed=3)
    d = push(store, "app", payload)
    check = store.batch_check_layer_availability("bb", [d, digest_of(b"never")])
    assert [(layer.layer_digest, layer.layer_availability) for layer in check.layers] == [(d, "UNAVAILABLE")]
    assert [(f.layer_digest, f.failure_code) for f in check.failures] == [(digest_of(b"never"), "MissingLayerDigest")]
    with pytest.raises(errors.LayersNotFoundException):
        store.open_layer("bb", d)
    assert push(store, "bb", payload) == d
    assert store.batch_check_layer_availability("bb", [d]).layers[0].layer_availability == "AVAILABLE"
    assert len(stored_blobs(store)) == 1
    st = store.stats()
    assert (st.repositories, st.layers, st.blobs, st.blob_bytes, st.dedupe_saved_bytes) == (2, 2, 1, 3000, 3000)


def test_batch_check_item_failures_and_request_errors(store):
    d = push(store, "app", data(1500))
    res = store.batch_check_layer_availability("app", ["bogus", "", d.upper().replace("SHA256", "sha256"), "md5:abcd"])
    assert [(f.layer_digest, f.failure_code) for f in res.failures] == [
        ("bogus", "InvalidLayerDigest"), ("", "InvalidLayerDigest"), ("md5:abcd", "MissingLayerDigest")]
    assert [layer.layer_digest for layer in res.layers] == [d]
    with pytest.raises(errors.RepositoryNotFoundException):
        store.batch_check_layer_availability("nope", [d])
    with pytest.raises(errors.InvalidParameterException):
        store.batch_check_layer_availability("app", [])
    with pytest.raises(errors.InvalidParameterException):
        store.batch_check_layer_availability("app", ["x" * 1001])


def test_parts_from_files_and_paths(store, tmp_path):
    payload = data(3000, seed=5)
    p1, p2 = tmp_path / "p1", tmp_path / "p2"
    p1.write_bytes(payload[:2048])
    p2.write_bytes(payload[2048:])
    up = store.initiate_layer_upload("app").upload_id
    store.upload_layer_part("app", up, 0, 2047, str(p1))
    with open(p2, "rb") as f:
        store.upload_layer_part("app", up, 2048, 2999, f)
    # an exact re-send from the same file is recognised
    store.upload_layer_part("app", up, 2048, 2999, p2)
    assert store.complete_layer_upload("app", up, [digest_of(payload)]).layer_digest == digest_of(payload)
    with store.open_layer("app", digest_of(payload)) as rd:
        assert rd.read() == payload
    with pytest.raises(errors.InvalidParameterException):
        store.upload_layer_part("app", store.initiate_layer_upload("app").upload_id, 0, 0, tmp_path / "missing")


def test_idle_uploads_expire_and_are_purged(tmp_path, backends):
    with open_store(tmp_path / "s", upload_ttl=1.0, **backends) as store:
        store.create_repository("app")
        up = store.initiate_layer_upload("app").upload_id
        store.upload_layer_part("app", up, 0, 3, b"abcd")
        live = store.initiate_layer_upload("app").upload_id
        time.sleep(0.6)
        store.upload_layer_part("app", live, 0, 1, b"ok")  # activity renews the TTL
        time.sleep(0.6)
        with pytest.raises(errors.UploadNotFoundException):
            store.upload_layer_part("app", up, 4, 5, b"ef")
        with pytest.raises(errors.UploadNotFoundException):
            store.complete_layer_upload("app", up, [digest_of(b"abcd")])
        assert store.purge_uploads() == 1
        # Only the live upload's data is left (on S3: its multipart upload, the other aborted).
        assert len(stored_uploads(store)) == 1
        assert store.complete_layer_upload("app", live, [digest_of(b"ok")]).layer_digest == digest_of(b"ok")


def test_damaged_midstate_is_recovered_by_rehashing(local_store):
    """A stored state that fails its checksum is never trusted: the data file is re-hashed."""
    from ecrstore.index.lmdb_codec import encode_upload
    from ecrstore.index.records import UploadRecord

    payload = data(3000, seed=9)
    up = local_store.initiate_layer_upload("app").upload_id
    local_store.upload_layer_part("app", up, 0, 2047, payload[:2048])
    uid = uuid.UUID(up).bytes

    def damage(t):
        rec = t.get_upload(uid)
        bad = bytearray(rec.state)
        bad[40] ^= 0xFF
        t._t.put(uid, encode_upload(UploadRecord(**{**_fields(rec), "state": bytes(bad)})), db=t._db["uploads"])

    local_store._index.write(damage)
    local_store.upload_layer_part("app", up, 2048, 2999, payload[2048:])
    assert local_store.complete_layer_upload("app", up, [digest_of(payload)]).layer_digest == digest_of(payload)


def _fields(rec):
    import dataclasses

    return {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}


def test_non_durable_store_and_sync(tmp_path):
    with open_store(tmp_path / "s", durable=False) as store:
        store.create_repository("app")
        d = push(store, "app", data(4000))
        store.sync()
    with Store(tmp_path / "s") as again:
        assert again.batch_check_layer_availability("app", [d]).layers[0].layer_size == 4000


def test_index_map_grows_automatically(tmp_path):
    with open_store(tmp_path / "s", map_size=64 * 1024) as store:
        before = store._index.map_size()
        for i in range(300):
            store.create_repository(f"repo-{i:04d}", tags=[Tag("k" * 100, "v" * 200)])
        assert store._index.map_size() > before
        assert len(store.describe_repositories(max_results=1000).repositories) == 300


def test_verify_and_purge(store):
    d = push(store, "app", data(2000, seed=1))
    keep = push(store, "app", data(2100, seed=2))
    assert store.verify().ok
    damage_blob(store, d)
    report = store.verify()
    assert [m[0] for m in report.mismatches] == [d] and not report.ok
    # unlinked blobs are reclaimed by purge (grace 0); linked ones stay
    store.create_repository("gone")
    push(store, "gone", data(1900, seed=4))
    store.delete_repository("gone", force=True)
    rep = store.purge(grace=0)
    assert rep.blobs_removed == 1 and rep.bytes_freed >= 1900
    assert store.stats().blobs == 2
    with store.open_layer("app", keep) as rd:
        assert len(rd.read()) == 2100


def test_parts_as_file_ranges(store, tmp_path):
    """A part may be a byte range of a bigger file (a tar member), ingested in place."""
    from ecrstore import FileRange

    payload = data(5000, seed=11)
    blob = tmp_path / "archive"
    blob.write_bytes(b"H" * 70001 + payload + b"T" * 99)
    up = store.initiate_layer_upload("app").upload_id
    store.upload_layer_part("app", up, 0, 2047, FileRange(blob, 70001, 2048))
    with open(blob, "rb") as f:
        store.upload_layer_part("app", up, 2048, 4999, FileRange(f.fileno(), 70001 + 2048, 2952))
        store.upload_layer_part("app", up, 2048, 4999, FileRange(f.fileno(), 70001 + 2048, 2952))  # re-send
    assert store.complete_layer_upload("app", up, [digest_of(payload)]).layer_digest == digest_of(payload)
    with pytest.raises(errors.InvalidParameterException):
        store.upload_layer_part("app", store.initiate_layer_upload("app").upload_id, 0, 9,
                                FileRange(blob, 75000, 10000))  # past the end


def test_other_registries_content_is_not_revealed(store):
    """Registries are tenants: a layer only another registry holds is simply missing."""
    store.create_repository("app", registry_id="111111111111")
    d = push(store, "app", data(1200, seed=21), registry_id="111111111111")
    res = store.batch_check_layer_availability("app", [d])
    assert res.layers == () and [f.failure_code for f in res.failures] == ["MissingLayerDigest"]
    # the same bytes pushed here complete normally and are stored once
    assert push(store, "app", data(1200, seed=21)) == d
    assert store.stats().blobs == 1
