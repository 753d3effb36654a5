"""The ASGI router (real ASGI calls): dispatch by prefix and method, the error-safe fallback,
lifespan hooks; and the composed app's routes."""

from __future__ import annotations

import asyncio
import logging

import pytest
from server_fixtures import asgi_call

from ecrstore.errors import AccessDeniedException, LayersNotFoundException
from ecrstore.server.asgi import Route, Router
from ecrstore.server.config import ServerConfig
from ecrstore.server.factory import compose

pytestmark = pytest.mark.timeout(60)


def answering(name: str):
    """A sub-app answering 200 with its name as the body."""
    async def app(scope, receive, send):
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(name)).encode())]})
        await send({"type": "http.response.body", "body": name.encode()})
    return app


def test_dispatch_by_prefix_then_method_then_default():
    router = Router([Route("/layers/", answering("layers"), frozenset({"GET", "head"})),
                     Route("/v2/", answering("oci"))], default=answering("api"))
    assert asgi_call(router, method="GET", path="/layers/a/b").body == b"layers"
    assert asgi_call(router, method="HEAD", path="/layers/a/b").body == b"layers"
    assert asgi_call(router, method="POST", path="/layers/a/b").body == b"api"  # method not routed
    assert asgi_call(router, method="PUT", path="/v2/x/blobs/uploads/").body == b"oci"
    assert asgi_call(router, path="/").body == b"api"
    assert router.app_for("GET", "/layer") is router.default


def test_unrouted_request_without_default_is_404():
    r = asgi_call(Router([Route("/v2/", answering("oci"))]), path="/")
    assert r.status == 404


def test_sub_app_raising_before_its_response_gets_a_500(caplog):
    async def broken(scope, receive, send):
        raise RuntimeError("bug")

    with caplog.at_level(logging.ERROR, logger="ecrstore.server"):
        r = asgi_call(Router([], default=broken))
    assert r.status == 500 and r.headers["connection"] == "close"
    assert b"bug" not in r.body
    assert any(rec.exc_info for rec in caplog.records)


def test_sub_app_raising_after_its_response_started_is_not_answered_twice():
    starts = []

    async def half(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        raise RuntimeError("cut")

    async def send(message):
        if message["type"] == "http.response.start":
            starts.append(message["status"])

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    asyncio.run(asyncio.wait_for(Router([], default=half)(scope, receive, send), 10))
    assert starts == [200]


def lifespan(router: Router, *events: str) -> list[dict]:
    messages = iter([{"type": f"lifespan.{e}"} for e in events])
    sent: list[dict] = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    asyncio.run(asyncio.wait_for(router({"type": "lifespan"}, receive, send), 10))
    return sent


def test_lifespan_runs_hooks_in_order_even_after_a_failure():
    calls = []

    def failing():
        calls.append("failing")
        raise OSError("disk")

    router = Router([], on_startup=[lambda: calls.append("start")],
                    on_shutdown=[failing, lambda: calls.append("second")])
    sent = lifespan(router, "startup", "shutdown")
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert calls == ["start", "failing", "second"]
    router.close()  # already closed: nothing runs twice
    assert calls == ["start", "failing", "second"]


def test_failing_startup_is_reported():
    def fail():
        raise ValueError("no store")

    sent = lifespan(Router([], on_startup=[fail]), "startup")
    assert sent[0]["type"] == "lifespan.startup.failed" and "no store" in sent[0]["message"]


# --- the composed app ---------------------------------------------------------------------------


class Signer:
    def __init__(self, error=None):
        self.error = error
        self.calls = []

    def verify(self, method, path, query):
        self.calls.append((method, path, query))
        if self.error is not None:
            raise self.error
        return "111111111111", "team/app", "sha256:" + "0" * 64


class DownloadStore:
    def __init__(self, signer):
        self.url_signer = signer
        self.opened = []
        self.closed = False

    def open_layer(self, repository_name, layer_digest, *, registry_id=None):
        self.opened.append((registry_id, repository_name, layer_digest))
        raise LayersNotFoundException("gone")

    def close(self):
        self.closed = True


@pytest.mark.parametrize("error, status, code", [
    (AccessDeniedException("The download URL signature does not match"), 403, "AccessDeniedException"),
    (None, 404, "LayersNotFoundException"),
])
def test_composed_app_routes_downloads_to_the_signed_route(error, status, code):
    store = DownloadStore(Signer(error))
    app = compose(store, ServerConfig(store_path="/nonexistent", auth=False), None)
    try:
        r = asgi_call(app, b"", method="GET", path="/layers/111111111111/team/app/sha256:00")
        assert r.status == status and r.json()["__type"] == code
        assert r.headers["content-type"] == "application/x-amz-json-1.1" and r.headers["x-amzn-requestid"]
        assert store.url_signer.calls[0][:2] == ("GET", "/layers/111111111111/team/app/sha256:00")
        assert store.opened == ([] if error else [("111111111111", "team/app", "sha256:" + "0" * 64)])
        # Other methods on the prefix belong to the JSON API, which serves only POST /.
        r = asgi_call(app, b"", method="POST", path="/layers/x", target="DescribeRepositories")
        assert r.status == 400 and r.json()["__type"] == "UnknownOperationException"
    finally:
        app.close()
    assert store.closed
