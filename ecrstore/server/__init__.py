"""HTTP front ends of the store: ECR's AWS JSON 1.1 protocol over uvicorn.

The server calls :class:`ecrstore.Store`; the store never imports this package. Needs the
``server`` extra (uvicorn, orjson, pybase64, botocore).
"""

from .app import AppFactory, EcrApp, build_app
from .config import ServerConfig
from .credentials import Credential, CredentialsFileError, load_credentials
from .operations import OPERATIONS, Operation
from .runner import serve
from .sigv4 import SigV4Verifier

__all__ = [
    "OPERATIONS",
    "AppFactory",
    "Credential",
    "CredentialsFileError",
    "EcrApp",
    "Operation",
    "ServerConfig",
    "SigV4Verifier",
    "build_app",
    "load_credentials",
    "serve",
]
