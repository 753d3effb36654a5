"""Decoding JSON request bodies without copying a layer part's blob.

An UploadLayerPart body is 4/3 of its part in size (~14 MB for a 10 MiB part, ~28 MB for the
largest), almost all of it the base64 text of ``layerPartBlob``. ``orjson.loads`` of the whole
body would build a ``str`` of the blob's text (~15 ms per 10 MiB part). :func:`decode_request`
instead finds the blob's string value in the raw bytes, hands it on as a :class:`Base64Span`
(a memoryview slice of the body buffer, decoded later straight from that slice by pybase64),
and parses only the small rest of the object, with the blob blanked to ``""``. This is exact
when the body holds no backslash: JSON strings then cannot contain ``"``, so every quote
delimits a string and the span is precisely the member's value. Any backslash (a client
escaping ``/`` as ``\\/``, say), a second occurrence of the member name, or an envelope that
does not parse, sends the body through the full parser instead, which then decides and
reports as before.

Decoding is a pure function of the bytes: a body decodes to the same request whichever path
it takes.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["FAST_PATH_MIN_BYTES", "Base64Span", "decode_request"]

#: Bodies smaller than this are parsed whole: the split only pays off for large blobs.
FAST_PATH_MIN_BYTES = 64 * 1024

_JSON_SPACE = b" \t\n\r"


class Base64Span:
    """The raw base64 text of a blob member, as a read-only view into the request body.

    Stands in for the JSON string in the decoded request; :class:`~.operations.Blob` decodes
    it. The view keeps the body buffer alive: drop the request once it is bound.
    """

    __slots__ = ("view",)

    def __init__(self, view: memoryview) -> None:
        self.view = view

    def __len__(self) -> int:
        return len(self.view)

    def __repr__(self) -> str:
        return f"Base64Span({len(self.view)} bytes)"


def decode_request(body: bytes | bytearray, blob_member: str | None = None) -> Any:
    """The JSON value of ``body``. With ``blob_member`` (the operation's blob member, e.g.
    ``layerPartBlob``) and a large body, that member's value comes back as a
    :class:`Base64Span` instead of a ``str`` when the fast path applies (see the module doc).

    Raises ``orjson.JSONDecodeError`` for malformed JSON, exactly as ``orjson.loads(body)``.
    """
    if blob_member is not None and len(body) >= FAST_PATH_MIN_BYTES:
        request = _split_blob(body, blob_member)
        if request is not None:
            return request
    return orjson.loads(body)


def _split_blob(body: bytes | bytearray, member: str) -> dict[str, Any] | None:
    """The request with ``member``'s string value as a Base64Span, or None when the body must
    go through the full parser."""
    key = b'"' + member.encode() + b'"'
    at = body.find(key)
    if at < 0 or body.find(b"\\") >= 0:
        return None
    pos = _skip_space(body, at + len(key))
    if pos >= len(body) or body[pos] != 0x3A:  # ':'
        return None
    pos = _skip_space(body, pos + 1)
    if pos >= len(body) or body[pos] != 0x22:  # '"'
        return None
    start = pos + 1
    end = body.find(b'"', start)
    if end < 0:
        return None
    view = memoryview(body)
    envelope = bytes(view[:start]) + bytes(view[end:])
    # Only one occurrence of the name may exist: a nested or repeated member would make the
    # span ambiguous. With no backslash the span holds no quote, so the envelope is valid
    # JSON exactly when the body is, and the parse below confirms the span was the value of
    # the top-level member.
    if envelope.count(key) != 1:
        return None
    try:
        request = orjson.loads(envelope)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(request, dict) or request.get(member) != "":
        return None
    request[member] = Base64Span(view[start:end].toreadonly())
    return request


def _skip_space(body: bytes | bytearray, pos: int) -> int:
    n = len(body)
    while pos < n and body[pos] in _JSON_SPACE:
        pos += 1
    return pos
