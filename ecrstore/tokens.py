"""Pagination tokens: opaque to clients, a small JSON list underneath, refused whole when bent.

Every paginated call encodes where its page ended with :func:`encode_token` and reads it back
with :func:`decode_token`, which raises InvalidParameterException (ECR's message shape) for
anything that is not exactly a token this module made: wrong type, oversized, not base64,
deeply nested, not UTF-8, or of another shape. No client input gets further than that.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import InvalidParameterException

__all__ = ["MAX_TOKEN_CHARS", "decode_name_token", "decode_token", "encode_name_token", "encode_token"]

T = TypeVar("T")

#: The service model's bound for nextToken members.
MAX_TOKEN_CHARS = 2048


def encode_token(*fields: Any) -> str:
    """A token holding ``fields`` (JSON scalars)."""
    return base64.urlsafe_b64encode(json.dumps(list(fields), separators=(",", ":")).encode()).decode()


def decode_token(token: object, read: Callable[[list[Any]], T]) -> T:
    """The fields of a token, passed to ``read`` (which raises ValueError / TypeError /
    KeyError / IndexError when they are not what its caller wrote)."""
    try:
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS or not token.isascii():
            raise ValueError
        fields = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        if not isinstance(fields, list) or any(isinstance(f, (list, dict)) for f in fields):
            raise ValueError
        return read(fields)
    except (ValueError, TypeError, KeyError, IndexError, binascii.Error, RecursionError, UnicodeError):
        raise InvalidParameterException(
            "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'"
        ) from None


def encode_name_token(registry: str, after: str) -> str:
    """The token of a page of a registry's things listed in name order (repositories, cache
    rules), ending at ``after``."""
    return encode_token(registry, after)


def decode_name_token(token: object, registry: str) -> str:
    """The name a :func:`encode_name_token` token of ``registry`` ends at (another registry's
    token is refused like a bent one)."""
    def read(fields: list[Any]) -> str:
        reg, after = fields
        if reg != registry or not isinstance(after, str):
            raise ValueError
        return after

    return decode_token(token, read)
