"""The control plane's documents in the index: their kinds, key layouts and encoding.

Policies, lifecycle rules, registry configurations, pull-through cache rules, scan results and
replication statuses are small JSON documents kept in the index's ``docs`` store (see
:class:`~ecrstore.index.base.DocReads`), written inside the same transactions as the records
they belong with. This module is their one owner: each kind and its key layout is named here.

Keys: a repository's documents are keyed by the repository's id (:func:`repo_key`), never its
name, so a deleted and re-created repository starts with none of the old one's (and
:func:`drop_repository` removes them with the repository); per-image documents append the
image digest's hex; registry documents are keyed by the registry id (:func:`registry_key`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .index.base import ReadTxn, WriteTxn
from .tokens import decode_name_token, encode_name_token

__all__ = [
    "CREATION_TEMPLATE", "IMAGE_SCAN", "IMAGE_SCAN_FINDINGS", "LIFECYCLE_POLICY", "LIFECYCLE_PREVIEW",
    "PULL_THROUGH_CHECK", "PULL_THROUGH_RULE", "REGISTRY_POLICY", "REGISTRY_SCANNING", "REPLICATION_CONFIG",
    "REPLICATION_STATUS", "REPOSITORY_KINDS", "REPOSITORY_POLICY",
    "delete", "drop_repository", "get", "image_key", "items", "named", "page", "put", "registry_key", "repo_key",
    "tag_key",
]

# Repository documents (key: repo_key, or image_key / tag_key for per-image and per-tag ones).
REPOSITORY_POLICY = "repository-policy"
LIFECYCLE_POLICY = "lifecycle-policy"
LIFECYCLE_PREVIEW = "lifecycle-preview"
IMAGE_SCAN = "image-scan"
#: A completed scan's findings, apart from its status so that DescribeImages reads only the latter.
IMAGE_SCAN_FINDINGS = "image-scan-findings"
REPLICATION_STATUS = "replication-status"
#: When a pull-through cache tag was last compared with its upstream (key: tag_key).
PULL_THROUGH_CHECK = "pull-through-check"
#: Kinds whose documents belong to one repository and go with it.
REPOSITORY_KINDS = (REPOSITORY_POLICY, LIFECYCLE_POLICY, LIFECYCLE_PREVIEW, IMAGE_SCAN, REPLICATION_STATUS,
                    IMAGE_SCAN_FINDINGS, PULL_THROUGH_CHECK)

# Registry documents (key: registry_key, or registry_key + "/" + a name).
REGISTRY_POLICY = "registry-policy"
REGISTRY_SCANNING = "registry-scanning"
REPLICATION_CONFIG = "replication-config"
PULL_THROUGH_RULE = "pull-through-rule"
CREATION_TEMPLATE = "creation-template"


def repo_key(repo_id: int) -> str:
    """A repository's key: fixed-width hex, so it is never a prefix of another's."""
    return f"{repo_id:016x}"


def image_key(repo_id: int, digest: bytes) -> str:
    """The key of a per-image document (``digest``: the 32-byte sha256)."""
    return f"{repo_id:016x}/{digest.hex()}"


def tag_key(repo_id: int, tag: str) -> str:
    """The key of a per-tag document."""
    return f"{repo_id:016x}/{tag}"


def registry_key(registry_id: str, name: str | None = None) -> str:
    return registry_id if name is None else f"{registry_id}/{name}"


def get(t: ReadTxn, kind: str, key: str) -> Any:
    """The document, decoded; None when there is none."""
    raw = t.get_doc(kind, key)
    return None if raw is None else json.loads(raw)


def items(t: ReadTxn, kind: str, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(key, document) of ``kind`` under ``prefix``, in key order."""
    for key, raw in t.iter_docs(kind, prefix):
        yield key, json.loads(raw)


def put(t: WriteTxn, kind: str, key: str, doc: Any) -> None:
    t.put_doc(kind, key, json.dumps(doc, separators=(",", ":")).encode())


def delete(t: WriteTxn, kind: str, key: str) -> bool:
    return t.delete_doc(kind, key)


def drop_repository(t: WriteTxn, repo_id: int) -> None:
    """Remove every document of the repository (inside the transaction that deletes it)."""
    prefix = repo_key(repo_id)
    for kind in REPOSITORY_KINDS:
        for key in [k for k, _ in t.iter_docs(kind, prefix)]:
            t.delete_doc(kind, key)


def named(t: ReadTxn, kind: str, registry_id: str, names: Sequence[str],
          missing: Callable[[str], Exception]) -> list[Any]:
    """The registry's documents of ``kind`` named ``names`` (keys ``registry_key(registry,
    name)``), in the order asked; ``missing(name)`` is raised for the first one absent."""
    out = []
    for name in names:
        doc = get(t, kind, registry_key(registry_id, name))
        if doc is None:
            raise missing(name)
        out.append(doc)
    return out


def page(t: ReadTxn, kind: str, registry_id: str, next_token: str | None, limit: int) -> tuple[list[Any], str | None]:
    """A page of the registry's documents of ``kind`` in name order, after where ``next_token``
    (a :func:`~ecrstore.tokens.encode_name_token` token, refused if bent) ended, and the token
    of the next page (None: the last)."""
    after = decode_name_token(next_token, registry_id) if next_token is not None else None
    prefix = registry_key(registry_id, "")
    found: list[tuple[str, Any]] = []
    for key, doc in items(t, kind, prefix):
        name = key[len(prefix):]
        if after is None or name > after:
            found.append((name, doc))
            if len(found) > limit:
                break
    token = encode_name_token(registry_id, found[limit - 1][0]) if len(found) > limit else None
    return [doc for _, doc in found[:limit]], token
