"""Helpers shared by the engine tests: small-part stores and whole-layer pushes."""

from __future__ import annotations

import hashlib
import os
import random
import uuid

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


def stored_blobs(store: Store) -> list[str]:
    """Names of the blobs the store's blob backend holds (on either backend pair)."""
    return [f.name for f in store._blobs.iter_blobs() if not f.temporary]


def stored_uploads(store: Store) -> list[str]:
    """Names of the uploads whose data the store's blob backend holds."""
    return [f.name for f in store._blobs.iter_uploads()]


def _placement(store: Store, digest: str) -> str:
    with store._index.read() as t:
        rec = t.get_blob(bytes.fromhex(digest[len("sha256:"):]))
    assert rec is not None, f"{digest} is not in the index"
    return rec.placement


def damage_blob(store: Store, digest: str) -> None:
    """Overwrite the first byte of a stored blob in place, behind the store's back."""
    hexd = digest[len("sha256:"):]
    placement = _placement(store, digest)
    bucket = getattr(store._blobs, "bucket", None)
    if bucket is None:
        path = store._blobs.layout.blob(hexd)
        os.chmod(path, 0o644)
        with open(path, "r+b") as f:
            f.write(b"X")
        return
    key = store._blobs.layer_key(placement)
    size = bucket.size_of(key)
    data = b"".join(bucket.read_range(key, 0, size, 1 << 20))
    bucket.put(key, b"X" + data[1:])


def upload_bytes(store: Store, upload_id: str) -> bytes:
    """The bytes an upload's data holds (on S3: its state's tail up to the acknowledged
    length; an upload with S3 parts cannot be read back before completion)."""
    name = uuid.UUID(upload_id).hex
    bucket = getattr(store._blobs, "bucket", None)
    if bucket is None:
        with open(store._blobs.layout.upload(name), "rb") as f:
            return f.read()
    with store._index.read() as t:
        received = t.get_upload(uuid.UUID(upload_id).bytes).received
    state = bucket.get_state(store._blobs.state_key(name))
    assert state is not None and not state.parts, f"upload {upload_id} has no state, or S3 parts"
    start, length, offset = state.tail_object
    tail = bucket.get_tail(store._blobs.state_key(name), offset, length) if length else b""
    return tail[:received - start]


def child_env(options: dict[str, str]) -> dict[str, str]:
    """The environment of a child process that opens the same store: ``options`` (a store's
    ``index``/``blobs`` URLs) as the variables the CLI reads, this ecrstore importable."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    for key, var in (("index", "ECRSTORE_INDEX"), ("blobs", "ECRSTORE_BLOBS")):
        if key in options:
            env[var] = options[key]
    return env


def upload_data_class(store: Store) -> type:
    """The class of the store's open upload data (to patch a write step in a test)."""
    from ecrstore.blobs.local import LocalUploadData
    from ecrstore.blobs.s3 import S3UploadData

    return S3UploadData if hasattr(store._blobs, "bucket") else LocalUploadData
