"""The local blob backend: a content-addressed file tree beside the index (the default).

A store is a directory::

    <root>/index/                 the index (metadata only: never layer bytes)
    <root>/blobs/sha256/ab/ab01…  immutable content-addressed layer files (mode 0444)
    <root>/uploads/<uuid-hex>     the data file of an upload in progress (written in place)
    <root>/trash/                 blobs being deleted (renamed here before the index forgets them)

Content is committed the containerd way: data fsync → (the engine verifies size and digest)
→ the blob name (hard link, rename) → fsync the directory → (the engine commits the index) →
the upload's name removed. A file in ``blobs/`` with no index record is an orphan (a crash
before the commit; the upload itself is still whole), and ``.tmp`` names are placements cut
short: the engine reclaims both once they are older than its grace.

Names under the root are ours, so they are opened with ``O_NOFOLLOW``: a symlink planted in
the tree is refused, never followed. One writer per upload at a time: an exclusive ``flock``
on the data file, which excludes threads and processes alike.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .._sha256 import Sha256
from ..digest import SHA256, Digest
from ..errors import ServerException
from ..fsutil import DirectAppender, copy_range, fsync_dir, pwrite_all, pwrite_durable, pwritev_all, unlink_quiet
from ..hashing import hash_file
from .base import StoredFile

__all__ = ["LocalBlobStore", "LocalBlobReader", "LocalUploadData", "Layout"]

FANOUT = 256
#: Blob files: read-only from the moment they are named, readable by the owner and its group
#: (a backup or a serving process in the store's group), never by other local users.
BLOB_MODE = 0o440
_HEX = frozenset("0123456789abcdef")
_OPEN = os.O_CLOEXEC | os.O_NOFOLLOW


class Layout:
    """Paths of one store directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.index = self.root / "index"
        self.blobs = self.root / "blobs" / "sha256"
        self.uploads = self.root / "uploads"
        self.trash = self.root / "trash"

    def exists(self) -> bool:
        return self.index.is_dir()

    def create(self) -> None:
        """Create whatever part of the directory tree is missing (so a creation interrupted by
        a crash is finished by the next open); durable once it returns. The root is 0700: the
        store holds every tenant's manifests and layers."""
        made = False
        for d in (self.root, self.index, self.uploads, self.trash, self.blobs.parent, self.blobs,
                  *(self.blobs / f"{i:02x}" for i in range(FANOUT))):
            try:
                d.mkdir(mode=0o700)
                made = True
            except FileExistsError:
                pass
        if made:
            for d in (self.blobs, self.blobs.parent, self.root, self.root.parent):
                fsync_dir(d)

    def blob(self, hexdigest: str) -> str:
        return os.path.join(self.blobs, hexdigest[:2], hexdigest)

    def blob_temp(self, hexdigest: str) -> str:
        """A temporary name beside a blob (``.<hex>.<random>.tmp``), for atomic placement."""
        return os.path.join(self.blobs, hexdigest[:2], f".{hexdigest}.{uuid.uuid4().hex}.tmp")

    def blob_dir(self, hexdigest: str) -> str:
        return os.path.join(self.blobs, hexdigest[:2])

    def upload(self, upload: str) -> str:
        return os.path.join(self.uploads, upload)

    def trash_path(self, name: str) -> str:
        return os.path.join(self.trash, name)


class LocalBlobReader:
    """Read access to one blob file; keeps its own descriptor, so the content stays readable
    even if the blob is deleted meanwhile. Not for sharing between threads."""

    def __init__(self, path: str, digest: str, size: int) -> None:
        self.digest = digest
        self.size = size
        self._fd = os.open(path, os.O_RDONLY | _OPEN)
        self._pos = 0
        self._map: mmap.mmap | None = None
        try:
            found = os.fstat(self._fd).st_size
        except BaseException:
            self.close()
            raise
        if found != size:
            self.close()
            raise ServerException(f"the stored blob {digest} is damaged: {found} bytes where {size} were stored")

    def fileno(self) -> int:
        """The descriptor, for ``os.sendfile`` / ``socket.sendfile`` (zero-copy serving)."""
        return self._fd

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.size - self._pos
        data = os.pread(self._fd, min(n, max(self.size - self._pos, 0)), self._pos)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def view(self) -> memoryview | None:
        """A zero-copy read-only view of the whole blob (a memory map; valid until close)."""
        if self.size == 0:
            return memoryview(b"")
        if self._map is None:
            self._map = mmap.mmap(self._fd, self.size, prot=mmap.PROT_READ)
        return memoryview(self._map)

    def hash(self) -> Sha256:
        return hash_file(self._fd, 0, self.size) if self.size else Sha256()

    def iter_chunks(self, size: int = 1 << 20, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        end = self.size if length is None else min(self.size, offset + length)
        pos = offset
        while pos < end:
            chunk = os.pread(self._fd, min(size, end - pos), pos)
            if not chunk:
                return
            pos += len(chunk)
            yield chunk

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a view is still exported; the map goes when it does
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LocalBlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()


class LocalUploadData:
    """An upload's data file, written in place at offsets."""

    __slots__ = ("fd", "_store", "_entry_pending", "_appender")

    def __init__(self, fd: int, store: LocalBlobStore) -> None:
        self.fd = fd
        self._store = store
        self._entry_pending = False  # bytes appended at 0: the file's entry is made durable too
        self._appender: DirectAppender | None = None  # made by the first append (durable mode)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, size: int) -> None:
        if self._appender is not None:
            self._appender.close()  # whatever it staged goes with the cut
            self._appender = None
        os.ftruncate(self.fd, size)

    def close(self) -> None:
        """Release what appends hold (the file itself is the store's to close)."""
        if self._appender is not None:
            self._appender.close()
            self._appender = None

    def write(self, offset: int, data: memoryview) -> None:
        if self._store.durable:
            pwrite_durable(self.fd, data, offset)
            if offset == 0:
                fsync_dir(self._store.layout.uploads)  # the file's entry, before bytes are acked
        else:
            pwrite_all(self.fd, data, offset)

    def copy_from(self, fd: int, src_offset: int, count: int, offset: int) -> None:
        copy_range(fd, src_offset, self.fd, count, offset)
        if self._store.durable:
            os.fdatasync(self.fd)
            if offset == 0:
                fsync_dir(self._store.layout.uploads)

    def append(self, offset: int, chunks: Sequence[bytes]) -> None:
        if not self._store.durable:
            pwritev_all(self.fd, chunks, offset)
            return
        if self._appender is None:
            self._appender = DirectAppender(self.fd)
        self._appender.append(offset, chunks)
        self._entry_pending = self._entry_pending or offset == 0

    def flush(self) -> None:
        if self._store.durable:
            if self._appender is not None:
                self._appender.finish()
            os.fdatasync(self.fd)
            if self._entry_pending:
                fsync_dir(self._store.layout.uploads)  # the file's entry, before bytes are acked
                self._entry_pending = False

    def hash_range(self, hasher: Sha256, start: int, end: int) -> Sha256:
        return hash_file(self.fd, start, end - start, state=hasher)


class _RetiredFile:
    __slots__ = ("_path", "_trash")

    def __init__(self, path: str, trash: str) -> None:
        self._path, self._trash = path, trash

    def restore(self) -> None:
        os.rename(self._trash, self._path)

    def drop(self) -> None:
        unlink_quiet(self._trash)


class LocalBlobStore:
    """Blobs and uploads as files under a store directory. Thread-safe; several processes may
    share the directory. ``durable``: every write, name and removal is on stable storage when
    the call returns. ``background`` runs a callable off the caller's path (the store's pool)."""

    def __init__(self, layout: Layout, *, durable: bool, background: Callable[..., object]) -> None:
        self.layout = layout
        self.durable = durable
        self._background = background

    # --- ingest --------------------------------------------------------------------------

    def create_upload(self, upload: str) -> None:
        os.close(os.open(self.layout.upload(upload), os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN, 0o600))

    def _open_data(self, upload: str, received: int) -> int:
        path = self.layout.upload(upload)
        try:
            return os.open(path, os.O_RDWR | _OPEN)
        except PermissionError:
            # Made read-only by a completion that failed after placing the blob (its index
            # commit never happened): the upload is still ours to write.
            os.chmod(path, 0o600, follow_symlinks=False)
            return os.open(path, os.O_RDWR | _OPEN)
        except FileNotFoundError:
            if received:
                raise ServerException(f"the data file of upload {upload} is missing") from None
            # Created at initiation but its directory entry was lost in an OS crash before any
            # byte was acknowledged: nothing is lost by creating it again.
            return os.open(path, os.O_RDWR | os.O_CREAT | _OPEN, 0o600)

    @contextmanager
    def open_upload(self, upload: str, *, received: int, wait: bool = True) -> Iterator[LocalUploadData]:
        fd = self._open_data(upload, received)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            data = LocalUploadData(fd, self)
            try:
                yield data
            finally:
                data.close()
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    @contextmanager
    def try_open_upload(self, upload: str) -> Iterator[LocalUploadData | None]:
        try:
            fd = os.open(self.layout.upload(upload), os.O_RDWR | _OPEN)
        except FileNotFoundError:
            fd = os.open(self.layout.upload(upload), os.O_RDWR | os.O_CREAT | _OPEN, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            yield LocalUploadData(fd, self)
        finally:
            os.close(fd)

    def discard_upload(self, upload: str, *, background: bool = False, orphaned: bool = False) -> None:
        path = self.layout.upload(upload)
        if background:
            self._background(unlink_quiet, path)
        else:
            unlink_quiet(path)

    def publish(self, upload: str, hexdigest: str) -> str:
        """Give the upload's data file its blob name too (a hard link, then an atomic rename
        over any orphan of an earlier attempt), and make that name durable. The digest names
        the content: the placement is ""."""
        path = self.layout.upload(upload)
        tmp = self.layout.blob_temp(hexdigest)
        os.chmod(path, BLOB_MODE, follow_symlinks=False)  # read-only from the moment it has its name
        os.link(path, tmp, follow_symlinks=False)
        try:
            os.rename(tmp, self.layout.blob(hexdigest))
        except BaseException:
            unlink_quiet(tmp)
            raise
        if self.durable:
            fsync_dir(self.layout.blob_dir(hexdigest))
        return ""

    # --- read ----------------------------------------------------------------------------

    def open(self, hexdigest: str, size: int, placement: str = "") -> LocalBlobReader:
        try:
            return LocalBlobReader(self.layout.blob(hexdigest), str(Digest(SHA256, hexdigest)), size)
        except FileNotFoundError:
            raise ServerException(f"the stored blob {Digest(SHA256, hexdigest)} is missing") from None

    def stat(self, hexdigest: str, placement: str = "") -> int | None:
        try:
            return os.stat(self.layout.blob(hexdigest), follow_symlinks=False).st_size
        except FileNotFoundError:
            return None

    def presigned_url(self, hexdigest: str, expires_in: float, placement: str = "") -> str | None:
        return None  # files are served by the front end's signed download route

    # --- delete --------------------------------------------------------------------------

    def retire(self, hexdigest: str, placement: str = "") -> _RetiredFile | None:
        path = self.layout.blob(hexdigest)
        trash = self.layout.trash_path(f"{hexdigest}.{uuid.uuid4().hex}")
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return None
        return _RetiredFile(path, trash)

    def recover_retired(self, lookup: Callable[[str], str | None]) -> int:
        n = 0
        for name in os.listdir(self.layout.trash):
            hexd = name.split(".", 1)[0]
            path = self.layout.trash_path(name)
            keep = len(hexd) == 64 and set(hexd) <= _HEX and lookup(hexd) is not None
            if keep and not os.path.exists(self.layout.blob(hexd)):
                os.rename(path, self.layout.blob(hexd))
            else:
                unlink_quiet(path)
            n += 1
        return n

    def delete_blob(self, name: str) -> None:
        if name.startswith("."):
            hexd = name[1:].split(".", 1)[0]
            unlink_quiet(os.path.join(self.layout.blob_dir(hexd), name))
        else:
            unlink_quiet(self.layout.blob(name))
        if self.durable:
            fsync_dir(self.layout.blob_dir(name.lstrip(".")))

    # --- list ----------------------------------------------------------------------------

    def iter_blobs(self) -> Iterator[StoredFile]:
        for sub in sorted(os.listdir(self.layout.blobs)):
            d = os.path.join(self.layout.blobs, sub)
            for name in os.listdir(d):
                try:
                    st = os.stat(os.path.join(d, name), follow_symlinks=False)
                except FileNotFoundError:
                    continue
                temporary = name.startswith(".") and name.endswith(".tmp")
                if not temporary and not (len(name) == 64 and set(name) <= _HEX):
                    continue
                # ctime: linking the upload file into blobs/ sets it, unlike mtime.
                yield StoredFile(name, st.st_size, st.st_ctime, temporary)

    def iter_uploads(self) -> Iterator[StoredFile]:
        for name in os.listdir(self.layout.uploads):
            try:
                st = os.stat(self.layout.upload(name), follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield StoredFile(name, st.st_size, st.st_mtime)

    def sync(self) -> None:
        os.sync()

