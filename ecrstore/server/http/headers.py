"""Reading an ASGI HTTP scope: headers, path and query as text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["header_list", "header_map", "header_values", "query_map", "raw_path", "request_base_url"]


def header_list(scope: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The request headers in arrival order as latin-1 text (ASGI gives lower-case names)."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())]


def header_map(scope: Mapping[str, Any]) -> dict[str, str]:
    """Lower-case header name -> value; of a repeated header the last one wins."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


def raw_path(scope: Mapping[str, Any]) -> str:
    """The path as the client sent it (still percent-encoded), as signatures cover it; the
    decoded ``path`` when the server gives no ``raw_path``."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(scope["path"])


def query_map(scope: Mapping[str, Any]) -> dict[str, str]:
    """The query string's parameters, decoded, blank values kept; of a repeated one the last wins."""
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))


def header_values(scope: Mapping[str, Any], name: bytes) -> list[str]:
    """Every value of a header that may be repeated or comma-separated (``Accept``), in order,
    each stripped; ``name`` in lower case."""
    found: list[str] = []
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            found.extend(part.strip() for part in v.decode("latin-1").split(",") if part.strip())
    return found


def request_base_url(scope: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """``scheme://host[:port]`` where the client reached this server (its ``Host`` header; for
    HTTP/1.0 without one, the address the connection came in on)."""
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        address = f"[{server[0]}]" if ":" in server[0] else server[0]
        host = f"{address}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"
