"""Where things live on disk, and the file-system steps that make them durable.

A store is a directory::

    <root>/index/          the LMDB environment (metadata only: never layer bytes)
    <root>/blobs/sha256/ab/ab01…  immutable content-addressed layer files (mode 0444)
    <root>/uploads/<uuid>  the data file of an upload in progress (written in place)
    <root>/trash/          blobs being deleted (renamed here inside the index transaction)

Content is committed the containerd way: data fsync → verify size and digest → the blob name
(hard link, rename) → fsync the directory → index commit → the upload's name removed. A file in
``blobs/`` with no index record is an orphan (a crash before the commit; the upload itself is
still whole) and is reclaimed by purge once older than its grace, as are stray ``.tmp`` names.
"""

from __future__ import annotations

import ctypes
import errno
import os
import uuid
from pathlib import Path

__all__ = ["Layout", "fsync_dir", "pwrite_all", "pwrite_durable", "unlink_quiet"]

FANOUT = 256
# Durable writes are issued in steps of this size, each one's write-back started at once, so the
# device works while the next step is copied into the page cache and the closing fdatasync
# waits for little more than the last step (measured here: 10 MiB durable 4.4 ms vs 6.2 ms).
_WRITEBACK_STEP = 2 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range():
    """libc's sync_file_range(2) (Linux), which ``os`` does not wrap; None elsewhere."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_start_writeback = _sync_file_range()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries (creates, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quiet(path: str) -> None:
    """Remove a file that may already be gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def pwrite_all(fd: int, data, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (os.pwrite may write less than asked)."""
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:  # pragma: no cover - a regular file never answers 0 to a non-empty write
            raise OSError(errno.EIO, "short write")
        view = view[n:]
        offset += n


def pwrite_durable(fd: int, data, offset: int) -> None:
    """Write all of ``data`` at ``offset`` and make it durable (``fdatasync``), starting the
    write-back of each step while the next is copied. The GIL is released throughout."""
    view = memoryview(data).cast("B")
    if _start_writeback is None or view.nbytes <= _WRITEBACK_STEP:
        pwrite_all(fd, view, offset)
    else:
        for start in range(0, view.nbytes, _WRITEBACK_STEP):
            step = view[start:start + _WRITEBACK_STEP]
            pwrite_all(fd, step, offset + start)
            _start_writeback(fd, offset + start, step.nbytes, _SYNC_FILE_RANGE_WRITE)  # advisory
    os.fdatasync(fd)


class Layout:
    """Paths of one store directory; creates the skeleton on first use."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.index = self.root / "index"
        self.blobs = self.root / "blobs" / "sha256"
        self.uploads = self.root / "uploads"
        self.trash = self.root / "trash"

    def create(self) -> None:
        """Create whatever part of the directory tree is missing (so a creation interrupted by
        a crash is finished by the next open); durable once it returns."""
        made = False
        for d in (self.root, self.index, self.uploads, self.trash, self.blobs.parent, self.blobs,
                  *(self.blobs / f"{i:02x}" for i in range(FANOUT))):
            try:
                d.mkdir()
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

    def upload(self, upload_hex: str) -> str:
        return os.path.join(self.uploads, upload_hex)

    def trash_path(self, name: str) -> str:
        return os.path.join(self.trash, name)
