"""Helpers shared by the engine tests: small-part stores and whole-layer pushes."""

from __future__ import annotations

import hashlib
import os
import random

from ecrstore import Store

# Small settings so multi-part uploads stay fast in tests.
SMALL = dict(part_size=1024, min_part_size=1024, max_part_size=4096)


def open_store(path, **kw) -> Store:
    return Store(path, **{**SMALL, **kw})


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(store: Store, repo: str, data: bytes, part: int = 1024, **kw) -> str:
    """Upload ``data`` in parts of ``part`` bytes and complete it; answer the digest."""
    up = store.initiate_layer_upload(repo, **kw)
    for off in range(0, len(data), part):
        chunk = data[off:off + part]
        store.upload_layer_part(repo, up.upload_id, off, off + len(chunk) - 1, chunk, **kw)
    return store.complete_layer_upload(repo, up.upload_id, [digest_of(data)], **kw).layer_digest


def blob_files(root) -> list[str]:
    out = []
    for dirpath, _, files in os.walk(os.path.join(root, "blobs")):
        out.extend(os.path.join(dirpath, f) for f in files)
    return out


def random_bytes(n: int, seed: int = 0) -> bytes:
    """``n`` bytes, the same for the same seed."""
    return random.Random(seed).randbytes(n)


def read_layer(store: Store, repo: str, digest: str) -> bytes:
    """The bytes of a layer of ``repo``, read back through the store."""
    with store.open_layer(repo, digest) as rd:
        return rd.read()
