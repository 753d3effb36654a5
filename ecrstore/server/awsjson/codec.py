"""AWS JSON 1.1 wire shapes: the engine's results as ECR's JSON, and errors as an HTTP status
with ECR's error body.

- :func:`to_wire`: a result dataclass as ECR's JSON object (camelCase members, or the name a
  field's ``wire`` metadata gives; ``None`` members left out).
- :func:`http_status`: the status an error is answered with, from :data:`STATUS_BY_CODE`
  (400 for every code not in it: the client's request was at fault).
- :func:`error_body`: ``{"__type": code, "message": ..., <modeled fields>}``, the members
  named by the error class's ``fields``.
- :func:`dumps`: JSON bytes as ECR sends them (timestamps as epoch seconds, bytes as base64).

Importable without the ``server`` extra (the command line prints results with
:func:`to_wire`): orjson and pybase64 are imported by :func:`dumps` only.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from ...errors import EcrError

__all__ = ["DEFAULT_ERROR_STATUS", "STATUS_BY_CODE", "dumps", "error_body", "http_status", "to_wire"]

#: The status of every error code not in :data:`STATUS_BY_CODE`.
DEFAULT_ERROR_STATUS = 400
#: Error code -> HTTP status, where ECR answers other than 400.
STATUS_BY_CODE: dict[str, int] = {
    "ServerException": 500,
    "AccessDeniedException": 403,
    "MissingAuthenticationTokenException": 403,
    "IncompleteSignatureException": 403,
    "InvalidSignatureException": 403,
    "UnrecognizedClientException": 403,
    "RequestTimeoutException": 408,
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_CAMEL: dict[str, str] = {}


def to_wire(value: Any) -> Any:
    """ECR's JSON shape of a result: camelCase members, ``None`` members omitted; lists,
    tuples and dicts converted member by member, other values returned as they are."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is not None:
                # A field may name its wire member (``metadata={"wire": "Key"}``) where ECR's
                # spelling is not the camelCase of the field's name.
                key = f.metadata.get("wire") or _CAMEL.get(f.name) or _CAMEL.setdefault(f.name, _camel(f.name))
                out[key] = to_wire(v)
        return out
    if isinstance(value, (tuple, list)):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value


def http_status(error: EcrError) -> int:
    """The HTTP status ECR answers ``error`` with (by its code, so a subclass keeps its
    parent's, e.g. HashStateError is a 500 like ServerException)."""
    return STATUS_BY_CODE.get(error.code, DEFAULT_ERROR_STATUS)


def error_body(error: EcrError) -> dict[str, Any]:
    """The AWS JSON 1.1 error body: ``__type``, ``message`` and the modeled fields that are set,
    under their wire names."""
    body: dict[str, Any] = {"__type": error.code, "message": error.message}
    for attr, value in error.extra().items():
        body[error.fields[attr]] = value
    return body


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()  # ECR's JSON protocol sends timestamps as epoch seconds
    if isinstance(value, (bytes, bytearray, memoryview)):
        import pybase64

        return pybase64.b64encode(bytes(value)).decode()
    if hasattr(value, "value"):  # enums
        return value.value
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(obj: Any) -> bytes:
    """``obj`` (wire-shaped: see :func:`to_wire`) as compact JSON bytes. Raises TypeError for
    a value JSON cannot carry. Needs orjson (the ``server`` extra)."""
    import orjson  # here, not at the top: the rest of this module works without the extra

    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
