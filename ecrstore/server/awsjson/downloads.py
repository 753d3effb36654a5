"""Serving GetDownloadUrlForLayer's signed URLs: ``GET`` and ``HEAD /layers/...``.

The URL's own signature (method, path and expiry, under the store's key; checked by
``store.url_signer.verify``) is the authentication; SigV4 does not apply. A missing, tampered
or expired signature answers 403 AccessDeniedException; a layer no longer in its repository
answers 404. Error bodies are ECR's JSON errors, like the API's.

Responses carry ``Content-Type: application/octet-stream``, ``Content-Length``,
``Accept-Ranges: bytes``, ``ETag`` (the layer digest, quoted: a strong validator, since the
bytes behind a digest never change) and ``Docker-Content-Digest``. ``Range`` and ``If-Range``
follow :mod:`..http.ranges`: one range answers 206 with ``Content-Range``, an unsatisfiable
one 416, anything else the whole layer with 200. HEAD answers the same status and headers as
GET would, without the body.

The body goes out as memoryview slices of the layer's memory map
(:meth:`ecrstore.reader.LayerReader.view`), never copied through Python bytes, with the
worker's resident memory kept flat (:func:`..http.send.send_view`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import Executor
from typing import Any

from ...errors import EcrError, LayersNotFoundException, RepositoryNotFoundException
from ..http.headers import header_map, query_map, raw_path
from ..http.send import RangeNotSatisfiable, send_blob, send_response
from ..http.types import Receive, Scope, Send
from .codec import http_status
from .responses import error_response, internal_error, send_json

__all__ = ["LayerDownloads", "download_status"]

log = logging.getLogger("ecrstore.server")


def download_status(error: EcrError) -> int:
    """The HTTP status for an error on the download route (a plain GET, not the JSON API)."""
    if isinstance(error, (LayersNotFoundException, RepositoryNotFoundException)):
        return 404
    return http_status(error)


class LayerDownloads:
    """ASGI app (``http`` scopes, GET and HEAD) serving signed layer URLs from ``store``.

    ``store`` offers ``url_signer.verify(method, path, query) -> (registry_id,
    repository_name, digest)`` and ``open_layer``; both run in ``executor`` (they touch the
    disk). The caller owns the store and the executor. Safe for concurrent requests.
    """

    def __init__(self, store: Any, executor: Executor) -> None:
        self.store = store
        self._executor = executor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        try:
            await self._serve(scope, send, request_id)
            return
        except EcrError as e:
            status, body = error_response(e, request_id, download_status(e))
        except Exception:
            status, body = internal_error(request_id)
        await send_json(send, status, body, request_id)

    def _open(self, method: str, path: str, query: dict[str, str]) -> Any:
        """The reader of the layer a signed URL names, after checking its signature and expiry
        (AccessDeniedException) and that the layer is still in its repository."""
        registry_id, repository_name, digest = self.store.url_signer.verify(method, path, query)
        return self.store.open_layer(repository_name, digest, registry_id=registry_id)

    async def _serve(self, scope: Scope, send: Send, request_id: str) -> None:
        """Answer the request. Raises EcrError (or anything) only before the response starts
        (the caller answers it); once started, a failure can only cut the connection."""
        loop = asyncio.get_running_loop()
        method = scope["method"]
        headers = header_map(scope)
        reader = await loop.run_in_executor(self._executor, self._open, method, raw_path(scope), query_map(scope))
        try:
            await send_blob(send, method, headers, reader, [(b"x-amzn-requestid", request_id.encode())])
        except RangeNotSatisfiable as e:
            body = b"Requested range not satisfiable"
            await send_response(send, 416, [(b"content-type", b"text/plain"),
                                            (b"content-length", str(len(body)).encode()), *e.headers,
                                            (b"x-amzn-requestid", request_id.encode())],
                                b"" if method == "HEAD" else body)
        except OSError:  # the client went away
            pass
        except Exception:
            # The status line is gone: returning with the body incomplete makes uvicorn close
            # the connection, which the client sees as a short read.
            log.exception("request %s: download failed after the response started", request_id)
        finally:
            reader.close()
