"""What one worker serves: the router over the store's endpoints, and the picklable factory
that builds it inside each worker process.

The endpoints: ECR's JSON 1.1 API (``POST /``, the default), the OCI distribution API
(``/v2/...``) and the signed layer downloads (``GET``/``HEAD /layers/...``). A further
protocol is one more :class:`..asgi.Route` in :func:`compose`.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..urls import LAYER_PATH_PREFIX
from .asgi import Route, Router
from .auth.credentials import CredentialsSource
from .auth.registry_tokens import RegistryTokens
from .auth.sigv4 import SigV4Verifier
from .awsjson.app import EcrApp
from .awsjson.downloads import LayerDownloads
from .awsjson.operations import Operation
from .config import ServerConfig
from .oci.app import OciApp
from .oci.pull_through import attach

__all__ = ["AppFactory", "PeriodicLifecycle", "PeriodicPurge", "build_app", "compose", "resume_replication"]

log = logging.getLogger("ecrstore.server")


class PeriodicPurge:
    """Removes uploads idle past the store's TTL every ``interval`` seconds (with a random
    tenth of jitter, so workers spread out), on a thread of its own; stopped by :meth:`stop`.
    Several workers purging at once is safe: the engine re-checks each removal."""

    def __init__(self, store: Any, interval: float) -> None:
        self._store = store
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ecrstore-purge", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(self._interval * random.uniform(0.9, 1.1)):
            try:
                removed = self._store.purge_uploads()
            except Exception as e:  # a failed purge is retried at the next interval
                log.error("periodic purge of idle uploads failed: %s", e)
                continue
            if removed:
                log.info("periodic purge removed %d idle upload(s)", removed)


class PeriodicLifecycle(PeriodicPurge):
    """Applies every repository's lifecycle policy every ``interval`` seconds (jittered like
    :class:`PeriodicPurge`), on a thread of its own. Several workers running at once is safe:
    each expiry re-checks the image inside the write transaction that deletes it."""

    def __init__(self, store: Any, interval: float) -> None:
        super().__init__(store, interval)
        self._thread.name = "ecrstore-lifecycle"

    def _run(self) -> None:
        while not self._stop.wait(self._interval * random.uniform(0.9, 1.1)):
            try:
                report = self._store.lifecycle.run(all_registries=True)
            except Exception as e:  # a failed run is retried at the next interval
                log.error("periodic lifecycle run failed: %s", e)
                continue
            for run in report.repositories:
                if run.expired:
                    log.info("lifecycle policy of %s/%s expired %d image(s)", run.registry_id,
                             run.repository_name, len(run.expired))


def resume_replication(store: Any) -> None:
    """Carry out the replications a crash left IN_PROGRESS (before the worker serves; several
    workers doing it at once is safe: each step is idempotent). A failure is logged, not fatal."""
    try:
        resumed = store.replication.resume()
    except Exception as e:
        log.error("resuming image replication failed: %s", e)
        return
    if resumed:
        log.info("resumed %d image replication(s) left in progress", resumed)


def compose(store: Any, config: ServerConfig, verifier: SigV4Verifier | None, *,
            operations: Mapping[str, Operation] | None = None, tokens: RegistryTokens | None = None) -> Router:
    """The router over ``store``: the OCI distribution API under ``/v2``, the signed downloads
    on their prefix, the JSON API for every other request. ``tokens`` checks ``/v2/`` logins
    and issues them for GetAuthorizationToken (None: no authentication). The sub-apps share
    one pool of ``config.threads`` threads for store calls and one request-body budget.
    The router owns the pool and the store: lifespan shutdown (or :meth:`Router.close`) waits
    for running calls, then closes the store (when it has ``close``)."""
    executor = ThreadPoolExecutor(config.threads, thread_name_prefix="ecrstore-call")
    api = EcrApp(store, config, verifier, executor, operations, tokens)
    downloads = LayerDownloads(store, executor)
    registry = OciApp(store, config, tokens, executor, api.budget)
    registry.pull_through = attach(store, executor, config.upstream_secrets,
                                   refresh_interval=config.pull_through_refresh)
    startup: list[Any] = []
    shutdown: list[Any] = []
    if config.purge_interval > 0 and hasattr(store, "purge_uploads"):
        purge = PeriodicPurge(store, config.purge_interval)
        startup.append(purge.start)
        shutdown.append(purge.stop)
    if config.lifecycle_interval > 0 and hasattr(store, "lifecycle"):
        lifecycle = PeriodicLifecycle(store, config.lifecycle_interval)
        startup.append(lifecycle.start)
        shutdown.append(lifecycle.stop)
    if hasattr(store, "replication"):
        startup.append(functools.partial(resume_replication, store))
    scanning = getattr(store, "scanning", None)
    if scanning is not None:
        if config.scanner_command:
            from ..transfer.scanner import CommandScanner  # here: tests compose apps over fake stores

            scanning.configure(CommandScanner(store, config.scanner_command, timeout=config.scanner_timeout))
        startup.append(functools.partial(_recover_scans, scanning))
    shutdown.append(functools.partial(executor.shutdown, wait=True))
    close = getattr(store, "close", None)
    if close is not None:
        shutdown.append(close)
    return Router([Route("/v2", registry), Route(LAYER_PATH_PREFIX, downloads, frozenset({"GET", "HEAD"}))],
                  default=api,
                  on_startup=startup, on_shutdown=shutdown)


def _recover_scans(scanning: Any) -> None:
    """Scans left IN_PROGRESS by a server that stopped are rewritten as interrupted."""
    try:
        count = scanning.recover()
    except Exception as e:  # readers answer such scans as interrupted anyway
        log.error("recovering interrupted scans failed: %s", e)
        return
    if count:
        log.info("%d scan(s) interrupted by an earlier stop are now FAILED", count)


def build_app(config: ServerConfig) -> Router:
    """Open the store and the credentials ``config`` names and compose the app over them.
    Raises what opening the store raises (EcrError) and CredentialsFileError."""
    from .. import Store  # imported here: tests compose apps over fake stores

    verifier = tokens = None
    if config.auth:
        assert config.credentials_file is not None  # ServerConfig guarantees it with auth
        credentials = CredentialsSource(config.credentials_file)
        verifier = SigV4Verifier(credentials, region=config.region)
        tokens = RegistryTokens(credentials)
    # Never create: only serve's preparation does. A store gone since then is refused, not
    # silently replaced by an empty one.
    store = Store(config.store_path, **{**config.store_options, "create": False})
    return compose(store, config, verifier, tokens=tokens)


@dataclass(frozen=True)
class AppFactory:
    """uvicorn app factory (``factory=True``): picklable, so it travels to each worker process,
    which calls it after it started and so opens its own Store there."""

    config: ServerConfig

    def __call__(self) -> Router:
        return build_app(self.config)
