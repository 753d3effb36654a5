"""The LMDB index's persisted formats: record layouts and key layouts, each versioned.

Pinned byte for byte by tests/test_formats.py: a change to a layout must come with a new
format version and a migration, never slip in unnoticed. Keys (``rid`` = 8-byte big-endian
repository id, ``dg`` = 32-byte sha256, ``uid`` = 16-byte upload uuid):

============  ===============================  ==========================================
database      key                              value
============  ===============================  ==========================================
meta          b"format", b"next_repo_id",      ascii integers
              b"registry_counts",              b"1" once the registry counts are kept
              b"referrers"                     b"1" once the referrers are indexed
repos         b"<registryId>/<name>"           JSON :class:`RepoRecord`
uploads       uid                              :class:`UploadRecord` (struct + sha256 state)
expiry        8-byte float time + uid          b"" (uploads by last activity, for purge)
repo_uploads  rid + uid                        b"" (a repository's uploads, for delete)
blobs         dg                               :class:`BlobRecord`
links         rid + dg                         :class:`LinkRecord` (layer of a repository)
blob_links    dg + rid                         b"" (reverse of links: is a blob referenced)
images        rid + dg (manifest)              :class:`ImageRecord` (manifest bytes kept)
tags          rid + tag (UTF-8)                dg of the image the tag points at
image_tags    rid + dg + tag                   b"" (the tags of an image)
image_refs    rid + child dg + parent dg       b"" (manifest lists referencing an image)
layer_refs    rid + layer dg + image dg        media type the image references the blob with
referrers     rid + subject dg + referrer dg   b"" (OCI referrers: manifests naming a subject)
docs          kind (UTF-8) + 0x00 + key        a control-plane document (:mod:`ecrstore.documents`)
counts        rid                              images in the repository (8-byte count)
counts        b"R"/b"U" + registryId           repositories / uploads of a registry (8-byte)
repo_ids      rid                              the repository's registry id (ascii)
============  ===============================  ==========================================
"""

from __future__ import annotations

import json
import struct

from ..errors import ServerException
from .records import BlobRecord, ImageRecord, LinkRecord, RepoRecord, UploadRecord

__all__ = [
    "DB_NAMES", "FORMAT_VERSION", "LATER_DBS", "REFERRERS_FLAG", "REGISTRY_COUNTS_FLAG", "RID", "TIME",
    "doc_key", "registry_count_key", "repo_key",
    "encode_repo", "decode_repo",
    "encode_upload", "decode_upload", "encode_blob", "decode_blob", "encode_link", "decode_link",
    "link_size_and_type", "encode_image", "decode_image",
]

FORMAT_VERSION = 1
RID = struct.Struct(">Q")
TIME = struct.Struct(">d")
DB_NAMES = (
    "meta", "repos", "uploads", "expiry", "repo_uploads", "blobs", "links", "blob_links",
    "images", "tags", "image_tags", "image_refs", "layer_refs", "counts", "repo_ids", "referrers", "docs",
)
#: Databases a store written before they existed may lack (a read-only open sees them empty).
LATER_DBS = ("referrers", "docs")

_UPLOAD = struct.Struct(">BBHIQddQQQ16s")  # version, flags, 0, parts, repo, created, updated,
#                                             received, last_first, last_last, last_xxh
_SIZED = struct.Struct(">B7xQd")  # blobs and links: version, size, time
_IMAGE = struct.Struct(">B7xdQHH")  # version, pushed_at, size, len(media_type), len(artifact)


def _version(found: int, what: str) -> None:
    if found != FORMAT_VERSION:
        raise ServerException(f"{what} record of an unknown format version")


REGISTRY_COUNTS_FLAG = b"registry_counts"
REFERRERS_FLAG = b"referrers"


def registry_count_key(kind: str, registry_id: str) -> bytes:
    """The ``counts`` key of a registry's count of repositories (``R``) or uploads (``U``);
    13 bytes, so never a repository's 8-byte id."""
    return kind.encode() + registry_id.encode()


def doc_key(kind: str, key: str) -> bytes:
    """The ``docs`` key of a document: kinds never hold a NUL, so kinds never share keys."""
    return kind.encode() + b"\x00" + key.encode()


def repo_key(registry_id: str, name: str) -> bytes:
    return f"{registry_id}/{name}".encode()


def encode_repo(rec: RepoRecord) -> bytes:
    d = {
        "v": FORMAT_VERSION,
        "id": rec.id,
        "registry_id": rec.registry_id,
        "name": rec.name,
        "created_at": rec.created_at,
        "image_tag_mutability": rec.image_tag_mutability,
        "image_tag_mutability_exclusion_filters": rec.image_tag_mutability_exclusion_filters,
        "scan_on_push": rec.scan_on_push,
        "encryption_type": rec.encryption_type,
        "kms_key": rec.kms_key,
        "tags": rec.tags,
    }
    return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()


def decode_repo(raw: bytes) -> RepoRecord:
    d = json.loads(raw)
    _version(d.pop("v"), "repository")
    return RepoRecord(**d)


def encode_upload(rec: UploadRecord) -> bytes:
    head = _UPLOAD.pack(
        FORMAT_VERSION, 1 if rec.small_part else 0, 0, rec.parts, rec.repo_id, rec.created, rec.updated,
        rec.received, rec.last_first, rec.last_last, rec.last_xxh,
    )
    return head + rec.state


def decode_upload(raw: bytes) -> UploadRecord:
    (version, flags, _, parts, repo_id, created, updated, received, last_first, last_last,
     last_xxh) = _UPLOAD.unpack_from(raw)
    _version(version, "upload")
    return UploadRecord(repo_id, created, updated, received, parts, bool(flags & 1), last_first,
                        last_last, last_xxh, bytes(raw[_UPLOAD.size:]))


def encode_blob(rec: BlobRecord) -> bytes:
    return _SIZED.pack(FORMAT_VERSION, rec.size, rec.created) + rec.placement.encode()


def decode_blob(raw: bytes) -> BlobRecord:
    version, size, created = _SIZED.unpack_from(raw)
    _version(version, "blob")
    return BlobRecord(size, created, bytes(raw[_SIZED.size:]).decode())


def encode_link(rec: LinkRecord) -> bytes:
    return _SIZED.pack(FORMAT_VERSION, rec.size, rec.linked_at) + rec.media_type.encode()


def link_size_and_type(raw: bytes) -> tuple[int, str]:
    """(size, media type) of a link without building the record (the availability hot path)."""
    version, size, _ = _SIZED.unpack_from(raw)
    _version(version, "layer link")
    return size, bytes(raw[_SIZED.size:]).decode()


def decode_link(raw: bytes) -> LinkRecord:
    version, size, linked_at = _SIZED.unpack_from(raw)
    _version(version, "layer link")
    return LinkRecord(size, linked_at, bytes(raw[_SIZED.size:]).decode())


def encode_image(rec: ImageRecord) -> bytes:
    mt, at = rec.media_type.encode(), rec.artifact_media_type.encode()
    return _IMAGE.pack(FORMAT_VERSION, rec.pushed_at, rec.size, len(mt), len(at)) + mt + at + rec.manifest


def decode_image(raw: bytes, *, with_manifest: bool = True) -> ImageRecord:
    version, pushed_at, size, lm, la = _IMAGE.unpack_from(raw)
    _version(version, "image")
    o = _IMAGE.size
    mt = bytes(raw[o:o + lm]).decode()
    at = bytes(raw[o + lm:o + lm + la]).decode()
    manifest = bytes(raw[o + lm + la:]) if with_manifest else b""
    return ImageRecord(pushed_at, size, mt, at, manifest)
