"""The OCI Distribution API v1.1 (``/v2/``) in front of a :class:`ecrstore.Store`: what docker,
podman, skopeo, containerd, oras and crane push to and pull from.

One store, two protocols: a repository, layer or image is the same whether it came through
``/v2/`` or ECR's JSON API, and ECR's rules hold on both — a repository must exist before a
push (``ServerConfig.create_on_push`` creates it, like an ECR repository creation template),
tags may be immutable (with exclusion filters), every registry is a tenant, the layer and
image limits apply. What differs is the upload model: ``/v2/`` chunks may have any size, a
whole multi-GiB layer in one PATCH or PUT, and reach the upload's file through
:mod:`.ingest` without being buffered; uploads are the engine's, so an upload started on one
worker or node continues on any other.

Authentication (unless the server runs ``--no-auth``): HTTP Basic with user ``AWS`` and a
password from GetAuthorizationToken (:mod:`..auth.registry_tokens`), which names the
registry every request acts in unless its ``Host`` addresses another one, where the
repository's policy decides (:mod:`.access`); otherwise 401 with a ``WWW-Authenticate:
Basic`` challenge.

Every 4xx and 5xx carries the spec's error JSON (:mod:`.errors`); a response refused before
its request body was read closes the connection. Store calls run in the worker's pool;
bodies are read on the event loop. Safe for any number of concurrent requests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from ... import validate as v
from ...digest import content_digest, try_parse_digest
from ...errors import (
    EcrError,
    ImageAlreadyExistsException,
    ImageNotFoundException,
    ImageTagAlreadyExistsException,
    InvalidParameterException,
    LayerAlreadyExistsException,
    RepositoryAlreadyExistsException,
    RepositoryNotFoundException,
)
from ...limits import MAX_LAYER_BYTES, MAX_MANIFEST_CHARS
from ...manifest import OCI_INDEX
from ...models import ImageIdentifier
from ..auth.registry_tokens import InvalidToken, RegistryTokens, basic_password
from ..config import ServerConfig
from ..http.body import (
    BodyError,
    BodyLimits,
    BodyStream,
    BodyTimeout,
    BodyTooLarge,
    BudgetExhausted,
    BufferBudget,
    ClientDisconnected,
    content_length,
)
from ..http.headers import header_map, header_values, query_map, request_base_url
from ..http.send import RangeNotSatisfiable, send_blob, send_response
from ..http.types import Receive, Scope, Send
from .access import authorize
from .errors import OciError, error_body, from_engine, internal_error, upload_range
from .ingest import WINDOW_BYTES, stream_into
from .parsing import body_length, checked_digest, content_range, has_body, next_link, page_of, reference
from .pull_through import PullThroughCache
from .routes import Endpoint, match

__all__ = ["OciApp"]

log = logging.getLogger("ecrstore.server")

T = TypeVar("T")

_API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")
_JSON = b"application/json"
#: Entries of one catalog or tag-list page at most (a client asks for the rest by ``Link``).
#: What one streamed body may hold in memory (see :mod:`.ingest`), held against the budget.
STREAM_BYTES = 2 * WINDOW_BYTES


@dataclass(slots=True)
class _Request:
    scope: Scope
    receive: Receive
    send: Send
    method: str
    endpoint: Endpoint
    headers: dict[str, str]
    query: dict[str, str]
    registry: str
    request_id: str


class OciApp:
    """ASGI app (``http`` scopes) serving ``/v2/`` over ``store``.

    ``tokens`` None disables authentication (every request acts in the store's default
    registry). ``budget`` is the worker's request-body budget shared with the JSON API;
    ``executor`` runs store calls. The caller owns the store and the executor.
    """

    def __init__(self, store: Any, config: ServerConfig, tokens: RegistryTokens | None, executor: Executor,
                 budget: BufferBudget) -> None:
        self.store = store
        self.config = config
        self._tokens = tokens
        self._executor = executor
        self._budget = budget
        self._manifest_limits = BodyLimits(MAX_MANIFEST_CHARS, config.body_idle_timeout, config.body_total_timeout)
        self._blob_limits = BodyLimits(MAX_LAYER_BYTES, config.body_idle_timeout, config.blob_total_timeout)
        #: Fetches misses that pull-through cache rules cover (set by the factory; None: none).
        self.pull_through: PullThroughCache | None = None
        self._handlers: dict[str, Callable[[_Request], Any]] = {
            "base": self._base, "catalog": self._catalog, "uploads": self._start_upload, "upload": self._upload,
            "blob": self._blob, "manifest": self._manifest, "tags": self._tags, "referrers": self._referrers,
        }

    # --- dispatch ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        headers = header_map(scope)
        try:
            await self._handle(scope, receive, send, headers, request_id)
            return
        except ClientDisconnected:
            return
        except OciError as e:
            error = e
        except EcrError as e:  # an engine error no handler placed: its generic mapping
            error = from_engine(e, "base")
        except Exception:
            error = internal_error(request_id)
        if not error.close and has_body(headers):
            error.close = True  # answered before the body was read
        await self._send_error(send, scope["method"], error, request_id)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str],
                      request_id: str) -> None:
        method = scope["method"]
        endpoint = match(scope["path"])
        own, key = self._authenticate(scope, headers)
        if endpoint is None:
            raise OciError(404, "NAME_UNKNOWN", f"No endpoint of the distribution API at {scope['path']!r}")
        if method not in endpoint.methods:
            allow = ", ".join(sorted(endpoint.methods)).encode()
            raise OciError(405, "UNSUPPORTED", f"{method} is not allowed here", headers=[(b"allow", allow)])
        registry = own if key is None else await self._run(
            authorize, getattr(self.store, "policies", None), endpoint, method, headers.get("host"), own, key)
        query = query_map(scope)
        if registry != own:
            query.pop("mount", None)  # a mount would read its source repository unauthorized: upload instead
        request = _Request(scope, receive, send, method, endpoint, headers, query, registry, request_id)
        await self._handlers[endpoint.kind](request)

    def _authenticate(self, scope: Scope, headers: dict[str, str]) -> tuple[str, str | None]:
        """The password's registry and access key id (without authentication: the store's
        default registry and None), or a 401 challenge."""
        if self._tokens is None:
            return str(self.store.registry_id), None
        password = basic_password(headers.get("authorization"))
        reason = "authentication required: log in with the password of aws ecr get-login-password"
        if password is not None:
            try:
                login = self._tokens.verify(password)
                return login.registry_id, login.access_key_id
            except InvalidToken as e:
                reason = str(e)
        realm = self.config.public_url or request_base_url(scope, headers)
        challenge = f'Basic realm="{realm}",service="ecr"'.encode()
        raise OciError(401, "UNAUTHORIZED", reason, headers=[(b"www-authenticate", challenge)])

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _reply(self, req: _Request, status: int, headers: Sequence[tuple[bytes, bytes]] = (),
                     body: bytes = b"", content_type: bytes | None = None) -> None:
        out = [_API_VERSION, (b"content-length", str(len(body)).encode()), *headers]
        if content_type is not None:
            out.append((b"content-type", content_type))
        try:
            await send_response(req.send, status, out, b"" if req.method == "HEAD" else body)
        except OSError:  # the client went away
            pass

    async def _send_error(self, send: Send, method: str, error: OciError, request_id: str) -> None:
        body = error_body(error)
        headers = [_API_VERSION, (b"content-type", _JSON), (b"content-length", str(len(body)).encode()),
                   (b"x-request-id", request_id.encode()), *error.headers]
        if error.close:
            headers.append((b"connection", b"close"))
        try:
            await send_response(send, error.status, headers, b"" if method == "HEAD" else body)
        except OSError:
            pass

    async def _store(self, req: _Request, context: str, invalid_code: str, fn: Callable[..., T], *args: Any,
                     **kwargs: Any) -> T:
        """A store call for this request's registry; engine errors become OCI errors of ``context``."""
        try:
            return await self._run(fn, *args, registry_id=req.registry, **kwargs)
        except EcrError as e:
            raise from_engine(e, context, invalid_code) from None

    async def _pushing(self, req: _Request, fn: Callable[..., T], *args: Any, context: str, invalid_code: str,
                       **kwargs: Any) -> T:
        """A store call that starts a push: a missing repository is created first (with
        ``create_on_push``, or as ECR does when a CREATE_ON_PUSH creation template covers it,
        whose settings it gets) and the call made again."""
        try:
            return await self._run(fn, *args, registry_id=req.registry, **kwargs)
        except RepositoryNotFoundException as e:
            if not self.config.create_on_push and not await self._run(
                    self.store.templates.applies, req.registry, req.endpoint.name, "CREATE_ON_PUSH"):
                raise from_engine(e, context, invalid_code) from None
        except EcrError as e:
            raise from_engine(e, context, invalid_code) from None
        try:
            await self._run(self.store.templates.create_for, "CREATE_ON_PUSH", req.registry, req.endpoint.name)
        except RepositoryAlreadyExistsException:
            pass  # created meanwhile by a concurrent push
        except EcrError as e:
            raise from_engine(e, context, "NAME_INVALID") from None
        log.info("created repository %s/%s on push", req.registry, req.endpoint.name)
        return await self._store(req, context, invalid_code, fn, *args, **kwargs)

    # --- base, catalog, tags, referrers --------------------------------------------------

    async def _base(self, req: _Request) -> None:
        await self._reply(req, 200, body=b"{}", content_type=_JSON)

    async def _catalog(self, req: _Request) -> None:
        limit, after = page_of(req.query)
        names, more = await self._store(req, "catalog", "NAME_INVALID", self.store.repository_names,
                                        limit=limit, after=after)
        links = next_link("/v2/_catalog", limit, names[-1]) if more and names else []
        await self._reply(req, 200, links, orjson.dumps({"repositories": list(names)}), _JSON)

    async def _tags(self, req: _Request) -> None:
        limit, after = page_of(req.query)
        name = req.endpoint.name
        page = await self._store(req, "tags", "NAME_INVALID", self.store.list_tags, name, limit=limit, after=after)
        links = next_link(f"/v2/{name}/tags/list", limit, page.tags[-1]) if page.more and page.tags else []
        await self._reply(req, 200, links, orjson.dumps({"name": name, "tags": list(page.tags)}), _JSON)

    async def _referrers(self, req: _Request) -> None:
        subject = checked_digest(req.endpoint.ref)
        artifact_type = req.query.get("artifactType") or None
        found = await self._store(req, "referrers", "DIGEST_INVALID", self.store.list_referrers,
                                  req.endpoint.name, subject, artifact_type=artifact_type)
        manifests = []
        for r in found:
            entry: dict[str, Any] = {"mediaType": r.media_type, "digest": r.digest, "size": r.size}
            if r.artifact_type:
                entry["artifactType"] = r.artifact_type
            if r.annotations:
                entry["annotations"] = r.annotations
            manifests.append(entry)
        headers = [(b"oci-filters-applied", b"artifactType")] if artifact_type else []
        body = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
        await self._reply(req, 200, headers, body, OCI_INDEX.encode())

    # --- blobs ---------------------------------------------------------------------------

    async def _blob(self, req: _Request) -> None:
        name, digest = req.endpoint.name, checked_digest(req.endpoint.ref)
        if req.method == "DELETE":
            await self._store(req, "blob", "DIGEST_INVALID", self.store.delete_layer, name, digest)
            await self._reply(req, 202)
            return
        reader = await self._store(req, "blob", "DIGEST_INVALID", self.store.open_layer, name, digest)
        try:
            await send_blob(req.send, req.method, req.headers, reader, [_API_VERSION])
        except RangeNotSatisfiable as e:
            raise OciError(416, "SIZE_INVALID", f"The range {req.headers.get('range')!r} is outside the blob's "
                           f"{e.size} bytes", {"size": e.size}, headers=e.headers) from None
        except OSError:  # the client went away
            pass
        except Exception:
            # The status line is gone: returning with the body incomplete makes uvicorn close
            # the connection, which the client sees as a short read.
            log.exception("request %s: blob read failed after the response started", req.request_id)
        finally:
            reader.close()

    # --- uploads -------------------------------------------------------------------------

    async def _start_upload(self, req: _Request) -> None:
        """POST: a cross-repository mount, a monolithic upload (``?digest=``), or a session."""
        name, query = req.endpoint.name, req.query
        mount, source = query.get("mount"), query.get("from")
        if mount is not None and source:
            parsed = try_parse_digest(mount)
            mounted = str(parsed) if parsed is not None and parsed.is_sha256 else None
            size = None
            if mounted is not None:
                try:
                    size = await self._pushing(req, self.store.mount_layer, name, mounted, source,
                                               context="blob", invalid_code="NAME_INVALID")
                except OciError as e:
                    if not isinstance(e.engine, InvalidParameterException):
                        raise
                    # A malformed source name: no mount, which the upload below stands in for.
            if mounted is not None and size is not None:
                await self._discard(req)
                await self._reply(req, 201, _blob_created(name, mounted))
                return
            # Not visible to the caller there, or not a digest or repository name at all: a
            # normal upload, as the spec says (and distribution does).
        wanted = query.get("digest")
        digest = checked_digest(wanted) if wanted is not None else None
        started = await self._pushing(req, self.store.initiate_layer_upload, name,
                                      context="upload", invalid_code="NAME_INVALID")
        upload_id = started.upload_id
        if digest is None:
            await self._discard(req)
            await self._reply(req, 202, _upload_headers(name, upload_id, 0))
            return
        try:
            await self._ingest(req, upload_id, first=None)
            await self._finish(req, upload_id, digest)
        except BaseException:
            try:  # a failed monolithic upload leaves nothing behind
                await self._run(self.store.abort_upload, upload_id, registry_id=req.registry)
            except EcrError:
                pass
            raise

    async def _upload(self, req: _Request) -> None:
        name, upload_id = req.endpoint.name, req.endpoint.ref
        try:
            v.upload_id(upload_id)
        except InvalidParameterException:  # no upload has such an id: unknown, as the spec answers
            raise OciError(404, "BLOB_UPLOAD_UNKNOWN", f"No upload has the id {upload_id!r}") from None
        if req.method == "GET":
            received = await self._store(req, "upload", "BLOB_UPLOAD_UNKNOWN", self.store.upload_status,
                                         name, upload_id)
            await self._reply(req, 204, _upload_headers(name, upload_id, received))
        elif req.method == "DELETE":
            await self._store(req, "upload", "BLOB_UPLOAD_UNKNOWN", self.store.upload_status, name, upload_id)
            await self._store(req, "upload", "BLOB_UPLOAD_UNKNOWN", self.store.abort_upload, upload_id)
            await self._reply(req, 204)
        elif req.method == "PATCH":
            first, expected = content_range(req.headers)
            received = await self._ingest(req, upload_id, first, expected)
            await self._reply(req, 202, _upload_headers(name, upload_id, received))
        else:  # PUT: the last chunk (if any), then completion
            wanted = req.query.get("digest")
            if not wanted:
                raise OciError(400, "DIGEST_INVALID", "The digest query parameter is required to complete an upload")
            digest = checked_digest(wanted)
            if has_body(req.headers):
                first, expected = content_range(req.headers)
                await self._ingest(req, upload_id, first, expected)
            await self._finish(req, upload_id, digest)

    async def _ingest(self, req: _Request, upload_id: str, first: int | None, expected: int | None = None) -> int:
        """Stream the request body into the upload; answer the upload's length after it."""
        try:
            body = BodyStream(req.receive, self._blob_limits, content_length(req.headers))
        except BodyError as e:
            raise _refusal(e) from None
        if expected is not None and body_length(req.headers) not in (None, expected):
            raise OciError(416, "BLOB_UPLOAD_INVALID", "Content-Range and Content-Length disagree", close=True)
        if not self._budget.take(STREAM_BYTES):
            raise OciError(429, "TOOMANYREQUESTS", "The server is receiving its maximum of bodies; retry",
                           close=True)
        try:
            stream = await self._store(req, "upload", "BLOB_UPLOAD_UNKNOWN", self.store.open_upload_stream,
                                       req.endpoint.name, upload_id, first_byte=first)
            try:
                try:
                    written = await stream_into(body, stream, self._executor)
                except BodyError as e:
                    raise _refusal(e) from None
                except EcrError as e:
                    raise from_engine(e, "upload", "BLOB_UPLOAD_INVALID") from None
                if expected is not None and written != expected:
                    raise OciError(400, "BLOB_UPLOAD_INVALID",
                                   f"The body has {written} bytes; Content-Range announced {expected}")
                try:
                    return int(await self._run(stream.commit))
                except EcrError as e:
                    raise from_engine(e, "upload", "BLOB_UPLOAD_INVALID") from None
            finally:
                await self._run(stream.close)
        finally:
            self._budget.give(STREAM_BYTES)

    async def _finish(self, req: _Request, upload_id: str, digest: str) -> None:
        name = req.endpoint.name
        try:
            await self._run(self.store.complete_layer_upload, name, upload_id, [digest], registry_id=req.registry,
                            part_minimum=False)
        except LayerAlreadyExistsException:
            pass  # the repository holds it already (a concurrent push of the same layer): done
        except EcrError as e:
            raise from_engine(e, "upload", "DIGEST_INVALID") from None
        await self._reply(req, 201, _blob_created(name, digest))

    async def _discard(self, req: _Request) -> None:
        """Read and drop a body the endpoint does not use (so the connection stays usable)."""
        if has_body(req.headers):
            try:
                await BodyStream(req.receive, self._manifest_limits, content_length(req.headers)).discard()
            except BodyError as e:
                raise _refusal(e) from None

    # --- manifests -----------------------------------------------------------------------

    async def _manifest(self, req: _Request) -> None:
        if req.method == "PUT":
            await self._put_manifest(req)
        elif req.method == "DELETE":
            await self._delete_manifest(req)
        else:
            await self._get_manifest(req)

    async def _get_manifest(self, req: _Request) -> None:
        name, ref = req.endpoint.name, reference(req.endpoint.ref)
        try:
            found = await self._store(req, "manifest", "MANIFEST_INVALID", self.store.get_manifest, name, ref)
        except OciError as e:  # a miss: a pull through the cache, when a rule covers the repository
            if self.pull_through is None or not isinstance(e.engine, (RepositoryNotFoundException,
                                                                      ImageNotFoundException)):
                raise
            found = await self.pull_through.pull(req.registry, name, ref, e)
        else:
            if self.pull_through is not None and ":" not in ref:  # a cached tag may have moved upstream
                found = await self.pull_through.refreshed(req.registry, name, ref, found)
        accepted = header_values(req.scope, b"accept")
        if accepted and not _accepts(accepted, found.media_type):
            raise OciError(404, "MANIFEST_UNKNOWN",
                           f"The manifest is a {found.media_type}, which the Accept header does not allow",
                           {"accepted": accepted})
        headers = [(b"docker-content-digest", found.digest.encode()), (b"etag", f'"{found.digest}"'.encode())]
        await self._reply(req, 200, headers, found.manifest, found.media_type.encode())

    async def _put_manifest(self, req: _Request) -> None:
        name, ref = req.endpoint.name, reference(req.endpoint.ref)
        try:
            stream = BodyStream(req.receive, self._manifest_limits, content_length(req.headers), self._budget)
        except BodyError as e:
            raise _refusal(e) from None
        try:
            try:
                raw = bytes(await stream.read())
            except BodyError as e:
                raise _refusal(e) from None
        finally:
            stream.release()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise OciError(400, "MANIFEST_INVALID", "The manifest is not UTF-8 JSON") from None
        media_type = req.headers.get("content-type", "").split(";")[0].strip() or None
        is_digest = ":" in ref
        tag, digest = (None, ref) if is_digest else (ref, None)
        try:
            result = await self._pushing(req, self.store.put_image, name, text, image_manifest_media_type=media_type,
                                         image_tag=tag, image_digest=digest, context="manifest-put",
                                         invalid_code="MANIFEST_INVALID")
            stored = result.image.image_id.image_digest
        except OciError as e:
            stored = await self._already_there(req, e, raw, tag)
        headers = [(b"location", f"/v2/{name}/manifests/{stored}".encode()),
                   (b"docker-content-digest", stored.encode())]
        subject = _subject(raw)
        if subject:
            headers.append((b"oci-subject", subject.encode()))
        await self._reply(req, 201, headers)

    async def _already_there(self, req: _Request, error: OciError, raw: bytes, tag: str | None) -> str:
        """A PUT of what is stored already succeeds (re-pushes, immutable tags included): the
        digest, or ``error`` re-raised when the repository holds something else."""
        cause = error.engine
        if not isinstance(cause, (ImageAlreadyExistsException, ImageTagAlreadyExistsException)):
            raise error
        digest = str(content_digest(raw))
        if isinstance(cause, ImageTagAlreadyExistsException):
            assert tag is not None  # only a tagged PUT can meet an immutable tag
            current = await self._store(req, "manifest", "MANIFEST_INVALID", self.store.get_manifest,
                                        req.endpoint.name, tag)
            if current.digest != digest:
                raise error
        return digest

    async def _delete_manifest(self, req: _Request) -> None:
        name, ref = req.endpoint.name, reference(req.endpoint.ref)
        if ":" not in ref:  # a tag: the tag goes, its image stays (untagged if it was the last)
            await self._store(req, "manifest", "TAG_INVALID", self.store.untag_image, name, ref)
            await self._reply(req, 202)
            return
        result = await self._store(req, "manifest", "DIGEST_INVALID", self.store.batch_delete_image, name,
                                   [ImageIdentifier(image_digest=ref)])
        for failure in result.failures:
            status, code = {"ImageNotFound": (404, "MANIFEST_UNKNOWN"),
                            "ImageReferencedByManifestList": (405, "UNSUPPORTED")}.get(
                failure.failure_code, (400, "DIGEST_INVALID"))
            raise OciError(status, code, failure.failure_reason)
        await self._reply(req, 202)


def _accepts(accepted: list[str], media_type: str) -> bool:
    for item in accepted:
        kind = item.split(";")[0].strip().lower()
        if kind in ("*/*", "application/*", media_type.lower()):
            return True
    return False


def _subject(raw: bytes) -> str | None:
    try:
        doc = orjson.loads(raw)
        subject = doc.get("subject") if isinstance(doc, dict) else None
        found = subject.get("digest") if isinstance(subject, dict) else None
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, str) else None


def _upload_headers(name: str, upload_id: str, received: int) -> list[tuple[bytes, bytes]]:
    return [(b"location", f"/v2/{name}/blobs/uploads/{upload_id}".encode()), (b"range", upload_range(received)),
            (b"docker-upload-uuid", upload_id.encode())]


def _blob_created(name: str, digest: str) -> list[tuple[bytes, bytes]]:
    return [(b"location", f"/v2/{name}/blobs/{digest}".encode()), (b"docker-content-digest", digest.encode())]


def _refusal(error: BodyError) -> OciError:
    """The answer to a body refused by the limits (the rest of it unread: close after)."""
    if isinstance(error, BodyTooLarge):
        return OciError(413, "SIZE_INVALID", str(error), close=True)
    if isinstance(error, BudgetExhausted):
        return OciError(429, "TOOMANYREQUESTS", "The server is holding its maximum of request bodies; retry",
                        close=True)
    if isinstance(error, BodyTimeout):
        return OciError(408, "BLOB_UPLOAD_INVALID", str(error), close=True)
    return OciError(400, "SIZE_INVALID", str(error), close=True)
