"""ecrstore: a content-addressed storage engine for container image layers with ECR's semantics.

The public API: :class:`Store` (ECR's repository, layer and image operations on a local
directory) with its typed inputs (:class:`Tag`, :class:`ImageIdentifier`, the filters and
settings), the native :class:`Sha256` with exportable midstate, :func:`hash_file`, the
:class:`Digest` type and the :mod:`ecrstore.errors` exception hierarchy.
"""

from . import errors
from ._sha256 import Sha256, sha256_kernel, sha256_kernels
from .digest import Digest, parse_digest
from .errors import EcrError
from .hashing import FileRange, hash_file
from .models import (
    DescribeImagesFilter,
    EncryptionConfiguration,
    ExclusionFilter,
    ImageIdentifier,
    ImageScanningConfiguration,
    ListImagesFilter,
    Tag,
)
from .store import Store

__all__ = [
    "DescribeImagesFilter",
    "Digest",
    "EcrError",
    "EncryptionConfiguration",
    "ExclusionFilter",
    "FileRange",
    "ImageIdentifier",
    "ImageScanningConfiguration",
    "ListImagesFilter",
    "Tag",
    "Sha256",
    "Store",
    "errors",
    "hash_file",
    "parse_digest",
    "sha256_kernel",
    "sha256_kernels",
]
__version__ = "0.1.0"
