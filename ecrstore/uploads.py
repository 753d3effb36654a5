"""The upload state machine: initiate → parts → complete, and the reclaiming of idle uploads.

Invariants (each relied on by crash recovery and tested by killing a writer at random points):

* An upload's data file ``uploads/<uuid>`` exists from initiation on; bytes ``[0, received)``
  of it are exactly the acknowledged parts. Bytes past ``received`` are leftovers of a failed
  or killed attempt; the next part overwrites them and the file is cut to size.
* The index record commits ``received`` together with the sha256 midstate of those bytes, so
  completion finalises the digest without reading the layer. If the stored state is unusable
  or behind, the gap is re-hashed from the data file (never trusted blindly).
* One writer per upload at a time: every part and the completion hold an exclusive ``flock`` on
  the data file (threads and processes alike), and re-read the record under it. The LMDB write
  lock is taken only for the final short commit — never while hashing or writing data.
* Durable mode: part data is ``fdatasync``-ed before the record that acknowledges it commits;
  at completion the file gets its blob name (hard link + rename) and the directory is fsync-ed
  before the index links it; the upload's own name is removed only after that commit. A blob
  file is never modified once it has its name (mode 0444 from then on).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import logging
import mmap
import os
import threading
import time
import uuid
from typing import Any

import xxhash

from ._sha256 import Sha256
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
)
from .hashing import hash_file
from .index import Index, Txn
from .records import BlobRecord, LinkRecord, RepoRecord, UploadRecord
from .layout import Layout, fsync_dir, pwrite_all, pwrite_durable, unlink_quiet

log = logging.getLogger("ecrstore")

__all__ = ["Uploads", "PartSource", "FileRange", "MAX_PARTS", "MAX_LAYER_BYTES"]

MAX_PARTS = 4200
MAX_LAYER_BYTES = 52_000 * 2**20
# A part at least this large, when it is the only one being ingested in this process, is written
# by a pool thread while the caller hashes it: the copy into the page cache and the sha256 then
# proceed on two cores. With several parts in flight the cores are busy anyway, and each part is
# written and hashed by its own thread (no hand-off, no oversubscription).
_OVERLAP_BYTES = 1 << 20
# Duplicate uploads at least this large are unlinked by a pool thread after the commit.
_BACKGROUND_UNLINK_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True, slots=True)
class FileRange:
    """A part given as bytes ``[offset, offset + length)`` of a file (``length=None``: to its
    end); ``file`` is a path or an open descriptor (left open). Import tools use it to ingest a
    tar member in place: hashed through the mmap path and copied kernel-side."""

    file: str | os.PathLike[str] | int
    offset: int = 0
    length: int | None = None


class PartSource:
    """A part's bytes: an in-memory buffer, or a byte range of a regular file (a path or a
    binary file: the whole file; a :class:`FileRange`: its range)."""

    __slots__ = ("view", "fd", "offset", "size", "_owned_fd")

    def __init__(self, blob: Any) -> None:
        self.view: memoryview | None = None
        self.fd = -1
        self.offset = 0
        self._owned_fd = False
        length = None
        if isinstance(blob, FileRange):
            if isinstance(blob.offset, bool) or not isinstance(blob.offset, int) or blob.offset < 0 or (
                    blob.length is not None and (not isinstance(blob.length, int) or blob.length < 0)):
                raise ValueError("a FileRange needs a non-negative offset and length")
            self.offset, length = blob.offset, blob.length
            blob = blob.file
            if isinstance(blob, int) and not isinstance(blob, bool):
                self.fd = blob
        if self.fd < 0 and isinstance(blob, (str, os.PathLike)):
            self.fd = os.open(blob, os.O_RDONLY | os.O_CLOEXEC)
            self._owned_fd = True
        elif self.fd < 0 and hasattr(blob, "fileno") and not _is_buffer(blob):
            self.fd = blob.fileno()
        elif self.fd < 0:
            self.view = memoryview(blob).cast("B")
        if self.view is not None:
            self.size = self.view.nbytes
            return
        end = os.fstat(self.fd).st_size
        self.size = end - self.offset if length is None else length
        if self.offset + self.size > end or self.size < 0:
            self.close()
            raise ValueError(f"the range {self.offset}+{self.size} runs past the end of the file ({end} bytes)")

    def xxh128(self) -> bytes:
        """xxh3-128 of the part (recognises an exact re-send of the previous part)."""
        if self.view is not None:
            return xxhash.xxh3_128_digest(self.view)
        if self.size == 0:
            return xxhash.xxh3_128_digest(b"")
        skew = self.offset % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(self.fd, self.size + skew, prot=mmap.PROT_READ, offset=self.offset - skew) as mm:
            with memoryview(mm) as view:
                return xxhash.xxh3_128_digest(view[skew:])

    def close(self) -> None:
        if self._owned_fd:
            os.close(self.fd)
            self._owned_fd = False


def _is_buffer(obj: Any) -> bool:
    try:
        memoryview(obj)
    except TypeError:
        return False
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class Completed:
    digest: Digest
    size: int


class Uploads:
    """Upload sessions of one store. Thread-safe; several processes may share the store."""

    def __init__(self, index: Index, layout: Layout, *, durable: bool, min_part_size: int,
                 upload_ttl: float, pool: Any) -> None:
        self._index = index
        self._layout = layout
        self._durable = durable
        self._min_part = min_part_size
        self._ttl = upload_ttl
        self._pool = pool  # callable returning the store's ThreadPoolExecutor
        self._ingesting = 0
        self._ingesting_lock = threading.Lock()

    # --- initiate ------------------------------------------------------------------------

    def initiate(self, repo: RepoRecord) -> str:
        """Create an upload of ``repo``; durable when it returns (in durable mode)."""
        uid = uuid.uuid4()
        path = self._layout.upload(uid.hex)
        # The data file exists before the record does: parts then open it without O_CREAT, so
        # a part racing a completion can never resurrect a consumed upload's file.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        now = time.time()

        def commit(t: Txn) -> None:
            if t.get_repo(repo.registry_id, repo.name) != repo:
                raise repository_not_found(repo.registry_id, repo.name)
            t.put_upload(uid.bytes, UploadRecord(repo.id, now, now))

        try:
            self._index.write(commit)
        except BaseException:
            unlink_quiet(path)
            raise
        return str(uid)

    # --- parts ---------------------------------------------------------------------------

    def upload_part(self, repo: RepoRecord, upload_id: str, uid: bytes, first: int, last: int,
                    src: PartSource) -> int:
        """Apply one part; answer lastByteReceived. See the module invariants."""
        rec = self._live(repo, upload_id, uid)
        with self._locked_file(repo, upload_id, uid, rec) as fd:
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

            hasher = self._resume(fd, rec, upload_id)
            if os.fstat(fd).st_size > rec.received:
                os.ftruncate(fd, rec.received)  # leftovers of an earlier failed attempt
            hasher, xxh = self._ingest(fd, first, src, hasher)
            if self._durable and rec.received == 0:
                fsync_dir(self._layout.uploads)  # the file's entry, before bytes are acked
            end = last + 1
            prev_size = rec.last_last - rec.last_first + 1
            new = dataclasses.replace(
                rec, received=end, parts=rec.parts + 1, updated=time.time(),
                small_part=rec.small_part or (rec.parts > 0 and prev_size < self._min_part),
                last_first=first, last_last=last, last_xxh=xxh, state=hasher.export_state(),
            )

            def commit(t: Txn) -> None:
                cur = t.get_upload(uid)
                if cur != rec:  # purged or its repository deleted meanwhile
                    raise _upload_not_found(upload_id, repo)
                t.put_upload(uid, new, old=cur)

            self._index.write(commit)
            return last

    def _ingest(self, fd: int, offset: int, src: PartSource, hasher: Sha256) -> tuple[Sha256, bytes]:
        """Write the part at ``offset`` (durable on return in durable mode); answer the sha256
        advanced over it and its xxh3-128."""
        if src.view is not None:
            view = src.view
            with self._ingesting_lock:
                self._ingesting += 1
                solo = self._ingesting == 1
            try:
                if not solo or view.nbytes < _OVERLAP_BYTES:
                    self._write(fd, view, offset)
                    hasher.update(view)
                    return hasher, xxhash.xxh3_128_digest(view)
                # write + fdatasync on a pool thread while this one hashes
                pending = self._pool().submit(self._write, fd, view, offset)
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
        pending = self._pool().submit(self._copy, src.fd, src.offset, fd, src.size, offset)
        try:
            hasher = hash_file(src.fd, src.offset, src.size, state=hasher)
            xxh = src.xxh128()
        finally:
            pending.result()
        return hasher, xxh

    def _write(self, fd: int, view: memoryview, offset: int) -> None:
        if self._durable:
            pwrite_durable(fd, view, offset)
        else:
            pwrite_all(fd, view, offset)

    def _copy(self, src: int, src_offset: int, dst: int, count: int, offset: int) -> None:
        _copy_range(src, src_offset, dst, count, offset)
        if self._durable:
            os.fdatasync(dst)

    # --- completion ----------------------------------------------------------------------

    def complete(self, repo: RepoRecord, upload_id: str, uid: bytes, digests: list[Digest]) -> Completed:
        """Finalise, verify, store and link the layer, in the service's check order.

        O(1) in the layer's size: the digest is finalised from the stored midstate; the data
        file is renamed into ``blobs/`` (or dropped when the blob is already stored).
        """
        rec = self._live(repo, upload_id, uid)
        if rec.parts == 0:
            raise self._empty(repo, upload_id)
        with self._locked_file(repo, upload_id, uid, rec) as fd:
            rec = self._live(repo, upload_id, uid)
            if rec.parts == 0:
                raise self._empty(repo, upload_id)
            if rec.small_part:
                raise LayerPartTooSmallException(
                    f"All layer parts except the last part should be at least {_mb(self._min_part)}"
                )
            computed = Digest.from_raw(self._resume(fd, rec, upload_id).digest())
            if computed not in digests:
                raise InvalidLayerException("None of the provided layer digests match the calculated layer digest")
            dg = computed.raw
            path = self._layout.upload(uuid.UUID(bytes=uid).hex)
            with self._index.read() as t:
                linked = t.get_link(repo.id, dg) is not None
                stored = t.get_blob(dg) is not None
            if linked:
                self._consume(uid, rec, path)
                raise _already_exists(computed, repo)
            if os.fstat(fd).st_size > rec.received:
                os.ftruncate(fd, rec.received)
            placed = False
            if not stored:
                self._place(path, computed.hex)
                placed = True
            now = time.time()

            def commit(t: Txn) -> bool:
                nonlocal placed
                if t.get_upload(uid) != rec:
                    raise _upload_not_found(upload_id, repo)
                t.delete_upload(uid, rec)
                blob = t.get_blob(dg)
                if blob is None:
                    if not placed:  # the stored blob was reclaimed since we looked: use ours
                        self._place(path, computed.hex)
                        placed = True
                    t.put_blob(dg, BlobRecord(rec.received, now))
                if t.get_link(repo.id, dg) is not None:
                    return False  # a racing completion of the same digest won
                t.put_link(repo.id, dg, LinkRecord(rec.received, now))
                return True

            won = self._index.write(commit)
            # Only now, with the index committed, does the upload's own name go: until then a
            # crash leaves the upload whole (its record and its data file), free to complete again.
            if placed or rec.received < _BACKGROUND_UNLINK_BYTES:
                unlink_quiet(path)  # placed: a name only, the bytes live on as the blob
            else:
                # A large duplicate of stored content: freeing its extents takes time in
                # proportion to its size, which the caller need not wait for (a crash leaves
                # an orphan file, which purge reclaims).
                self._pool().submit(unlink_quiet, path)
            if not won:
                raise _already_exists(computed, repo)
            return Completed(computed, rec.received)

    def _place(self, path: str, hexdigest: str) -> None:
        """Give the upload's data file its blob name too (a hard link, then an atomic rename
        over any orphan of an earlier attempt), and make that name durable. The upload keeps
        its own name until the index commit, so no crash can separate the record from data."""
        tmp = self._layout.blob_temp(hexdigest)
        os.chmod(path, 0o444)  # the blob is read-only from the moment it has its name
        os.link(path, tmp)
        try:
            os.rename(tmp, self._layout.blob(hexdigest))
        except BaseException:
            unlink_quiet(tmp)
            raise
        if self._durable:
            fsync_dir(self._layout.blob_dir(hexdigest))

    def _consume(self, uid: bytes, rec: UploadRecord, path: str) -> None:
        def commit(t: Txn) -> None:
            if t.get_upload(uid) == rec:
                t.delete_upload(uid, rec)

        self._index.write(commit)
        unlink_quiet(path)

    # --- shared steps --------------------------------------------------------------------

    def _live(self, repo: RepoRecord, upload_id: str, uid: bytes) -> UploadRecord:
        with self._index.read() as t:
            rec = t.get_upload(uid)
        if rec is None or rec.repo_id != repo.id or rec.updated + self._ttl < time.time():
            raise _upload_not_found(upload_id, repo)
        return rec

    def _locked_file(self, repo: RepoRecord, upload_id: str, uid: bytes, rec: UploadRecord):
        path = self._layout.upload(uuid.UUID(bytes=uid).hex)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except PermissionError:
            # Made read-only by a completion that failed after placing the blob (its index
            # commit never happened): the upload is still ours to write.
            os.chmod(path, 0o600)
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            if rec.received:
                raise ServerException(f"the data file of upload {upload_id} is missing") from None
            # Created at initiation but its directory entry was lost in an OS crash before any
            # byte was acknowledged: nothing is lost by creating it again.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return _FileLock(fd)

    def _resume(self, fd: int, rec: UploadRecord, upload_id: str) -> Sha256:
        """The sha256 state after ``rec.received`` bytes, re-hashing from the file if needed."""
        hasher = None
        if rec.state:
            try:
                hasher = Sha256.from_state(rec.state)
            except HashStateError as e:
                log.warning("upload %s: stored sha256 state unusable (%s); re-hashing its data", upload_id, e)
        if hasher is None or hasher.nbytes > rec.received:
            hasher = Sha256()
        if hasher.nbytes < rec.received:
            hasher = hash_file(fd, hasher.nbytes, rec.received - hasher.nbytes, state=hasher)
        return hasher

    def _bad_part(self, repo: RepoRecord, upload_id: str, rec: UploadRecord, message: str):
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

    def purge_idle(self, now: float | None = None) -> tuple[int, int]:
        """Remove uploads idle longer than the TTL; answer (uploads removed, bytes freed).

        Found through the index's expiry order, not by walking the tree. An upload whose file
        is locked by a writer at that moment is left for the next purge.
        """
        now = time.time() if now is None else now
        with self._index.read() as t:
            idle = t.uploads_idle_since(now - self._ttl)
        removed = freed = 0
        for uid, rec in idle:
            path = self._layout.upload(uuid.UUID(bytes=uid).hex)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = -1
            try:
                if fd >= 0:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue
                    freed += os.fstat(fd).st_size

                def commit(t: Txn, uid=uid, rec=rec) -> bool:
                    if t.get_upload(uid) != rec:
                        return False
                    t.delete_upload(uid, rec)
                    return True

                if self._index.write(commit):
                    unlink_quiet(path)
                    removed += 1
            finally:
                if fd >= 0:
                    os.close(fd)
        return removed, freed

    def remove_files(self, uids: list[bytes]) -> None:
        """Delete the data files of uploads whose records are gone (repository deletion)."""
        for uid in uids:
            unlink_quiet(self._layout.upload(uuid.UUID(bytes=uid).hex))


class _FileLock:
    """An fd holding an exclusive flock, released and closed on exit."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # closing the last descriptor releases the flock


def _copy_range(src: int, src_offset: int, dst: int, count: int, offset: int) -> None:
    """Copy ``count`` bytes of ``src`` from ``src_offset`` to ``dst`` at ``offset``, in the kernel."""
    done = 0
    while done < count:
        try:
            n = os.copy_file_range(src, dst, count - done, src_offset + done, offset + done)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            os.lseek(dst, offset + done, os.SEEK_SET)
            n = os.sendfile(dst, src, src_offset + done, count - done)
        if n == 0:
            raise ServerException("the part file ended before its stated size")
        done += n


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
