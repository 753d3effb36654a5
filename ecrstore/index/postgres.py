"""The PostgreSQL index backend: one database shared by every node of a distributed store.

This is the only module that imports :mod:`psycopg`. It owns the connection pool, the schema
(created and migrated here, see :data:`MIGRATIONS`), the transactions and the translation of
every driver error into ServerException. It keeps the contract of :mod:`ecrstore.index.base`:

* :meth:`PostgresIndex.write` runs ``fn`` in one SERIALIZABLE transaction. Serializable
  isolation is what makes the checks ``fn`` makes (a record equals the one read, a tag is
  free) still hold at commit without explicit row locks: PostgreSQL aborts one of two
  transactions whose reads and writes could not have run one after the other (SQLSTATE
  40001), and a deadlock (40P01) aborts one too; either is retried with a bounded, jittered
  backoff (``fn`` may be re-run: the contract allows it).
* :meth:`PostgresIndex.read` is a REPEATABLE READ READ ONLY transaction: in PostgreSQL that is
  one snapshot (taken when the read begins), so every read sees the same committed state,
  and a read-only transaction at that level never fails for serialization and never blocks
  (SERIALIZABLE would add predicate locks and possible aborts for nothing: it never writes).
* ``durable=True`` commits with ``synchronous_commit=on`` (on stable storage at return);
  ``durable=False`` sets ``synchronous_commit=off`` for its sessions (a commit survives a
  process crash of ours, and PostgreSQL's own crash recovery keeps the database consistent,
  but the last commits may be lost in a server crash until :meth:`PostgresIndex.sync`).

Keys mirror the LMDB backend's: repository names, tags and document keys are ``bytea`` of
their UTF-8 bytes, so every ordered iteration is in byte order, as LMDB's. Counters (the
repositories and uploads of a registry, the images of a repository) live in ``counts`` and
are kept by every write: nothing is counted by a scan except :meth:`PgTxn.counts`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg import pq

from ..errors import ServerException
from .base import Index, IndexCounts
from .pg_schema import MIGRATIONS, migrate, schema_version
from .records import BlobRecord, ImageRecord, LinkRecord, RepoRecord, UploadRecord

__all__ = ["MIGRATIONS", "PgTxn", "PostgresIndex"]

T = TypeVar("T")

_RETRIABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
_MAX_ATTEMPTS = 40
_PAGE = 1000  # rows fetched per query by the ordered iterations
# Counter kinds in ``counts``: repositories / uploads of a registry, images of a repository.
_REPOS, _UPLOADS, _IMAGES = "R", "U", "I"

_UPLOAD_COLS = "repo_id, created, updated, received, parts, small_part, last_first, last_last, last_xxh, state"
_REPO_OTHERS = "id, created_at, image_tag_mutability, exclusion_filters, scan_on_push, encryption_type, kms_key, tags"
_REPO_COLS = "registry_id, name, " + _REPO_OTHERS


@functools.cache
def _upsert_sql(table: str, keys: str, others: str) -> str:
    """Insert or replace a row by its key columns; answers whether it was inserted (a new
    row's ``xmax`` is 0, a replaced one's is the replacing transaction)."""
    cols = [c.strip() for c in f"{keys}, {others}".split(",")]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols[len(keys.split(",")):])
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
            f"ON CONFLICT ({keys}) DO UPDATE SET {sets} RETURNING (xmax = 0)")


def _repo(row: Sequence[Any]) -> RepoRecord:
    return RepoRecord(registry_id=row[0], name=bytes(row[1]).decode(), id=row[2], created_at=row[3],
                      image_tag_mutability=row[4], image_tag_mutability_exclusion_filters=row[5],
                      scan_on_push=row[6], encryption_type=row[7], kms_key=row[8], tags=row[9])


def _upload(row: Sequence[Any]) -> UploadRecord:
    return UploadRecord(repo_id=row[0], created=row[1], updated=row[2], received=row[3], parts=row[4],
                        small_part=row[5], last_first=row[6], last_last=row[7], last_xxh=bytes(row[8]),
                        state=bytes(row[9]))


# --- transactions ----------------------------------------------------------------------------


class PgTxn:
    """The read and write protocols of :mod:`.base` over one PostgreSQL transaction (one
    pooled connection, used by one thread)."""

    __slots__ = ("_c",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._c = conn

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._c.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self._c.execute(sql, params).fetchone()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._c.execute(sql, params).rowcount

    def _upsert(self, table: str, keys: str, others: str, values: Sequence[Any]) -> bool:
        return self._one(_upsert_sql(table, keys, others), values) == (True,)

    def _exists(self, sql: str, params: Sequence[Any]) -> bool:
        return self._one(f"SELECT EXISTS ({sql})", params) == (True,)

    def _pages(self, cols: str, table: str, where: str, params: tuple[Any, ...],
               keys: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
        """Rows in ``keys`` order, fetched a page at a time (keyset pagination: each page
        starts after the last row of the previous one, so writes between pages in a write
        transaction are harmless). ``cols`` must begin with ``keys``."""
        order = ", ".join(keys)
        after: tuple[Any, ...] = ()
        while True:
            cond = where if not after else f"{where} AND ({order}) > ({', '.join(['%s'] * len(keys))})"
            rows = self._rows(f"SELECT {cols} FROM {table} WHERE {cond} ORDER BY {order} LIMIT {_PAGE}",
                              params + after)
            yield from rows
            if len(rows) < _PAGE:
                return
            after = tuple(rows[-1][: len(keys)])

    # counters
    def _count(self, kind: str, owner: str) -> int:
        row = self._one("SELECT n FROM counts WHERE kind = %s AND owner = %s", (kind, owner))
        return 0 if row is None else int(row[0])

    def _add_count(self, kind: str, owner: str, delta: int) -> None:
        self._run("INSERT INTO counts (kind, owner, n) VALUES (%s, %s, %s) "
                  "ON CONFLICT (kind, owner) DO UPDATE SET n = counts.n + EXCLUDED.n", (kind, owner, delta))

    # repositories
    def next_repo_id(self) -> int:
        # A sequence never answers a value twice, even across aborted transactions.
        row = self._one("SELECT nextval('repo_id_seq')")
        assert row is not None
        return int(row[0])

    def get_repo(self, registry_id: str, name: str) -> RepoRecord | None:
        row = self._one(f"SELECT {_REPO_COLS} FROM repos WHERE registry_id = %s AND name = %s",
                        (registry_id, name.encode()))
        return None if row is None else _repo(row)

    def put_repo(self, rec: RepoRecord) -> None:
        if self._upsert("repos", "registry_id, name", _REPO_OTHERS, (
                rec.registry_id, rec.name.encode(), rec.id, rec.created_at, rec.image_tag_mutability,
                json.dumps(rec.image_tag_mutability_exclusion_filters), rec.scan_on_push, rec.encryption_type,
                rec.kms_key, json.dumps(rec.tags))):
            self._add_count(_REPOS, rec.registry_id, 1)

    def delete_repo(self, rec: RepoRecord) -> None:
        if self._run("DELETE FROM repos WHERE registry_id = %s AND name = %s", (rec.registry_id, rec.name.encode())):
            self._add_count(_REPOS, rec.registry_id, -1)

    def count_repos(self, registry_id: str) -> int:
        return self._count(_REPOS, registry_id)

    def iter_repos(self, registry_id: str, after: str | None = None) -> Iterator[RepoRecord]:
        """Repositories of a registry in name order (UTF-8 bytes), starting after ``after``."""
        where = "registry_id = %s"
        params: tuple[Any, ...] = (registry_id,)
        if after is not None:
            where, params = where + " AND name > %s", (registry_id, after.encode())
        for row in self._pages(f"name, {_REPO_COLS}", "repos", where, params, ("name",)):
            yield _repo(row[1:])

    def registry_links(self, registry_id: str, dgs: list[bytes]) -> set[bytes]:
        """Which of ``dgs`` some repository of ``registry_id`` links. Registries are tenants:
        content another registry holds is never revealed."""
        if not dgs:
            return set()
        rows = self._rows("SELECT DISTINCT l.dg FROM links l JOIN repos r ON r.id = l.repo_id "
                          "WHERE l.dg = ANY(%s) AND r.registry_id = %s", (dgs, registry_id))
        return {bytes(r[0]) for r in rows}

    # uploads
    def get_upload(self, uid: bytes) -> UploadRecord | None:
        row = self._one(f"SELECT {_UPLOAD_COLS} FROM uploads WHERE uid = %s", (uid,))
        return None if row is None else _upload(row)

    def put_upload(self, uid: bytes, rec: UploadRecord, old: UploadRecord | None = None) -> None:
        """Insert (``old=None``) or replace ``old`` with ``rec``."""
        values = (rec.repo_id, rec.created, rec.updated, rec.received, rec.parts, rec.small_part,
                  rec.last_first, rec.last_last, rec.last_xxh, rec.state)
        if self._upsert("uploads", "uid", _UPLOAD_COLS, (uid, *values)):  # the ``uploads_by_*`` indexes follow
            self._count_upload(rec.repo_id, 1)

    def delete_upload(self, uid: bytes, rec: UploadRecord) -> None:
        if self._run("DELETE FROM uploads WHERE uid = %s", (uid,)):
            self._count_upload(rec.repo_id, -1)

    def _count_upload(self, repo_id: int, delta: int) -> None:
        row = self._one("SELECT registry_id FROM repos WHERE id = %s", (repo_id,))
        if row is not None:
            self._add_count(_UPLOADS, row[0], delta)

    def count_uploads(self, registry_id: str) -> int:
        return self._count(_UPLOADS, registry_id)

    def uploads_idle_since(self, before: float, limit: int | None = None) -> list[tuple[bytes, UploadRecord]]:
        """Uploads last active before ``before``, oldest first (the ``uploads_by_updated`` index)."""
        sql = f"SELECT uid, {_UPLOAD_COLS} FROM uploads WHERE updated < %s ORDER BY updated, uid"
        rows = self._rows(sql if limit is None else f"{sql} LIMIT %s", (before,) if limit is None else (before, limit))
        return [(bytes(r[0]), _upload(r[1:])) for r in rows]

    def repo_upload_ids(self, repo_id: int) -> list[bytes]:
        return [bytes(r[0]) for r in self._rows("SELECT uid FROM uploads WHERE repo_id = %s ORDER BY uid", (repo_id,))]

    def iter_uploads(self) -> Iterator[tuple[bytes, UploadRecord]]:
        for row in self._pages(f"uid, {_UPLOAD_COLS}", "uploads", "TRUE", (), ("uid",)):
            yield bytes(row[0]), _upload(row[1:])

    # blobs and links
    def get_blob(self, dg: bytes) -> BlobRecord | None:
        row = self._one("SELECT size, created, placement FROM blobs WHERE dg = %s", (dg,))
        return None if row is None else BlobRecord(row[0], row[1], row[2])

    def put_blob(self, dg: bytes, rec: BlobRecord) -> None:
        self._upsert("blobs", "dg", "size, created, placement", (dg, rec.size, rec.created, rec.placement))

    def delete_blob(self, dg: bytes) -> None:
        self._run("DELETE FROM blobs WHERE dg = %s", (dg,))

    def iter_blobs(self) -> Iterator[tuple[bytes, BlobRecord]]:
        for row in self._pages("dg, size, created, placement", "blobs", "TRUE", (), ("dg",)):
            yield bytes(row[0]), BlobRecord(row[1], row[2], row[3])

    def blob_link_repos(self, dg: bytes) -> list[int]:
        return [int(r[0]) for r in self._rows("SELECT repo_id FROM links WHERE dg = %s ORDER BY repo_id", (dg,))]

    def blob_is_linked(self, dg: bytes) -> bool:
        return self._exists("SELECT 1 FROM links WHERE dg = %s", (dg,))

    def get_link(self, repo_id: int, dg: bytes) -> LinkRecord | None:
        row = self._one("SELECT size, linked_at, media_type FROM links WHERE repo_id = %s AND dg = %s", (repo_id, dg))
        return None if row is None else LinkRecord(row[0], row[1], row[2])

    def get_links(self, repo_id: int, dgs: list[bytes]) -> dict[bytes, tuple[int, str]]:
        """(size, media type) of the links among ``dgs``, in one query (the batch availability
        hot path)."""
        if not dgs:
            return {}
        rows = self._rows("SELECT dg, size, media_type FROM links WHERE repo_id = %s AND dg = ANY(%s)",
                          (repo_id, dgs))
        return {bytes(r[0]): (int(r[1]), r[2]) for r in rows}

    def put_link(self, repo_id: int, dg: bytes, rec: LinkRecord) -> None:
        self._upsert("links", "repo_id, dg", "size, linked_at, media_type",
                     (repo_id, dg, rec.size, rec.linked_at, rec.media_type))

    def delete_link(self, repo_id: int, dg: bytes) -> None:
        self._run("DELETE FROM links WHERE repo_id = %s AND dg = %s", (repo_id, dg))

    def iter_links(self, repo_id: int) -> Iterator[tuple[bytes, LinkRecord]]:
        for row in self._pages("dg, size, linked_at, media_type", "links", "repo_id = %s", (repo_id,), ("dg",)):
            yield bytes(row[0]), LinkRecord(row[1], row[2], row[3])

    def iter_all_links(self) -> Iterator[tuple[int, bytes, LinkRecord]]:
        for row in self._pages("repo_id, dg, size, linked_at, media_type", "links", "TRUE", (), ("repo_id", "dg")):
            yield int(row[0]), bytes(row[1]), LinkRecord(row[2], row[3], row[4])

    # images
    def get_image(self, repo_id: int, dg: bytes, *, with_manifest: bool = True) -> ImageRecord | None:
        manifest = "manifest" if with_manifest else "''::bytea"
        row = self._one(f"SELECT pushed_at, size, media_type, artifact_media_type, {manifest} FROM images "
                        "WHERE repo_id = %s AND dg = %s", (repo_id, dg))
        return None if row is None else ImageRecord(row[0], row[1], row[2], row[3], bytes(row[4]))

    def put_image(self, repo_id: int, dg: bytes, rec: ImageRecord) -> None:
        """Insert a new image (the caller checked it is new) and count it."""
        if self._run("INSERT INTO images (repo_id, dg, pushed_at, size, media_type, artifact_media_type, manifest) "
                     "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (repo_id, dg) DO NOTHING",
                     (repo_id, dg, rec.pushed_at, rec.size, rec.media_type, rec.artifact_media_type, rec.manifest)):
            self._add_count(_IMAGES, str(repo_id), 1)

    def delete_image(self, repo_id: int, dg: bytes) -> None:
        if self._run("DELETE FROM images WHERE repo_id = %s AND dg = %s", (repo_id, dg)):
            self._add_count(_IMAGES, str(repo_id), -1)

    def image_count(self, repo_id: int) -> int:
        return self._count(_IMAGES, str(repo_id))

    def iter_image_digests(self, repo_id: int, start: bytes | None = None, *,
                           inclusive: bool = True) -> Iterator[bytes]:
        """A repository's image digests in digest order, from ``start`` on."""
        where = "repo_id = %s"
        params: tuple[Any, ...] = (repo_id,)
        if start is not None:
            where, params = where + (" AND dg >= %s" if inclusive else " AND dg > %s"), (repo_id, start)
        for row in self._pages("dg", "images", where, params, ("dg",)):
            yield bytes(row[0])

    # tags
    def get_tag(self, repo_id: int, tag: str) -> bytes | None:
        row = self._one("SELECT dg FROM tags WHERE repo_id = %s AND tag = %s", (repo_id, tag.encode()))
        return None if row is None else bytes(row[0])

    def put_tag(self, repo_id: int, tag: str, dg: bytes) -> None:
        self._upsert("tags", "repo_id, tag", "dg", (repo_id, tag.encode(), dg))

    def delete_tag(self, repo_id: int, tag: str, dg: bytes) -> None:
        # ``dg`` names the image_tags entry in LMDB; here that is an index of the same row.
        self._run("DELETE FROM tags WHERE repo_id = %s AND tag = %s", (repo_id, tag.encode()))

    def image_tags(self, repo_id: int, dg: bytes) -> list[str]:
        """The tags of an image, in tag order (the ``image_tags`` index)."""
        rows = self._rows("SELECT tag FROM tags WHERE repo_id = %s AND dg = %s ORDER BY tag", (repo_id, dg))
        return [bytes(r[0]).decode() for r in rows]

    def iter_tags(self, repo_id: int, after: str | None = None) -> Iterator[tuple[str, bytes]]:
        """(tag, image digest) of a repository in tag order (UTF-8 bytes), after ``after``."""
        where = "repo_id = %s"
        params: tuple[Any, ...] = (repo_id,)
        if after is not None:
            where, params = where + " AND tag > %s", (repo_id, after.encode())
        for row in self._pages("tag, dg", "tags", where, params, ("tag",)):
            yield bytes(row[0]).decode(), bytes(row[1])

    # OCI referrers: manifests naming a subject
    def referrers(self, repo_id: int, subject: bytes) -> list[bytes]:
        rows = self._rows("SELECT referrer FROM referrers WHERE repo_id = %s AND subject = %s ORDER BY referrer",
                          (repo_id, subject))
        return [bytes(r[0]) for r in rows]

    def add_referrer(self, repo_id: int, subject: bytes, referrer: bytes) -> None:
        self._run("INSERT INTO referrers (repo_id, subject, referrer) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                  (repo_id, subject, referrer))

    def delete_referrer(self, repo_id: int, subject: bytes, referrer: bytes) -> None:
        self._run("DELETE FROM referrers WHERE repo_id = %s AND subject = %s AND referrer = %s",
                  (repo_id, subject, referrer))

    # references between images, and from images to layers
    def add_image_ref(self, repo_id: int, child: bytes, parent: bytes) -> None:
        self._run("INSERT INTO image_refs (repo_id, child, parent) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                  (repo_id, child, parent))

    def delete_image_ref(self, repo_id: int, child: bytes, parent: bytes) -> None:
        self._run("DELETE FROM image_refs WHERE repo_id = %s AND child = %s AND parent = %s", (repo_id, child, parent))

    def image_is_referenced(self, repo_id: int, child: bytes) -> bool:
        return self._exists("SELECT 1 FROM image_refs WHERE repo_id = %s AND child = %s", (repo_id, child))

    def add_layer_ref(self, repo_id: int, layer: bytes, image: bytes, media_type: str) -> None:
        self._upsert("layer_refs", "repo_id, layer, image", "media_type", (repo_id, layer, image, media_type))

    def delete_layer_ref(self, repo_id: int, layer: bytes, image: bytes) -> None:
        self._run("DELETE FROM layer_refs WHERE repo_id = %s AND layer = %s AND image = %s", (repo_id, layer, image))

    def layer_is_referenced(self, repo_id: int, layer: bytes) -> bool:
        return self._exists("SELECT 1 FROM layer_refs WHERE repo_id = %s AND layer = %s", (repo_id, layer))

    # control-plane documents
    def get_doc(self, kind: str, key: str) -> bytes | None:
        row = self._one("SELECT value FROM docs WHERE kind = %s AND key = %s", (kind, key.encode()))
        return None if row is None else bytes(row[0])

    def iter_docs(self, kind: str, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """(key, value) of the documents of ``kind`` whose key starts with ``prefix``, in key
        order (UTF-8 bytes)."""
        raw = prefix.encode()
        where = "kind = %s AND key >= %s AND substring(key FROM 1 FOR %s) = %s"
        for row in self._pages("key, value", "docs", where, (kind, raw, len(raw), raw), ("key",)):
            yield bytes(row[0]).decode(), bytes(row[1])

    def put_doc(self, kind: str, key: str, value: bytes) -> None:
        self._upsert("docs", "kind, key", "value", (kind, key.encode(), value))

    def delete_doc(self, kind: str, key: str) -> bool:
        return bool(self._run("DELETE FROM docs WHERE kind = %s AND key = %s", (kind, key.encode())))

    def counts(self) -> IndexCounts:
        """Totals for statistics (counted: the one read here that scans)."""
        row = self._one("SELECT (SELECT count(*) FROM repos), (SELECT count(*) FROM links), "
                        "(SELECT count(*) FROM blobs), (SELECT count(*) FROM uploads)")
        assert row is not None
        return IndexCounts(repositories=row[0], links=row[1], blobs=row[2], uploads=row[3])


# --- the index -------------------------------------------------------------------------------


class PostgresIndex:
    """An index in a PostgreSQL database, shared by threads (a connection pool) and by every
    process and node that opens the same database.

    ``dsn`` is a libpq connection string or URI (``postgresql://user@host/db`` or
    ``host=/socket/dir dbname=db``). Opening creates or migrates the schema (not when
    ``read_only``: then the schema must be current). ``durable=True``: a write is on stable
    storage when :meth:`write` returns; ``durable=False``: perhaps not until :meth:`sync`.
    ``read_only=True``: :meth:`write` raises ServerException. ``pool_size`` bounds the
    connections this handle holds (a read or write holds one while it runs). A handle is
    not inherited across ``fork``: a child process opens its own.
    """

    def __init__(self, dsn: str, *, durable: bool = True, read_only: bool = False, pool_size: int = 8,
                 connect_timeout: float = 30.0, lock_pool_size: int = 64) -> None:
        self.durable = durable
        self.read_only = read_only
        self._timeout = connect_timeout
        self._closed = False
        self._max_size = max(1, pool_size)
        self._close_lock = threading.Lock()
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = psycopg_pool.ConnectionPool(
            dsn, min_size=1, max_size=self._max_size, kwargs={"autocommit": True},
            configure=self._configure, open=False, name="ecrstore-index",
        )
        # Held locks pin a session each: a pool of their own, so holders never starve the
        # transactions they wait on. A killed process's sessions close, and its locks go, at
        # once; these client keepalives notice a database that went away, while a node that
        # vanished (power, network) is noticed by the server's own tcp_keepalives_* settings.
        self._locks: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = psycopg_pool.ConnectionPool(
            dsn, min_size=0, max_size=max(1, lock_pool_size), open=False, name="ecrstore-locks",
            kwargs={"autocommit": True, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                    "keepalives_count": 3},
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
            self._locks.open(wait=False)
            with self._connection() as conn:
                if read_only:
                    version = schema_version(conn)
                    if version != len(MIGRATIONS):
                        raise ServerException(f"the index schema is at version {version}, this ecrstore needs "
                                              f"{len(MIGRATIONS)}: open it writable once to migrate")
                else:
                    migrate(conn)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
            self._close_pools()
            raise ServerException(f"cannot open the index database: {e}") from e
        except BaseException:
            self._close_pools()
            raise

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SET synchronous_commit = " + ("on" if self.durable else "off"))
        if self.read_only:
            conn.execute("SET default_transaction_read_only = on")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection(timeout=self._timeout) as conn:
                yield conn
        except psycopg_pool.PoolTimeout as e:
            raise ServerException(f"no index database connection: {e}") from e

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction begun with ``begin``; rolled back at the
        end unless the body committed. A connection the server dropped while it sat idle in
        the pool (a server restart, an idle timeout) fails at ``begin``, before anything ran:
        it is discarded and another taken."""
        for _ in range(self._max_size + 1):
            with self._connection() as conn:
                try:
                    conn.execute(begin)
                except psycopg.OperationalError:
                    if conn.broken:
                        continue  # back to the pool closed: the pool discards it
                    raise
                try:
                    yield conn
                finally:
                    if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
                        try:
                            conn.execute("ROLLBACK")
                        except psycopg.Error:
                            pass  # the connection is broken: the pool discards it
                return
        raise ServerException("index database unavailable: every connection failed")

    @contextmanager
    def read(self) -> Iterator[PgTxn]:
        """A consistent snapshot (REPEATABLE READ READ ONLY). Hold it briefly: it holds a
        pooled connection."""
        try:
            # The snapshot is taken at the first query, not at BEGIN: take it now, so the read
            # sees the state of its start, not of its first use.
            with self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1") as conn:
                yield PgTxn(conn)
        except psycopg.Error as e:
            raise ServerException(f"index read failed: {e}") from e

    def write(self, fn: Callable[[PgTxn], T]) -> T:
        """Run ``fn`` in one SERIALIZABLE transaction and commit it; answer what ``fn`` returns.

        A serialization failure or deadlock re-runs ``fn`` in a new transaction (a bounded
        number of times, with jittered backoff), so ``fn`` must not have effects outside the
        transaction that a second run would repeat wrongly. An exception from ``fn`` aborts
        the transaction and propagates unchanged. Any other database failure raises
        ServerException and commits nothing (a connection lost during COMMIT itself is the one
        case where the outcome is unknown to the caller, as with any database).
        """
        if self.read_only:
            raise ServerException("the store is open read-only")
        for attempt in range(_MAX_ATTEMPTS):
            try:
                with self._transaction("BEGIN ISOLATION LEVEL SERIALIZABLE") as conn:
                    result = fn(PgTxn(conn))
                    conn.execute("COMMIT")
                    return result
            except _RETRIABLE:
                time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** attempt)))
            except psycopg.Error as e:
                raise ServerException(f"index write failed: {e}") from e
        raise ServerException(f"index write failed: still conflicting after {_MAX_ATTEMPTS} attempts")

    @contextmanager
    def lock(self, name: str, *, wait: bool = True, timeout: float = 300.0) -> Iterator[bool]:
        """A lock named ``name`` held by one holder at a time across every thread, process and
        node of this database (a session advisory lock), until the context exits; yields
        True, or False at once with ``wait=False`` while another holds it. A holder that dies
        releases it when the database sees its session end (at once for a killed process,
        within keepalive time for a lost node). Raises ServerException after ``timeout``
        seconds of waiting, or when the database is unreachable."""
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
        try:
            with self._locks.connection(timeout=self._timeout) as conn:
                if wait:
                    conn.execute(f"SET lock_timeout = {int(timeout * 1000)}")
                    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                    held = True
                else:
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                    held = bool(row and row[0])
                try:
                    yield held
                finally:
                    if held and not conn.broken:
                        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except psycopg_pool.PoolTimeout as e:
            raise ServerException(f"no index database connection for a lock: {e}") from e
        except pg_errors.LockNotAvailable as e:
            raise ServerException(f"the lock {name} is still held after {timeout:.0f} s") from e
        except psycopg.Error as e:
            raise ServerException(f"index lock failed: {e}") from e

    def sync(self) -> None:
        """Make every commit so far durable: one tiny commit with ``synchronous_commit=on``
        flushes the write-ahead log up to its own record, so every earlier commit with it."""
        if self.read_only or self.durable:
            return
        try:
            with self._connection() as conn, conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = on")
                conn.execute("UPDATE flush SET n = n + 1 WHERE id = 1")
        except psycopg.Error as e:
            raise ServerException(f"index sync failed: {e}") from e

    def close(self) -> None:
        """Close the pool's connections. Idempotent."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._close_pools()

    def _close_pools(self) -> None:
        self._locks.close()
        self._pool.close()


def _conforms(ix: PostgresIndex) -> Index:
    return ix  # the type checker proves PostgresIndex is an Index (and PgTxn a WriteTxn)
