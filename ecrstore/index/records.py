"""The index's records: plain values, the same for every index backend.

How a backend persists them is its own concern (the LMDB backend's binary layouts are in
:mod:`ecrstore.index.lmdb_codec`, pinned by golden tests). Records are compared by value: a
write transaction re-reads a record and checks it equals the one it started from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RepoRecord", "UploadRecord", "BlobRecord", "LinkRecord", "ImageRecord"]


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


@dataclass(slots=True)
class UploadRecord:
    """An upload in progress.

    ``received`` is the number of bytes acknowledged (the next part starts there); ``state`` is
    the exported sha256 midstate after those bytes (normally ``state`` covers exactly
    ``received`` bytes; recovery re-hashes any gap from the data). ``last_first`` /
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


@dataclass(frozen=True, slots=True)
class BlobRecord:
    """Stored content: its size, when it was first committed, and its placement in the blob
    backend ("" where the digest names the content; see :mod:`ecrstore.blobs.base`)."""

    size: int
    created: float
    placement: str = ""


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """A layer of a repository: the blob's size (copied, so availability checks need one read),
    when it was linked, and the media type manifests reference it with (empty until one does)."""

    size: int
    linked_at: float
    media_type: str = ""


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """An image of a repository: the manifest exactly as pushed, its media types, when it was
    pushed and ECR's imageSizeInBytes."""

    pushed_at: float
    size: int
    media_type: str
    artifact_media_type: str
    manifest: bytes
