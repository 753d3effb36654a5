"""OCI error answers: ``{"errors": [{"code", "message", "detail"}]}`` with the spec's status.

Every 4xx and 5xx of ``/v2/`` carries this body. :class:`OciError` is raised by the handlers
for conditions of the protocol itself (a malformed Content-Range, a missing digest);
:func:`from_engine` maps the engine's ECR errors onto OCI codes in the context of the
endpoint that met them (a missing layer is BLOB_UNKNOWN on a blob read but
MANIFEST_BLOB_UNKNOWN on a manifest PUT). The mapping, from the distribution-spec's error
codes and what ECR answers behind its ``/v2/``:

===============================================  ======  ==========================
engine error                                     status  code
===============================================  ======  ==========================
RepositoryNotFound                               404     NAME_UNKNOWN
LayersNotFound (blob read, delete, mount)        404     BLOB_UNKNOWN
LayersNotFound / ReferencedImagesNotFound (PUT)  400     MANIFEST_BLOB_UNKNOWN
UploadNotFound                                   404     BLOB_UPLOAD_UNKNOWN
InvalidLayer, ImageDigestDoesNotMatch            400     DIGEST_INVALID
InvalidLayerPart (out of order, busy)            416     BLOB_UPLOAD_INVALID (+ Range)
EmptyUpload                                      400     BLOB_UPLOAD_INVALID
ImageNotFound                                    404     MANIFEST_UNKNOWN
ImageTagAlreadyExists (immutable tag)            400     TAG_INVALID
InvalidParameter (manifest PUT)                  400     MANIFEST_INVALID
InvalidParameter (elsewhere)                     400     the endpoint's own code
LayerInaccessible (blob DELETE of a used layer)  405     UNSUPPORTED
LimitExceeded (quotas)                           403     DENIED
AccessDenied                                     403     DENIED
Throttling (the server's body budget)            429     TOOMANYREQUESTS
ServerException and anything unexpected          500     UNKNOWN
===============================================  ======  ==========================
"""

from __future__ import annotations

import logging

import orjson

from ...errors import (
    AccessDeniedException,
    EcrError,
    EmptyUploadException,
    ImageDigestDoesNotMatchException,
    ImageNotFoundException,
    ImageTagAlreadyExistsException,
    InvalidLayerException,
    InvalidLayerPartException,
    InvalidParameterException,
    LayerInaccessibleException,
    LayersNotFoundException,
    LimitExceededException,
    ReferencedImagesNotFoundException,
    RepositoryNotFoundException,
    ThrottlingException,
    UploadNotFoundException,
)

__all__ = ["OciError", "error_body", "from_engine", "internal_error", "upload_range"]

log = logging.getLogger("ecrstore.server")


class OciError(Exception):
    """An OCI error answer: ``status``, ``code``, ``message``, optional ``detail`` and extra
    response headers (e.g. ``Range`` on a 416, ``WWW-Authenticate`` on a 401). ``close``: the
    request body was left unread, so the connection must close after the answer."""

    def __init__(self, status: int, code: str, message: str, detail: object = None, *,
                 headers: list[tuple[bytes, bytes]] | None = None, close: bool = False,
                 engine: EcrError | None = None) -> None:
        super().__init__(message)
        #: The engine's error this answers, when it answers one.
        self.engine = engine
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = headers or []
        self.close = close


def error_body(error: OciError) -> bytes:
    entry: dict[str, object] = {"code": error.code, "message": error.message}
    if error.detail is not None:
        entry["detail"] = error.detail
    return orjson.dumps({"errors": [entry]})


def upload_range(received: int) -> bytes:
    """The ``Range`` header value of an upload that holds ``received`` bytes (``0-0`` when it
    holds none, as distribution sends)."""
    return f"0-{max(received - 1, 0)}".encode()


def from_engine(error: EcrError, context: str, invalid_code: str = "UNSUPPORTED") -> OciError:
    """The OCI answer to an engine error met at an endpoint of ``context`` (``"blob"``,
    ``"upload"``, ``"manifest"``, ``"manifest-put"``, ``"tags"``, ``"referrers"``,
    ``"catalog"``); ``invalid_code`` is that endpoint's code for InvalidParameter."""
    answer = _answer(error, context, invalid_code)
    answer.engine = error
    return answer


def _answer(error: EcrError, context: str, invalid_code: str) -> OciError:
    message = error.message
    if isinstance(error, RepositoryNotFoundException):
        return OciError(404, "NAME_UNKNOWN", message)
    if isinstance(error, (LayersNotFoundException, ReferencedImagesNotFoundException)):
        if context == "manifest-put":
            return OciError(400, "MANIFEST_BLOB_UNKNOWN", message)
        return OciError(404, "BLOB_UNKNOWN", message)
    if isinstance(error, UploadNotFoundException):
        return OciError(404, "BLOB_UPLOAD_UNKNOWN", message)
    if isinstance(error, (InvalidLayerException, ImageDigestDoesNotMatchException)):
        return OciError(400, "DIGEST_INVALID", message)
    if isinstance(error, InvalidLayerPartException):
        last = error.extra().get("last_valid_byte_received")
        received = 0 if last is None else last + 1
        return OciError(416, "BLOB_UPLOAD_INVALID", message, {"received": received},
                        headers=[(b"range", upload_range(received))])
    if isinstance(error, EmptyUploadException):
        return OciError(400, "BLOB_UPLOAD_INVALID", "A blob must have at least one byte: " + message)
    if isinstance(error, ImageNotFoundException):
        return OciError(404, "MANIFEST_UNKNOWN", message)
    if isinstance(error, ImageTagAlreadyExistsException):
        return OciError(400, "TAG_INVALID", message)
    if isinstance(error, InvalidParameterException):
        if context == "manifest-put":
            return OciError(400, "MANIFEST_INVALID", message)
        return OciError(400, invalid_code, message)
    if isinstance(error, LayerInaccessibleException):
        return OciError(405, "UNSUPPORTED", message)
    if isinstance(error, (LimitExceededException, AccessDeniedException)):
        return OciError(403, "DENIED", message)
    if isinstance(error, ThrottlingException):
        return OciError(429, "TOOMANYREQUESTS", message)
    if error.code == "ServerException":
        log.error("%s: %s", error.code, error.message, exc_info=error)
        return OciError(500, "UNKNOWN", "The server failed to handle the request: " + message)
    # Any other engine refusal is the client's request at fault.
    return OciError(400, invalid_code, message)


def internal_error(request_id: str) -> OciError:
    """The 500 answering an unexpected exception; call it from the ``except`` block, which
    logs the exception being handled."""
    log.exception("request %s failed", request_id)
    return OciError(500, "UNKNOWN", f"An internal error occurred (request id {request_id}).")
