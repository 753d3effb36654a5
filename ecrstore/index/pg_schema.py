"""The PostgreSQL index's schema: its versions and how a database is brought to the current one.

Every node runs :func:`migrate` when it opens the index; :data:`MIGRATIONS` only grows.
"""

from __future__ import annotations

from typing import Any

from ..errors import ServerException

__all__ = ["MIGRATIONS", "migrate", "schema_version"]

#: The schema, one script per version, applied in order (never edit one: append a new one).
#: Primary-key columns are NOT NULL by PostgreSQL's rule.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE SEQUENCE repo_id_seq;
    CREATE TABLE repos (
        registry_id text NOT NULL, name bytea NOT NULL, id bigint NOT NULL UNIQUE,
        created_at float8 NOT NULL, image_tag_mutability text NOT NULL,
        exclusion_filters jsonb NOT NULL, scan_on_push boolean NOT NULL,
        encryption_type text NOT NULL, kms_key text, tags jsonb NOT NULL,
        PRIMARY KEY (registry_id, name));
    CREATE TABLE uploads (
        uid bytea PRIMARY KEY, repo_id bigint NOT NULL, created float8 NOT NULL,
        updated float8 NOT NULL, received bigint NOT NULL, parts bigint NOT NULL,
        small_part boolean NOT NULL, last_first bigint NOT NULL, last_last bigint NOT NULL,
        last_xxh bytea NOT NULL, state bytea NOT NULL);
    CREATE INDEX uploads_by_updated ON uploads (updated, uid);
    CREATE INDEX uploads_by_repo ON uploads (repo_id, uid);
    CREATE TABLE blobs (dg bytea PRIMARY KEY, size bigint NOT NULL, created float8 NOT NULL);
    CREATE TABLE links (
        repo_id bigint NOT NULL, dg bytea NOT NULL, size bigint NOT NULL,
        linked_at float8 NOT NULL, media_type text NOT NULL, PRIMARY KEY (repo_id, dg));
    CREATE INDEX blob_links ON links (dg, repo_id);
    CREATE TABLE images (
        repo_id bigint NOT NULL, dg bytea NOT NULL, pushed_at float8 NOT NULL,
        size bigint NOT NULL, media_type text NOT NULL, artifact_media_type text NOT NULL,
        manifest bytea NOT NULL, PRIMARY KEY (repo_id, dg));
    CREATE TABLE tags (
        repo_id bigint NOT NULL, tag bytea NOT NULL, dg bytea NOT NULL, PRIMARY KEY (repo_id, tag));
    CREATE INDEX image_tags ON tags (repo_id, dg, tag);
    CREATE TABLE image_refs (repo_id bigint, child bytea, parent bytea, PRIMARY KEY (repo_id, child, parent));
    CREATE TABLE layer_refs (
        repo_id bigint NOT NULL, layer bytea NOT NULL, image bytea NOT NULL,
        media_type text NOT NULL, PRIMARY KEY (repo_id, layer, image));
    CREATE TABLE referrers (repo_id bigint, subject bytea, referrer bytea, PRIMARY KEY (repo_id, subject, referrer));
    CREATE TABLE counts (kind text, owner text, n bigint NOT NULL, PRIMARY KEY (kind, owner));
    CREATE TABLE docs (kind text, key bytea, value bytea NOT NULL, PRIMARY KEY (kind, key));
    CREATE TABLE flush (id integer PRIMARY KEY, n bigint NOT NULL);
    INSERT INTO flush VALUES (1, 0);
    """,
    "ALTER TABLE blobs ADD COLUMN placement text NOT NULL DEFAULT '';",
)

#: pg_advisory_xact_lock key serialising schema migrations of every node ("ecrstore").
_MIGRATION_LOCK = 0x6563_7273_746F_7265


def migrate(conn: Any) -> None:
    """Apply the migrations not yet applied, in order, in one transaction under an advisory
    lock: nodes opening the same database at once wait for each other, and a failed
    migration leaves the schema as it was."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS ecrstore_schema "
                     "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        applied = schema_version(conn)
        if applied > len(MIGRATIONS):
            raise ServerException(f"the index schema version {applied} is newer than this ecrstore "
                                  f"knows ({len(MIGRATIONS)})")
        for version in range(applied + 1, len(MIGRATIONS) + 1):
            conn.execute(MIGRATIONS[version - 1])
            conn.execute("INSERT INTO ecrstore_schema (version) VALUES (%s)", (version,))


def schema_version(conn: Any) -> int:
    """The last migration applied; 0 for a database ecrstore never opened."""
    if conn.execute("SELECT to_regclass('ecrstore_schema')").fetchone() == (None,):
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM ecrstore_schema").fetchone()
    return 0 if row is None else int(row[0])
