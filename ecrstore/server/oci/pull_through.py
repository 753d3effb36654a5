"""Pulls through the cache: a ``/v2/`` manifest GET or HEAD that misses locally, in a
repository a pull-through cache rule covers, is fetched from the rule's upstream and stored.

:meth:`PullThroughCache.pull` fetches the manifest from ``<upstream>/v2/<upstream name>/
manifests/<reference>`` (:mod:`.upstream`), for an index or manifest list also each child
manifest, then every blob not in the repository yet, each streamed into an upload in chunks
of :data:`.upstream.CHUNK_BYTES` and completed with the upstream's digest: the store
verifies the sha256, so a blob that does not match its digest is refused and nothing of the
image is kept. The repository is created when absent, with the settings of the registry's
``PULL_THROUGH_CACHE`` creation template covering it (else ECR's defaults); the
manifest is put with its tag (or by digest), then served from the store. Later pulls are
local.

Tags are kept fresh as ECR keeps them: a pull of a TAG the cache fetched that was last compared
with the upstream more than ``refresh_interval`` seconds ago (``serve --pull-through-refresh``, 24 h by
default, 0: never) asks the upstream for the tag's digest (a HEAD, which registries that meter
pulls do not count; a GET where the upstream names no digest). A moved tag is fetched and moved
here, then served; an unchanged one is only recorded as checked. An upstream that fails the
check leaves the cached image served (never an error while a copy exists) and is asked again
after :data:`RETRY_AFTER_FAILURE`. A pull by digest never re-checks: content cannot move.

Concurrency: concurrent first pulls of one image in a worker process share one fetch (a
per-key in-flight task). Worker processes do not coordinate: two of them may fetch the same
image at once, which is harmless — blobs and manifests are content-addressed, a layer that
arrives twice is LayerAlreadyExists (success) and the second PutImage finds the image there.

Answers to upstream failures (the OCI spec has no code for them): the upstream has no such
manifest: 404 ``MANIFEST_UNKNOWN``; it throttles: 429 ``TOOMANYREQUESTS``; it is unreachable,
fails (5xx), refuses the rule's credentials, answers off-protocol or sends a blob or manifest
that does not match its digest: 502 ``UNKNOWN`` (a gateway error, never the client's own 401,
whose credentials were fine); a time-out: 504 ``UNKNOWN``. A miss of a blob (not a manifest)
is not fetched: clients read a manifest first, and its fetch brought every blob.

Who may pull through: ECR asks for ``ecr:BatchImportUpstreamImage``; here every caller of the
registry (the one its login names) may, and a rule only covers repositories of its registry.
The JSON API's BatchGetImage does not fetch (in ECR too only pulls fetch).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import orjson

from ...digest import content_digest
from ...errors import (
    EcrError,
    ImageAlreadyExistsException,
    ImageDigestDoesNotMatchException,
    ImageNotFoundException,
    InvalidLayerException,
    LayerAlreadyExistsException,
    RepositoryAlreadyExistsException,
    RepositoryNotFoundException,
)
from ...limits import DEFAULT_PULL_THROUGH_REFRESH, MAX_MANIFEST_CHARS
from ...manifest import IMAGE_MANIFESTS, INDEXES
from ...models import PullThroughCacheRule, StoredManifest
from .errors import OciError, from_engine
from .upstream import Secret, Upstream, UpstreamError, load_secrets

__all__ = ["RETRY_AFTER_FAILURE", "PullThroughCache", "attach"]

log = logging.getLogger("ecrstore.server")

#: After a failed check, how long until the upstream is asked again.
RETRY_AFTER_FAILURE = 300.0

#: UpstreamError kind -> the answer (every other kind: 502 UNKNOWN).
_STATUS = {"not-found": (404, "MANIFEST_UNKNOWN"), "throttled": (429, "TOOMANYREQUESTS"), "timeout": (504, "UNKNOWN")}


class PullThroughCache:
    """Fetches what the rules of ``store.pull_through`` cover, for one worker; ``secrets`` maps
    secret ARNs to upstream logins. Also the rules' :class:`~ecrstore.pull_through.Upstreams`
    (secret lookup and validation probe)."""

    def __init__(self, store: Any, executor: Executor, secrets: dict[str, Secret], *,
                 refresh_interval: float = DEFAULT_PULL_THROUGH_REFRESH) -> None:
        self.store = store
        self._executor = executor
        self._secrets = secrets
        self._refresh = refresh_interval
        self._inflight: dict[tuple[str, str, str], asyncio.Future[bool]] = {}
        self._checks: dict[tuple[str, str, str], asyncio.Future[bool]] = {}
        self._clients: dict[tuple[str, str | None], Upstream] = {}  # (url, secret ARN): tokens kept across pulls
        self._lock = threading.Lock()

    # --- Upstreams, for the rules --------------------------------------------------------

    def has_secret(self, credential_arn: str) -> bool:
        return credential_arn in self._secrets

    def probe(self, rule: PullThroughCacheRule) -> str | None:
        try:
            self._upstream(rule).ping()
        except UpstreamError as e:
            return e.message
        return None

    # --- pulls ---------------------------------------------------------------------------

    async def pull(self, registry: str, name: str, reference: str, miss: OciError) -> StoredManifest:
        """The manifest, fetched through the cache when a rule covers ``name``; ``miss`` (the
        local answer) re-raised when none does. Raises OciError."""
        if not await self._shared(self._inflight, (registry, name, reference), self._fetch, registry, name,
                                  reference):
            raise miss
        return await self._stored(registry, name, reference)

    async def refreshed(self, registry: str, name: str, tag: str, found: StoredManifest) -> StoredManifest:
        """``found`` (the cached manifest of ``tag``), or the upstream's newer image of the tag
        when a rule covers ``name`` and the tag is due for a check. Concurrent pulls of one tag
        share one check. Raises OciError only when the store fails to read the moved tag."""
        if self._refresh <= 0:
            return found
        if not await self._shared(self._checks, (registry, name, tag), self._check, registry, name, tag,
                                  found.digest):
            return found
        return await self._stored(registry, name, tag)

    async def _shared(self, inflight: dict[tuple[str, str, str], asyncio.Future[bool]], key: tuple[str, str, str],
                      fn: Callable[..., bool], *args: Any) -> bool:
        """``fn(*args)`` on the pool, one run per ``key`` at a time: concurrent callers await
        the run in flight (shielded: a caller that goes away does not cancel it)."""
        task = inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(self._executor, fn, *args))
            inflight[key] = task
            task.add_done_callback(lambda _t: inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _stored(self, registry: str, name: str, reference: str) -> StoredManifest:
        """The manifest as the store now holds it. Raises OciError."""
        try:
            found: StoredManifest = await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: self.store.get_manifest(name, reference, registry_id=registry))
        except EcrError as e:
            raise from_engine(e, "manifest", "MANIFEST_INVALID") from None
        return found

    def _check(self, registry: str, name: str, tag: str, digest: str) -> bool:
        """Compare a due tag with its upstream and fetch it when it moved; whether it moved.
        Never raises for the upstream's failures (logged; the cached image stays)."""
        rules = self.store.pull_through
        now = time.time()
        try:
            matched = rules.match(name, registry_id=registry)
            last = rules.last_check(name, tag, registry_id=registry) if matched is not None else None
        except EcrError:
            return False
        # A tag with no record was not fetched by the cache (pushed here): it is never replaced.
        if matched is None or last is None or now - last < self._refresh:
            return False
        rule, upstream_name = matched
        try:
            upstream = self._upstream(rule)
            current = upstream.manifest_digest(upstream_name, tag)
            got = None  # the manifest, when the upstream named no digest and it had to be read
            if current is None:
                got = upstream.manifest(upstream_name, tag, max_bytes=MAX_MANIFEST_CHARS)
                current = str(content_digest(got[0]))
            moved = current != digest
            if moved:
                self._image(upstream, registry, name, upstream_name, tag, tag, fetched=got)
                log.info("pull through %s/%s:%s: the tag moved upstream to %s", registry, name, tag, current)
        except (UpstreamError, EcrError) as e:
            log.warning("pull through %s/%s:%s: serving the cached image; checking the upstream failed: %s",
                        registry, name, tag, e)
            self._record(registry, name, tag, now - self._refresh + min(self._refresh, RETRY_AFTER_FAILURE))
            return False
        self._record(registry, name, tag, now)
        return moved

    def _record(self, registry: str, name: str, tag: str, at: float) -> None:
        try:
            self.store.pull_through.record_check(name, tag, at, registry_id=registry)
        except EcrError as e:  # advisory: a lost record only means an earlier check
            log.warning("pull through %s/%s:%s: recording the check failed: %s", registry, name, tag, e)

    def _fetch(self, registry: str, name: str, reference: str) -> bool:
        """Fetch and store the image (False: no rule covers the repository). Runs on a pool thread."""
        try:
            matched = self.store.pull_through.match(name, registry_id=registry)
        except EcrError:
            return False
        if matched is None:
            return False
        rule, upstream_name = matched
        log.info("pull through %s/%s:%s from %s/%s", registry, name, reference, rule.upstream_registry_url,
                 upstream_name)
        try:
            upstream = self._upstream(rule)
            tagged = None if ":" in reference else reference
            # The repository is created once the upstream has answered with a manifest.
            self._image(upstream, registry, name, upstream_name, reference, tagged,
                        before=lambda: self._ensure_repository(registry, name))
        except UpstreamError as e:
            status, code = _STATUS.get(e.kind, (502, "UNKNOWN"))
            raise OciError(status, code, f"Pull through cache: {e.message}") from None
        except (InvalidLayerException, ImageDigestDoesNotMatchException) as e:
            raise OciError(502, "UNKNOWN", f"Pull through cache: the upstream's content does not match its digest: "
                           f"{e.message}") from None
        except EcrError as e:
            raise from_engine(e, "manifest", "MANIFEST_INVALID") from None
        if tagged is not None:
            self._record(registry, name, tagged, time.time())
        return True

    def _upstream(self, rule: PullThroughCacheRule) -> Upstream:
        secret = None
        if rule.credential_arn is not None:
            secret = self._secrets.get(rule.credential_arn)
            if secret is None:
                raise UpstreamError("denied", f"the rule's secret {rule.credential_arn} is not known to this server")
        key = (rule.upstream_registry_url, rule.credential_arn)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = Upstream(rule.upstream_registry_url, secret)
        return client

    def _ensure_repository(self, registry: str, name: str) -> None:
        try:
            self.store.describe_repositories(registry_id=registry, repository_names=[name])
            return
        except RepositoryNotFoundException:
            pass
        try:  # with the settings of a PULL_THROUGH_CACHE creation template, when one covers it
            self.store.templates.create_for("PULL_THROUGH_CACHE", registry, name)
            log.info("created repository %s/%s for the pull through cache", registry, name)
        except RepositoryAlreadyExistsException:
            pass  # a concurrent pull created it

    def _image(self, upstream: Upstream, registry: str, name: str, upstream_name: str, reference: str,
               tag: str | None, before: Callable[[], None] | None = None,
               fetched: tuple[bytes, str | None] | None = None) -> None:
        """Fetch one manifest (unless ``fetched`` already: its bytes and media type) and what it
        references, and put it, tagged ``tag`` or by digest; ``before`` runs once the manifest
        arrived and parsed, before anything is stored."""
        raw, media_type = fetched or upstream.manifest(upstream_name, reference, max_bytes=MAX_MANIFEST_CHARS)
        try:
            doc = orjson.loads(raw)
            text = raw.decode("utf-8")
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            raise UpstreamError("invalid", f"the manifest of {upstream_name}:{reference} is not JSON") from None
        if not isinstance(doc, dict):
            raise UpstreamError("invalid", f"the manifest of {upstream_name}:{reference} is not a JSON object")
        if before is not None:
            before()
        kind = doc.get("mediaType") or media_type
        if kind in INDEXES or "manifests" in doc:
            for child in _descriptors(doc.get("manifests")):
                if not self._has_image(registry, name, child):
                    self._image(upstream, registry, name, upstream_name, child, None)
        else:
            blobs = list(dict.fromkeys(_descriptors([doc.get("config"), *(doc.get("layers") or [])])))
            have: set[str] = set()
            for start in range(0, len(blobs), _CHECK_BATCH):
                present = self.store.batch_check_layer_availability(name, blobs[start:start + _CHECK_BATCH],
                                                                    registry_id=registry)
                have.update(layer.layer_digest for layer in present.layers if layer.layer_availability == "AVAILABLE")
            for digest in blobs:
                if digest not in have:
                    self._blob(upstream, registry, name, upstream_name, digest)
        by_digest = None if tag is not None else reference
        try:
            self.store.put_image(name, text, image_manifest_media_type=media_type if media_type in _KNOWN else None,
                                 image_tag=tag, image_digest=by_digest, registry_id=registry)
        except ImageAlreadyExistsException:
            pass  # fetched meanwhile by another worker

    def _has_image(self, registry: str, name: str, digest: str) -> bool:
        try:
            self.store.get_manifest(name, digest, registry_id=registry)
        except ImageNotFoundException:
            return False
        return True

    def _blob(self, upstream: Upstream, registry: str, name: str, upstream_name: str, digest: str) -> None:
        """Stream one blob into the repository; the store checks it against ``digest``."""
        upload_id = self.store.initiate_layer_upload(name, registry_id=registry).upload_id
        try:
            with self.store.open_upload_stream(name, upload_id, registry_id=registry) as stream:
                for chunk in upstream.blob(upstream_name, digest):
                    stream.write([chunk])
                stream.commit()
            self.store.complete_layer_upload(name, upload_id, [digest], registry_id=registry, part_minimum=False)
        except LayerAlreadyExistsException:
            return  # arrived meanwhile (a concurrent pull in another worker): the upload is consumed
        except BaseException:
            _abort(self.store.abort_upload, upload_id, registry)
            raise


_KNOWN = frozenset((*IMAGE_MANIFESTS, *INDEXES))
#: Digests per BatchCheckLayerAvailability call (the model's list bound).
_CHECK_BATCH = 100


def _descriptors(items: Any) -> list[str]:
    """The digests of a list of descriptors (anything malformed: refused as off-protocol)."""
    out = []
    for item in items or []:
        digest = item.get("digest") if isinstance(item, dict) else None
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            raise UpstreamError("invalid", f"the upstream manifest has a malformed descriptor: {item!r:.200}")
        out.append(digest)
    return out


def _abort(abort: Callable[..., Any], upload_id: str, registry: str) -> None:
    try:
        abort(upload_id, registry_id=registry)
    except EcrError:
        pass


def attach(store: Any, executor: Executor, secrets_file: str | None, *,
           refresh_interval: float = DEFAULT_PULL_THROUGH_REFRESH) -> PullThroughCache | None:
    """The worker's pull-through cache over ``store`` (None for a store without rules),
    connected to the store's rules. Raises SecretsFileError."""
    rules = getattr(store, "pull_through", None)
    if rules is None:
        return None
    cache = PullThroughCache(store, executor, load_secrets(secrets_file) if secrets_file else {},
                             refresh_interval=refresh_interval)
    rules.connect(cache)
    return cache
