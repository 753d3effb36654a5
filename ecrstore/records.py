"""The index's record formats: fixed binary layouts (JSON for repositories), each versioned.

Pinned byte for byte by tests/test_formats.py: a change to a layout must come with a new
format version and a migration, never slip in unnoticed.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from .errors import ServerException

__all__ = ["FORMAT_VERSION", "RepoRecord", "UploadRecord", "BlobRecord", "LinkRecord", "ImageRecord", "repo_key", "RID"]

FORMAT_VERSION = 1
RID = struct.Struct(">Q")


@dataclass(slots=True)
class RepoRecord:
    """A repository. ``id`` is unique for the store's lifetime: a deleted and re-created name
    gets a new id, so nothing of the old repository (uploads, links) can leak into the new."""

    id: int
    registry_id: str
    name: str
    created_at: float
    image_tag_mutability: str = "MUTABLE"
    image_tag_mutability_exclusion_filters: list[dict[str, str]] = field(default_factory=list)
    scan_on_push: bool = False
    encryption_type: str = "AES256"
    kms_key: str | None = None
    tags: list[dict[str, str]] = field(default_factory=list)

    @property
    def key(self) -> bytes:
        return repo_key(self.registry_id, self.name)

    @property
    def rid(self) -> bytes:
        return RID.pack(self.id)

    def encode(self) -> bytes:
        d = {
            "v": FORMAT_VERSION,
            "id": self.id,
            "registry_id": self.registry_id,
            "name": self.name,
            "created_at": self.created_at,
            "image_tag_mutability": self.image_tag_mutability,
            "image_tag_mutability_exclusion_filters": self.image_tag_mutability_exclusion_filters,
            "scan_on_push": self.scan_on_push,
            "encryption_type": self.encryption_type,
            "kms_key": self.kms_key,
            "tags": self.tags,
        }
        return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> RepoRecord:
        d = json.loads(raw)
        if d.pop("v") != FORMAT_VERSION:
            raise ServerException("repository record of an unknown format version")
        return cls(**d)


def repo_key(registry_id: str, name: str) -> bytes:
    return f"{registry_id}/{name}".encode()


@dataclass(slots=True)
class UploadRecord:
    """An upload in progress.

    ``received`` is the number of bytes acknowledged (the next part starts there); ``state`` is
    the exported sha256 midstate after those bytes (normally ``state`` covers exactly
    ``received`` bytes; recovery re-hashes any gap from the data file). ``last_first`` /
    ``last_last`` / ``last_xxh`` identify the most recent part so an exact re-send is
    recognised; ``small_part`` records that a part other than the last was below the minimum.
    """

    repo_id: int
    created: float
    updated: float
    received: int = 0
    parts: int = 0
    small_part: bool = False
    last_first: int = 0
    last_last: int = 0
    last_xxh: bytes = bytes(16)
    state: bytes = b""

    _HEAD = struct.Struct(">BBHIQddQQQ16s")  # version, flags, 0, parts, repo, created, updated,
    #                                           received, last_first, last_last, last_xxh

    def encode(self) -> bytes:
        flags = 1 if self.small_part else 0
        head = self._HEAD.pack(
            FORMAT_VERSION, flags, 0, self.parts, self.repo_id, self.created, self.updated,
            self.received, self.last_first, self.last_last, self.last_xxh,
        )
        return head + self.state

    @classmethod
    def decode(cls, raw: bytes) -> UploadRecord:
        (version, flags, _, parts, repo_id, created, updated, received, last_first, last_last,
         last_xxh) = cls._HEAD.unpack_from(raw)
        if version != FORMAT_VERSION:
            raise ServerException("upload record of an unknown format version")
        return cls(repo_id, created, updated, received, parts, bool(flags & 1), last_first,
                   last_last, last_xxh, bytes(raw[cls._HEAD.size:]))


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """Stored content: its size and when it was first committed."""

    size: int
    created: float

    _S = struct.Struct(">B7xQd")

    def encode(self) -> bytes:
        return self._S.pack(FORMAT_VERSION, self.size, self.created)

    @classmethod
    def decode(cls, raw: bytes) -> BlobRecord:
        version, size, created = cls._S.unpack(raw)
        if version != FORMAT_VERSION:
            raise ServerException("blob record of an unknown format version")
        return cls(size, created)


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """A layer of a repository: the blob's size (copied, so availability checks need one read),
    when it was linked, and the media type manifests reference it with (empty until one does)."""

    size: int
    linked_at: float
    media_type: str = ""

    _S = struct.Struct(">B7xQd")

    def encode(self) -> bytes:
        return self._S.pack(FORMAT_VERSION, self.size, self.linked_at) + self.media_type.encode()

    @classmethod
    def size_and_type(cls, raw: bytes) -> tuple[int, str]:
        version, size, _ = cls._S.unpack_from(raw)
        if version != FORMAT_VERSION:
            raise ServerException("layer link record of an unknown format version")
        return size, raw[cls._S.size:].decode()

    @classmethod
    def decode(cls, raw: bytes) -> LinkRecord:
        version, size, linked_at = cls._S.unpack_from(raw)
        if version != FORMAT_VERSION:
            raise ServerException("layer link record of an unknown format version")
        return cls(size, linked_at, bytes(raw[cls._S.size:]).decode())


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """An image of a repository: the manifest exactly as pushed, its media types, when it was
    pushed and ECR's imageSizeInBytes."""

    pushed_at: float
    size: int
    media_type: str
    artifact_media_type: str
    manifest: bytes

    _S = struct.Struct(">B7xdQHH")  # version, pushed_at, size, len(media_type), len(artifact)

    def encode(self) -> bytes:
        mt, at = self.media_type.encode(), self.artifact_media_type.encode()
        return self._S.pack(FORMAT_VERSION, self.pushed_at, self.size, len(mt), len(at)) + mt + at + self.manifest

    @classmethod
    def decode(cls, raw: bytes, *, with_manifest: bool = True) -> ImageRecord:
        version, pushed_at, size, lm, la = cls._S.unpack_from(raw)
        if version != FORMAT_VERSION:
            raise ServerException("image record of an unknown format version")
        o = cls._S.size
        mt = bytes(raw[o:o + lm]).decode()
        at = bytes(raw[o + lm:o + lm + la]).decode()
        manifest = bytes(raw[o + lm + la:]) if with_manifest else b""
        return cls(pushed_at, size, mt, at, manifest)
