"""Time-limited download URLs for layers (GetDownloadUrlForLayer), signed by the store.

A URL names ``/layers/<registryId>/<repositoryName>/<digest>`` and carries its expiry and an
HMAC-SHA256 over the method, the path and the expiry, keyed by a random secret kept in the
store directory (``url-signing.key``, mode 0600). Any process that opens the store can verify
what another signed; changing any part of the URL, or using it after it expires, is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from urllib.parse import quote, unquote

from .errors import AccessDeniedException, ServerException
from .fsutil import atomic_create

__all__ = ["UrlSigner", "LAYER_PATH_PREFIX"]

LAYER_PATH_PREFIX = "/layers/"
_EXPIRES = "X-Ecrstore-Expires"
_SIGNATURE = "X-Ecrstore-Signature"


_KEY_BYTES = 32


class UrlSigner:
    """Signs and verifies download URLs with the store's key. Thread- and process-safe: the
    key never changes once created (the first creator wins; everyone then reads that one).

    The key file must hold exactly 32 bytes: a damaged (empty, short, long) file is refused
    with ServerException naming it, never used as a weaker key. ``create=False`` (a read-only
    store) does not create a missing key; signing and verifying then raise ServerException.
    """

    def __init__(self, key_path: str, *, create: bool = True) -> None:
        self._path = key_path
        self._key_bytes: bytes | None = _load_key(key_path, create)

    @property
    def _key(self) -> bytes:
        if self._key_bytes is None:
            raise ServerException(f"the store has no download URL key ({self._path}) and is open read-only")
        return self._key_bytes

    def _mac(self, method: str, path: str, expires: int) -> str:
        msg = f"{method.upper()}\n{path}\n{expires}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def sign(self, base_url: str, registry_id: str, repository: str, digest: str, expires_in: float) -> str:
        path = f"{LAYER_PATH_PREFIX}{registry_id}/{quote(repository)}/{quote(digest)}"
        expires = int(time.time() + expires_in)
        return f"{base_url.rstrip('/')}{path}?{_EXPIRES}={expires}&{_SIGNATURE}={self._mac('GET', path, expires)}"

    def verify(self, method: str, path: str, query: dict[str, str]) -> tuple[str, str, str]:
        """Check a request for a signed URL; answer (registry id, repository, digest).

        Raises AccessDeniedException for a missing, tampered or expired signature. HEAD is
        accepted wherever GET was signed."""
        try:
            expires = int(query[_EXPIRES])
            given = query[_SIGNATURE]
        except (KeyError, ValueError):
            raise AccessDeniedException("The download URL is not signed") from None
        if len(given) != 64 or not given.isascii() or not all(c in "0123456789abcdef" for c in given):
            raise AccessDeniedException("The download URL signature does not match")
        signed_method = "GET" if method.upper() == "HEAD" else method
        if not hmac.compare_digest(given, self._mac(signed_method, path, expires)):
            raise AccessDeniedException("The download URL signature does not match")
        if expires < time.time():
            raise AccessDeniedException("The download URL has expired")
        rest = path[len(LAYER_PATH_PREFIX):] if path.startswith(LAYER_PATH_PREFIX) else ""
        registry, _, tail = rest.partition("/")
        repository, _, digest = tail.rpartition("/")
        if not (registry and repository and digest):
            raise AccessDeniedException("The download URL does not name a layer")
        return registry, unquote(repository), unquote(digest)


def _load_key(path: str, create: bool) -> bytes | None:
    for _ in range(2):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            if not create:
                return None
            atomic_create(path, secrets.token_bytes(_KEY_BYTES), 0o600)
            continue
        except OSError as e:
            raise ServerException(f"cannot read the download URL key {path}: {e.strerror}") from e
        try:
            key = os.read(fd, _KEY_BYTES + 1)
        finally:
            os.close(fd)
        if len(key) != _KEY_BYTES:
            raise ServerException(
                f"the download URL key {path} is damaged ({len(key)} bytes where {_KEY_BYTES} belong): "
                "remove it to have a new one made (URLs signed with the old key stop working)"
            )
        return key
    raise ServerException(f"cannot create the download URL key {path}")  # pragma: no cover
