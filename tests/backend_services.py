"""Real backend services for the test session, and the backend pairs store tests run on.

``postgres_server`` (Debian's PostgreSQL) and ``seaweed_server`` (SeaweedFS's S3 gateway)
start once per session, when a test first needs them, and stop by PID at its end. While
SeaweedFS runs, the ``AWS_*`` environment names it, so stores opened in this process and
``ecrstore`` processes started from it reach it the usual way.

A test (or fixture) taking ``backends`` runs once per pair in :data:`PAIRS`, with the Store
keyword arguments of a fresh, empty store on that pair: ``{}`` for the embedded default,
a new database and a new bucket for the distributed one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from postgres_server import PostgresServer
from postgres_server import start as start_postgres
from seaweed_server import SeaweedServer
from seaweed_server import start as start_seaweed

#: (index, blobs) pairs: the embedded default, and the distributed form.
PAIRS = ("lmdb+local", "postgresql+s3")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (each test gets a database of its own)."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[SeaweedServer]:
    """One SeaweedFS for the session (each store gets a bucket of its own); the ``AWS_*``
    environment points at it while it runs."""
    server = start_seaweed()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


def pair_options(request: pytest.FixtureRequest, pair: str) -> dict[str, str]:
    """Store keyword arguments for a fresh store on ``pair``."""
    if pair == "lmdb+local":
        return {}
    dsn = request.getfixturevalue("postgres_server").new_database()
    bucket = request.getfixturevalue("seaweed_server").new_bucket()
    return {"index": dsn, "blobs": f"s3://{bucket}/store"}


@pytest.fixture(params=PAIRS)
def backends(request: pytest.FixtureRequest) -> dict[str, str]:
    return pair_options(request, request.param)
