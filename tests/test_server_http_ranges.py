"""Byte ranges and sending a buffer in place (protocol-neutral HTTP pieces)."""

from __future__ import annotations

import asyncio
import mmap

import pytest

from ecrstore.server.http.ranges import FULL, UNSATISFIABLE, ByteRange, plan_range
from ecrstore.server.http.send import send_view

pytestmark = pytest.mark.timeout(60)

ETAG = '"sha256:abc"'


@pytest.mark.parametrize("header, if_range, expected", [
    (None, None, FULL),
    ("bytes=0-9", None, ByteRange(0, 9)),
    ("bytes=10-", None, ByteRange(10, 99)),
    ("bytes=90-1000", None, ByteRange(90, 99)),  # clamped to the end
    ("bytes=-5", None, ByteRange(95, 99)),
    ("bytes=-500", None, ByteRange(0, 99)),
    (" Bytes = 1 - 2 ", None, ByteRange(1, 2)),
    ("bytes=100-", None, UNSATISFIABLE),
    ("bytes=-0", None, UNSATISFIABLE),
    ("bytes=0-1,5-6", None, FULL),
    ("bytes=5-1", None, FULL),
    ("items=0-1", None, FULL),
    ("bytes=-", None, FULL),
    ("bytes=0-9", ETAG, ByteRange(0, 9)),
    ("bytes=0-9", '"other"', FULL),
    ("bytes=0-9", "Wed, 21 Oct 2015 07:28:00 GMT", FULL),
])
def test_plan_range(header, if_range, expected):
    assert plan_range(header, if_range, ETAG, 100) == expected


def test_empty_representation_has_no_satisfiable_suffix():
    assert plan_range("bytes=-1", None, ETAG, 0) is UNSATISFIABLE
    assert ByteRange(3, 7).content_range(10) == "bytes 3-7/10" and ByteRange(3, 7).length == 5


@pytest.mark.parametrize("over_mmap", [False, True])
def test_send_view_sends_slices_of_the_buffer_in_place(over_mmap):
    size = 3 * mmap.PAGESIZE + 123
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    if over_mmap:
        buffer = mmap.mmap(-1, size)
        buffer[:] = data
    else:
        buffer = bytearray(data)
    view = memoryview(buffer)
    sent = []

    async def send(message):
        body = message["body"]
        assert isinstance(body, memoryview) and body.obj is buffer  # no copy
        sent.append((bytes(body), message["more_body"]))

    span = ByteRange(100, size - 2)
    asyncio.run(send_view(send, view, span, chunk_bytes=mmap.PAGESIZE))
    assert b"".join(b for b, _ in sent) == data[100:size - 1]
    assert [more for _, more in sent] == [True] * (len(sent) - 1) + [False]
    with pytest.raises(ValueError):
        view[0]  # released on return
    if over_mmap:
        buffer.close()  # no view left behind
