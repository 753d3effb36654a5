"""ecrstore: a content-addressed storage engine for container image layers with ECR's semantics."""

from ._sha256 import Sha256, sha256_kernel, sha256_kernels
from .digest import Digest, parse_digest
from .hashing import hash_file

__all__ = [
    "Digest",
    "Sha256",
    "hash_file",
    "parse_digest",
    "sha256_kernel",
    "sha256_kernels",
]
__version__ = "0.1.0"
