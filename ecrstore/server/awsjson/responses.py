"""Sending AWS JSON 1.1 responses: the JSON content type, ``x-amzn-RequestId`` on every
response, errors as their status with ECR's error body.

Errors answered with a 5xx are logged with their traceback; an unexpected exception becomes a
500 ServerException whose body names only the request id (the traceback goes to the log).
"""

from __future__ import annotations

import logging

from ...errors import EcrError, ServerException
from ..http.send import send_response
from ..http.types import Send
from .codec import dumps, error_body, http_status

__all__ = ["CONTENT_TYPE", "error_response", "internal_error", "send_json"]

log = logging.getLogger("ecrstore.server")

CONTENT_TYPE = b"application/x-amz-json-1.1"


def error_response(error: EcrError, request_id: str, status: int | None = None) -> tuple[int, bytes]:
    """The status (``status``, else the error's) and JSON body answering ``error``."""
    if http_status(error) >= 500:
        log.error("request %s: %s: %s", request_id, error.code, error.message, exc_info=error)
    return status or http_status(error), dumps(error_body(error))


def internal_error(request_id: str) -> tuple[int, bytes]:
    """The 500 answering an unexpected exception; call it from the ``except`` block, which
    logs the exception being handled."""
    log.exception("request %s failed", request_id)
    error = ServerException(f"An internal error occurred (request id {request_id}).")
    return http_status(error), dumps(error_body(error))


async def send_json(send: Send, status: int, body: bytes, request_id: str, *, close: bool = False) -> None:
    """Send a complete JSON response; ``close`` asks the server to close the connection after
    it (the request body was left unread). A client that went away is ignored."""
    headers = [
        (b"content-type", CONTENT_TYPE),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", request_id.encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    try:
        await send_response(send, status, headers, body)
    except OSError:  # the client went away; nothing left to do
        pass
