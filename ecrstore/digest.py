"""The Digest value type: parse, validate and format ``<algorithm>:<hex>`` content digests.

ECR accepts any ``[a-zA-Z0-9_+.-]+:[a-fA-F0-9]+`` string where a layer digest is a request
member, compares the hex part case-insensitively and answers in lower case. Only ``sha256``
digests can name stored content. Parsing failures raise :class:`InvalidParameterException`
naming the request member, the error the store answers with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._sha256 import Sha256
from .errors import InvalidParameterException, invalid_parameter

__all__ = [
    "Digest", "SHA256", "SHA256_RE", "content_digest", "sha256_text", "parse_digest", "sha256_digest", "DIGEST_PATTERN",
]

SHA256 = "sha256"
#: The service model's pattern for a layer digest request member.
DIGEST_PATTERN = r"[a-zA-Z0-9_+.-]+:[a-fA-F0-9]+"
_DIGEST_RE = re.compile(r"([a-zA-Z0-9_+.-]+):([a-fA-F0-9]+)")
_SHA256_HEX_LEN = 64
#: A well-formed ``sha256:<64 hex>`` digest (either case); group 1 is the hex.
SHA256_RE = re.compile(r"sha256:([0-9a-fA-F]{64})")


@dataclass(frozen=True, slots=True)
class Digest:
    """A content digest, normalised: algorithm and hex in lower case.

    ``str(d)`` is the canonical ``"sha256:<64 lower-case hex>"`` form. Digests of other
    algorithms can be represented (ECR accepts them as input) but never match stored content.
    """

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def is_sha256(self) -> bool:
        """True for a well-formed sha256 digest (64 hex digits)."""
        return self.algorithm == SHA256 and len(self.hex) == _SHA256_HEX_LEN

    @property
    def raw(self) -> bytes:
        """The digest bytes (32 for sha256); the key content is filed under."""
        return bytes.fromhex(self.hex)

    @classmethod
    def from_raw(cls, raw: bytes, algorithm: str = SHA256) -> Digest:
        return cls(algorithm, raw.hex())

    @classmethod
    def of(cls, hasher: Sha256) -> Digest:
        """The digest a finished native hasher holds."""
        return cls(SHA256, hasher.hexdigest())


def sha256_text(raw: bytes) -> str:
    """``sha256:<hex>`` of 32 raw digest bytes, without building a :class:`Digest` (hot paths)."""
    return SHA256 + ":" + raw.hex()


def content_digest(data: bytes | bytearray | memoryview) -> Digest:
    """The sha256 digest of some bytes, with the native core (the GIL released on large data)."""
    return Digest(SHA256, Sha256(data).hexdigest())


def parse_digest(value: object, member: str = "layerDigest") -> Digest:
    """Parse a digest request member (pattern ``[a-zA-Z0-9_+.-]+:[a-fA-F0-9]+``).

    Raises InvalidParameterException naming ``member`` when ``value`` is not a string of that
    pattern. The result is lower-cased; it may be of an algorithm other than sha256.
    """
    if not isinstance(value, str):
        raise invalid_parameter(member, "Member must be a string")
    m = _DIGEST_RE.fullmatch(value)
    if m is None:
        raise invalid_parameter(member, f"Member must satisfy regular expression pattern: {DIGEST_PATTERN}")
    return Digest(m.group(1).lower(), m.group(2).lower())


def try_parse_digest(value: object) -> Digest | None:
    """Like :func:`parse_digest` but answers None instead of raising (for per-item failures)."""
    if not isinstance(value, str):
        return None
    m = _DIGEST_RE.fullmatch(value)
    return None if m is None else Digest(m.group(1).lower(), m.group(2).lower())


def sha256_digest(value: object, member: str = "digest") -> Digest:
    """Parse a digest that must be a well-formed ``sha256:<64 hex>`` (e.g. manifest references)."""
    d = parse_digest(value, member)
    if not d.is_sha256:
        raise InvalidParameterException(f"Invalid parameter at '{member}': '{value}' is not a sha256 digest")
    return d
