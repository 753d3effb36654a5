"""The connection protocol's body buffering: a body is buffered up to its mark, then reading
pauses until the app takes it (bounded memory per connection, few pause/resume round trips)."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time

import pytest
from server_fixtures import free_port

from ecrstore.server.http.guard import BODY_BUFFER_BYTES, HeadLimits, guarded_protocol

#: What one socket read may add past the mark (uvloop reads at most 256 KiB at a time).
ONE_READ = 256 * 1024


class _Recorder:
    """An app that waits before its first receive, then records each body message's size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(0.5)  # the client keeps sending: the protocol buffers, then pauses
        while True:
            message = await receive()
            self.sizes.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        body = str(sum(self.sizes)).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("mark", [64 * 1024, BODY_BUFFER_BYTES])
def test_a_body_is_buffered_up_to_the_mark_then_reading_pauses(mark):
    import uvicorn

    app = _Recorder()
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=guarded_protocol(HeadLimits(), mark),
                            lifespan="off", log_level="warning", interface="asgi3")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        body = b"x" * (16 << 20)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("PUT", "/", body=body)
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, str(len(body)).encode())
        conn.close()
    finally:
        server.should_exit = True
        thread.join(10)
    first = app.sizes[0]
    assert mark < first <= mark + ONE_READ, app.sizes[:5]
    assert max(app.sizes) <= mark + ONE_READ
