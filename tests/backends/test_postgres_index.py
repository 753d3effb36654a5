"""What only the PostgreSQL index does: its schema migrations, its connection handling and its
paged iterations (the contract itself is checked by test_backend_index.py)."""

from __future__ import annotations

import hashlib
import multiprocessing
import time

import psycopg
import pytest

from ecrstore.errors import ServerException
from ecrstore.index.postgres import MIGRATIONS, PostgresIndex
from ecrstore.index.records import BlobRecord, ImageRecord, RepoRecord


def dg(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


@pytest.fixture
def dsn(postgres_server) -> str:
    return postgres_server.new_database()


def _open_and_write(dsn: str, n: int) -> int:
    ix = PostgresIndex(dsn, durable=False, pool_size=1)
    try:
        ix.write(lambda t: t.put_blob(dg(n), BlobRecord(n, 1.0)))
        with ix.read() as t:
            return len(list(t.iter_blobs()))
    finally:
        ix.close()


def _schema_versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM ecrstore_schema ORDER BY version")]


def _terminate_sessions(postgres_server, dsn: str) -> int:
    """Ends every server session on the test's database (as a server restart would)."""
    name = dsn.rsplit("dbname=", 1)[1]
    with psycopg.connect(postgres_server.admin_dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall()
    return len(rows)


def test_nodes_opening_a_new_database_at_once_migrate_it_once(dsn):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        seen = pool.starmap(_open_and_write, [(dsn, n) for n in range(4)], chunksize=1)
    assert all(1 <= s <= 4 for s in seen)
    assert _schema_versions(dsn) == list(range(1, len(MIGRATIONS) + 1))
    ix = PostgresIndex(dsn)  # a reopen applies nothing again
    try:
        with ix.read() as t:
            assert sorted(d for d, _ in t.iter_blobs()) == sorted(dg(n) for n in range(4))
    finally:
        ix.close()
    assert _schema_versions(dsn) == list(range(1, len(MIGRATIONS) + 1))


def test_a_schema_newer_than_the_code_is_refused(dsn):
    PostgresIndex(dsn).close()
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO ecrstore_schema (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(ServerException, match=r"schema version \d+ is newer"):
        PostgresIndex(dsn)


def test_read_only_needs_a_migrated_schema_and_creates_nothing(dsn):
    with pytest.raises(ServerException, match="open it writable once to migrate"):
        PostgresIndex(dsn, read_only=True)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_an_unreachable_server_is_a_server_exception(tmp_path):
    started = time.monotonic()
    with pytest.raises(ServerException, match="cannot open the index database"):
        PostgresIndex(f"host={tmp_path} port=5432 dbname=none", connect_timeout=2)
    assert time.monotonic() - started < 15


def test_connections_the_server_dropped_while_idle_are_replaced(postgres_server, dsn):
    ix = PostgresIndex(dsn, durable=False, pool_size=3)
    try:
        ix.write(lambda t: t.put_blob(dg(1), BlobRecord(1, 1.0)))
        assert _terminate_sessions(postgres_server, dsn) >= 1
        with ix.read() as t:
            assert t.get_blob(dg(1)) == BlobRecord(1, 1.0)
        ix.write(lambda t: t.put_blob(dg(2), BlobRecord(2, 1.0)))
        with ix.read() as t:
            assert t.get_blob(dg(2)) == BlobRecord(2, 1.0)
    finally:
        ix.close()


def test_a_connection_lost_inside_a_write_is_a_server_exception_that_changed_nothing(postgres_server, dsn):
    ix = PostgresIndex(dsn, durable=True, pool_size=2)
    try:
        def lost(t):
            t.put_blob(dg(1), BlobRecord(1, 1.0))
            _terminate_sessions(postgres_server, dsn)
            t.put_blob(dg(2), BlobRecord(2, 1.0))

        with pytest.raises(ServerException, match="index write failed"):
            ix.write(lost)
        with ix.read() as t:
            assert t.get_blob(dg(1)) is None and t.get_blob(dg(2)) is None
    finally:
        ix.close()


def test_iterations_longer_than_a_page_are_complete_and_ordered(dsn):
    ix = PostgresIndex(dsn, durable=False)
    n = 2500  # pages of 1000 rows

    def setup(t):
        r = RepoRecord(id=t.next_repo_id(), registry_id="111111111111", name="app", created_at=1.0)
        t.put_repo(r)
        t.put_image(r.id, dg(0), ImageRecord(1.0, 1, "m", "", b"{}"))
        for i in range(n):
            t.put_blob(dg(i), BlobRecord(i, 1.0))
            t.put_tag(r.id, f"t{i}", dg(0))
            t.put_doc("policy", f"k{i}", b"v")
        return r

    try:
        r = ix.write(setup)
        tags = sorted((f"t{i}" for i in range(n)), key=str.encode)
        with ix.read() as t:
            assert [d for d, _ in t.iter_blobs()] == sorted(dg(i) for i in range(n))
            assert [tag for tag, _ in t.iter_tags(r.id)] == tags
            assert [tag for tag, _ in t.iter_tags(r.id, tags[1200])] == tags[1201:]
            assert [k for k, _ in t.iter_docs("policy", "k1")] == sorted(
                (f"k{i}" for i in range(n) if str(i).startswith("1")), key=str.encode)
            assert t.image_tags(r.id, dg(0)) == tags
    finally:
        ix.close()


def test_sync_makes_non_durable_commits_durable_and_keeps_working(dsn):
    ix = PostgresIndex(dsn, durable=False)
    try:
        ix.write(lambda t: t.put_blob(dg(1), BlobRecord(1, 1.0)))
        ix.sync()
        ix.sync()
    finally:
        ix.close()
    reopened = PostgresIndex(dsn, read_only=True)
    try:
        reopened.sync()  # nothing to flush: a no-op
        with reopened.read() as t:
            assert t.get_blob(dg(1)) == BlobRecord(1, 1.0)
    finally:
        reopened.close()
