"""The ASGI router: one app per worker, dispatching each request to a protocol's sub-app.

:class:`Router` owns the lifespan (startup and shutdown hooks: the sub-apps share a thread
pool and a store, so no single sub-app may close them) and picks the sub-app of each HTTP
request by path prefix and method, the first matching :class:`Route` winning, the ``default``
app otherwise. Adding a protocol is one route entry.

Error-safe fallback: a sub-app that raises before starting its response is answered with a
plain 500 (and the traceback logged); once a response started, a failure can only cut the
connection, which uvicorn does when the app returns with the body incomplete. Sub-apps still
answer their own errors in their protocol's format: the fallback is for bugs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .http.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ASGIApp", "Route", "Router"]

log = logging.getLogger("ecrstore.server")

_FALLBACK_BODY = b"Internal Server Error"
_NOT_FOUND_BODY = b"Not Found"


@dataclass(frozen=True)
class Route:
    """Requests whose path starts with ``prefix`` (and whose method is in ``methods``, when
    given) go to ``app``, an ASGI app that receives ``http`` scopes only."""

    prefix: str
    app: ASGIApp
    methods: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.methods is not None:
            object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.prefix) and (self.methods is None or method in self.methods)


class Router:
    """ASGI 3 app: ``routes`` in order, then ``default`` (None: 404 for unrouted requests).

    ``on_startup`` hooks run at lifespan startup (a raising hook fails the startup with its
    message); ``on_shutdown`` hooks run once, in order, at lifespan shutdown or :meth:`close`,
    each even when an earlier one raised. Hooks are plain callables run on the event loop
    thread; they may block (shutdown waits for running calls). Other scope types (websocket)
    are not served.
    """

    def __init__(self, routes: Sequence[Route], default: ASGIApp | None = None, *,
                 on_startup: Iterable[Callable[[], object]] = (),
                 on_shutdown: Iterable[Callable[[], object]] = ()) -> None:
        self.routes = tuple(routes)
        self.default = default
        self._on_startup = tuple(on_startup)
        self._on_shutdown = list(on_shutdown)

    def app_for(self, method: str, path: str) -> ASGIApp | None:
        """The sub-app serving ``method path``, or None when nothing does."""
        for route in self.routes:
            if route.matches(method, path):
                return route.app
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app_for(scope["method"], scope["path"])
        if app is None:
            await _plain(send, 404, _NOT_FOUND_BODY)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            if not started:
                await _plain(send, 500, _FALLBACK_BODY, close=True)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for hook in self._on_startup:
                        hook()
                except Exception as e:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": f"{type(e).__name__}: {e}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        """Run the shutdown hooks not run yet, in order; a raising hook is logged and the
        next one still runs. Idempotent."""
        hooks, self._on_shutdown = self._on_shutdown, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("shutdown hook %r failed", hook)


async def _plain(send: Send, status: int, body: bytes, close: bool = False) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except OSError:  # the client went away
        pass
