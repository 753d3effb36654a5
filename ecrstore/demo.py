"""The README's main job: an end-to-end layer push on an embedded store, with figures."""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import sha256_kernel
from .errors import LayerAlreadyExistsException, RepositoryAlreadyExistsException
from .hashing import hash_file
from .store import Store
from .uploads import FileRange

__all__ = ["run"]

_DEMO_BYTES = 256 * 2**20


def _rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / max(seconds, 1e-9) / 1e6:,.0f} MB/s"


def run(store_path: str | os.PathLike[str] = "./demo-store", file: str | os.PathLike[str] | None = None,
        repository: str = "demo/app", out=print) -> str:
    """Create a repository, push a layer in parts, complete, check and read it back.

    ``file`` is the layer to push; without one a 256 MiB layer of random bytes is generated
    under the store. Answers the layer digest.
    """
    store_path = Path(store_path)
    with Store(store_path) as store:
        out(f"store       {store_path.resolve()}  (sha256 kernel: {sha256_kernel()})")
        try:
            store.create_repository(repository)
            out(f"repository  {repository} created")
        except RepositoryAlreadyExistsException:
            out(f"repository  {repository} exists")

        if file is None:
            layer = store_path / "demo-layer.bin"
            if not layer.exists() or layer.stat().st_size != _DEMO_BYTES:
                with open(layer, "wb") as f:
                    for _ in range(_DEMO_BYTES // 2**20):
                        f.write(os.urandom(2**20))
        else:
            layer = Path(file)
        size = layer.stat().st_size
        if size == 0:
            raise SystemExit(f"{layer}: an empty file cannot be a layer")

        t0 = time.perf_counter()
        expected = hash_file(layer).hexdigest()
        t_hash = time.perf_counter() - t0
        out(f"layer       {layer} ({size:,} bytes) hashed through mmap at {_rate(size, t_hash)}")

        up = store.initiate_layer_upload(repository)
        t0 = time.perf_counter()
        parts = 0
        with open(layer, "rb") as f:
            for first in range(0, size, up.part_size):
                n = min(up.part_size, size - first)
                # each part a byte range of the file: hashed via mmap, copied kernel-side
                part = FileRange(f.fileno(), first, n)
                store.upload_layer_part(repository, up.upload_id, first, first + n - 1, part)
                parts += 1
        t_up = time.perf_counter() - t0
        out(f"upload      {parts} parts of {up.part_size // 2**20} MiB, durable, at {_rate(size, t_up)}")

        t0 = time.perf_counter()
        try:
            digest = store.complete_layer_upload(repository, up.upload_id, [f"sha256:{expected}"]).layer_digest
            out(f"complete    {digest} in {(time.perf_counter() - t0) * 1e3:.1f} ms (digest from the stored midstate)")
        except LayerAlreadyExistsException as e:  # pushed by an earlier run
            digest = f"sha256:{expected}"
            out(f"complete    {e.code}: {e.message}")

        check = store.batch_check_layer_availability(repository, [digest])
        for layer_info in check.layers:
            out(f"available   {layer_info.layer_availability}, {layer_info.layer_size:,} bytes")

        t0 = time.perf_counter()
        with store.open_layer(repository, digest) as reader:
            readback = hash_file(reader.fileno()).hexdigest()
        ok = readback == expected
        out(f"read back   {'verified' if ok else 'MISMATCH'} at {_rate(size, time.perf_counter() - t0)}")
        st = store.stats()
        out(f"store       {st.repositories} repositories, {st.layers} layers, {st.blobs} blobs, "
            f"{st.blob_bytes:,} bytes stored")
        if not ok:
            raise SystemExit(1)
        return digest
