"""What ``/v2/`` requests say in their headers and query: bodies, digests, pages, ranges.

Each refusal is the spec's error (:class:`.errors.OciError`), closing the connection where the
body is left unread.
"""

from __future__ import annotations

from urllib.parse import quote

from ...digest import try_parse_digest
from .errors import OciError

__all__ = ["MAX_PAGE", "body_length", "checked_digest", "content_range", "has_body", "next_link", "page_of",
           "reference"]

#: The most tags or repositories one page lists.
MAX_PAGE = 1000


def has_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length")
    return "chunked" in headers.get("transfer-encoding", "").lower() or (length is not None and length.strip() != "0")


def body_length(headers: dict[str, str]) -> int | None:
    """The declared Content-Length (None when absent or not a number: BodyStream refuses the latter)."""
    value = headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


def checked_digest(text: str) -> str:
    d = try_parse_digest(text)
    if d is None:
        raise OciError(400, "DIGEST_INVALID", f"{text!r} is not a digest (algorithm:hex)", close=True)
    if not d.is_sha256:
        raise OciError(400, "DIGEST_INVALID", f"Only sha256 digests are supported, not {d.algorithm}", close=True)
    return str(d)


def reference(ref: str) -> str:
    """A manifest reference: a digest (checked) or a tag (checked by the engine)."""
    return checked_digest(ref) if ":" in ref else ref


def page_of(query: dict[str, str]) -> tuple[int, str | None]:
    raw = query.get("n")
    if raw is None or raw == "":
        limit = MAX_PAGE
    elif raw.isdigit():
        limit = min(int(raw), MAX_PAGE)
    else:
        raise OciError(400, "PAGINATION_NUMBER_INVALID", f"n must be a non-negative integer, not {raw!r}")
    return limit, query.get("last") or None


def next_link(path: str, limit: int, last: str) -> list[tuple[bytes, bytes]]:
    return [(b"link", f'<{path}?n={limit}&last={quote(last, safe="")}>; rel="next"'.encode())]


def content_range(headers: dict[str, str]) -> tuple[int | None, int | None]:
    """(first byte, length) of a chunk's ``Content-Range`` — ``<first>-<last>`` as the spec
    writes it, also with a ``bytes``/``bytes=`` prefix and a ``/<total>`` suffix as some
    clients send — or (None, None) without one."""
    value = headers.get("content-range")
    if value is None:
        return None, None
    text = value.strip()
    for prefix in ("bytes=", "bytes "):
        if text.lower().startswith(prefix):
            text = text[len(prefix):].strip()
    text = text.split("/", 1)[0]
    first_text, sep, last_text = text.partition("-")
    if not sep or not first_text.isdigit() or not last_text.isdigit() or int(last_text) < int(first_text):
        raise OciError(416, "BLOB_UPLOAD_INVALID", f"Malformed Content-Range {value!r}", close=True)
    first, last = int(first_text), int(last_text)
    return first, last - first + 1
