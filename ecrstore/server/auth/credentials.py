"""The credentials file: which access keys may sign requests, and for which registry.

Format: one ``ACCESS_KEY_ID SECRET_ACCESS_KEY REGISTRY_ID`` per line, separated by blanks;
``#`` starts a comment; blank lines are ignored. An access key reaches only its own registry
(12 digits). The secret never appears in a repr or an error message.

When ``ecrstore serve`` is given neither ``--credentials`` nor ``--no-auth`` it uses
``<store>/credentials``, creating it (mode 0600, one fresh key pair for the store's default
registry) when it is absent; see :func:`ensure_credentials_file`.

A file that users other than its owner may read or write is refused (CredentialsFileError):
anyone who can read it can sign as every key in it. :class:`CredentialsSource` re-reads the
file when it changes, so a key removed from it stops working within a second, no restart.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...fsutil import atomic_create

__all__ = [
    "Credential",
    "CredentialsFileError",
    "CredentialsSource",
    "ensure_credentials_file",
    "format_credentials",
    "generate_credential",
    "load_credentials",
    "parse_credentials",
]

log = logging.getLogger(__name__)

#: Access key ids go into the SigV4 credential scope (``<id>/<date>/...``): no '/' or blanks.
_KEY_ID_RE = re.compile(r"[A-Za-z0-9]{4,128}")
_REGISTRY_RE = re.compile(r"[0-9]{12}")
# Access key ids use upper-case letters and the digits 2-7 after the AKIA prefix; secrets use the
# base64 alphabet, 40 characters, as AWS's do.
_KEY_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class CredentialsFileError(ValueError):
    """The credentials file is missing, unreadable or malformed (message names file and line)."""


@dataclass(frozen=True, slots=True)
class Credential:
    """One access key: its id, its secret and the registry it may act on."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    registry_id: str


def parse_credentials(text: str, source: str = "<credentials>") -> dict[str, Credential]:
    """Parse credentials-file text into access key id -> Credential.

    Raises CredentialsFileError on a malformed line or a duplicated access key id.
    """
    creds: dict[str, Credential] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        parts = line.split()
        if len(parts) != 3:
            raise CredentialsFileError(
                f"{where}: expected 'ACCESS_KEY_ID SECRET_ACCESS_KEY REGISTRY_ID', got {len(parts)} field(s)"
            )
        key_id, secret, registry = parts
        if not _KEY_ID_RE.fullmatch(key_id):
            raise CredentialsFileError(f"{where}: access key id must be 4-128 letters or digits")
        if not _REGISTRY_RE.fullmatch(registry):
            raise CredentialsFileError(f"{where}: registry id must be 12 digits, got {registry!r}")
        if key_id in creds:
            raise CredentialsFileError(f"{where}: access key id {key_id} appears twice")
        creds[key_id] = Credential(key_id, secret, registry)
    return creds


def load_credentials(path: str | os.PathLike[str]) -> dict[str, Credential]:
    """Read and parse a credentials file; an empty file is an error (nobody could sign)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read()
    except OSError as e:
        raise CredentialsFileError(f"cannot read credentials file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise CredentialsFileError(f"credentials file {path} is not UTF-8 text") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsFileError(
            f"credentials file {path} may be read or written by other users (mode {mode & 0o777:o}): "
            f"make it private with 'chmod 600 {path}'"
        )
    creds = parse_credentials(text, path)
    if not creds:
        raise CredentialsFileError(f"credentials file {path} holds no access key")
    return creds


def generate_credential(registry_id: str) -> Credential:
    """A fresh random AKIA-style access key id (20 chars) and 40-char secret for ``registry_id``."""
    if not _REGISTRY_RE.fullmatch(registry_id):
        raise ValueError(f"registry id must be 12 digits, got {registry_id!r}")
    key_id = "AKIA" + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
    return Credential(key_id, secret, registry_id)


def format_credentials(creds: Mapping[str, Credential] | list[Credential]) -> str:
    """The file text for some credentials (with a header comment)."""
    items = creds.values() if isinstance(creds, Mapping) else creds
    lines = ["# ecrstore credentials: ACCESS_KEY_ID SECRET_ACCESS_KEY REGISTRY_ID"]
    lines += [f"{c.access_key_id} {c.secret_access_key} {c.registry_id}" for c in items]
    return "\n".join(lines) + "\n"


def ensure_credentials_file(path: str | os.PathLike[str], registry_id: str) -> tuple[dict[str, Credential], bool]:
    """Load ``path``, first creating it with one fresh key for ``registry_id`` if it is absent.

    Returns (credentials, created). Creation is atomic and race-free between processes: the
    file is written and fsynced under a temporary name (mode 0600) and hard-linked into place,
    so a concurrent starter either wins or reads the winner's complete file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        cred = generate_credential(registry_id)
        try:
            created = atomic_create(path, format_credentials([cred]).encode(), 0o600)
        except OSError as e:
            raise CredentialsFileError(f"cannot create credentials file {path}: {e.strerror or e}") from e
        if created:
            return {cred.access_key_id: cred}, True
    return load_credentials(path), False


class CredentialsSource:
    """The credentials of a file as it is now: re-read when its size, mtime or inode change
    (looked at once per ``interval`` seconds at most). Thread-safe.

    A removed file revokes every key. A change that leaves the file malformed keeps the last
    good credentials and logs an error: a half-saved edit must not lock every client out.
    """

    def __init__(self, path: str | os.PathLike[str], *, interval: float = 1.0) -> None:
        self.path = os.fspath(path)
        self._interval = interval
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._creds = load_credentials(self.path)
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def current(self) -> Mapping[str, Credential]:
        now = time.monotonic()
        if now - self._checked < self._interval:
            return self._creds
        with self._lock:
            if now - self._checked >= self._interval:
                self._checked = now
                stamp = self._stat()
                if stamp is None and self._stamp is not None:
                    log.error("credentials file %s is gone: every key is revoked", self.path)
                    self._creds, self._stamp = {}, None
                elif stamp != self._stamp:
                    try:
                        self._creds = load_credentials(self.path)
                        self._stamp = stamp
                        log.info("credentials file %s re-read: %d key(s)", self.path, len(self._creds))
                    except CredentialsFileError as e:
                        log.error("credentials file changed but cannot be used (%s); keeping the previous keys", e)
        return self._creds
