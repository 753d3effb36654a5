"""The one place ecrstore reads its environment.

Variables:

``ECRSTORE_SHA256_KERNEL``
    Demand a sha256 kernel (``portable``, ``shani`` or ``armv8``) instead of the best one the
    CPU offers. An unknown or unusable demand makes ``import ecrstore`` fail: a silent fallback
    would turn a benchmark into a measurement of something else.

``ECRSTORE_STORE``
    The store directory the ``ecrstore`` commands use when no ``--store`` is given.

``ECRSTORE_INDEX``, ``ECRSTORE_BLOBS``
    The remote backends the ``ecrstore`` commands use when no ``--index`` / ``--blobs`` is
    given (``postgresql://…``, ``s3://bucket/prefix``); unset: the embedded default.
"""

from __future__ import annotations

import os

__all__ = ["backend_url_default", "sha256_kernel_demand", "store_path_default"]


def sha256_kernel_demand() -> str | None:
    """The kernel named by ``ECRSTORE_SHA256_KERNEL``, or None when unset or empty."""
    value = os.environ.get("ECRSTORE_SHA256_KERNEL", "").strip()
    return value or None


def store_path_default() -> str | None:
    """The store path named by ``ECRSTORE_STORE``, or None when unset or empty."""
    value = os.environ.get("ECRSTORE_STORE", "")
    return value if value.strip() else None


def backend_url_default(kind: str) -> str | None:
    """The URL of the ``kind`` backend (``index`` or ``blobs``) named by ``ECRSTORE_INDEX`` /
    ``ECRSTORE_BLOBS``, or None when unset or empty."""
    value = os.environ.get(f"ECRSTORE_{kind.upper()}", "")
    return value.strip() or None
