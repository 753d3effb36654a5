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

import asyncio
import mmap
from collections.abc import Iterable, Mapping
from typing import Any

from .ranges import UNSATISFIABLE, ByteRange, plan_range
from .types import Send

__all__ = ["CHUNK_BYTES", "RangeNotSatisfiable", "send_blob", "send_response", "send_view"]

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


class RangeNotSatisfiable(Exception):
    """The request's ``Range`` lies outside the blob: nothing was sent. ``headers`` are the
    ones a 416 carries (``Content-Range: bytes */size`` and the validators, not the caller's
    extras); each protocol answers it with its own body and headers."""

    def __init__(self, size: int, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(f"the range is outside the blob's {size} bytes")
        self.size = size
        self.headers = headers


async def send_blob(send: Send, method: str, headers: Mapping[str, str], reader: Any,
                    extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer a GET or HEAD of a stored blob from ``reader`` (a :class:`ecrstore.blobs.base.
    BlobReader`): ``Content-Length``, ``Accept-Ranges``, ``ETag`` (the digest, quoted: a strong
    validator, since the bytes behind a digest never change), ``Docker-Content-Digest``, the
    ``extra`` headers; ``Range``/``If-Range`` per :mod:`.ranges` (206 with ``Content-Range``,
    else 200; an unsatisfiable range raises :class:`RangeNotSatisfiable` before anything is
    sent, for the caller to answer in its protocol). HEAD sends the same status and headers
    without the body. The body goes out of the reader's memory map in place
    (:func:`send_view`). Raises what ``send`` raises; the caller closes the reader."""
    size = reader.size
    etag = f'"{reader.digest}"'
    wanted = plan_range(headers.get("range"), headers.get("if-range"), etag, size)
    validators = [(b"accept-ranges", b"bytes"), (b"etag", etag.encode()),
                  (b"docker-content-digest", reader.digest.encode())]
    if wanted is UNSATISFIABLE:
        raise RangeNotSatisfiable(size, [(b"content-range", f"bytes */{size}".encode()), *validators])
    common = [*validators, *extra]
    span = wanted or ByteRange(0, size - 1)
    response_headers = [(b"content-type", b"application/octet-stream"),
                        (b"content-length", str(span.length if size else 0).encode()), *common]
    if wanted is not None:
        response_headers.append((b"content-range", span.content_range(size).encode()))
    await send({"type": "http.response.start", "status": 206 if wanted is not None else 200,
                "headers": response_headers})
    if method == "HEAD" or size == 0:
        await send({"type": "http.response.body", "body": b""})
        return
    view = reader.view()
    if view is None:  # a backend that cannot map: its chunks, one buffer at a time, each read
        # off the event loop (an object store's read may be slow; the loop serves the others)
        loop = asyncio.get_running_loop()
        chunks = iter(reader.iter_chunks(CHUNK_BYTES, span.first, span.length))
        pos, end = span.first, span.last + 1
        while (chunk := await loop.run_in_executor(None, next, chunks, None)) is not None:
            pos += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": pos < end})
        return
    await send_view(send, view, span)
