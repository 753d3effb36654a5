"""The AWS JSON 1.1 handler: ECR's ``POST /`` API in front of a :class:`ecrstore.Store`.

One request goes through these steps; each refusal happens as early as it can be decided:

1. ``POST /`` only; ``Content-Length`` above the body limit is refused unread (the connection
   is then closed, since the unread body cannot be skipped).
2. SigV4 header checks (missing, malformed, unknown key, clock skew): 403 without buffering
   the body (it is read and discarded, so the connection stays usable).
3. The body is read within the limits of :mod:`..http.body` (size counted for chunked bodies,
   idle and total timeouts, memory growing with the bytes that arrive). While it arrives, pool
   threads hash it for SigV4 (:class:`..http.hasher.BodyHasher`), so the hash is nearly done
   when the last byte is in.
4. Off the event loop, in the worker's thread pool: the signature check, operation lookup,
   JSON decoding (:func:`.decode.decode_request`: a layer part's base64 is decoded straight
   from the body buffer, never turned into a ``str``), member binding (strict base64),
   registry resolution and the Store call; hashing, base64 decoding and disk I/O release the
   GIL, so calls overlap with each other and with the loop.
5. Response: 200 with the JSON result, or the error's status with
   ``{"__type", "message", ...}`` (:mod:`.codec`); every response carries ``x-amzn-RequestId``.

An unexpected exception becomes a 500 ServerException whose body names only the request id;
the traceback goes to the log (stderr).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import orjson

from ...errors import (
    AccessDeniedException,
    EcrError,
    InvalidParameterException,
    RequestTimeoutException,
    SerializationException,
    ServerException,
    ThrottlingException,
    UnknownOperationException,
)
from ...limits import DEFAULT_REGISTRY_ID
from ..auth.credentials import Credential
from ..auth.registry_tokens import RegistryTokens
from ..auth.sigv4 import PendingAuth, SigV4Verifier
from ..config import ServerConfig
from ..http.body import (
    BodyError,
    BodyLimits,
    BodyStream,
    BodyTimeout,
    BodyTooLarge,
    BudgetExhausted,
    BufferBudget,
    ClientDisconnected,
    InvalidContentLength,
    content_length,
)
from ..http.hasher import BodyHasher
from ..http.headers import header_list, raw_path, request_base_url
from ..http.types import Receive, Scope, Send
from .codec import dumps
from .decode import decode_request
from .login import Logins
from .operations import MAX_LAYER_PART_BYTES, OPERATIONS, TARGET_PREFIX, Operation, lookup
from .responses import error_response, internal_error, send_json

__all__ = ["EcrApp"]


@dataclass(frozen=True, slots=True)
class _Caller:
    """Who is asking: the credential (None without authentication) and the signing region."""

    credential: Credential | None
    region: str


class _BodyLeftUnread(Exception):
    """An error answered before the whole body was read: the connection must be closed."""

    def __init__(self, error: EcrError) -> None:
        super().__init__(error)
        self.error = error


class EcrApp:
    """ASGI app (``http`` scopes) for ECR's JSON protocol over ``store``.

    ``verifier`` None disables authentication (any or no signature accepted; requests without
    registryId use the store's default registry). Store calls, signature checks and decoding
    run in ``executor``; the caller owns it and the store (see :func:`..factory.compose`),
    which must outlive the app. Safe for any number of concurrent requests.
    """

    def __init__(self, store: Any, config: ServerConfig, verifier: SigV4Verifier | None, executor: Executor,
                 operations: Mapping[str, Operation] | None = None, tokens: RegistryTokens | None = None) -> None:
        self.store = store
        self.config = config
        self.verifier = verifier
        self.operations = OPERATIONS if operations is None else operations
        #: What operations call: the store, the front end's own operations, and the store's
        #: areas (``store.<target>``: ``policies``, ``lifecycle``…) the other targets name.
        self.targets: dict[str, Any] = {
            "store": store, "server": Logins(tokens, getattr(store, "registry_id", DEFAULT_REGISTRY_ID)),
        }
        for op in self.operations.values():
            if op.target not in self.targets:
                self.targets[op.target] = getattr(store, op.target, None)  # None: a store without the area
        self.limits = BodyLimits(config.max_body_bytes, config.body_idle_timeout, config.body_total_timeout)
        #: Body bytes this app (one per worker) holds at once, over all requests.
        self.budget = BufferBudget(config.max_buffered_bytes)
        self._executor = executor
        # Test-only fault hook (off unless configured): see ServerConfig.fail_upload_parts.
        self._fail_parts = config.fail_upload_parts
        self._fail_lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        close = False
        try:
            status, body = await self._handle(scope, receive, request_id)
        except ClientDisconnected:
            return
        except _BodyLeftUnread as e:
            close = True
            status, body = error_response(e.error, request_id)
        except EcrError as e:
            status, body = error_response(e, request_id)
        except Exception:
            status, body = internal_error(request_id)
        await send_json(send, status, body, request_id, close=close)

    async def _handle(self, scope: Scope, receive: Receive, request_id: str) -> tuple[int, bytes]:
        if scope["method"] != "POST" or scope["path"] != "/":
            raise UnknownOperationException(
                f"Only 'POST /' with an X-Amz-Target header is served, not '{scope['method']} {scope['path']}'."
            )
        raw_headers = header_list(scope)
        headers = dict(raw_headers)
        try:
            # Before the signature: an oversized body is refused unread whoever sends it.
            stream = BodyStream(receive, self.limits, content_length(headers), self.budget)
        except BodyError as e:
            raise _BodyLeftUnread(self._refusal(e)) from None

        pending = None
        if self.verifier is not None:
            try:
                pending = self.verifier.check_headers(headers)
            except EcrError as refusal:
                # Refused on the headers alone: the body is read and discarded, never buffered.
                try:
                    await stream.discard()
                except BodyError:
                    raise _BodyLeftUnread(refusal) from None
                raise

        # The signature covers the body's sha256: hashed in pool threads while it arrives.
        hasher = BodyHasher(self._executor) if pending is not None else None
        try:
            try:
                body = [await stream.read(hasher.feed if hasher is not None else None)]
            except BodyError as e:
                raise _BodyLeftUnread(self._refusal(e)) from None
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, self._execute, scope, raw_headers, headers, pending, hasher, body
            )
        finally:
            stream.release()

    def _refusal(self, error: BodyError) -> EcrError:
        """ECR's answer to a body refused by the limits."""
        if isinstance(error, BodyTooLarge):
            size = error.declared if error.declared is not None else f"more than {error.limit}"
            return InvalidParameterException(
                f"Request body of {size} bytes exceeds the limit of {error.limit} bytes; "
                f"a layer part may hold at most {MAX_LAYER_PART_BYTES} bytes"
            )
        if isinstance(error, BudgetExhausted):
            return ThrottlingException("Rate exceeded: the server is holding its maximum of request bodies; retry")
        if isinstance(error, BodyTimeout):
            return RequestTimeoutException(
                f"The request body was not received in time ({error.received} bytes arrived)."
            )
        assert isinstance(error, InvalidContentLength)  # the only other BodyError
        return SerializationException(f"Invalid Content-Length: {error.value!r}")

    def _execute(self, scope: Scope, raw_headers: list[tuple[str, str]], headers: dict[str, str],
                 pending: PendingAuth | None, hasher: BodyHasher | None,
                 body_box: list[bytearray]) -> tuple[int, bytes]:
        """Runs in the thread pool: authenticate, decode, call the store, encode.

        The body comes in a one-item list so that it can be dropped once decoded (the caller
        and the executor keep references to the arguments, not to the list's item).
        """
        body = body_box.pop()
        if pending is not None:
            assert hasher is not None and self.verifier is not None
            credential = self.verifier.verify(
                pending, scope["method"], raw_path(scope), scope.get("query_string", b"").decode("latin-1"),
                raw_headers, hasher.hexdigest(),
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
            kwargs[name] = self._request_value(name, scope, headers, caller)
        result = op.call(self.targets, kwargs)
        del kwargs
        if op.name == "UploadLayerPart" and self._fail_parts > 0 and self._take_injected_failure():
            raise ServerException("Injected failure after the part was stored (--fail-next-upload-parts).")
        return 200, dumps(op.encode(result))

    def _request_value(self, name: str, scope: Scope, headers: dict[str, str], caller: _Caller) -> Any:
        if name == "base_url":  # where the client reached us: download URLs point back here
            return request_base_url(scope, headers)
        if name == "proxy_endpoint":  # the registry URL docker logs in to
            return self.config.public_url or request_base_url(scope, headers)
        if name == "credential":
            return caller.credential
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
