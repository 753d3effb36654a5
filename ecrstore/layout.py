"""Where things live on disk, and the file-system steps that make them durable.

A store is a directory::

    <root>/index/          the LMDB environment (metadata only: never layer bytes)
    <root>/blobs/sha256/ab/ab01…  immutable content-addressed layer files (mode 0444)
    <root>/uploads/<uuid>  the data file of an upload in progress (written in place)
    <root>/trash/          blobs being deleted (renamed here inside the index transaction)

Content is committed the containerd way: data fsync → verify size and digest → rename into
``blobs/`` → fsync the directory → index commit. A file in ``blobs/`` with no index record is an
orphan (a crash between rename and commit) and is reclaimed by purge once older than its grace.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["Layout", "fsync_dir", "pwrite_all", "unlink_quiet"]

FANOUT = 256


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


class Layout:
    """Paths of one store directory; creates the skeleton on first use."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.index = self.root / "index"
        self.blobs = self.root / "blobs" / "sha256"
        self.uploads = self.root / "uploads"
        self.trash = self.root / "trash"

    def create(self) -> None:
        """Create the directory tree (idempotent); durable once it returns."""
        fresh = not self.blobs.is_dir()
        for d in (self.index, self.uploads, self.trash, self.blobs):
            d.mkdir(parents=True, exist_ok=True)
        if fresh:
            for i in range(FANOUT):
                (self.blobs / f"{i:02x}").mkdir(exist_ok=True)
            for d in (self.blobs, self.blobs.parent, self.root):
                fsync_dir(d)

    def blob(self, hexdigest: str) -> str:
        return os.path.join(self.blobs, hexdigest[:2], hexdigest)

    def blob_dir(self, hexdigest: str) -> str:
        return os.path.join(self.blobs, hexdigest[:2])

    def upload(self, upload_hex: str) -> str:
        return os.path.join(self.uploads, upload_hex)

    def trash_path(self, name: str) -> str:
        return os.path.join(self.trash, name)
