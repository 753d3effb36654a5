"""Streaming a request body into an upload: from the socket to the upload's file and through
the native sha256 as it arrives, in bounded memory, never buffered whole.

The event loop receives chunks (uvicorn hands over what each read gave, up to its 64 KiB
flow-control mark) and collects them; once :data:`STEP_BYTES` are pending they go, as one
list, to a pool thread that writes them with one ``pwritev`` and hashes them (both release
the GIL), while the loop goes on receiving the next step. If the thread falls behind, the
loop stops receiving at :data:`WINDOW_BYTES` pending — so the socket's flow control slows the
client — until that step is done. Memory per connection is therefore bounded whatever the
body's size: ``2 × WINDOW_BYTES`` of body here (the step being written and the one being
collected: 8 MiB), the connection's own read buffer (2 MiB, :mod:`..http.guard`) and the
upload's 2 MiB staging buffer for direct writes (:class:`ecrstore.fsutil.DirectAppender`).
In durable mode the writes bypass the page cache, and the sha256 runs while each step's
write waits for the device.

Durability: nothing is acknowledged until :meth:`ecrstore.uploads.UploadStream.commit`, which
makes the bytes durable and then records them (and the sha256 midstate) in the index.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from typing import Any

__all__ = ["STEP_BYTES", "WINDOW_BYTES", "stream_into"]

#: Pending bytes handed to the writer thread at once.
STEP_BYTES = 1 << 20
#: Pending bytes past which the loop waits for the writer instead of receiving more.
WINDOW_BYTES = 4 << 20


async def stream_into(chunks: AsyncIterator[bytes], upload: Any, executor: Executor) -> int:
    """Write every chunk of ``chunks`` into ``upload`` (an open
    :class:`ecrstore.uploads.UploadStream`) and answer how many bytes were written; the caller
    commits or closes it. Raises what the body or the writes raise; no write is still running
    when it returns or raises."""
    loop = asyncio.get_running_loop()
    pending: list[bytes] = []
    pending_bytes = written = 0
    inflight: asyncio.Future[None] | None = None
    try:
        async for chunk in chunks:
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes < STEP_BYTES:
                continue
            if inflight is not None:
                if not inflight.done() and pending_bytes < WINDOW_BYTES:
                    continue  # the writer is busy: collect a larger step meanwhile
                await inflight
            inflight = loop.run_in_executor(executor, upload.write, pending)
            written += pending_bytes
            pending, pending_bytes = [], 0
        if inflight is not None:
            await inflight
            inflight = None
        if pending:
            await loop.run_in_executor(executor, upload.write, pending)
            written += pending_bytes
        return written
    finally:
        if inflight is not None and not inflight.done():
            # The body failed while a step is being written: let it finish before the caller
            # closes the upload (which cuts back what was not committed).
            try:
                await asyncio.shield(inflight)
            except Exception:
                pass
