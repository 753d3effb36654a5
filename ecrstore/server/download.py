"""Serving GetDownloadUrlForLayer's signed URLs: ``GET`` and ``HEAD /layers/...``.

The URL's own signature (method, path and expiry, under the store's key; checked by
:meth:`ecrstore.Store.open_download`) is the authentication; SigV4 does not apply. A missing,
tampered or expired signature answers 403 AccessDeniedException; a layer no longer in its
repository answers 404.

Responses carry ``Content-Type: application/octet-stream``, ``Content-Length``,
``Accept-Ranges: bytes``, ``ETag`` (the layer digest, quoted: a strong validator, since the
bytes behind a digest never change) and ``Docker-Content-Digest``. ``Range`` (RFC 9110 §14):

- one range, ``bytes=a-b``, ``bytes=a-`` or the suffix ``bytes=-n`` -> 206 with
  ``Content-Range: bytes first-last/size`` (an end past the layer is clamped to it);
- a range starting at or past the end, or ``bytes=-0`` -> 416 with ``Content-Range: bytes */size``;
- several ranges, a malformed header, another unit, or an ``If-Range`` that is not this
  ETag -> the whole layer with 200, which the RFC allows.

HEAD answers the same status and headers as GET would, without the body.

**No copy through Python bytes.** The body goes out as memoryview slices of the layer's memory
map (:meth:`ecrstore.reader.LayerReader.view`). uvicorn (httptools protocol) hands the body of
each ``http.response.body`` message to ``transport.write`` unchanged; uvloop's ``write`` sends
from that buffer in place and, for whatever the socket did not take at once, keeps a reference
to the slice rather than a copy, and uvicorn waits for the transport to drain before the next
message. (On asyncio's own event loop instead of uvloop, Python 3.11's transport does copy the
unsent tail into its buffer.) Pages already sent are dropped from this process's mapping
(``MADV_DONTNEED``; they stay in the page cache, and a page the socket still needs simply faults
back in) and the next window is read ahead (``MADV_WILLNEED``), so the worker's resident memory
stays flat whatever the size of the layer.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import re
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ..errors import EcrError, LayersNotFoundException, RepositoryNotFoundException

__all__ = ["CHUNK_BYTES", "FULL", "UNSATISFIABLE", "ByteRange", "download_status", "plan_range", "serve_download"]

#: Bytes per ``http.response.body`` message (a multiple of every page size).
CHUNK_BYTES = 1 << 20

log = logging.getLogger("ecrstore.server")

_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE)
_PAGE = mmap.PAGESIZE


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range of the layer (``first <= last < size``)."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


#: plan_range's answer for "send the whole layer".
FULL = None
#: plan_range's answer for "416 Range Not Satisfiable".
UNSATISFIABLE = ByteRange(-1, -2)


def plan_range(range_header: str | None, if_range: str | None, etag: str, size: int) -> ByteRange | None:
    """What to send for a ``Range`` header: :data:`FULL` (None), :data:`UNSATISFIABLE`, or
    the single :class:`ByteRange` (see the module doc for the rules)."""
    if range_header is None:
        return FULL
    if if_range is not None and if_range.strip() != etag:
        return FULL  # the client's copy is not this representation (or it sent a date)
    if "," in range_header:
        return FULL  # several ranges: the whole body is a valid answer
    m = _RANGE_RE.fullmatch(range_header)
    if m is None or not (m.group(1) or m.group(2)):
        return FULL
    first_text, last_text = m.group(1), m.group(2)
    if not first_text:  # suffix: the last n bytes
        n = int(last_text)
        if n == 0 or size == 0:
            return UNSATISFIABLE
        return ByteRange(max(0, size - n), size - 1)
    first = int(first_text)
    if last_text and int(last_text) < first:
        return FULL  # syntactically invalid: ignored
    if first >= size:
        return UNSATISFIABLE
    return ByteRange(first, min(int(last_text), size - 1) if last_text else size - 1)


def download_status(error: EcrError) -> int:
    """The HTTP status for an error on the download route (a plain GET, not the JSON API)."""
    if isinstance(error, (LayersNotFoundException, RepositoryNotFoundException)):
        return 404
    return error.status


async def serve_download(store: Any, executor: Executor, scope: dict, send: Any, request_id: str) -> None:
    """Answer a GET or HEAD for a signed download URL. Raises EcrError before the response
    starts (the caller answers it); once started, a failure can only cut the connection."""
    loop = asyncio.get_running_loop()
    method = scope["method"]
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    reader = await loop.run_in_executor(executor, store.open_download, method, path, query)
    started = False
    try:
        size = reader.size
        etag = f'"{reader.digest}"'
        wanted = plan_range(headers.get("range"), headers.get("if-range"), etag, size)
        common = [
            (b"accept-ranges", b"bytes"),
            (b"etag", etag.encode()),
            (b"docker-content-digest", reader.digest.encode()),
            (b"x-amzn-requestid", request_id.encode()),
        ]
        if wanted is UNSATISFIABLE:
            body = b"Requested range not satisfiable"
            started = True
            await send({"type": "http.response.start", "status": 416, "headers": [
                (b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()),
                (b"content-range", f"bytes */{size}".encode()), *common]})
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
            return
        span = wanted or ByteRange(0, size - 1)
        response_headers = [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(span.length if size else 0).encode()), *common]
        if wanted is not None:
            response_headers.append((b"content-range", f"bytes {span.first}-{span.last}/{size}".encode()))
        started = True
        await send({"type": "http.response.start", "status": 206 if wanted is not None else 200,
                    "headers": response_headers})
        if method == "HEAD" or size == 0:
            await send({"type": "http.response.body", "body": b""})
            return
        await _send_view(reader.view(), span, send)
    except OSError:  # the client went away
        pass
    except Exception:
        if not started:
            raise
        # The status line is gone: returning with the body incomplete makes uvicorn close the
        # connection, which the client sees as a short read.
        log.exception("request %s: download failed after the response started", request_id)
    finally:
        reader.close()


async def _send_view(view: memoryview, span: ByteRange, send: Any) -> None:
    """Send ``view[span]`` in CHUNK_BYTES slices, reading ahead and dropping what was sent."""
    region = getattr(view, "obj", None)
    advise = getattr(region, "madvise", None)
    size = len(view)
    pos, end = span.first, span.last + 1
    dropped = pos - pos % _PAGE  # pages before this one were never touched by this response
    try:
        while pos < end:
            stop = min(end, pos + CHUNK_BYTES)
            if advise is not None and stop < end:
                ahead = stop - stop % _PAGE
                advise(mmap.MADV_WILLNEED, ahead, min(CHUNK_BYTES, size - ahead))
            await send({"type": "http.response.body", "body": view[pos:stop], "more_body": stop < end})
            # When send returns the transport has taken the slice (written, or referenced with
            # less than its high-water mark outstanding): pages a chunk behind are done with.
            behind = max(span.first, pos - CHUNK_BYTES)
            upto = behind - behind % _PAGE
            if advise is not None and upto > dropped:
                advise(mmap.MADV_DONTNEED, dropped, upto - dropped)
                dropped = upto
            pos = stop
    finally:
        view.release()
