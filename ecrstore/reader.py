"""Reading a stored layer: a file-like object over an immutable blob file."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

__all__ = ["LayerReader"]


class LayerReader:
    """Read access to one layer's bytes.

    The blob file is immutable, so reads never race a writer; the reader keeps its own
    descriptor, so the content stays readable even if the layer is deleted meanwhile. Use as
    a context manager or call :meth:`close`. Not for sharing between threads (each thread
    opens its own reader; they are cheap).
    """

    def __init__(self, path: str, digest: str, size: int) -> None:
        self.digest = digest
        self.size = size
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._pos = 0
        self._map: mmap.mmap | None = None

    def fileno(self) -> int:
        """The descriptor, for ``os.sendfile`` / ``socket.sendfile`` (zero-copy serving)."""
        return self._fd

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes from the current position (all remaining when ``n < 0``)."""
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

    def view(self) -> memoryview:
        """A zero-copy read-only view of the whole layer (a memory map; valid until close)."""
        if self._map is None:
            self._map = mmap.mmap(self._fd, self.size, prot=mmap.PROT_READ)
        return memoryview(self._map)

    def iter_chunks(self, size: int = 1 << 20, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The bytes of ``[offset, offset+length)`` in chunks of at most ``size``."""
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

    def __enter__(self) -> LayerReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()
