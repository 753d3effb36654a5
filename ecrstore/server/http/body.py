"""Reading request bodies within limits: whole (:func:`read_body`), as a stream of chunks
(:class:`BodyStream`), or discarded (:func:`discard_body`).

Every reader is a :class:`BodyStream` and enforces the same :class:`BodyLimits`:

- a declared ``Content-Length`` above ``max_bytes`` is refused before a byte is read;
- bytes are counted as they arrive, so a chunked body (no length) cannot exceed ``max_bytes``
  either;
- each wait for the next chunk is bounded by ``idle_timeout`` and the whole body by
  ``total_timeout`` (a client trickling a byte at a time cannot hold a worker forever).

Memory follows the bytes that actually arrive, never the declared length: a client announcing
28 MB and sending nothing costs nothing. (A buffer preallocated at the announced size would be
committed, zero-filled, for every such connection.) Appending to a ``bytearray`` lets the C
allocator grow it in place, which measured as fast as copying into a preallocated buffer.

A refusal raises a :class:`BodyError` subclass with the body left (partly) unread: the caller
answers and must then close the connection, since the rest of the body cannot be skipped. A
client that disconnects raises :class:`ClientDisconnected`: there is nobody to answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .types import Receive

__all__ = [
    "BufferBudget",
    "BudgetExhausted",
    "BodyError",
    "BodyLimits",
    "BodyStream",
    "BodyTimeout",
    "BodyTooLarge",
    "ClientDisconnected",
    "InvalidContentLength",
    "content_length",
    "discard_body",
    "read_body",
]

_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Bounds on one request body: at most ``max_bytes`` bytes, at most ``idle_timeout``
    seconds between two chunks, at most ``total_timeout`` seconds in all."""

    max_bytes: int
    idle_timeout: float
    total_timeout: float

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.idle_timeout <= 0 or self.total_timeout <= 0:
            raise ValueError("body limits must be positive")


class BodyError(Exception):
    """The body was refused before its end: answer, then close the connection."""


class BudgetExhausted(BodyError):
    """Taking this body's next chunk would put the worker over its buffered-bytes budget."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the server holds its maximum of {limit} bytes of request bodies")
        self.limit = limit


class BufferBudget:
    """The request-body bytes one worker may hold at once, shared by all its requests.

    Used from the event loop only (bodies are read there), so it needs no lock. Bytes are
    taken as chunks arrive and given back when the request that held them is done.
    """

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("the buffer budget must be positive")
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)


class BodyTooLarge(BodyError):
    """The body is larger than ``limit``: ``declared`` is its Content-Length when that alone
    decided (nothing was read), None when the bytes were counted."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        what = f"{declared} bytes" if declared is not None else f"more than {limit} bytes"
        super().__init__(f"request body of {what} exceeds the limit of {limit} bytes")
        self.limit = limit
        self.declared = declared


class BodyTimeout(BodyError):
    """The next chunk (or the rest of the body) did not arrive in time; ``received`` bytes had."""

    def __init__(self, received: int) -> None:
        super().__init__(f"request body not received in time ({received} bytes arrived)")
        self.received = received


class InvalidContentLength(BodyError):
    """The Content-Length header is not a non-negative integer."""

    def __init__(self, value: str) -> None:
        super().__init__(f"invalid Content-Length: {value!r}")
        self.value = value


class ClientDisconnected(Exception):
    """The client went away before the body was complete: nobody is left to answer."""


def content_length(headers: Mapping[str, str]) -> int | None:
    """The declared body length from lower-case ``headers``; None when absent (a chunked body).
    Raises InvalidContentLength for anything but a non-negative integer."""
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        length = -1
    if length < 0:
        raise InvalidContentLength(value)
    return length


class BodyStream:
    """The request body as an async iterator of non-empty ``bytes`` chunks, within ``limits``.

    Raises BodyTooLarge at construction when ``length`` (the declared Content-Length) is over
    the limit, so that nothing is read; while iterating, BodyTooLarge once the bytes counted
    exceed it (the chunk that crossed the limit is not yielded), BodyTimeout, or
    ClientDisconnected. The total timeout runs from construction. Iteration ends after the
    last chunk; :attr:`received` counts the bytes yielded. One consumer at a time.
    """

    __slots__ = ("_receive", "_limits", "_deadline", "_done", "received", "_budget", "_held")

    def __init__(self, receive: Receive, limits: BodyLimits, length: int | None = None,
                 budget: BufferBudget | None = None) -> None:
        if length is not None and length > limits.max_bytes:
            raise BodyTooLarge(limits.max_bytes, length)
        self._receive = receive
        self._limits = limits
        self._deadline = time.monotonic() + limits.total_timeout
        self._done = False
        self.received = 0
        self._budget = budget
        self._held = 0

    def hold(self, n: int) -> None:
        """Count ``n`` bytes the consumer keeps against the budget (BudgetExhausted past it)."""
        if self._budget is not None:
            if not self._budget.take(n):
                raise BudgetExhausted(self._budget.limit)
            self._held += n

    def release(self) -> None:
        """Give back every byte :meth:`hold` counted (the request is done with its body)."""
        if self._budget is not None and self._held:
            self._budget.give(self._held)
            self._held = 0

    @property
    def complete(self) -> bool:
        """Whether the last chunk has been received."""
        return self._done

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            timeout = min(self._limits.idle_timeout, self._deadline - time.monotonic())
            try:
                if timeout <= 0:
                    raise asyncio.TimeoutError
                if _timeout is not None:
                    # A timer on this task, not a task per chunk as wait_for makes: per-chunk
                    # cost matters when a multi-GiB blob arrives in 64 KiB messages.
                    async with _timeout(timeout):
                        message = await self._receive()
                else:  # pragma: no cover - Python 3.10
                    message = await asyncio.wait_for(self._receive(), timeout)
            except asyncio.TimeoutError:
                raise BodyTimeout(self.received) from None
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            self._done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                if self.received + len(chunk) > self._limits.max_bytes:
                    raise BodyTooLarge(self._limits.max_bytes)
                self.received += len(chunk)
                return bytes(chunk)  # bytes already (ASGI): no copy
        raise StopAsyncIteration

    async def read(self, on_chunk: Callable[[bytes], None] | None = None) -> bytearray:
        """The rest of the body in one buffer that grows as bytes arrive (see the module doc).
        ``on_chunk`` sees each chunk, in order, once it is counted (e.g. a hash fed while the
        body arrives). With a budget the buffered bytes are held against it until
        :meth:`release` (BudgetExhausted when it runs out)."""
        buf = bytearray()
        async for chunk in self:
            self.hold(len(chunk))
            buf += chunk
            if on_chunk is not None:
                on_chunk(chunk)
        return buf

    async def discard(self) -> int:
        """Read the rest of the body and drop it, so that the connection stays usable (closing
        a socket with unread input makes the kernel reset it, and the client may lose the
        response); answers :attr:`received`."""
        async for _ in self:
            pass
        return self.received


async def read_body(receive: Receive, limits: BodyLimits, length: int | None = None,
                    on_chunk: Callable[[bytes], None] | None = None) -> bytearray:
    """The whole body in one buffer that grows as bytes arrive: ``BodyStream(receive, limits,
    length).read(on_chunk)``. Raises what :class:`BodyStream` raises."""
    return await BodyStream(receive, limits, length).read(on_chunk)


async def discard_body(receive: Receive, limits: BodyLimits, length: int | None = None) -> int:
    """Read the body and drop it: ``BodyStream(receive, limits, length).discard()``. Raises
    what :class:`BodyStream` raises."""
    return await BodyStream(receive, limits, length).discard()
