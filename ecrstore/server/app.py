"""The ASGI application: ECR's AWS JSON 1.1 protocol in front of a :class:`ecrstore.Store`.

One request goes through these steps; each refusal happens as early as it can be decided:

1. ``POST /`` (``GET``/``HEAD /layers/...``, GetDownloadUrlForLayer's signed URLs, are
   served by :mod:`.download`); ``Content-Length`` above the body limit is refused unread (the
   connection is then closed, since the unread body cannot be skipped).
2. SigV4 header checks (missing, malformed, unknown key, clock skew): 403 without buffering
   the body (it is read and discarded, so the connection stays usable).
3. The body is read into one preallocated buffer, with an idle and a total timeout and the
   size limit counted for chunked bodies. While it arrives, pool threads hash it for SigV4
   (:class:`.body.BodyHasher`), so the hash is nearly done when the last byte is in.
4. Off the event loop, in the worker's thread pool: the signature check, operation lookup,
   JSON decoding (:func:`.body.decode_request`: a layer part's base64 is decoded straight
   from the body buffer, never turned into a ``str``), member binding (strict base64),
   registry resolution and the Store call; hashing, base64 decoding and disk I/O release the
   GIL, so calls overlap with each other and with the loop.
5. Response: 200 with the JSON result, or the error's status with
   ``{"__type", "message", ...}``; every response carries ``x-amzn-RequestId``.

An unexpected exception becomes a 500 ServerException whose body names only the request id;
the traceback goes to the log (stderr).

Workers: :class:`AppFactory` is the uvicorn app factory; each worker process calls it after it
starts and so opens its own Store (the Store supports several processes on one path).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ..errors import (
    RequestTimeoutException,
    AccessDeniedException,
    EcrError,
    InvalidParameterException,
    SerializationException,
    ServerException,
    UnknownOperationException,
)
from ..urls import LAYER_PATH_PREFIX
from .body import BodyHasher, decode_request
from .config import ServerConfig
from .credentials import Credential, load_credentials
from .download import download_status, serve_download
from .operations import OPERATIONS, TARGET_PREFIX, Operation, lookup
from .sigv4 import PendingAuth, SigV4Verifier

__all__ = ["AppFactory", "EcrApp", "build_app"]

log = logging.getLogger("ecrstore.server")

CONTENT_TYPE = b"application/x-amz-json-1.1"


class _ClientGone(Exception):
    """The client disconnected before the request was complete: nobody to answer."""


@dataclass(frozen=True, slots=True)
class _Caller:
    """Who is asking: the credential (None without authentication) and the signing region."""

    credential: Credential | None
    region: str


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()  # ECR's JSON protocol sends timestamps as epoch seconds
    if isinstance(value, (bytes, bytearray, memoryview)):
        import pybase64

        return pybase64.b64encode(bytes(value)).decode()
    if hasattr(value, "value"):  # enums
        return value.value
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME)


class EcrApp:
    """ASGI app for ECR's JSON protocol over ``store``.

    ``verifier`` None disables authentication (any or no signature accepted; requests without
    registryId use the store's default registry). Store calls run in a private thread pool of
    ``config.threads`` threads. The app owns the store: it is closed at lifespan shutdown.
    """

    def __init__(self, store: Any, config: ServerConfig, verifier: SigV4Verifier | None,
                 operations: dict[str, Operation] | None = None) -> None:
        self.store = store
        self.config = config
        self.verifier = verifier
        self.operations = OPERATIONS if operations is None else operations
        self._executor = ThreadPoolExecutor(config.threads, thread_name_prefix="ecrstore-call")
        # Test-only fault hook (off unless configured): see ServerConfig.fail_upload_parts.
        self._fail_parts = config.fail_upload_parts
        self._fail_lock = threading.Lock()

    # --- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        """Stop the thread pool (waiting for running calls) and close the store."""
        self._executor.shutdown(wait=True)
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    async def _http(self, scope: dict, receive: Any, send: Any) -> None:
        request_id = str(uuid.uuid4())
        keep_alive = True
        try:
            if scope["method"] in ("GET", "HEAD") and scope["path"].startswith(LAYER_PATH_PREFIX):
                try:
                    await serve_download(self.store, self._executor, scope, send, request_id)
                    return
                except EcrError as e:
                    status, body = self._error_response(e, request_id, download_status(e))
            else:
                status, body = await self._handle(scope, receive, request_id)
        except _ClientGone:
            return
        except _BodyLeftUnread as e:
            keep_alive = False
            status, body = self._error_response(e.error, request_id)
        except EcrError as e:
            status, body = self._error_response(e, request_id)
        except Exception:
            log.exception("request %s failed", request_id)
            error = ServerException(f"An internal error occurred (request id {request_id}).")
            status, body = error.status, _dumps(error.to_wire())
        headers = [
            (b"content-type", CONTENT_TYPE),
            (b"content-length", str(len(body)).encode()),
            (b"x-amzn-requestid", request_id.encode()),
        ]
        if not keep_alive:
            headers.append((b"connection", b"close"))
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except OSError:  # the client went away; nothing left to do
            pass

    @staticmethod
    def _error_response(error: EcrError, request_id: str, status: int | None = None) -> tuple[int, bytes]:
        if error.status >= 500:
            log.error("request %s: %s: %s", request_id, error.code, error.message, exc_info=error)
        return status or error.status, _dumps(error.to_wire())

    # --- the JSON protocol ------------------------------------------------------------------

    async def _handle(self, scope: dict, receive: Any, request_id: str) -> tuple[int, bytes]:
        if scope["method"] != "POST" or scope["path"] != "/":
            raise UnknownOperationException(
                f"Only 'POST /' with an X-Amz-Target header is served, not '{scope['method']} {scope['path']}'."
            )
        raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        headers = dict(raw_headers)
        length = self._content_length(headers)
        if length is not None and length > self.config.max_body_bytes:
            raise _BodyLeftUnread(self._too_large(length))

        pending = None
        if self.verifier is not None:
            try:
                pending = self.verifier.check_headers(headers)
            except EcrError as refusal:
                # Refused on the headers alone: the body is read and discarded, never buffered,
                # so that the connection stays usable (closing a socket with unread input makes
                # the kernel reset it, and the client may lose this very response).
                try:
                    await self._read_body(receive, length, keep=False)
                except _BodyLeftUnread:
                    raise _BodyLeftUnread(refusal) from None
                raise

        # The signature covers the body's sha256: hashed in pool threads while it arrives.
        hasher = BodyHasher(self._executor) if pending is not None and length else None
        body = [await self._read_body(receive, length, hasher=hasher)]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._execute, scope, raw_headers, headers, pending, hasher, body
        )

    @staticmethod
    def _content_length(headers: dict[str, str]) -> int | None:
        value = headers.get("content-length")
        if value is None:
            return None
        try:
            length = int(value)
        except ValueError:
            length = -1
        if length < 0:
            raise _BodyLeftUnread(SerializationException(f"Invalid Content-Length: {value!r}"))
        return length

    def _too_large(self, size: int | str) -> InvalidParameterException:
        return InvalidParameterException(
            f"Request body of {size} bytes exceeds the limit of {self.config.max_body_bytes} bytes; "
            "a layer part may hold at most 20971520 bytes"
        )

    async def _read_body(self, receive: Any, length: int | None, keep: bool = True,
                         hasher: BodyHasher | None = None) -> bytearray:
        """The whole body in one buffer, preallocated when the length is known (``keep=False``
        reads and discards it). ``hasher`` is fed as the bytes arrive (it only hashes a
        preallocated buffer; for any other it is left behind and the caller hashes the rest).
        Raises _BodyLeftUnread on timeout or when over the limit."""
        config = self.config
        buf = bytearray(length) if length and keep else bytearray()
        view = memoryview(buf) if length and keep else None
        received = 0
        deadline = time.monotonic() + config.body_total_timeout
        while True:
            timeout = min(config.body_idle_timeout, deadline - time.monotonic())
            try:
                if timeout <= 0:
                    raise asyncio.TimeoutError
                message = await asyncio.wait_for(receive(), timeout)
            except asyncio.TimeoutError:
                raise _BodyLeftUnread(RequestTimeoutException(
                    f"The request body was not received in time ({received} bytes arrived)."
                )) from None
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            if chunk:
                end = received + len(chunk)
                if not keep:
                    if end > config.max_body_bytes:
                        raise _BodyLeftUnread(self._too_large(f"more than {config.max_body_bytes}"))
                elif view is not None and end <= len(buf):
                    view[received:end] = chunk
                    if hasher is not None:
                        hasher.advance(view, end)
                elif end > config.max_body_bytes:
                    raise _BodyLeftUnread(self._too_large(f"more than {config.max_body_bytes}"))
                else:
                    if view is not None:  # more than announced; a conforming server never does this
                        if hasher is not None:
                            hasher.settle()  # its step holds a view of the buffer
                        view.release()
                        view = None
                        del buf[received:]
                    buf += chunk
                received = end
            if not message.get("more_body", False):
                break
        if view is not None:
            view.release()
        if keep and length is not None and received != length:
            if hasher is not None:
                hasher.settle()
            del buf[received:]
        return buf

    def _execute(self, scope: dict, raw_headers: list[tuple[str, str]], headers: dict[str, str],
                 pending: PendingAuth | None, hasher: BodyHasher | None,
                 body_box: list[bytearray]) -> tuple[int, bytes]:
        """Runs in the thread pool: authenticate, decode, call the store, encode.

        The body comes in a one-item list so that it can be dropped once decoded (the caller
        and the executor keep references to the arguments, not to the list's item).
        """
        body = body_box.pop()
        if pending is not None:
            body_hash = hasher.hexdigest(body) if hasher is not None else hashlib.sha256(body).hexdigest()
            raw_path = scope.get("raw_path")
            path = raw_path.decode("latin-1") if raw_path else scope["path"]
            credential = self.verifier.verify(  # type: ignore[union-attr]
                pending, scope["method"], path, scope.get("query_string", b"").decode("latin-1"),
                raw_headers, body_hash,
            )
            caller = _Caller(credential, pending.header.region)
        else:
            caller = _Caller(None, "us-east-1")

        target = headers.get("x-amz-target")
        op = lookup(target, self.operations)
        if op is None:
            name = target or ""
            if name.startswith(TARGET_PREFIX):
                name = name[len(TARGET_PREFIX):]
            raise UnknownOperationException(f"Operation '{name}' is not supported by this endpoint.")

        try:
            request = decode_request(body, op.blob_member) if body else {}
        except orjson.JSONDecodeError as e:
            raise SerializationException(f"Malformed JSON request body: {e}") from None
        del body
        if not isinstance(request, dict):
            raise SerializationException("The request body must be a JSON object.")
        kwargs = op.bind(request)
        del request  # the blob is now bytes in kwargs; drop the base64 text (or view) before the call
        self._resolve_registry(op, kwargs, caller)
        for name in op.request_kwargs:
            kwargs[name] = self._request_value(name, scope, headers)
        result = op.call(self.store, kwargs)
        del kwargs
        if op.name == "UploadLayerPart" and self._fail_parts > 0 and self._take_injected_failure():
            raise ServerException("Injected failure after the part was stored (--fail-next-upload-parts).")
        return 200, _dumps(op.encode(result))

    def _request_value(self, name: str, scope: dict, headers: dict[str, str]) -> Any:
        if name == "base_url":  # where the client reached us: download URLs point back here
            host = headers.get("host")
            if not host:  # HTTP/1.0 without Host: the address the connection came in on
                server = scope.get("server") or ("127.0.0.1", 80)
                address = f"[{server[0]}]" if ":" in server[0] else server[0]
                host = f"{address}:{server[1]}"
            return f"{scope.get('scheme', 'http')}://{host}"
        if name == "expires_in":
            return self.config.download_url_ttl
        raise KeyError(f"no request value {name!r}")

    def _take_injected_failure(self) -> bool:
        with self._fail_lock:
            if self._fail_parts <= 0:
                return False
            self._fail_parts -= 1
            return True

    @staticmethod
    def _resolve_registry(op: Operation, kwargs: dict[str, Any], caller: _Caller) -> None:
        """An access key acts on its own registry only; without one the request's registryId
        (or the store's default) is used."""
        if caller.credential is None:
            return
        own = caller.credential.registry_id
        wanted = kwargs.get("registry_id")
        if wanted is not None and wanted != own:
            resource = kwargs.get("repository_name", "*")
            raise AccessDeniedException(
                f"User: arn:aws:iam::{own}:user/{caller.credential.access_key_id} is not authorized "
                f"to perform: ecr:{op.name} on resource: "
                f"arn:aws:ecr:{caller.region}:{wanted}:repository/{resource} "
                f"because no resource-based policy allows the ecr:{op.name} action"
            )
        kwargs["registry_id"] = own


class _BodyLeftUnread(Exception):
    """An error answered before the whole body was read: the connection must be closed."""

    def __init__(self, error: EcrError) -> None:
        super().__init__(error)
        self.error = error


def build_app(config: ServerConfig) -> EcrApp:
    """Open the store and the credentials named by ``config`` and build the app."""
    from .. import Store  # imported here: the operation table and tests need no store

    verifier = None
    if config.auth:
        verifier = SigV4Verifier(load_credentials(config.credentials_file))  # type: ignore[arg-type]
    store = Store(config.store_path, **config.store_options)
    return EcrApp(store, config, verifier)


@dataclass(frozen=True)
class AppFactory:
    """uvicorn app factory (``factory=True``): picklable, so it travels to each worker process,
    which calls it after it started and so opens its own Store there."""

    config: ServerConfig

    def __call__(self) -> EcrApp:
        return build_app(self.config)
