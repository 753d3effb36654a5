"""HTTP front ends of the store: ECR's AWS JSON 1.1 protocol over uvicorn.

Layout (one protocol per subpackage, sharing the protocol-neutral pieces):

- :mod:`.asgi`: the router (lifespan, dispatch by path prefix, error-safe fallback);
- :mod:`.http`: bounded and streaming body reading, hashing while it arrives, byte ranges,
  zero-copy sending;
- :mod:`.auth`: the credentials file and SigV4 verification;
- :mod:`.awsjson`: ECR's JSON API (operations, codec, handler) and the signed downloads;
- :mod:`.factory`: the app one worker serves; :mod:`.runner`: uvicorn, workers, preparation.

The server calls :class:`ecrstore.Store`; the store never imports this package. Serving needs
the ``server`` extra (uvicorn, orjson, pybase64, botocore): the names below are imported on
first use, so that ``import ecrstore.server`` (and the configuration, credentials and
preparation helpers, and :mod:`.awsjson.codec`) work without it. :func:`missing_packages`
names what is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .asgi import Route, Router
    from .auth.credentials import Credential, CredentialsFileError, load_credentials
    from .auth.sigv4 import SigV4Verifier
    from .awsjson.app import EcrApp
    from .awsjson.operations import OPERATIONS, Operation
    from .config import ServerConfig
    from .factory import AppFactory, build_app, compose
    from .runner import endpoint_url, prepare_credentials, prepare_store, run, serve, usage_hint

__all__ = [
    "OPERATIONS",
    "AppFactory",
    "Credential",
    "CredentialsFileError",
    "EcrApp",
    "Operation",
    "Route",
    "Router",
    "ServerConfig",
    "SigV4Verifier",
    "build_app",
    "compose",
    "endpoint_url",
    "load_credentials",
    "missing_packages",
    "prepare_credentials",
    "prepare_store",
    "run",
    "serve",
    "usage_hint",
]

#: Exported name -> the module defining it (relative to this package).
_HOMES = {
    "OPERATIONS": ".awsjson.operations",
    "Operation": ".awsjson.operations",
    "EcrApp": ".awsjson.app",
    "AppFactory": ".factory",
    "build_app": ".factory",
    "compose": ".factory",
    "Route": ".asgi",
    "Router": ".asgi",
    "Credential": ".auth.credentials",
    "CredentialsFileError": ".auth.credentials",
    "load_credentials": ".auth.credentials",
    "SigV4Verifier": ".auth.sigv4",
    "ServerConfig": ".config",
    "endpoint_url": ".runner",
    "prepare_credentials": ".runner",
    "prepare_store": ".runner",
    "run": ".runner",
    "serve": ".runner",
    "usage_hint": ".runner",
}

#: The import names of the ``server`` extra's packages.
EXTRA_PACKAGES = ("uvicorn", "orjson", "pybase64", "botocore")


def missing_packages() -> list[str]:
    """The packages of the ``server`` extra that cannot be imported here (empty when serving
    can work). Imports nothing."""
    return [name for name in EXTRA_PACKAGES if importlib.util.find_spec(name) is None]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
