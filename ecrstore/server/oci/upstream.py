"""The client of upstream registries that pull-through cache rules name, on urllib3.

:class:`Upstream` reads manifests and streams blobs from one OCI distribution registry
(``host[:port]`` over HTTPS, or ``http://host:port``), anonymously or with a secret's
credentials: HTTP Basic where the registry asks for Basic, and the docker token protocol where
it answers 401 with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…`` (a token fetched
from the realm, with the credentials as Basic when there are any, kept per scope until it
expires). :func:`load_secrets` reads the secrets file of ``ecrstore serve --upstream-secrets``.

Errors are :class:`UpstreamError` with the kind of failure (``not-found``, ``denied``,
``throttled``, ``unavailable``, ``timeout``, ``invalid``); the caller decides how to answer
them. The secrets file is read when a worker starts: restart the server after changing it. Every
request is bounded by :data:`CONNECT_TIMEOUT` and :data:`READ_TIMEOUT`. Thread-safe: one
urllib3 pool manager per process is shared by every upstream.
"""

from __future__ import annotations

import base64
import os
import re
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3

from ...manifest import IMAGE_MANIFESTS, INDEXES

__all__ = ["CHUNK_BYTES", "Secret", "SecretsFileError", "Upstream", "UpstreamError", "load_secrets"]

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
#: Bytes read from an upstream blob at a time (what a fetch holds in memory per blob).
CHUNK_BYTES = 1 << 20
#: What a manifest request accepts: every manifest type the store keeps.
MANIFEST_ACCEPT = ", ".join((*INDEXES, *IMAGE_MANIFESTS))
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


class SecretsFileError(Exception):
    """The secrets file cannot be used (unreadable, readable by others, malformed)."""


class UpstreamError(Exception):
    """An upstream request failed. ``kind``: ``not-found`` (404), ``denied`` (401/403 with the
    credentials the rule has), ``throttled`` (429), ``unavailable`` (unreachable, 5xx), ``timeout``,
    ``invalid`` (an answer that is not what the protocol says)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Secret:
    """An upstream login, as ECR's pull-through secrets hold it."""

    username: str
    access_token: str

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.access_token}".encode()).decode()


def load_secrets(path: str | os.PathLike[str]) -> dict[str, Secret]:
    """The secrets file: a JSON object mapping each secret ARN to ``{"username": …,
    "accessToken": …}``. Must not be readable or writable by group or others (``chmod 600``).
    Raises SecretsFileError."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read()
    except OSError as e:
        raise SecretsFileError(f"cannot read upstream secrets file {path}: {e.strerror or e}") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretsFileError(f"upstream secrets file {path} may be read or written by other users "
                               f"(mode {mode & 0o777:o}): make it private with 'chmod 600 {path}'")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise SecretsFileError(f"upstream secrets file {path} is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise SecretsFileError(f"upstream secrets file {path} must hold a JSON object of secret ARN -> secret")
    out = {}
    for arn, entry in doc.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("username"), str)
                and isinstance(entry.get("accessToken"), str)):
            raise SecretsFileError(f"upstream secrets file {path}: {arn!r} needs string username and accessToken")
        out[arn] = Secret(entry["username"], entry["accessToken"])
    return out


#: No retries (a failed fetch is the client's to retry); redirects followed, as registries
#: send blob reads to their storage's URLs (Authorization is dropped on a move to another host).
_RETRIES = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5, raise_on_redirect=False)
_POOL = urllib3.PoolManager(num_pools=32, maxsize=8, retries=_RETRIES,
                            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT))


class Upstream:
    """One upstream registry (``url`` as the rule has it) with an optional secret."""

    def __init__(self, url: str, secret: Secret | None = None, *, pool: urllib3.PoolManager | None = None) -> None:
        self.base = url.rstrip("/") if "://" in url else f"https://{url}"
        self.secret = secret
        self._pool = pool or _POOL
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (Authorization value, expiry)

    def ping(self) -> None:
        """GET ``/v2/`` with the credentials (the token flow included). Raises UpstreamError."""
        response = self._request("/v2/", "", {})
        response.drain_conn()  # an unread body must not be left on a pooled connection
        response.release_conn()

    def manifest(self, repository: str, reference: str, *, max_bytes: int) -> tuple[bytes, str | None]:
        """(bytes, Content-Type) of a manifest. Raises UpstreamError (``invalid`` above ``max_bytes``)."""
        response = self._request(f"/v2/{repository}/manifests/{reference}", _pull_scope(repository),
                                 {"Accept": MANIFEST_ACCEPT})
        try:
            body = response.read(max_bytes + 1)
        except urllib3.exceptions.HTTPError as e:
            _drop(response)
            raise _unreachable(f"{self.base}: reading the manifest failed", e) from e
        if len(body) > max_bytes:
            _drop(response)
            raise UpstreamError("invalid", f"{self.base}: the manifest is larger than {max_bytes} bytes")
        response.release_conn()
        content_type = response.headers.get("Content-Type")
        return body, content_type.split(";")[0].strip() if content_type else None

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest the upstream names for a manifest (a HEAD's ``Docker-Content-Digest``),
        None when it names none. Costs no manifest transfer (registries that meter pulls do
        not count a HEAD). Raises UpstreamError."""
        response = self._request(f"/v2/{repository}/manifests/{reference}", _pull_scope(repository),
                                 {"Accept": MANIFEST_ACCEPT}, method="HEAD")
        response.drain_conn()
        response.release_conn()
        digest = response.headers.get("Docker-Content-Digest", "").strip()
        return digest if _DIGEST_RE.fullmatch(digest) else None

    def blob(self, repository: str, digest: str) -> Iterator[bytes]:
        """The blob's bytes in chunks of at most CHUNK_BYTES (never whole in memory); the
        caller verifies the digest. Raises UpstreamError, also while iterating."""
        response = self._request(f"/v2/{repository}/blobs/{digest}", _pull_scope(repository), {})
        complete = False
        try:
            yield from response.stream(CHUNK_BYTES, decode_content=False)
            complete = True
        except urllib3.exceptions.HTTPError as e:
            raise _unreachable(f"{self.base}: reading blob {digest} failed", e) from e
        finally:
            if complete:
                response.release_conn()
            else:  # abandoned or failed part-way: the rest of the body must not reach the next request
                _drop(response)

    # --- requests and authentication -----------------------------------------------------

    def _request(self, path: str, scope: str, headers: Mapping[str, str], method: str = "GET") -> Any:
        """The response (body unread) of a GET (or HEAD) that answered 200, through the auth flow."""
        auth = self._cached_token(scope)
        response = self._get(path, headers, auth, method)
        if response.status == 401:
            challenge = response.headers.get("WWW-Authenticate", "")
            response.drain_conn()
            response.release_conn()
            auth = self._answer(challenge, scope)
            response = self._get(path, headers, auth, method)
        if response.status == 200:
            return response
        status = response.status
        response.drain_conn()
        response.release_conn()
        raise _status_error(self.base, path, status)

    def _get(self, path: str, headers: Mapping[str, str], auth: str | None, method: str = "GET") -> Any:
        sent = dict(headers)
        if auth:
            sent["Authorization"] = auth
        try:
            return self._pool.request(method, self.base + path, headers=sent, preload_content=False)
        except urllib3.exceptions.HTTPError as e:
            raise _unreachable(f"{self.base} cannot be reached", e) from e

    def _answer(self, challenge: str, scope: str) -> str:
        """The Authorization value answering a 401's challenge."""
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self.secret is None:
                raise UpstreamError("denied", f"{self.base} requires credentials and the rule has none")
            return self.secret.basic()
        if scheme != "bearer":
            raise UpstreamError("denied", f"{self.base} asks for an unsupported authentication: {challenge!r}")
        params = dict(_CHALLENGE_RE.findall(challenge))
        realm = params.get("realm")
        if not realm or not realm.startswith(("http://", "https://")):
            raise UpstreamError("invalid", f"{self.base}: a Bearer challenge without a usable realm")
        query = {k: params[k] for k in ("service",) if k in params}
        if params.get("scope", scope):
            query["scope"] = params.get("scope", scope)
        headers = {"Authorization": self.secret.basic()} if self.secret is not None else {}
        try:
            response = self._pool.request("GET", f"{realm}?{urlencode(query)}", headers=headers)
        except urllib3.exceptions.HTTPError as e:
            raise _unreachable(f"the token service {realm} cannot be reached", e) from e
        if response.status in (401, 403):
            raise UpstreamError("denied", f"the token service {realm} refused the rule's credentials")
        if response.status != 200:
            raise _status_error(realm, "", response.status)
        try:
            doc = orjson.loads(response.data)
            token = doc.get("token") or doc.get("access_token")
            lifetime = float(doc.get("expires_in") or 60)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            token = None
        if not isinstance(token, str) or not token:
            raise UpstreamError("invalid", f"the token service {realm} answered no token")
        value = f"Bearer {token}"
        with self._lock:
            self._tokens[scope] = (value, time.monotonic() + max(lifetime - 10, 1))
        return value

    def _cached_token(self, scope: str) -> str | None:
        with self._lock:
            cached = self._tokens.get(scope)
        return cached[0] if cached and cached[1] > time.monotonic() else None


def _unreachable(what: str, error: Exception) -> UpstreamError:
    cause = getattr(error, "reason", None) or error
    # NewConnectionError (refused, no route) derives from ConnectTimeoutError in urllib3 2: not a time-out.
    timed_out = isinstance(cause, urllib3.exceptions.TimeoutError) and not isinstance(
        cause, urllib3.exceptions.NewConnectionError)
    kind = "timeout" if timed_out else "unavailable"
    return UpstreamError(kind, f"{what}: {cause}")


def _drop(response: Any) -> None:
    """Close a response whose body was not read to its end (its connection is not reused)."""
    response.close()
    response.release_conn()


def _pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def _status_error(base: str, path: str, status: int) -> UpstreamError:
    where = f"{base}{path}"
    if status == 404:
        return UpstreamError("not-found", f"{where} does not exist upstream")
    if status in (401, 403):
        return UpstreamError("denied", f"{where}: the upstream refused the rule's credentials ({status})")
    if status == 429:
        return UpstreamError("throttled", f"{where}: the upstream asks to slow down (429)")
    if status >= 500:
        return UpstreamError("unavailable", f"{where}: the upstream failed ({status})")
    return UpstreamError("invalid", f"{where}: the upstream answered {status}")
