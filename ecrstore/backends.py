"""Which backends a store runs on: the embedded default, or remote ones named by URL.

``Store(path)`` keeps everything under ``path``: the LMDB index and the local blob tree.
``index="postgresql://…"`` (a libpq URI, or a ``key=value`` conninfo string) keeps the
metadata in PostgreSQL, and ``blobs="s3://bucket/prefix"`` keeps layer bytes in an
S3-compatible object store; every node given the same two shares one store. ``path`` then
holds only what is one node's own (the download-URL key, serve's credentials file).
Credentials come from libpq's usual sources (the URI, ``PG*`` variables, ``~/.pgpass``) and
botocore's (``AWS_*`` variables, ``~/.aws``; ``AWS_ENDPOINT_URL_S3`` names a non-AWS service).

S3 blobs need the PostgreSQL index: the one-writer-per-upload rule is kept across nodes by
the database's advisory locks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .blobs.base import BlobStore
from .blobs.local import Layout, LocalBlobStore
from .errors import InvalidParameterException, ServerException
from .index.base import Index
from .index.lmdb import LmdbIndex

__all__ = ["is_postgres", "open_blobs", "open_index", "prepare_path"]

_PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(url: str | None) -> bool:
    return url is not None and (url.startswith(_PG_SCHEMES) or ("=" in url and "://" not in url))


def _check(index: str | None, blobs: str | None) -> None:
    if index is not None and not is_postgres(index):
        raise InvalidParameterException(f"--index must be a PostgreSQL URI (postgresql://…) or conninfo: {index!r}")
    if blobs is not None and not blobs.startswith("s3://"):
        raise InvalidParameterException(f"--blobs must be an S3 location (s3://bucket/prefix): {blobs!r}")
    if blobs is not None and index is None:
        raise InvalidParameterException("S3 blobs need the PostgreSQL index (--index postgresql://…): "
                                        "uploads are locked across nodes in its database")


def prepare_path(path: str, *, index: str | None, blobs: str | None, create: bool, read_only: bool) -> Layout:
    """Check the backend URLs and the local directory (created unless ``read_only`` or not
    ``create``: then ServerException "no store at"); the directory's layout."""
    _check(index, blobs)
    layout = Layout(path)
    local_files = index is None or blobs is None
    present = layout.exists() if index is None else os.path.isdir(path)
    if not present and (read_only or not create):
        raise ServerException(f"no store at {path}")
    if not read_only:
        try:
            if local_files:
                layout.create()
            else:
                os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as e:
            raise ServerException(f"cannot create the store at {path}: {e}") from e
    return layout


def open_index(url: str | None, layout: Layout, *, durable: bool, read_only: bool, map_size: int) -> Index:
    if url is None:
        return LmdbIndex(layout.index, durable=durable, read_only=read_only, map_size=map_size)
    from .index.postgres import PostgresIndex  # only stores that use it need psycopg

    return PostgresIndex(url, durable=durable, read_only=read_only)


def open_blobs(url: str | None, layout: Layout, index: Index, *, durable: bool,
               background: Callable[..., Any]) -> BlobStore:
    if url is None:
        return LocalBlobStore(layout, durable=durable, background=background)
    from .blobs.s3 import S3BlobStore  # only stores that use it need botocore

    lock = getattr(index, "lock", None)
    if lock is None:
        raise InvalidParameterException("S3 blobs need the PostgreSQL index")
    return S3BlobStore(url, lock=lock, durable=durable, background=background)
