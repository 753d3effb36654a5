"""SHA-256 of byte ranges of regular files, read through read-only ``mmap`` windows, and the
sources a layer part can come from (:class:`PartSource`: a buffer, a file, a
:class:`FileRange`), with the xxh3-128 that recognises a re-sent part.

:func:`hash_file` maps the range a window (:data:`WINDOW_SIZE`) at a time and hands each
window to :meth:`Sha256.update` as a memoryview: the bytes go from the page cache to the kernel
without a copy into Python memory, and the GIL is released while they are hashed.

Guarantees:

* Only ``[offset, offset + length)`` is read. The file is never written, truncated or locked;
  a descriptor passed in is neither closed nor moved (mappings do not use the file offset).
* The size is taken with ``fstat`` before anything is mapped and no window reaches past it, so
  an empty range is never mapped and a file that keeps its size cannot raise SIGBUS. A file
  truncated by another process while it is being hashed is outside this contract: reading a
  page past the new end kills the process with SIGBUS. The store never shrinks a file that may
  be hashed (uploads only grow, blobs are immutable).
* The result equals ``hashlib.sha256`` over the same bytes. A ``state`` passed in is copied,
  never modified.

Threads and processes: nothing is shared between calls, so any number of threads may hash
different (or the same) files at once, each on its own core. Only reads are made: durability
is not affected.
"""

from __future__ import annotations

import dataclasses
import mmap
import operator
import os
import stat
from typing import Any, TypeAlias

import xxhash

from ._sha256 import Sha256
from .fsutil import mapped_range

__all__ = ["WINDOW_SIZE", "FileRange", "PartSource", "hash_file"]

#: Bytes mapped at a time: large enough that the per-window cost (mmap, munmap, one
#: GIL round trip) is lost in the hashing, small enough to bound address space and the pages
#: a window pins. A multiple of ``mmap.ALLOCATIONGRANULARITY``.
WINDOW_SIZE = 64 * 1024 * 1024

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOCTTY", 0)
    # A FIFO would block open() until a writer appears; with O_NONBLOCK it opens at once and
    # fstat rejects it. Regular files ignore the flag.
    | getattr(os, "O_NONBLOCK", 0)
)

PathOrFd: TypeAlias = int | str | bytes | os.PathLike[str] | os.PathLike[bytes]
State: TypeAlias = Sha256 | bytes | bytearray | memoryview | None


def hash_file(path_or_fd: PathOrFd, offset: int = 0, length: int | None = None, state: State = None) -> Sha256:
    """Hash bytes ``[offset, offset + length)`` of a regular file (``length=None``: to its end).

    ``path_or_fd`` is a path (opened read-only and closed again) or an open descriptor (left
    open, its offset untouched; it must be readable). ``state`` continues an earlier
    computation: a :class:`Sha256` (copied, not modified) or :meth:`Sha256.export_state`
    bytes. Answers a new :class:`Sha256`, positioned after the range.

    Raises:
        ValueError: ``offset`` or ``length`` negative; not a regular file; the range is empty
            or runs past the end of the file (the message gives both).
        TypeError: ``path_or_fd`` is neither a path nor a descriptor (a bool is refused), or
            ``state`` is of another type.
        HashStateError: ``state`` bytes are not a valid exported state.
        OSError: opening, ``fstat`` or mapping failed (permissions, I/O errors ...).
        RuntimeError: another thread is updating the ``state`` object being copied.
    """
    offset = operator.index(offset)
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if length is not None:
        length = operator.index(length)
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
    hasher = _start(state)

    if isinstance(path_or_fd, bool):  # an int, but never meant as a descriptor
        raise TypeError("expected a path or a file descriptor, not bool")
    if isinstance(path_or_fd, int):
        fd, owned, name = path_or_fd, False, f"fd {path_or_fd}"
    else:
        name = os.fsdecode(os.fspath(path_or_fd))
        fd, owned = os.open(path_or_fd, _OPEN_FLAGS), True
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{name} is not a regular file")
        size = st.st_size
        end = size if length is None else offset + length
        if offset > size or end > size:
            shown = "end of file" if length is None else end
            raise ValueError(f"range [{offset}, {shown}) runs past the end of {name} ({size} bytes)")
        if end == offset:
            raise ValueError(f"empty range [{offset}, {end}) of {name} ({size} bytes): nothing to hash")
        _hash_range(hasher, fd, offset, end)
    finally:
        if owned:
            os.close(fd)
    return hasher


def _start(state: State) -> Sha256:
    if state is None:
        return Sha256()
    if isinstance(state, Sha256):
        return state.copy()
    if isinstance(state, (bytes, bytearray, memoryview)):
        return Sha256.from_state(state)
    raise TypeError(f"state must be a Sha256, exported state bytes or None, not {type(state).__name__!r}")


def _hash_range(hasher: Sha256, fd: int, start: int, end: int) -> None:
    """Feed ``[start, end)`` of ``fd`` to ``hasher``; the caller checked ``end <= size``."""
    window = WINDOW_SIZE
    granularity = mmap.ALLOCATIONGRANULARITY
    if window <= 0 or window % granularity:
        raise ValueError(f"WINDOW_SIZE must be a positive multiple of {granularity}, got {window}")
    pos = start
    while pos < end:
        base = pos - pos % granularity  # mmap offsets must be aligned
        stop = min(base + window, end)
        if stop < end and hasattr(os, "posix_fadvise"):
            # Start reading the next window from disk while this one is hashed.
            os.posix_fadvise(fd, stop, min(window, end - stop), os.POSIX_FADV_WILLNEED)
        with mmap.mmap(fd, stop - base, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=base) as mm:
            if hasattr(mm, "madvise"):
                mm.madvise(mmap.MADV_SEQUENTIAL)
            # Release the views before the mapping closes (a live export makes close() fail).
            with memoryview(mm) as whole, whole[pos - base :] as chunk:
                hasher.update(chunk)
        pos = stop


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
        with mapped_range(self.fd, self.offset, self.size) as view:
            return xxhash.xxh3_128_digest(view)

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
