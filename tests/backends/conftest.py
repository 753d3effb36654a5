"""The backends every conformance test runs against: one parameter per implementation.

A new index or blob backend joins by adding a factory here; every test in this folder then
runs against it too, unchanged. A factory answers a fresh, empty backend and a way to open a
second handle on the same data (another process or node would).
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from backend_processes import call_with_handle, open_local, open_s3

from ecrstore.blobs.local import Layout
from ecrstore.index.lmdb import LmdbIndex
from ecrstore.index.postgres import PostgresIndex


@dataclass
class Backend:
    name: str
    instance: Any
    #: Opens another handle on the same data (picklable: it runs in other processes).
    reopen: Callable[..., Any]

    def in_other_process(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(handle, *args)`` in a freshly spawned process on a handle of its own; its result."""
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            return pool.apply(call_with_handle, (self.reopen, fn, args))


def _lmdb(request, tmp_path) -> Backend:
    path = tmp_path / "index"
    path.mkdir()
    return Backend("lmdb", LmdbIndex(path, durable=False), functools.partial(LmdbIndex, path, durable=False))


def _postgresql(request, tmp_path) -> Backend:
    dsn = request.getfixturevalue("postgres_server").new_database()
    return Backend("postgresql", PostgresIndex(dsn, durable=False, pool_size=4),
                   functools.partial(PostgresIndex, dsn, durable=False, pool_size=4))


def _local(request, tmp_path) -> Backend:
    root = tmp_path / "store"
    Layout(root).create()
    return Backend("local", open_local(root), functools.partial(open_local, root))


def _s3(request, tmp_path) -> Backend:
    # S3 uploads are locked in the index database: a PostgreSQL index of its own lends them.
    dsn = request.getfixturevalue("postgres_server").new_database()
    url = f"s3://{request.getfixturevalue('seaweed_server').new_bucket()}/blobs"
    backend = Backend("s3", open_s3(url, dsn), functools.partial(open_s3, url, dsn))
    request.addfinalizer(backend.instance.lock_index.close)
    return backend


INDEXES = {"lmdb": _lmdb, "postgresql": _postgresql}
BLOBS = {"local": _local, "s3": _s3}


@pytest.fixture(params=sorted(INDEXES))
def index(request, tmp_path) -> Iterator[Backend]:
    backend = INDEXES[request.param](request, tmp_path)
    yield backend
    backend.instance.close()


@pytest.fixture(params=sorted(BLOBS))
def blobs(request, tmp_path) -> Iterator[Backend]:
    yield BLOBS[request.param](request, tmp_path)
