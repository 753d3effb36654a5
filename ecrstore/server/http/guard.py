"""Limits on a connection before any request reaches an app: head size and head time.

uvicorn's httptools protocol buffers a request's head (URL and headers) without bound and
waits for it forever; a client that sends a 16 MB header, or one byte a minute, costs memory
or a connection slot indefinitely. :func:`guarded_protocol` answers a subclass that:

* counts the bytes of each request's head as they arrive and, past ``max_head_bytes``, answers
  ``431 Request Header Fields Too Large`` and closes — the head is never buffered beyond the
  limit plus one read;
* gives each head ``head_timeout`` seconds from the connection's start (or from the end of the
  previous response) to arrive whole; a connection that has sent part of a head by then gets
  ``408 Request Timeout``, one that has sent nothing is closed quietly.

and, after the head, buffers up to ``body_buffer`` bytes of a request body before it stops
reading the socket until the app takes them (uvicorn's own mark is 64 KiB, which makes a
multi-GiB blob body arrive in ~16,000 pause/resume round trips: measured here, a bare uvicorn
app receiving 1 GiB ran at 0.45–0.68 GB/s with 64 KiB and 1.1–1.3 GB/s with 2 MiB). Memory per
connection stays bounded: ``body_buffer`` plus one read.

Everything else (keep-alive, pipelining, the concurrency limit) is uvicorn's own behaviour,
unchanged. One instance per connection, on the worker's event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

__all__ = ["BODY_BUFFER_BYTES", "HeadLimits", "guarded_protocol"]

#: Bytes of a request body a connection buffers before it stops reading (see the module doc).
BODY_BUFFER_BYTES = 2 << 20


@dataclass(frozen=True)
class HeadLimits:
    #: Bytes of request line and headers a request may have.
    max_head_bytes: int = 64 * 1024
    #: Seconds a request's head may take to arrive whole.
    head_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.max_head_bytes < 1024 or self.head_timeout <= 0:
            raise ValueError("max_head_bytes must be at least 1024 and head_timeout positive")


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def guarded_protocol(limits: HeadLimits, body_buffer: int = BODY_BUFFER_BYTES) -> type:
    """uvicorn's httptools protocol with ``limits`` on every request head, buffering up to
    ``body_buffer`` bytes of a body."""
    if body_buffer < 1:
        raise ValueError("body_buffer must be positive")
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_bytes = 0
            self._in_head = True
            self._head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _await_head(self) -> None:
            self._in_head = True
            self._head_bytes = 0
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(limits.head_timeout, self._head_expired)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _refuse(self, status: int) -> None:
            self._cancel_head_timer()
            if self.transport is None or self.transport.is_closing():
                return
            reason = _REASONS[status]
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % (status, reason))
            self.transport.close()

        def _head_expired(self) -> None:
            self._head_timer = None
            if not self._in_head or self.transport is None or self.transport.is_closing():
                return
            if self._head_bytes:
                self.logger.warning("request head not received within %ss: 408", limits.head_timeout)
                self._refuse(408)
            else:
                self.transport.close()  # an idle connection: nothing to answer

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # Still inside the head after this read and over the limit: the head is too large.
            # (A read that completed the head may carry body bytes: those don't count.)
            if self._in_head and self._head_bytes > limits.max_head_bytes:
                self.logger.warning("request head over %d bytes: 431", limits.max_head_bytes)
                self._refuse(431)

        def on_body(self, body: bytes) -> None:
            # uvicorn's on_body with this module's buffering mark in place of its 64 KiB.
            if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
                return
            self.cycle.body += body
            if len(self.cycle.body) > body_buffer:
                self.flow.pause_reading()
            self.cycle.message_event.set()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._cancel_head_timer()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_head()

    return GuardedHttpToolsProtocol
