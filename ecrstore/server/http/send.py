"""Sending response bodies: whole, or from a buffer (a memory map) in place.

**No copy through Python bytes.** :func:`send_view` sends memoryview slices of the buffer.
uvicorn (httptools protocol) hands the body of each ``http.response.body`` message to
``transport.write`` unchanged; uvloop's ``write`` sends from that buffer in place and, for
whatever the socket did not take at once, keeps a reference to the slice rather than a copy,
and uvicorn waits for the transport to drain before the next message. (On asyncio's own event
loop instead of uvloop, Python 3.11's transport does copy the unsent tail into its buffer.)
When the buffer is an ``mmap``, pages already sent are dropped from this process's mapping
(``MADV_DONTNEED``; they stay in the page cache, and a page the socket still needs simply
faults back in) and the next window is read ahead (``MADV_WILLNEED``), so the worker's
resident memory stays flat whatever the size of the file.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable

from .ranges import ByteRange
from .types import Send

__all__ = ["CHUNK_BYTES", "send_response", "send_view"]

#: Bytes per ``http.response.body`` message (a multiple of every page size).
CHUNK_BYTES = 1 << 20

_PAGE = mmap.PAGESIZE


async def send_response(send: Send, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes = b"") -> None:
    """Send a complete response: the status line and headers, then ``body`` in one message.
    The caller gives Content-Length among ``headers``. Raises what ``send`` raises (OSError
    when the client went away)."""
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


async def send_view(send: Send, view: memoryview, span: ByteRange, chunk_bytes: int = CHUNK_BYTES) -> None:
    """Send ``view[span.first:span.last + 1]`` as the response body (the response has started)
    in slices of ``chunk_bytes``, the last one ending the body; reads ahead and drops what was
    sent when ``view`` is over an mmap (see the module doc). Releases ``view`` on return,
    whatever happens. Raises what ``send`` raises."""
    region = getattr(view, "obj", None)
    advise = getattr(region, "madvise", None)
    size = len(view)
    pos, end = span.first, span.last + 1
    dropped = pos - pos % _PAGE  # pages before this one were never touched by this response
    try:
        while pos < end:
            stop = min(end, pos + chunk_bytes)
            if advise is not None and stop < end:
                ahead = stop - stop % _PAGE
                advise(mmap.MADV_WILLNEED, ahead, min(chunk_bytes, size - ahead))
            await send({"type": "http.response.body", "body": view[pos:stop], "more_body": stop < end})
            # When send returns the transport has taken the slice (written, or referenced with
            # less than its high-water mark outstanding): pages a chunk behind are done with.
            behind = max(span.first, pos - chunk_bytes)
            upto = behind - behind % _PAGE
            if advise is not None and upto > dropped:
                advise(mmap.MADV_DONTNEED, dropped, upto - dropped)
                dropped = upto
            pos = stop
    finally:
        view.release()
