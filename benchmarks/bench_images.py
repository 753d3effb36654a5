"""Image operations at scale: PutImage rate and BatchGetImage latency on a repository of 10,000
images, and online GC time on 100,000 layers.

References, measured in the same run on the same file system: a bare LMDB write transaction of
the same manifest bytes with the same durability (the floor under any durable PutImage), and a
bare LMDB read of one record (the floor under a lookup).

Run: ``python benchmarks/bench_images.py [--images 10000] [--gc-layers 100000]``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lmdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, parser, print_machine, print_table, write_json

from ecrstore import ImageIdentifier, Store
from ecrstore.index.records import BlobRecord, LinkRecord
from ecrstore.manifest import DOCKER_MANIFEST


def push(store: Store, repo: str, data: bytes) -> str:
    up = store.initiate_layer_upload(repo).upload_id
    store.upload_layer_part(repo, up, 0, len(data) - 1, data)
    return store.complete_layer_upload(repo, up, ["sha256:" + hashlib.sha256(data).hexdigest()]).layer_digest


def manifests(store: Store, repo: str, n: int) -> list[str]:
    """``n`` distinct, realistic manifests over a few real layers of ``repo``."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    cfg = push(store, repo, config)
    layers = [(push(store, repo, bytes([i]) * (4096 + i)), 4096 + i) for i in range(5)]
    out = []
    for i in range(n):
        out.append(json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                       "digest": cfg},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": s, "digest": d}
                       for d, s in layers],
            "annotations": {"build": str(i)},
        }, indent=3))
    return out


def lmdb_floor(root: Path, payloads: list[str], durable: bool) -> tuple[float, float]:
    """(commits/s, read latency in µs) of bare LMDB on the same payloads."""
    env = lmdb.open(str(root / "bare"), map_size=1 << 30, sync=durable, metasync=durable)
    keys = [hashlib.sha256(p.encode()).digest() for p in payloads]
    t0 = time.perf_counter()
    for k, p in zip(keys, payloads, strict=True):
        with env.begin(write=True) as txn:
            txn.put(k, p.encode())
    rate = len(payloads) / (time.perf_counter() - t0)
    reads = []
    for k in keys[:2000]:
        t0 = time.perf_counter()
        with env.begin() as txn:
            txn.get(k)
        reads.append(time.perf_counter() - t0)
    env.close()
    shutil.rmtree(root / "bare")
    return rate, statistics.median(reads) * 1e6


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--gc-layers", type=int, default=100_000)
    p.add_argument("--dir", default=None)
    args = p.parse_args()
    info = machine_info()
    print_machine(info)
    root = Path(tempfile.mkdtemp(prefix="ecrstore-bench-images-", dir=args.dir))
    results: dict[str, float] = {}
    try:
        with Store(root / "store") as store:
            store.create_repository("bench")
            texts = manifests(store, "bench", args.images)
            results["lmdb_commits_per_s"], results["lmdb_read_us"] = lmdb_floor(root, texts, durable=True)
            t0 = time.perf_counter()
            for i, text in enumerate(texts):
                store.put_image("bench", text, image_tag=f"v{i}")
            results["put_image_per_s"] = len(texts) / (time.perf_counter() - t0)
            ids = [[ImageIdentifier(image_tag=f"v{i}")] for i in np.random.default_rng(1).integers(0, len(texts), 2000)]
            lat = []
            for image_id in ids:
                t0 = time.perf_counter()
                res = store.batch_get_image("bench", image_id)
                lat.append(time.perf_counter() - t0)
                assert len(res.images) == 1
            results["batch_get_image_us"] = statistics.median(lat) * 1e6
            t0 = time.perf_counter()
            pages, token = 0, None
            while True:
                page = store.list_images("bench", max_results=1000, next_token=token)
                pages += 1
                token = page.next_token
                if token is None:
                    break
            results["list_all_images_ms"] = (time.perf_counter() - t0) * 1e3
        results.update(gc_bench(root, args.gc_layers))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = [
        ("bare LMDB durable commit (reference)", f"{results['lmdb_commits_per_s']:,.0f} /s", ""),
        (f"PutImage, durable, {args.images:,} images", f"{results['put_image_per_s']:,.0f} /s",
         f"{results['put_image_per_s'] / results['lmdb_commits_per_s']:.2f} x bare commit"),
        ("bare LMDB read (reference)", f"{results['lmdb_read_us']:.1f} µs", ""),
        (f"BatchGetImage by tag among {args.images:,}", f"{results['batch_get_image_us']:.1f} µs",
         f"{results['batch_get_image_us'] / results['lmdb_read_us']:.1f} x bare read"),
        (f"ListImages, all {args.images:,} (pages of 1,000)", f"{results['list_all_images_ms']:.1f} ms", ""),
        (f"GC, {args.gc_layers:,} layers (half garbage, durable)", f"{results['gc_seconds']:.2f} s",
         f"{results['gc_layers_per_s']:,.0f} layers/s examined"),
    ]
    print_table(("workload", "result", "ratio"), rows)
    path = write_json("bench_images", {"machine": info, "results": results,
                                       "settings": {"images": args.images, "gc_layers": args.gc_layers}})
    print(f"results written to {path}")
    return 0


def gc_bench(root: Path, n: int) -> dict[str, float]:
    """GC over ``n`` layer links, half of them unreferenced (with real blob files to delete).

    The index is filled through the index module's record writers in large transactions, and
    the referenced half through one image-reference record each, as PutImage writes them.
    """
    rng = np.random.default_rng(3)
    digests = [bytes(d) for d in rng.integers(0, 256, size=(n, 32), dtype=np.uint8)]
    with Store(root / "gc") as store:
        store.create_repository("bench")
        with store._index.read() as t:
            rid = t.get_repo(store.registry_id, "bench").id
        old = time.time() - 7 * 24 * 3600
        image = hashlib.sha256(b"an image").digest()
        for start in range(0, n, 50_000):
            chunk = digests[start:start + 50_000]

            def fill(t, chunk=chunk, start=start):
                for j, dg in enumerate(chunk):
                    t.put_blob(dg, BlobRecord(1, old))
                    t.put_link(rid, dg, LinkRecord(1, old))
                    if (start + j) % 2 == 0:
                        t.add_layer_ref(rid, dg, image, "application/vnd.oci.image.layer.v1.tar")

            store._index.write(fill)
        for j in range(1, n, 2):  # the garbage half gets real files
            path = store._blobs.layout.blob(digests[j].hex())
            with open(path, "wb") as f:
                f.write(b"x")
        t0 = time.perf_counter()
        report = store.gc(grace=3600)
        seconds = time.perf_counter() - t0
        assert report.layers_unlinked == n // 2 and report.blobs_deleted == n // 2, report
    shutil.rmtree(root / "gc")
    return {"gc_seconds": seconds, "gc_layers_per_s": n / seconds}


if __name__ == "__main__":
    sys.exit(main())
