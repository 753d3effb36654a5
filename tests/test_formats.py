"""Golden tests pinning the index's record formats: a layout change cannot slip in unnoticed."""

from __future__ import annotations

import pytest

from ecrstore.index import lmdb_codec as codec
from ecrstore.index.records import BlobRecord, ImageRecord, LinkRecord, RepoRecord, UploadRecord


def test_upload_record_layout():
    rec = UploadRecord(repo_id=7, created=1.5, updated=2.5, received=1024, parts=2, small_part=True,
                       last_first=512, last_last=1023, last_xxh=bytes(range(16)), state=b"STATE")
    raw = codec.encode_upload(rec)
    assert raw.hex() == (
        "01"                  # format version
        "01"                  # flags: a small part before the last
        "0000"                # reserved
        "00000002"            # parts
        "0000000000000007"    # repository id
        "3ff8000000000000"    # created (IEEE 754 big-endian)
        "4004000000000000"    # updated
        "0000000000000400"    # received
        "0000000000000200"    # last part first byte
        "00000000000003ff"    # last part last byte
        "000102030405060708090a0b0c0d0e0f"  # xxh3-128 of the last part
        + b"STATE".hex()      # the exported sha256 state, to the end
    )
    assert codec.decode_upload(raw) == rec


def test_blob_and_link_record_layout():
    assert codec.encode_blob(BlobRecord(5000, 2.0)).hex() == "01" + "00" * 7 + "0000000000001388" + "4000000000000000"
    link = LinkRecord(5000, 2.0, "application/vnd.oci.image.layer.v1.tar+gzip")
    raw = codec.encode_link(link)
    assert raw[:24].hex() == "01" + "00" * 7 + "0000000000001388" + "4000000000000000"
    assert raw[24:] == b"application/vnd.oci.image.layer.v1.tar+gzip"
    assert codec.decode_link(raw) == link
    assert codec.decode_blob(codec.encode_blob(BlobRecord(1, 0.5))) == BlobRecord(1, 0.5)


def test_repository_record_is_versioned_json():
    rec = RepoRecord(id=3, registry_id="000000000000", name="a/b", created_at=1.0)
    assert codec.encode_repo(rec) == (
        b'{"created_at":1.0,"encryption_type":"AES256","id":3,"image_tag_mutability":"MUTABLE",'
        b'"image_tag_mutability_exclusion_filters":[],"kms_key":null,"name":"a/b",'
        b'"registry_id":"000000000000","scan_on_push":false,"tags":[],"v":1}'
    )
    assert codec.decode_repo(codec.encode_repo(rec)) == rec
    assert codec.repo_key(rec.registry_id, rec.name) == b"000000000000/a/b"


@pytest.mark.parametrize("decode, raw", [
    (codec.decode_upload, bytes([2]) + bytes(95)),
    (codec.decode_blob, bytes([9]) + bytes(23)),
    (codec.decode_link, bytes([0]) + bytes(23)),
    (codec.decode_image, bytes([3]) + bytes(27)),
    (codec.decode_repo, b'{"v":2}'),
])
def test_unknown_versions_are_refused(decode, raw):
    from ecrstore.errors import ServerException

    with pytest.raises(ServerException):
        decode(raw)


def test_image_record_layout():
    rec = ImageRecord(pushed_at=2.0, size=5000, media_type="a", artifact_media_type="bc", manifest=b"{}")
    raw = codec.encode_image(rec)
    assert raw.hex() == (
        "01" + "00" * 7        # format version, reserved
        + "4000000000000000"   # pushed at
        + "0000000000001388"   # imageSizeInBytes
        + "0001" + "0002"      # lengths of the media type and the artifact media type
        + b"abc{}".hex()       # both media types, then the manifest as pushed
    )
    assert codec.decode_image(raw) == rec
    assert codec.decode_image(raw, with_manifest=False).manifest == b""


def test_key_layouts(tmp_path):
    """Every database's keys, read back from a real store with lmdb itself."""
    import hashlib
    import json
    import uuid

    import lmdb

    from ecrstore import Store

    layer, config = b"layer bytes", b"{}"
    with Store(tmp_path / "s") as store:
        store.create_repository("a/b")
        for blob in (layer, config):
            up = store.initiate_layer_upload("a/b").upload_id
            store.upload_layer_part("a/b", up, 0, len(blob) - 1, blob)
            store.complete_layer_upload("a/b", up, ["sha256:" + hashlib.sha256(blob).hexdigest()])
        pending = store.initiate_layer_upload("a/b").upload_id
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                       "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(layer),
                        "digest": "sha256:" + hashlib.sha256(layer).hexdigest()}],
        })
        store.put_image("a/b", manifest, image_tag="v1")
        referrer = json.dumps({**json.loads(manifest), "subject": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(manifest),
            "digest": "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()}})
        store.put_image("a/b", referrer)
    rid = (1).to_bytes(8, "big")
    dl, dc = hashlib.sha256(layer).digest(), hashlib.sha256(config).digest()
    dm = hashlib.sha256(manifest.encode()).digest()
    dr = hashlib.sha256(referrer.encode()).digest()
    uid = uuid.UUID(pending).bytes
    env = lmdb.open(str(tmp_path / "s" / "index"), max_dbs=32, readonly=True, lock=False)
    with env.begin() as txn:
        def keys(name):
            return sorted(bytes(k) for k, _ in txn.cursor(db=env.open_db(name.encode(), txn=txn)))

        assert keys("meta") == [b"format", b"next_repo_id", b"referrers", b"registry_counts"]
        assert keys("repos") == [b"000000000000/a/b"]
        assert keys("repo_ids") == [rid]
        assert keys("uploads") == [uid]
        assert [k[8:] for k in keys("expiry")] == [uid] and len(keys("expiry")[0]) == 24
        assert keys("repo_uploads") == [rid + uid]
        assert keys("blobs") == sorted([dl, dc])
        assert keys("links") == sorted([rid + dl, rid + dc])
        assert keys("blob_links") == sorted([dl + rid, dc + rid])
        assert keys("images") == sorted([rid + dm, rid + dr])
        assert keys("tags") == [rid + b"v1"]
        assert keys("image_tags") == [rid + dm + b"v1"]
        assert keys("layer_refs") == sorted([rid + dl + dm, rid + dc + dm, rid + dl + dr, rid + dc + dr])
        assert keys("image_refs") == []
        assert keys("referrers") == [rid + dm + dr]
        assert keys("counts") == sorted([rid, b"R000000000000", b"U000000000000"])
    env.close()
