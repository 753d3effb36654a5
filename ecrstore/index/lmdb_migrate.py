"""One-time builds of what later formats keep, for stores written before they kept it.

Each runs inside the write transaction that opens such a store (LMDB, see
:mod:`.lmdb`), records a flag in ``meta`` when done, and is never needed again: every later
write keeps the same data up to date. ``txn`` is that py-lmdb transaction, ``dbs`` its
database handles by name.
"""

from __future__ import annotations

import json
from typing import Any

from ..digest import try_parse_digest
from . import lmdb_codec as codec

__all__ = ["build_referrers", "build_registry_counts"]

_RID = codec.RID
_EMPTY = b""


def build_registry_counts(txn: Any, dbs: dict[str, Any]) -> None:
    """Per-registry counts of repositories and uploads, for a store made before they were
    kept (or a new one): counted once from the records, then kept by every write."""
    repos: dict[str, int] = {}
    for key in txn.cursor(db=dbs["repos"]).iternext(keys=True, values=False):
        name = bytes(key).split(b"/", 1)[0].decode()
        repos[name] = repos.get(name, 0) + 1
    uploads: dict[str, int] = {}
    for _, raw in txn.cursor(db=dbs["uploads"]):
        owner = txn.get(_RID.pack(codec.decode_upload(raw).repo_id), db=dbs["repo_ids"])
        if owner is not None:
            uploads[owner.decode()] = uploads.get(owner.decode(), 0) + 1
    for kind, found in (("R", repos), ("U", uploads)):
        for registry, n in found.items():
            txn.put(codec.registry_count_key(kind, registry), _RID.pack(n), db=dbs["counts"])
    txn.put(codec.REGISTRY_COUNTS_FLAG, b"1", db=dbs["meta"])


def build_referrers(txn: Any, dbs: dict[str, Any]) -> None:
    """The referrers of a store made before they were indexed: each stored manifest's
    ``subject``, read once from the manifests (malformed ones name none), then kept by every
    write."""
    for key, raw in txn.cursor(db=dbs["images"]):
        try:
            doc = json.loads(codec.decode_image(raw).manifest)
            subject = doc["subject"]["digest"]
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
        found = try_parse_digest(subject) if isinstance(subject, str) else None
        if found is not None and found.is_sha256:  # read as PutImage reads it
            txn.put(bytes(key[:8]) + found.raw + bytes(key[8:]), _EMPTY, db=dbs["referrers"])
    txn.put(codec.REFERRERS_FLAG, b"1", db=dbs["meta"])
