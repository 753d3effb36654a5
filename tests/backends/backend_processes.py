"""What the conformance suite runs in spawned processes.

A module of its own, not the conftest: a spawned child finds a function by its module's
name, and with several conftest.py files on the path ``conftest`` may name another one.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ecrstore.blobs.local import Layout, LocalBlobStore
from ecrstore.blobs.s3 import S3BlobStore
from ecrstore.index.postgres import PostgresIndex


def call_with_handle(reopen: Callable[..., Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    handle = reopen()
    try:
        return fn(handle, *args)
    finally:
        for closable in (handle, getattr(handle, "lock_index", None)):
            close = getattr(closable, "close", None)
            if close is not None:
                close()


def open_local(root: Any) -> LocalBlobStore:
    return LocalBlobStore(Layout(root), durable=True, background=ThreadPoolExecutor(1).submit)


def open_s3(url: str, dsn: str) -> S3BlobStore:
    """An S3 blob store whose upload locks are those of the PostgreSQL index at ``dsn``
    (``lock_index``: the caller closes it)."""
    index = PostgresIndex(dsn, durable=False, pool_size=2)
    store = S3BlobStore(url, lock=index.lock, background=ThreadPoolExecutor(1).submit)
    store.lock_index = index  # type: ignore[attr-defined]
    return store
