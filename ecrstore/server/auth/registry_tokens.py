"""ECR's docker login: the passwords GetAuthorizationToken hands out and ``/v2/`` accepts.

``aws ecr get-login-password`` prints a password; ``docker login --username AWS
--password-stdin HOST`` then sends it with every ``/v2/`` request as HTTP Basic credentials.
The password names who logged in and when it expires, and is signed, so every worker and
every node checks it with nothing but the credentials file they already have — no session
table, no shared state:

    ecr1.<base64url payload>.<base64url HMAC-SHA256>

The payload is JSON ``{"k": access key id, "r": registry id, "e": expiry (epoch seconds)}``;
the MAC key is derived from that access key's secret (HMAC of a fixed label under the
secret, so the secret itself never signs anything a client sees). Consequences:

* a password is valid until it expires (12 hours, as ECR's) *and* while its key is in the
  credentials file: removing a key revokes its passwords within a second (the file is
  re-read when it changes);
* a password cannot be made without the key's secret, and a damaged or truncated
  credentials file is refused when read (:mod:`.credentials`), never used as a weaker key;
* the registry comes from the password, so one host serves many registries: the same
  ``/v2/<name>`` resolves in the registry of whoever logged in (tenancy as in the JSON API).

Thread-safe and pure apart from the credentials source it reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import orjson

from .credentials import Credential

__all__ = ["TOKEN_TTL", "USER", "InvalidToken", "Login", "RegistryTokens", "basic_password"]

#: How long a password is valid (ECR's authorization tokens last 12 hours).
TOKEN_TTL = 12 * 3600
#: The user name docker login sends with ECR's passwords.
USER = "AWS"
_PREFIX = "ecr1"
_LABEL = b"ecrstore registry login v1"
#: Longest Authorization header value looked at (a password is ~150 characters).
_MAX_HEADER = 4096


class InvalidToken(Exception):
    """The Basic credentials are not a valid, unexpired password of a known key."""


class _Source(Protocol):
    def current(self) -> Mapping[str, Credential]: ...


@dataclass(frozen=True, slots=True)
class Login:
    """Who a valid password belongs to."""

    access_key_id: str
    registry_id: str
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(credential: Credential, payload: str) -> bytes:
    key = hmac.new(credential.secret_access_key.encode(), _LABEL, hashlib.sha256).digest()
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()


class RegistryTokens:
    """Issues and checks login passwords for the keys of ``credentials`` (a mapping, or a
    source whose ``current()`` is one, e.g. :class:`.credentials.CredentialsSource`).
    ``clock`` returns epoch seconds (tests pass a fake)."""

    def __init__(self, credentials: Mapping[str, Credential] | _Source, *, ttl: float = TOKEN_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        self._source = credentials
        self._ttl = ttl
        self._clock = clock

    def _current(self) -> Mapping[str, Credential]:
        source = self._source
        return source if isinstance(source, Mapping) else source.current()

    def issue(self, credential: Credential) -> tuple[str, float]:
        """A password for ``credential`` and when it expires (epoch seconds)."""
        expires = int(self._clock() + self._ttl)
        payload = _b64(orjson.dumps({"k": credential.access_key_id, "r": credential.registry_id, "e": expires}))
        return f"{_PREFIX}.{payload}.{_b64(_mac(credential, payload))}", float(expires)

    def verify(self, password: str) -> Login:
        """Who ``password`` logs in, or InvalidToken (malformed, forged, expired, or of a key
        no longer in the credentials file)."""
        parts = password.split(".")
        if len(parts) != 3 or parts[0] != _PREFIX:
            raise InvalidToken("not a login password of this registry")
        _, payload, mac = parts
        try:
            fields = orjson.loads(_unb64(payload))
            given = _unb64(mac)
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            raise InvalidToken("malformed login password") from None
        if not isinstance(fields, dict) or _b64(given) != mac:  # one spelling per password
            raise InvalidToken("malformed login password")
        key, registry, expires = fields.get("k"), fields.get("r"), fields.get("e")
        if not isinstance(key, str) or not isinstance(registry, str) or not isinstance(expires, int):
            raise InvalidToken("malformed login password")
        credential = self._current().get(key)
        if credential is None or not hmac.compare_digest(_mac(credential, payload), given):
            raise InvalidToken("the login password is not valid")
        if credential.registry_id != registry:
            raise InvalidToken("the login password is not valid")
        if expires <= self._clock():
            raise InvalidToken("the login password has expired; log in again")
        return Login(key, registry, float(expires))


def basic_password(header: str | None) -> str | None:
    """The password of ``Authorization: Basic`` credentials for user ``AWS``; None when the
    header is absent, not Basic, malformed or for another user."""
    if not header or len(header) > _MAX_HEADER:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or user != USER:
        return None
    return password
