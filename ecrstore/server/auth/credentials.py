"""The credentials file: which access keys may sign requests, and for which registry.

Format: one ``ACCESS_KEY_ID SECRET_ACCESS_KEY REGISTRY_ID`` per line, separated by blanks;
``#`` starts a comment; blank lines are ignored. An access key reaches only its own registry
(12 digits). The secret never appears in a repr or an error message.

When ``ecrstore serve`` is given neither ``--credentials`` nor ``--no-auth`` it uses
``<store>/credentials``, creating it (mode 0600, one fresh key pair for the store's default
registry) when it is absent; see :func:`ensure_credentials_file`.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "Credential",
    "CredentialsFileError",
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
        log.warning("credentials file %s is readable by other users (mode %o)", path, mode & 0o777)
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
        directory = os.path.dirname(os.path.abspath(path))
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, format_credentials([cred]).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
                created = True
            except FileExistsError:
                created = False
        except OSError as e:
            raise CredentialsFileError(f"cannot create credentials file {path}: {e.strerror or e}") from e
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if created:
            _fsync_dir(directory)
            return {cred.access_key_id: cred}, True
    return load_credentials(path), False


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
