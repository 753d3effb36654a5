"""``ecrstore demo``, the README's main job: an image pushed end to end into an embedded store,
with figures.

A repository is created, a layer is pushed in parts (each part a byte range of the file,
hashed through mmap and copied kernel-side), completed from the stored midstate, wrapped in an
image with a config blob, pushed again into a second repository (stored once), read back and
verified. Run it twice: the second run finds everything in place.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from .._sha256 import sha256_kernel
from ..digest import Digest, content_digest
from ..errors import (
    ImageAlreadyExistsException,
    LayerAlreadyExistsException,
    RepositoryAlreadyExistsException,
)
from ..hashing import FileRange, hash_file
from ..manifest import DOCKER_MANIFEST
from ..store import Store
from .common import (
    DEFAULT_DEMO_STORE,
    EXIT_FAILURE,
    EXIT_OK,
    CliError,
    add_global_options,
    open_store,
)

__all__ = ["add_commands", "run"]

_DEMO_BYTES = 256 * 2**20


def _rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / max(seconds, 1e-9) / 1e6:,.0f} MB/s"


def _push_file(store: Store, repository: str, path: Path, digest: str, out: Any) -> None:
    size = path.stat().st_size
    up = store.initiate_layer_upload(repository)
    t0 = time.perf_counter()
    parts = 0
    with open(path, "rb") as f:
        for first in range(0, size, up.part_size):
            n = min(up.part_size, size - first)
            store.upload_layer_part(repository, up.upload_id, first, first + n - 1, FileRange(f.fileno(), first, n))
            parts += 1
    t_up = time.perf_counter() - t0
    out(f"upload      {repository}: {parts} parts of {up.part_size // 2**20} MiB, durable, at {_rate(size, t_up)}")
    t0 = time.perf_counter()
    try:
        store.complete_layer_upload(repository, up.upload_id, [digest])
        out(f"complete    {digest[:19]}… in {(time.perf_counter() - t0) * 1e3:.1f} ms "
            "(the digest comes from the stored midstate: no re-read)")
    except LayerAlreadyExistsException:
        out(f"complete    LayerAlreadyExists in {repository} (pushed by an earlier run)")


def _push_bytes(store: Store, repository: str, data: bytes) -> str:
    digest = str(content_digest(data))
    up = store.initiate_layer_upload(repository)
    store.upload_layer_part(repository, up.upload_id, 0, len(data) - 1, data)
    try:
        store.complete_layer_upload(repository, up.upload_id, [digest])
    except LayerAlreadyExistsException:
        pass
    return digest


def run(store: Store, file: str | os.PathLike[str] | None = None, out: Any = print) -> bool:
    """Push an image whose layer is ``file`` (default: a generated 256 MiB layer under the
    store) into ``demo/app`` and ``demo/mirror``, read it back and verify the store; answer
    whether everything matched. Raises CliError for an empty ``file``."""
    store_path = Path(store.path)
    out(f"store       {store_path.resolve()}  (sha256 kernel: {sha256_kernel()})")
    for repository in ("demo/app", "demo/mirror"):
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
        raise CliError(f"{layer}: an empty file cannot be a layer")

    t0 = time.perf_counter()
    digest = str(Digest.of(hash_file(layer)))
    out(f"layer       {layer} ({size:,} bytes) hashed through mmap at {_rate(size, time.perf_counter() - t0)}")

    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [digest]}}).encode()
    for repository in ("demo/app", "demo/mirror"):
        _push_file(store, repository, layer, digest, out)
        config_digest = _push_bytes(store, repository, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": len(config), "digest": config_digest},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar", "size": size, "digest": digest}],
        }, indent=3)
        try:
            image = store.put_image(repository, manifest, image_tag="latest").image
            out(f"image       {repository}:latest = {(image.image_id.image_digest or '')[:19]}…")
        except ImageAlreadyExistsException:
            out(f"image       {repository}:latest exists")

    check = store.batch_check_layer_availability("demo/mirror", [digest])
    for info in check.layers:
        out(f"available   {info.layer_availability}, {info.layer_size:,} bytes, {info.media_type}")
    t0 = time.perf_counter()
    with store.open_layer("demo/mirror", digest) as reader:
        ok = str(Digest.of(reader.hash())) == digest  # hashed in place (mmap) by the local backend
    out(f"read back   {'verified' if ok else 'MISMATCH'} at {_rate(size, time.perf_counter() - t0)}")
    st = store.stats()
    out(f"store       {st.repositories} repositories, {st.layers} layer links, {st.blobs} blobs, "
        f"{st.blob_bytes:,} bytes stored, {st.dedupe_saved_bytes:,} saved by content addressing")
    report = store.verify()
    out(f"verify      {report.checked} blobs re-hashed: {'all match' if report.ok else report.mismatches}")
    return ok and report.ok


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demonstration in its own store (created when missing); exit 1 on any mismatch."""
    with open_store(args, mode="create") as store:
        return EXIT_OK if run(store, file=args.file) else EXIT_FAILURE


def add_commands(commands: Any) -> None:
    """Register ``demo`` on the main parser's subparsers."""
    p = commands.add_parser(
        "demo", help="run the end-to-end demonstration",
        description="Push an image end to end into an embedded store: a layer in parts, its config, the "
                    "manifest, the same layer into a second repository (stored once), read back and verify. "
                    f"The store is --store, else {DEFAULT_DEMO_STORE} ($ECRSTORE_STORE does not apply: the "
                    "demo never writes into your store unless told to).")
    add_global_options(p, json_output=False)
    p.add_argument("--file", metavar="FILE", help="push this file as a layer instead of generated data")
    p.set_defaults(func=cmd_demo, store_fallback=DEFAULT_DEMO_STORE)
