"""What an index backend must do: role-split protocols over one transaction, and its contract.

The index holds every piece of metadata — repositories, upload sessions with their sha256
midstates, stored blobs, the layers of each repository, images and tags — and never layer
bytes. The engine above it (uploads, images, maintenance) owns every rule; a backend only
stores and finds records, keyed as the protocols below say (``rid``: a repository id,
``uid``: a 16-byte upload id, ``dg``: a 32-byte sha256 digest).

The transaction contract, which every backend keeps and ``tests/backends`` checks:

* :meth:`Index.read` is a consistent snapshot: every read inside it sees the same committed
  state, whatever commits meanwhile. Hold it briefly and never across blob I/O.
* :meth:`Index.write` runs ``fn(txn)`` in one write transaction and commits it atomically:
  all of its writes become visible together, or none. Checks ``fn`` makes (a record equals
  the one the caller read, a tag is free) still hold at commit: no other commit interleaves
  with them (LMDB: one writer at a time; a database backend: serializable isolation or row
  locks, retried on conflict).
* ``fn`` may be run more than once (a retry after a conflict, or after the LMDB map grew), so
  it must have no effects outside the transaction that a second run would repeat wrongly.
  An exception from ``fn`` aborts the transaction and propagates unchanged.
* Durable mode: a write is on stable storage when :meth:`Index.write` returns. Otherwise it
  survives a process crash but perhaps not an OS crash until :meth:`Index.sync`.
* Backend failures (a full disk, a lost connection) raise ServerException and change nothing.
* A read-only index refuses :meth:`Index.write` with ServerException.
* Threads may share an index; several processes may open the same one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .records import BlobRecord, ImageRecord, LinkRecord, RepoRecord, UploadRecord

__all__ = [
    "BlobReads", "BlobWrites", "DocReads", "DocWrites", "ImageReads", "ImageWrites", "Index", "IndexCounts", "ReadTxn",
    "RepoReads", "RepoWrites", "UploadReads", "UploadWrites", "WriteTxn",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class IndexCounts:
    repositories: int
    links: int
    blobs: int
    uploads: int


class RepoReads(Protocol):
    def get_repo(self, registry_id: str, name: str) -> RepoRecord | None: ...

    def iter_repos(self, registry_id: str, after: str | None = None) -> Iterator[RepoRecord]:
        """Repositories of a registry in name order, starting after ``after``."""
        ...

    def count_repos(self, registry_id: str) -> int:
        """Repositories of a registry (kept by every write: no scan)."""
        ...

    def registry_links(self, registry_id: str, dgs: list[bytes]) -> set[bytes]:
        """Which of ``dgs`` some repository of ``registry_id`` links (tenancy: content another
        registry holds is never revealed)."""
        ...


class RepoWrites(RepoReads, Protocol):
    def next_repo_id(self) -> int:
        """A repository id never answered before in this index."""
        ...

    def put_repo(self, rec: RepoRecord) -> None: ...

    def delete_repo(self, rec: RepoRecord) -> None: ...


class UploadReads(Protocol):
    def get_upload(self, uid: bytes) -> UploadRecord | None: ...

    def uploads_idle_since(self, before: float, limit: int | None = None) -> list[tuple[bytes, UploadRecord]]:
        """Uploads last active before ``before``, oldest first (an ordered index, not a scan)."""
        ...

    def repo_upload_ids(self, repo_id: int) -> list[bytes]: ...

    def count_uploads(self, registry_id: str) -> int:
        """Uploads in progress in a registry's repositories (kept by every write: no scan)."""
        ...

    def iter_uploads(self) -> Iterator[tuple[bytes, UploadRecord]]:
        """Every upload in progress, in id order."""
        ...


class UploadWrites(UploadReads, Protocol):
    def put_upload(self, uid: bytes, rec: UploadRecord, old: UploadRecord | None = None) -> None:
        """Insert (``old=None``) or replace ``old`` with ``rec``."""
        ...

    def delete_upload(self, uid: bytes, rec: UploadRecord) -> None: ...


class BlobReads(Protocol):
    def get_blob(self, dg: bytes) -> BlobRecord | None: ...

    def iter_blobs(self) -> Iterator[tuple[bytes, BlobRecord]]: ...

    def blob_link_repos(self, dg: bytes) -> list[int]:
        """Ids of the repositories that link a blob."""
        ...

    def blob_is_linked(self, dg: bytes) -> bool: ...

    def get_link(self, repo_id: int, dg: bytes) -> LinkRecord | None: ...

    def get_links(self, repo_id: int, dgs: list[bytes]) -> dict[bytes, tuple[int, str]]:
        """(size, media type) of the links among ``dgs`` (the batch availability hot path)."""
        ...

    def iter_links(self, repo_id: int) -> Iterator[tuple[bytes, LinkRecord]]:
        """A repository's layers in digest order."""
        ...

    def iter_all_links(self) -> Iterator[tuple[int, bytes, LinkRecord]]: ...


class BlobWrites(BlobReads, Protocol):
    def put_blob(self, dg: bytes, rec: BlobRecord) -> None: ...

    def delete_blob(self, dg: bytes) -> None: ...

    def put_link(self, repo_id: int, dg: bytes, rec: LinkRecord) -> None:
        """Insert or replace a link (and its reverse entry)."""
        ...

    def delete_link(self, repo_id: int, dg: bytes) -> None: ...


class ImageReads(Protocol):
    def get_image(self, repo_id: int, dg: bytes, *, with_manifest: bool = True) -> ImageRecord | None:
        """``with_manifest=False`` may leave ``manifest`` empty (a cheaper read)."""
        ...

    def image_count(self, repo_id: int) -> int: ...

    def iter_image_digests(self, repo_id: int, start: bytes | None = None, *,
                           inclusive: bool = True) -> Iterator[bytes]:
        """A repository's image digests in digest order, from ``start`` on."""
        ...

    def get_tag(self, repo_id: int, tag: str) -> bytes | None: ...

    def image_tags(self, repo_id: int, dg: bytes) -> list[str]:
        """The tags of an image, in tag order."""
        ...

    def iter_tags(self, repo_id: int, after: str | None = None) -> Iterator[tuple[str, bytes]]:
        """(tag, image digest) of a repository in tag order (UTF-8 bytes), after ``after``."""
        ...

    def referrers(self, repo_id: int, subject: bytes) -> list[bytes]:
        """Digests of the repository's manifests whose ``subject`` is ``subject``, in digest
        order (the subject itself need not be stored)."""
        ...

    def image_is_referenced(self, repo_id: int, child: bytes) -> bool:
        """Whether a manifest list or index of the repository references the image."""
        ...

    def layer_is_referenced(self, repo_id: int, layer: bytes) -> bool:
        """Whether an image of the repository references the blob (as a layer or config)."""
        ...


class ImageWrites(ImageReads, Protocol):
    def put_image(self, repo_id: int, dg: bytes, rec: ImageRecord) -> None:
        """Insert a new image (the caller checked it is new) and count it."""
        ...

    def delete_image(self, repo_id: int, dg: bytes) -> None: ...

    def put_tag(self, repo_id: int, tag: str, dg: bytes) -> None: ...

    def delete_tag(self, repo_id: int, tag: str, dg: bytes) -> None: ...

    def add_image_ref(self, repo_id: int, child: bytes, parent: bytes) -> None: ...

    def delete_image_ref(self, repo_id: int, child: bytes, parent: bytes) -> None: ...

    def add_layer_ref(self, repo_id: int, layer: bytes, image: bytes, media_type: str) -> None: ...

    def add_referrer(self, repo_id: int, subject: bytes, referrer: bytes) -> None: ...

    def delete_referrer(self, repo_id: int, subject: bytes, referrer: bytes) -> None: ...

    def delete_layer_ref(self, repo_id: int, layer: bytes, image: bytes) -> None: ...


class DocReads(Protocol):
    """Small documents of the control plane (policies, rules, configurations, scan results),
    stored as opaque bytes under (``kind``, ``key``); :mod:`ecrstore.documents` owns the kinds,
    key layouts and encodings."""

    def get_doc(self, kind: str, key: str) -> bytes | None: ...

    def iter_docs(self, kind: str, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """(key, value) of the documents of ``kind`` whose key starts with ``prefix``, in key
        order (UTF-8 bytes)."""
        ...


class DocWrites(DocReads, Protocol):
    def put_doc(self, kind: str, key: str, value: bytes) -> None:
        """Insert or replace."""
        ...

    def delete_doc(self, kind: str, key: str) -> bool:
        """Remove; whether there was one."""
        ...


class ReadTxn(RepoReads, UploadReads, BlobReads, ImageReads, DocReads, Protocol):
    """Everything a read snapshot offers."""

    def counts(self) -> IndexCounts: ...


class WriteTxn(ReadTxn, RepoWrites, UploadWrites, BlobWrites, ImageWrites, DocWrites, Protocol):
    """Everything a write transaction offers (its reads see its own writes)."""


class Index(Protocol):
    """An index backend; see the module docstring for the transaction contract."""

    durable: bool
    read_only: bool

    def read(self) -> AbstractContextManager[ReadTxn]: ...

    def write(self, fn: Callable[[WriteTxn], T]) -> T: ...

    def sync(self) -> None:
        """Make every commit so far durable (what non-durable mode defers)."""
        ...

    def close(self) -> None:
        """Release the backend. Idempotent."""
        ...
