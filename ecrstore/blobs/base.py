"""What a blob backend must do: hold layer bytes, for uploads in progress and by digest.

A blob backend knows nothing of ECR: it stores bytes under names the engine gives it (an
upload's 32-hex id while bytes arrive, then a sha256 hex digest) and answers the engine's
questions about them. Every rule — what a part may be, the sha256 midstates, "data durable,
then index commit", when something may be deleted — lives above, in the engine, and is the
same whatever the backend. The contract, checked for every backend by ``tests/backends``:

* **Ingest.** :meth:`BlobStore.create_upload` makes an empty staging area;
  :meth:`BlobStore.open_upload` gives its one writer (threads and processes exclude each
  other) an :class:`UploadData` to write parts at offsets. Writes are durable when they
  return in durable mode. A staging area is never readable as a blob.
* **Publish.** :meth:`BlobStore.publish` makes an upload's bytes readable under a digest, in
  time independent of their size (a rename, a link, or completing the object in place: never
  a copy), durable on return in durable mode, and answers the blob's *placement*: "" where
  the digest itself names the content (a content-addressed tree), else where the bytes are
  (S3: the object's name), which the index records beside the digest and hands back to every
  read and delete. It is idempotent: publishing content already published under that digest
  succeeds. The upload keeps its own name until :meth:`BlobStore.discard_upload`, so a crash
  between publish and the index commit loses nothing.
* **Read.** :meth:`BlobStore.open` answers a reader only for content whose stored size is the
  size the index recorded; anything else (missing, truncated) is ServerException before a
  byte is read, so a damaged blob is never served as a short 200.
* **Delete.** :meth:`BlobStore.retire` marks a blob (hides it, or records that it is being
  deleted) before the index commit that forgets it; :meth:`Retired.restore` undoes that if
  the commit fails, :meth:`Retired.drop` frees the bytes after it. So bytes are deleted only
  once the index no longer references them, and :meth:`BlobStore.recover_retired` finishes
  what a crash interrupted at any step.
* **List.** :meth:`BlobStore.iter_blobs` and :meth:`BlobStore.iter_uploads` list what is
  stored, with ages, so the engine can find orphans (stored but not in the index).
* Failures of the medium raise OSError (the engine translates it to ServerException).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from .._sha256 import Sha256

__all__ = ["BlobReader", "BlobStore", "Retired", "StoredFile", "UploadData"]


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An entry of a listing. ``name`` is a hex digest (blobs of a content-addressed backend),
    a placement (``digest`` then names the content published there) or an upload id
    (uploads); ``temporary`` marks a placement cut short (never a blob, always safe to
    remove once old)."""

    name: str
    size: int
    changed_at: float
    temporary: bool = False
    digest: str = ""


class BlobReader(Protocol):
    """Read access to one stored blob. Not for sharing between threads (open one each)."""

    digest: str
    size: int

    def read(self, n: int = -1) -> bytes: ...

    def seek(self, offset: int, whence: int = 0) -> int: ...

    def tell(self) -> int: ...

    def iter_chunks(self, size: int = 1 << 20, offset: int = 0, length: int | None = None) -> Iterator[bytes]: ...

    def view(self) -> memoryview | None:
        """A zero-copy view of the whole blob where the backend can map it, else None."""
        ...

    def hash(self) -> Sha256:
        """The sha256 of the stored bytes (read in place where the backend can)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> BlobReader: ...

    def __exit__(self, *exc: object) -> None: ...


class UploadData(Protocol):
    """The bytes of one upload in progress, held by its one writer."""

    def size(self) -> int:
        """Bytes present; more than acknowledged after a failed attempt (leftovers)."""
        ...

    def truncate(self, size: int) -> None:
        """Cut the data back to ``size`` bytes (the acknowledged length)."""
        ...

    def write(self, offset: int, data: memoryview) -> None:
        """Write ``data`` at ``offset``; durable on return in durable mode."""
        ...

    def copy_from(self, fd: int, src_offset: int, count: int, offset: int) -> None:
        """Write ``count`` bytes of the open file ``fd`` from ``src_offset`` at ``offset``,
        without passing them through Python where the backend can; durable on return."""
        ...

    def append(self, offset: int, chunks: Sequence[bytes]) -> None:
        """Write ``chunks`` back to back at ``offset`` without waiting for durability (a
        streamed body: :meth:`flush` follows before anything acknowledges them)."""
        ...

    def flush(self) -> None:
        """Make every :meth:`append` so far durable (in durable mode)."""
        ...

    def hash_range(self, hasher: Sha256, start: int, end: int) -> Sha256:
        """Advance ``hasher`` (a copy) over bytes ``[start, end)`` of the data."""
        ...


class Retired(Protocol):
    def restore(self) -> None:
        """Undo :meth:`BlobStore.retire` (the index commit that forgot the blob failed)."""
        ...

    def drop(self) -> None:
        """Free the bytes for good (the index no longer references them)."""
        ...


class BlobStore(Protocol):
    durable: bool

    def create_upload(self, upload: str) -> None:
        """An empty staging area for ``upload`` (a 32-hex id); it exists before the index
        records the upload, so a part can never recreate a consumed upload's data."""
        ...

    def open_upload(self, upload: str, *, received: int, wait: bool = True) -> AbstractContextManager[UploadData]:
        """The upload's data, locked for this writer until the context exits. Raises
        ServerException when acknowledged bytes (``received`` > 0) are missing, and with
        ``wait=False`` BlockingIOError at once while another writer holds it."""
        ...

    def try_open_upload(self, upload: str) -> AbstractContextManager[UploadData | None]:
        """Like :meth:`open_upload` without waiting: None while another writer holds it;
        an upload with no data at all is opened empty."""
        ...

    def discard_upload(self, upload: str, *, background: bool = False, orphaned: bool = False) -> None:
        """Remove an upload's staging name (its bytes live on if published). ``background``:
        the caller need not wait for the space to be freed (a crash leaves an orphan).
        ``orphaned``: the upload was published but the index recorded another placement for
        its digest (a racing completion won), so a placement of its own is freed too."""
        ...

    def publish(self, upload: str, hexdigest: str) -> str:
        """Publish an open upload's bytes under ``hexdigest``; answer the placement."""
        ...

    def open(self, hexdigest: str, size: int, placement: str = "") -> BlobReader: ...

    def stat(self, hexdigest: str, placement: str = "") -> int | None:
        """The stored size of a blob, or None when it is not stored."""
        ...

    def presigned_url(self, hexdigest: str, expires_in: float, placement: str = "") -> str | None:
        """A URL a client can GET the blob from directly, or None (served by the front end)."""
        ...

    def retire(self, hexdigest: str, placement: str = "") -> Retired | None:
        """Mark a blob ahead of the index commit that forgets it; None when not stored."""
        ...

    def recover_retired(self, lookup: Callable[[str], str | None]) -> int:
        """Restore retired blobs the index still records (``lookup(hexdigest)`` answers the
        recorded placement, None when not recorded), free the others; answer how many."""
        ...

    def delete_blob(self, name: str) -> None:
        """Remove a stored blob or a temporary placement by its listed name."""
        ...

    def iter_blobs(self) -> Iterator[StoredFile]: ...

    def iter_uploads(self) -> Iterator[StoredFile]: ...

    def sync(self) -> None:
        """Make every write so far durable (what non-durable mode defers)."""
        ...
