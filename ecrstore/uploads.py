"""The upload state machine: initiate → parts → complete, and the reclaiming of idle uploads.

This is ECR's layer-upload policy, the same over every backend pair (:mod:`ecrstore.index`,
:mod:`ecrstore.blobs`). Invariants (each relied on by crash recovery and tested by killing a
writer at random points):

* An upload's data exists from initiation on; bytes ``[0, received)`` of it are exactly the
  acknowledged parts. Bytes past ``received`` are leftovers of a failed or killed attempt; the
  next part overwrites them and the data is cut to size.
* The index record commits ``received`` together with the sha256 midstate of those bytes, so
  completion finalises the digest without reading the layer. If the stored state is unusable
  or behind, the gap is re-hashed from the data (never trusted blindly).
* One writer per upload at a time: every part and the completion hold the blob backend's
  writer lock on the data (threads and processes alike), and re-read the record under it.
  The index write lock is taken only for the final short commit — never while hashing or
  writing data.
* Data durable, then index commit: part data is durable before the record that acknowledges
  it commits; at completion the bytes are published under their digest (durably) before the
  index links them; the upload's own name is removed only after that commit. A published blob
  is never modified.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import xxhash

from ._sha256 import Sha256
from .blobs.base import BlobStore, UploadData
from .digest import Digest
from .errors import (
    EmptyUploadException,
    HashStateError,
    InvalidLayerException,
    InvalidLayerPartException,
    LayerAlreadyExistsException,
    LayerPartTooSmallException,
    LimitExceededException,
    ServerException,
    UploadNotFoundException,
    repository_not_found,
    storage_failure,
)
from .hashing import PartSource, hash_file
from .index.base import Index, WriteTxn
from .index.records import BlobRecord, LinkRecord, RepoRecord, UploadRecord
from .limits import MAX_LAYER_BYTES, MAX_PARTS

log = logging.getLogger("ecrstore")

__all__ = ["Uploads", "Completed", "UploadStream"]

# A part at least this large, when it is the only one being ingested in this process, is written
# by a pool thread while the caller hashes it: the copy into the page cache and the sha256 then
# proceed on two cores. With several parts in flight the cores are busy anyway, and each part is
# written and hashed by its own thread (no hand-off, no oversubscription).
_OVERLAP_BYTES = 1 << 20
# Duplicate uploads at least this large are unlinked by a pool thread after the commit.
_BACKGROUND_UNLINK_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class Completed:
    digest: Digest
    size: int


class Uploads:
    """Upload sessions of one store. Thread-safe; several processes may share the store.
    ``min_part_size`` is checked at completion, as ECR does."""

    def __init__(self, index: Index, blobs: BlobStore, *, min_part_size: int, upload_ttl: float,
                 max_per_registry: int, pool: Callable[[], ThreadPoolExecutor]) -> None:
        self._index = index
        self._max_open = max_per_registry
        self._blobs = blobs
        self._min_part = min_part_size
        self._ttl = upload_ttl
        self._pool = pool  # the store's I/O threads of this process
        self._ingesting = 0
        self._ingesting_lock = threading.Lock()

    # --- initiate ------------------------------------------------------------------------

    def initiate(self, repo: RepoRecord) -> str:
        """Create an upload of ``repo``; durable when it returns (in durable mode)."""
        uid = uuid.uuid4()
        # The data exists before the record does: parts then open it without creating it, so
        # a part racing a completion can never resurrect a consumed upload's data.
        self._blobs.create_upload(uid.hex)
        now = time.time()

        def commit(t: WriteTxn) -> None:
            # The same repository (by id: its settings and tags may have changed meanwhile).
            cur = t.get_repo(repo.registry_id, repo.name)
            if cur is None or cur.id != repo.id:
                raise repository_not_found(repo.registry_id, repo.name)
            if t.count_uploads(repo.registry_id) >= self._max_open:
                raise LimitExceededException(
                    f"The registry with id '{repo.registry_id}' has its maximum of {self._max_open} uploads "
                    "in progress; complete or abort some first"
                )
            t.put_upload(uid.bytes, UploadRecord(repo.id, now, now))

        try:
            self._index.write(commit)
        except BaseException:
            self._blobs.discard_upload(uid.hex)
            raise
        return str(uid)

    # --- parts ---------------------------------------------------------------------------

    def upload_part(self, repo: RepoRecord, upload_id: str, uid: bytes, first: int, last: int,
                    src: PartSource) -> int:
        """Apply one part; answer lastByteReceived. See the module invariants."""
        rec = self._live(repo, upload_id, uid)
        with self._blobs.open_upload(uid.hex(), received=rec.received) as data:
            rec = self._live(repo, upload_id, uid)  # fresh, under the upload's lock
            size = src.size
            if rec.parts and first == rec.last_first and last == rec.last_last and size == last - first + 1:
                if src.xxh128() == rec.last_xxh:
                    return rec.received - 1  # the exact re-send of the last part: already applied
            if size == 0:
                raise self._bad_part(repo, upload_id, rec, "The layer part is empty")
            if last < first or size != last - first + 1:
                raise self._bad_part(
                    repo, upload_id, rec,
                    f"The part size {size} does not match the byte range {first}-{last}",
                )
            if first != rec.received:
                raise self._bad_part(
                    repo, upload_id, rec,
                    f"The part starts at byte {first}; the next expected byte is {rec.received}",
                )
            if rec.parts + 1 > MAX_PARTS:
                raise LimitExceededException(f"An upload may have at most {MAX_PARTS} parts")
            if last + 1 > MAX_LAYER_BYTES:
                raise LimitExceededException(f"A layer may be at most {MAX_LAYER_BYTES} bytes")

            hasher = self._resume(data, rec, upload_id)
            if data.size() > rec.received:
                data.truncate(rec.received)  # leftovers of an earlier failed attempt
            try:
                hasher, xxh = self._ingest(data, first, src, hasher)
            except OSError:
                # A full disk or an I/O error mid-part: give back what the part took, so only
                # acknowledged bytes stay (best effort: the next part cuts them anyway).
                try:
                    data.truncate(rec.received)
                except OSError:
                    pass
                raise
            end = last + 1
            prev_size = rec.last_last - rec.last_first + 1
            new = dataclasses.replace(
                rec, received=end, parts=rec.parts + 1, updated=time.time(),
                small_part=rec.small_part or (rec.parts > 0 and prev_size < self._min_part),
                last_first=first, last_last=last, last_xxh=xxh, state=hasher.export_state(),
            )

            def commit(t: WriteTxn) -> None:
                cur = t.get_upload(uid)
                if cur != rec:  # purged or its repository deleted meanwhile
                    raise _upload_not_found(upload_id, repo)
                t.put_upload(uid, new, old=cur)

            self._index.write(commit)
            return last

    def _ingest(self, data: UploadData, offset: int, src: PartSource, hasher: Sha256) -> tuple[Sha256, bytes]:
        """Write the part at ``offset`` (durable on return in durable mode); answer the sha256
        advanced over it and its xxh3-128."""
        if src.view is not None:
            view = src.view
            with self._ingesting_lock:
                self._ingesting += 1
                solo = self._ingesting == 1
            try:
                if not solo or view.nbytes < _OVERLAP_BYTES:
                    data.write(offset, view)
                    hasher.update(view)
                    return hasher, xxhash.xxh3_128_digest(view)
                # write (+ fdatasync) on a pool thread while this one hashes
                pending = self._pool().submit(data.write, offset, view)
                try:
                    hasher.update(view)
                    xxh = xxhash.xxh3_128_digest(view)
                finally:
                    pending.result()
                return hasher, xxh
            finally:
                with self._ingesting_lock:
                    self._ingesting -= 1
        # A file: copied kernel-side and hashed through the mmap path, never through Python
        # memory; both at once (each releases the GIL).
        pending = self._pool().submit(data.copy_from, src.fd, src.offset, src.size, offset)
        try:
            hasher = hash_file(src.fd, src.offset, src.size, state=hasher)
            xxh = src.xxh128()
        finally:
            pending.result()
        return hasher, xxh

    # --- streamed bodies (OCI chunks) ----------------------------------------------------

    def open_stream(self, repo: RepoRecord, upload_id: str, uid: bytes, first: int | None) -> UploadStream:
        """Take the upload's writer lock (without waiting) for one streamed append at ``first``
        (None: wherever the upload is). Raises UploadNotFound, and InvalidLayerPart (with
        ``last_valid_byte_received``) when ``first`` is not the next expected byte or another
        request is writing the upload right now."""
        rec = self._live(repo, upload_id, uid)
        holder = self._blobs.open_upload(uid.hex(), received=rec.received, wait=False)
        try:
            data = holder.__enter__()
        except BlockingIOError:
            raise self._bad_part(repo, upload_id, rec, "The upload is being written by another request") from None
        try:
            rec = self._live(repo, upload_id, uid)  # fresh, under the upload's lock
            if first is not None and first != rec.received:
                raise self._bad_part(
                    repo, upload_id, rec, f"The chunk starts at byte {first}; the next expected byte is {rec.received}"
                )
            hasher = self._resume(data, rec, upload_id)
            if data.size() > rec.received:
                data.truncate(rec.received)  # leftovers of an earlier failed attempt
        except BaseException:
            holder.__exit__(None, None, None)
            raise
        return UploadStream(self, holder, data, repo, upload_id, uid, rec, hasher)

    def status(self, repo: RepoRecord, upload_id: str, uid: bytes) -> int:
        """Bytes acknowledged so far (UploadNotFound: unknown, expired, another repository's)."""
        return self._live(repo, upload_id, uid).received

    def _commit_stream(self, stream: UploadStream) -> UploadRecord:
        """Acknowledge what the stream wrote since its last commit; answer the new record."""
        rec, end = stream.record, stream.offset
        prev_size = rec.last_last - rec.last_first + 1
        new = dataclasses.replace(
            rec, received=end, parts=rec.parts + 1, updated=time.time(),
            small_part=rec.small_part or (rec.parts > 0 and prev_size < self._min_part),
            last_first=rec.received, last_last=end - 1, last_xxh=bytes(16), state=stream.hasher.export_state(),
        )

        def commit(t: WriteTxn) -> None:
            cur = t.get_upload(stream.uid)
            if cur != rec:  # purged or its repository deleted meanwhile
                raise _upload_not_found(stream.upload_id, stream.repo)
            t.put_upload(stream.uid, new, old=cur)

        self._index.write(commit)
        return new

    # --- completion ----------------------------------------------------------------------

    def complete(self, repo: RepoRecord, upload_id: str, uid: bytes, digests: list[Digest], *,
                 part_minimum: bool = True) -> Completed:
        """Finalise, verify, store and link the layer, in the service's check order.

        O(1) in the layer's size: the digest is finalised from the stored midstate; the data
        is published under its digest (or dropped when the blob is already stored).
        ``part_minimum=False`` skips the JSON API's part-size rule (OCI chunks have none).
        """
        rec = self._live(repo, upload_id, uid)
        if rec.parts == 0:
            raise self._empty(repo, upload_id)
        upload = uid.hex()
        with self._blobs.open_upload(upload, received=rec.received) as data:
            rec = self._live(repo, upload_id, uid)
            if rec.parts == 0:
                raise self._empty(repo, upload_id)
            if rec.small_part and part_minimum:
                raise LayerPartTooSmallException(
                    f"All layer parts except the last part should be at least {_mb(self._min_part)}"
                )
            computed = Digest.from_raw(self._resume(data, rec, upload_id).digest())
            if computed not in digests:
                raise InvalidLayerException("None of the provided layer digests match the calculated layer digest")
            dg = computed.raw
            with self._index.read() as t:
                linked = t.get_link(repo.id, dg) is not None
                stored = t.get_blob(dg) is not None
            if linked:
                self._consume(uid, rec, upload)
                raise _already_exists(computed, repo)
            if data.size() > rec.received:
                data.truncate(rec.received)
            placement: str | None = None  # ours, once published
            if not stored:
                placement = self._blobs.publish(upload, computed.hex)
            now = time.time()

            def commit(t: WriteTxn) -> tuple[bool, bool]:
                nonlocal placement
                if t.get_upload(uid) != rec:
                    raise _upload_not_found(upload_id, repo)
                t.delete_upload(uid, rec)
                blob = t.get_blob(dg)
                adopted = blob is None
                if adopted:
                    if placement is None:  # the stored blob was reclaimed since we looked: use ours
                        placement = self._blobs.publish(upload, computed.hex)
                    t.put_blob(dg, BlobRecord(rec.received, now, placement))
                if t.get_link(repo.id, dg) is not None:
                    return False, adopted  # a racing completion of the same digest won
                t.put_link(repo.id, dg, LinkRecord(rec.received, now))
                return True, adopted

            won, adopted = self._index.write(commit)
            # Only now, with the index committed, does the upload's own name go: until then a
            # crash leaves the upload whole (its record and its data), free to complete again.
            # A large duplicate of stored content takes time to free in proportion to its
            # size, which the caller need not wait for (a crash leaves an orphan for purge).
            # Published but not adopted (a racing completion's blob was recorded first): a
            # placement of its own is freed.
            big = rec.received >= _BACKGROUND_UNLINK_BYTES
            self._blobs.discard_upload(upload, background=placement is None and big,
                                       orphaned=placement is not None and not adopted)
            if not won:
                raise _already_exists(computed, repo)
            return Completed(computed, rec.received)

    def _consume(self, uid: bytes, rec: UploadRecord, upload: str) -> None:
        def commit(t: WriteTxn) -> None:
            if t.get_upload(uid) == rec:
                t.delete_upload(uid, rec)

        self._index.write(commit)
        self._blobs.discard_upload(upload)

    # --- shared steps --------------------------------------------------------------------

    def _live(self, repo: RepoRecord, upload_id: str, uid: bytes) -> UploadRecord:
        with self._index.read() as t:
            rec = t.get_upload(uid)
        if rec is None or rec.repo_id != repo.id or rec.updated + self._ttl < time.time():
            raise _upload_not_found(upload_id, repo)
        return rec

    def _resume(self, data: UploadData, rec: UploadRecord, upload_id: str) -> Sha256:
        """The sha256 state after ``rec.received`` bytes, re-hashing from the data if needed."""
        hasher = None
        if rec.state:
            try:
                hasher = Sha256.from_state(rec.state)
            except HashStateError as e:
                log.warning("upload %s: stored sha256 state unusable (%s); re-hashing its data", upload_id, e)
        if hasher is None or hasher.nbytes > rec.received:
            hasher = Sha256()
        if hasher.nbytes < rec.received:
            hasher = data.hash_range(hasher, hasher.nbytes, rec.received)
        return hasher

    def _bad_part(self, repo: RepoRecord, upload_id: str, rec: UploadRecord, message: str) -> InvalidLayerPartException:
        return InvalidLayerPartException(
            message,
            registry_id=repo.registry_id,
            repository_name=repo.name,
            upload_id=upload_id,
            last_valid_byte_received=rec.received - 1 if rec.received else None,
        )

    def _empty(self, repo: RepoRecord, upload_id: str) -> EmptyUploadException:
        return EmptyUploadException(
            f"The upload with id '{upload_id}' in the repository with name '{repo.name}' in registry "
            f"with id '{repo.registry_id}' cannot be completed because it does not have any parts"
        )

    # --- reclaiming ----------------------------------------------------------------------

    def purge_idle(self, now: float | None = None, idle: float | None = None) -> tuple[int, int]:
        """Remove uploads idle longer than ``idle`` seconds (default: the TTL); answer
        (uploads removed, bytes freed).

        Found through the index's expiry order, not by walking the tree. An upload whose data
        is held by a writer at that moment is left for the next purge.
        """
        now = time.time() if now is None else now
        with self._index.read() as t:
            stale = t.uploads_idle_since(now - (self._ttl if idle is None else idle))
        removed = freed = 0
        for uid, rec in stale:
            if self._remove(uid, rec):
                removed += 1
                freed += rec.received
        return removed, freed

    def abort(self, uid: bytes, upload_id: str) -> UploadRecord | None:
        """Remove one upload now (its record, then its data); answer its last record, or None
        when it does not exist. Waits for a writer holding it."""
        with self._index.read() as t:
            rec = t.get_upload(uid)
        if rec is None:
            return None
        with self._blobs.open_upload(uid.hex(), received=0):
            def commit(t: WriteTxn) -> UploadRecord | None:
                cur = t.get_upload(uid)
                if cur is not None:
                    t.delete_upload(uid, cur)
                return cur

            cur = self._index.write(commit)
            if cur is not None:
                self._blobs.discard_upload(uid.hex())
            return cur

    def _remove(self, uid: bytes, rec: UploadRecord) -> bool:
        with self._blobs.try_open_upload(uid.hex()) as data:
            if data is None:
                return False  # being written right now: not idle after all

            def commit(t: WriteTxn) -> bool:
                if t.get_upload(uid) != rec:
                    return False
                t.delete_upload(uid, rec)
                return True

            if self._index.write(commit):
                self._blobs.discard_upload(uid.hex())
                return True
            return False

    def remove_data(self, uids: list[bytes]) -> None:
        """Delete the data of uploads whose records are gone (repository deletion)."""
        for uid in uids:
            self._blobs.discard_upload(uid.hex())


class UploadStream:
    """One streamed append to an upload (an OCI PATCH or PUT body), holding its writer lock.

    :meth:`write` takes chunks as they arrive: written back to back (durability deferred) and
    hashed into the upload's sha256 as they go, never re-read. :meth:`commit` makes the bytes
    durable, then acknowledges them in the index in one transaction (the midstate with them),
    answering the upload's new length; a stream closed without committing gives back what it
    wrote, so only acknowledged bytes stay. Calls come from one thread at a time (any thread:
    the lock is held by the open file, not the thread); :meth:`close` is idempotent, waits for
    a write still running in another thread, and after it write and commit raise
    ServerException (its descriptor may already name another upload's file).
    Errors: LimitExceeded past the layer size limit, UploadNotFound at commit when the upload
    was purged or its repository deleted meanwhile, ServerException when the medium fails.
    """

    def __init__(self, uploads: Uploads, holder: Any, data: UploadData, repo: RepoRecord, upload_id: str,
                 uid: bytes, rec: UploadRecord, hasher: Sha256) -> None:
        self._uploads = uploads
        self._holder = holder
        self._data = data
        self.repo = repo
        self.upload_id = upload_id
        self.uid = uid
        self.record = rec
        self.hasher = hasher
        #: Where the next chunk goes: the upload's length once everything written commits.
        self.offset = rec.received
        self._closed = False
        # Held by each call: a close racing a write (a cancelled request) waits for it.
        self._lock = threading.Lock()
        self._failed = False

    def write(self, chunks: Sequence[bytes]) -> None:
        with self._lock:
            self._check_open()
            size = sum(len(c) for c in chunks)
            if self.offset + size > MAX_LAYER_BYTES:
                raise LimitExceededException(f"A layer may be at most {MAX_LAYER_BYTES} bytes")
            # The write (a direct DMA that waits for the device) runs on an I/O thread while this
            # one hashes: the disk and the sha256 work at once, as for large parts.
            pending = self._uploads._pool().submit(self._data.append, self.offset, chunks)
            try:
                for chunk in chunks:
                    self.hasher.update(chunk)
            finally:
                error = pending.exception()  # waits: the write never outlives this call
            if error is not None:
                # The sha256 has advanced past what the file holds: this stream can only close.
                self._failed = True
                if isinstance(error, OSError):
                    raise storage_failure(error) from error
                raise error
            self.offset += size

    def commit(self) -> int:
        """Acknowledge what was written since the last commit (nothing to do for an empty body);
        the upload's length. A stream may commit more than once."""
        with self._lock:
            self._check_open()
            if self.offset > self.record.received:
                try:
                    self._data.flush()
                except OSError as e:
                    # The upload taken away meanwhile (its data with it) is what the client hears.
                    with self._uploads._index.read() as t:
                        gone = t.get_upload(self.uid) != self.record
                    if gone:
                        raise _upload_not_found(self.upload_id, self.repo) from e
                    raise storage_failure(e) from e
                # The record the next commit checks against is the one this one wrote.
                self.record = self._uploads._commit_stream(self)
            return self.offset

    def _check_open(self) -> None:
        if self._closed:
            raise ServerException(f"the stream into upload {self.upload_id} is closed")
        if self._failed:
            raise ServerException(f"a write into upload {self.upload_id} failed: the stream can only be closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self.offset > self.record.received:  # written since the last commit: given back
                    try:
                        self._data.truncate(self.record.received)
                    except OSError:
                        pass  # best effort: the next writer cuts leftovers anyway
            finally:
                self._holder.__exit__(None, None, None)

    def __enter__(self) -> UploadStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mb(n: int) -> str:
    return f"{n // 2**20}MB" if n % 2**20 == 0 else f"{n} bytes"


def _upload_not_found(upload_id: str, repo: RepoRecord) -> UploadNotFoundException:
    return UploadNotFoundException(
        f"The upload with id '{upload_id}' does not exist in the repository with name "
        f"'{repo.name}' in the registry with id '{repo.registry_id}'"
    )


def _already_exists(digest: Digest, repo: RepoRecord) -> LayerAlreadyExistsException:
    return LayerAlreadyExistsException(
        f"The layer with digest '{digest}' already exists in the repository with name "
        f"'{repo.name}' in registry with id '{repo.registry_id}'"
    )
