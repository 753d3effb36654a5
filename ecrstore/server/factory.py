"""What one worker serves: the router over the store's endpoints, and the picklable factory
that builds it inside each worker process.

Today's endpoints: ECR's JSON 1.1 API (``POST /``, the default) and the signed layer downloads
(``GET``/``HEAD /layers/...``). A further protocol is one more :class:`..asgi.Route` in
:func:`compose`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..urls import LAYER_PATH_PREFIX
from .asgi import Route, Router
from .auth.credentials import load_credentials
from .auth.sigv4 import SigV4Verifier
from .awsjson.app import EcrApp
from .awsjson.downloads import LayerDownloads
from .awsjson.operations import Operation
from .config import ServerConfig

__all__ = ["AppFactory", "build_app", "compose"]


def compose(store: Any, config: ServerConfig, verifier: SigV4Verifier | None, *,
            operations: Mapping[str, Operation] | None = None) -> Router:
    """The router over ``store``: the signed downloads on their prefix, the JSON API for every
    other request. The sub-apps share one pool of ``config.threads`` threads for store calls.
    The router owns the pool and the store: lifespan shutdown (or :meth:`Router.close`) waits
    for running calls, then closes the store (when it has ``close``)."""
    executor = ThreadPoolExecutor(config.threads, thread_name_prefix="ecrstore-call")
    api = EcrApp(store, config, verifier, executor, operations)
    downloads = LayerDownloads(store, executor)
    shutdown = [functools.partial(executor.shutdown, wait=True)]
    close = getattr(store, "close", None)
    if close is not None:
        shutdown.append(close)
    return Router([Route(LAYER_PATH_PREFIX, downloads, frozenset({"GET", "HEAD"}))], default=api,
                  on_shutdown=shutdown)


def build_app(config: ServerConfig) -> Router:
    """Open the store and the credentials ``config`` names and compose the app over them.
    Raises what opening the store raises (EcrError) and CredentialsFileError."""
    from .. import Store  # imported here: tests compose apps over fake stores

    verifier = None
    if config.auth:
        assert config.credentials_file is not None  # ServerConfig guarantees it with auth
        verifier = SigV4Verifier(load_credentials(config.credentials_file))
    store = Store(config.store_path, **config.store_options)
    return compose(store, config, verifier)


@dataclass(frozen=True)
class AppFactory:
    """uvicorn app factory (``factory=True``): picklable, so it travels to each worker process,
    which calls it after it started and so opens its own Store there."""

    config: ServerConfig

    def __call__(self) -> Router:
        return build_app(self.config)
