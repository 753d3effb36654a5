"""The protocol-neutral body readers: limits before and while reading, timeouts, disconnects,
and memory that follows the bytes that arrive."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from ecrstore.server.http.body import (
    BodyLimits,
    BodyStream,
    BodyTimeout,
    BodyTooLarge,
    ClientDisconnected,
    InvalidContentLength,
    content_length,
    discard_body,
    read_body,
)

pytestmark = pytest.mark.timeout(60)

LIMITS = BodyLimits(max_bytes=1000, idle_timeout=5.0, total_timeout=10.0)


class Receiver:
    """An ASGI receive() over ``chunks``; hangs after ``stall_after`` messages, or reports a
    disconnect after ``disconnect_after``."""

    def __init__(self, chunks: list[bytes], *, stall_after: int | None = None,
                 disconnect_after: int | None = None, delay: float = 0.0) -> None:
        self.chunks = chunks
        self.stall_after = stall_after
        self.disconnect_after = disconnect_after
        self.delay = delay
        self.calls = 0

    async def __call__(self) -> dict:
        index = self.calls
        self.calls += 1
        if self.disconnect_after is not None and index >= self.disconnect_after:
            return {"type": "http.disconnect"}
        if (self.stall_after is not None and index >= self.stall_after) or index >= len(self.chunks):
            await asyncio.sleep(3600)
        if self.delay:
            await asyncio.sleep(self.delay)
        return {"type": "http.request", "body": self.chunks[index], "more_body": index < len(self.chunks) - 1}


def collect(stream: BodyStream) -> list[bytes]:
    async def run() -> list[bytes]:
        return [chunk async for chunk in stream]
    return asyncio.run(asyncio.wait_for(run(), 30))


def test_chunks_arrive_in_order_and_are_counted():
    receive = Receiver([b"ab", b"", b"cde", b"f"])
    stream = BodyStream(receive, LIMITS, 6)
    assert not stream.complete
    assert collect(stream) == [b"ab", b"cde", b"f"]  # empty chunks are not yielded
    assert stream.received == 6 and stream.complete
    assert collect(stream) == []  # exhausted: receive() is not called again
    assert receive.calls == 4


def test_empty_body():
    stream = BodyStream(Receiver([b""]), LIMITS, 0)
    assert collect(stream) == [] and stream.received == 0 and stream.complete


def test_declared_length_over_the_limit_is_refused_unread():
    receive = Receiver([b"x" * 10])
    with pytest.raises(BodyTooLarge) as e:
        BodyStream(receive, LIMITS, 1001)
    assert e.value.declared == 1001 and e.value.limit == 1000
    assert receive.calls == 0
    BodyStream(receive, LIMITS, 1000)  # the limit itself is allowed


def test_chunked_body_is_counted_against_the_limit():
    receive = Receiver([b"x" * 400] * 3)
    stream = BodyStream(receive, LIMITS)
    got = []

    async def run() -> None:
        async for chunk in stream:
            got.append(chunk)

    with pytest.raises(BodyTooLarge) as e:
        asyncio.run(run())
    assert e.value.declared is None
    assert got == [b"x" * 400] * 2 and stream.received == 800  # the crossing chunk is not yielded
    assert receive.calls == 3


def test_idle_timeout():
    limits = BodyLimits(max_bytes=1000, idle_timeout=0.1, total_timeout=10.0)
    stream = BodyStream(Receiver([b"abc", b"def"], stall_after=1), limits)
    started = time.monotonic()
    with pytest.raises(BodyTimeout) as e:
        collect(stream)
    assert e.value.received == 3
    assert time.monotonic() - started < 5


def test_total_timeout_bounds_a_trickle():
    limits = BodyLimits(max_bytes=1000, idle_timeout=5.0, total_timeout=0.3)
    stream = BodyStream(Receiver([b"x"] * 1000, delay=0.05), limits)
    started = time.monotonic()
    with pytest.raises(BodyTimeout) as e:
        collect(stream)
    assert 0 < e.value.received < 1000
    assert time.monotonic() - started < 5


def test_disconnect():
    with pytest.raises(ClientDisconnected):
        collect(BodyStream(Receiver([b"abc", b"def"], disconnect_after=1), LIMITS))


def test_read_and_discard():
    seen = []
    body = asyncio.run(read_body(Receiver([b"ab", b"cd"]), LIMITS, 4, on_chunk=seen.append))
    assert body == bytearray(b"abcd") and seen == [b"ab", b"cd"]
    assert asyncio.run(discard_body(Receiver([b"ab", b"cd", b"e"]), LIMITS)) == 5


def test_buffer_follows_the_bytes_that_arrive_not_the_declared_length():
    limits = BodyLimits(max_bytes=64 << 20, idle_timeout=5.0, total_timeout=10.0)
    body = asyncio.run(read_body(Receiver([b"x" * 10]), limits, 32 << 20))
    assert body == b"x" * 10
    assert sys.getsizeof(body) < 4096  # nothing allocated for the 32 MiB announced


@pytest.mark.parametrize("value, expected", [(None, None), ("0", 0), ("1234", 1234)])
def test_content_length(value, expected):
    headers = {} if value is None else {"content-length": value}
    assert content_length(headers) == expected


@pytest.mark.parametrize("value", ["-1", "abc", "", "1.5"])
def test_invalid_content_length(value):
    with pytest.raises(InvalidContentLength) as e:
        content_length({"content-length": value})
    assert e.value.value == value


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        BodyLimits(0, 1.0, 1.0)
