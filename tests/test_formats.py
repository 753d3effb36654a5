"""Golden tests pinning the index's record formats: a layout change cannot slip in unnoticed."""

from __future__ import annotations

import pytest

from ecrstore.records import BlobRecord, LinkRecord, RepoRecord, UploadRecord


def test_upload_record_layout():
    rec = UploadRecord(repo_id=7, created=1.5, updated=2.5, received=1024, parts=2, small_part=True,
                       last_first=512, last_last=1023, last_xxh=bytes(range(16)), state=b"STATE")
    raw = rec.encode()
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
    assert UploadRecord.decode(raw) == rec


def test_blob_and_link_record_layout():
    assert BlobRecord(5000, 2.0).encode().hex() == "01" + "00" * 7 + "0000000000001388" + "4000000000000000"
    link = LinkRecord(5000, 2.0, "application/vnd.oci.image.layer.v1.tar+gzip")
    raw = link.encode()
    assert raw[:24].hex() == "01" + "00" * 7 + "0000000000001388" + "4000000000000000"
    assert raw[24:] == b"application/vnd.oci.image.layer.v1.tar+gzip"
    assert LinkRecord.decode(raw) == link and BlobRecord.decode(BlobRecord(1, 0.5).encode()) == BlobRecord(1, 0.5)


def test_repository_record_is_versioned_json():
    rec = RepoRecord(id=3, registry_id="000000000000", name="a/b", created_at=1.0)
    assert rec.encode() == (
        b'{"created_at":1.0,"encryption_type":"AES256","id":3,"image_tag_mutability":"MUTABLE",'
        b'"image_tag_mutability_exclusion_filters":[],"kms_key":null,"name":"a/b",'
        b'"registry_id":"000000000000","scan_on_push":false,"tags":[],"v":1}'
    )
    assert RepoRecord.decode(rec.encode()) == rec
    assert rec.key == b"000000000000/a/b"


@pytest.mark.parametrize("cls, raw", [
    (UploadRecord, bytes([2]) + bytes(95)),
    (BlobRecord, bytes([9]) + bytes(23)),
    (LinkRecord, bytes([0]) + bytes(23)),
])
def test_unknown_versions_are_refused(cls, raw):
    from ecrstore.errors import ServerException

    with pytest.raises(ServerException):
        cls.decode(raw)
