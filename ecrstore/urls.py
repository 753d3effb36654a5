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

from .errors import AccessDeniedException

__all__ = ["UrlSigner", "LAYER_PATH_PREFIX"]

LAYER_PATH_PREFIX = "/layers/"
_EXPIRES = "X-Ecrstore-Expires"
_SIGNATURE = "X-Ecrstore-Signature"


class UrlSigner:
    def __init__(self, key_path: str) -> None:
        self._key = _load_or_create_key(key_path)

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


def _load_or_create_key(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            key = f.read()
        if len(key) == 32:
            return key
    except FileNotFoundError:
        pass
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # first writer wins; every process then reads the same key
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    with open(path, "rb") as f:
        return f.read()
