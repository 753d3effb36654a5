"""Layer store engine throughput and latency, each against a reference measured in the same run.

References: hashlib's sha256 MB/s on the same bytes, and raw sequential write MB/s to the same
file system with the same durability (pwrite + fdatasync per 10 MiB for the durable figures).

Workloads: a 1 GiB layer in 10 MiB parts (durable and not); 100 × 10 MiB layers; 2,000 × 4 KiB
layers (layers/s, durable); completion latency of a 16 MiB vs a 1 GiB layer; a batch availability
check of 100 digests among 1,000,000 layers; two threads uploading at once vs one.

Run: ``python benchmarks/bench_store.py [--gib 1] [--small 2000] [--index-layers 1000000]``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MB, machine_info, parser, print_machine, print_table, warm_memory, write_json

from ecrstore import Store
from ecrstore.index.records import BlobRecord, LinkRecord

PART = 10 * 2**20


class Source:
    """Deterministic layer bytes: 10 MiB windows into a 64 MiB random pool, shifted per part, so
    every part differs without generating a gigabyte up front."""

    def __init__(self, seed: int) -> None:
        self.pool = np.random.default_rng(seed).integers(0, 256, size=64 * 2**20 + PART, dtype=np.uint8)

    def part(self, i: int, size: int = PART) -> memoryview:
        start = (i * 7_340_033) % (64 * 2**20)
        return memoryview(self.pool[start:start + size])


def parts(src: Source, total: int, part: int, seed_part: int) -> list[memoryview]:
    out, first, i = [], 0, seed_part
    while first < total:
        out.append(src.part(i, min(part, total - first)))
        first += len(out[-1])
        i += 1
    return out


def push(store: Store, repo: str, src: Source, total: int, part: int = PART, seed_part: int = 0) -> tuple[float, float]:
    """Upload ``total`` bytes in parts; answer (seconds for the parts, seconds to complete).
    The expected digest is computed before the clock starts."""
    chunks = parts(src, total, part, seed_part)
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    up = store.initiate_layer_upload(repo).upload_id
    t0 = time.perf_counter()
    first = 0
    for chunk in chunks:
        store.upload_layer_part(repo, up, first, first + len(chunk) - 1, chunk)
        first += len(chunk)
    t_parts = time.perf_counter() - t0
    t1 = time.perf_counter()
    store.complete_layer_upload(repo, up, ["sha256:" + h.hexdigest()])
    return t_parts, time.perf_counter() - t1


def fresh(root: Path, name: str, **kw) -> Store:
    path = root / name
    shutil.rmtree(path, ignore_errors=True)
    s = Store(path, **kw)
    s.create_repository("bench")
    return s


def raw_write(path: Path, src: Source, total: int, durable: bool) -> float:
    """Seconds to write ``total`` bytes sequentially in 10 MiB pwrites (+ fdatasync each)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.perf_counter()
        off, i = 0, 0
        while off < total:
            chunk = src.part(i, min(PART, total - off))
            os.pwrite(fd, chunk, off)
            if durable:
                os.fdatasync(fd)
            off += len(chunk)
            i += 1
        return time.perf_counter() - t0
    finally:
        os.close(fd)
        os.unlink(path)


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=1.0, help="size of the large layer in GiB")
    p.add_argument("--small", type=int, default=2000, help="number of 4 KiB layers")
    p.add_argument("--index-layers", type=int, default=1_000_000, help="layers in the batch-check store")
    p.add_argument("--dir", default=None, help="where to create the stores (default: a temp dir)")
    args = p.parse_args()
    rep = max(1, args.repeat)
    total = int(args.gib * 2**30)
    info = machine_info()
    print_machine(info)
    root = Path(tempfile.mkdtemp(prefix="ecrstore-bench-", dir=args.dir))
    src = Source(1)
    results: dict[str, float] = {}
    try:
        # --- 1 GiB layer in 10 MiB parts, round by round against its references -----------
        # Each timed run starts right after memory of its footprint was touched (see
        # warm_memory), and the references alternate with the store runs.
        t = statistics.median(_timed(lambda: hashlib.sha256(src.pool[: 64 * 2**20]).digest()) for _ in range(rep))
        results["hashlib_MBps"] = (64 * 2**20) / t / MB
        runs: dict[str, list[float]] = {k: [] for k in ("raw_d", "raw", "durable", "nondurable", "c_d", "c_n")}
        for r in range(rep):
            for durable in (True, False):
                key = "durable" if durable else "nondurable"
                warm_memory(total + total // 2)
                runs["raw_d" if durable else "raw"].append(raw_write(root / "raw", src, total, durable))
                warm_memory(total + total // 2)
                with fresh(root, f"big-{key}", durable=durable) as s:
                    tp, tc = push(s, "bench", src, total, seed_part=r * 1000)
                runs[key].append(tp + tc)
                runs["c_d" if durable else "c_n"].append(tc)
                shutil.rmtree(root / f"big-{key}")
        results["raw_write_durable_MBps"] = total / statistics.median(runs["raw_d"]) / MB
        results["raw_write_MBps"] = total / statistics.median(runs["raw"]) / MB
        for key, c in (("durable", "c_d"), ("nondurable", "c_n")):
            results[f"layer_1gib_{key}_MBps"] = total / statistics.median(runs[key]) / MB
            results[f"complete_1gib_{key}_ms"] = statistics.median(runs[c]) * 1e3

        # --- completion latency: 16 MiB vs 1 GiB (durable) --------------------------------
        small_completes = []
        with fresh(root, "c16", durable=True) as s:
            for r in range(max(rep, 5)):
                small_completes.append(push(s, "bench", src, 16 * 2**20, seed_part=5000 + r * 3)[1])
        shutil.rmtree(root / "c16")
        results["complete_16mib_durable_ms"] = statistics.median(small_completes) * 1e3

        # --- 100 x 10 MiB layers (durable) ------------------------------------------------
        with fresh(root, "hundred", durable=True) as s:
            t = sum(sum(push(s, "bench", src, PART, seed_part=20_000 + i)) for i in range(100))
        shutil.rmtree(root / "hundred")
        results["layers_100x10mib_durable_MBps"] = 100 * PART / t / MB

        # --- 2,000 x 4 KiB layers (durable) -------------------------------------------------
        with fresh(root, "small", durable=True) as s:
            t0 = time.perf_counter()
            for i in range(args.small):
                data = i.to_bytes(8, "big") * 512
                up = s.initiate_layer_upload("bench").upload_id
                s.upload_layer_part("bench", up, 0, len(data) - 1, data)
                s.complete_layer_upload("bench", up, ["sha256:" + hashlib.sha256(data).hexdigest()])
            t = time.perf_counter() - t0
        shutil.rmtree(root / "small")
        results["small_layers_durable_per_s"] = args.small / t

        # --- two threads vs one (non-durable) --------------------------------------------
        # Alternated round by round, each on a fresh store, so both see the same page cache.
        per_thread = total // 2
        one, pair = [], []
        for r in range(rep):
            warm_memory(per_thread * 3)
            with fresh(root, "t1", durable=False) as s:
                one.append(push(s, "bench", src, per_thread, seed_part=40_000 + r * 200)[0])
            shutil.rmtree(root / "t1")
            warm_memory(per_thread * 3)
            with fresh(root, "t2", durable=False) as s:
                s.create_repository("other")
                pair.append(two_threads(s, src, per_thread, 60_000 + r * 400))
            shutil.rmtree(root / "t2")
        results["one_thread_MBps"] = per_thread / statistics.median(one) / MB
        results["two_threads_MBps"] = 2 * per_thread / statistics.median(pair) / MB

        # --- batch check among 1M layers ---------------------------------------------------
        results.update(batch_check(root, args.index_layers))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ratios = {
        "durable_vs_raw_durable_write": results["layer_1gib_durable_MBps"] / results["raw_write_durable_MBps"],
        "nondurable_vs_hashlib": results["layer_1gib_nondurable_MBps"] / results["hashlib_MBps"],
        "complete_1gib_vs_16mib": results["complete_1gib_durable_ms"] / results["complete_16mib_durable_ms"],
        "two_threads_vs_one": results["two_threads_MBps"] / results["one_thread_MBps"],
    }
    rows = [
        ("hashlib sha256 (reference)", f"{results['hashlib_MBps']:,.0f} MB/s", "", ""),
        ("raw write + fdatasync/10 MiB (reference)", f"{results['raw_write_durable_MBps']:,.0f} MB/s", "", ""),
        ("raw write, page cache (reference)", f"{results['raw_write_MBps']:,.0f} MB/s", "", ""),
        ("1 GiB layer, durable", f"{results['layer_1gib_durable_MBps']:,.0f} MB/s",
         f"{ratios['durable_vs_raw_durable_write']:.2f} x durable write", ">= 0.85"),
        ("1 GiB layer, non-durable", f"{results['layer_1gib_nondurable_MBps']:,.0f} MB/s",
         f"{ratios['nondurable_vs_hashlib']:.2f} x hashlib", ">= 0.80"),
        ("100 x 10 MiB layers, durable", f"{results['layers_100x10mib_durable_MBps']:,.0f} MB/s", "", ""),
        (f"{args.small:,} x 4 KiB layers, durable", f"{results['small_layers_durable_per_s']:,.0f} layers/s",
         "", ">= 1,000"),
        ("complete 16 MiB / 1 GiB, durable",
         f"{results['complete_16mib_durable_ms']:.2f} / {results['complete_1gib_durable_ms']:.2f} ms",
         f"{ratios['complete_1gib_vs_16mib']:.2f} x", "<= 1.5"),
        (f"batch check 100 of {args.index_layers:,} layers", f"{results['batch_check_100_ms']:.3f} ms",
         "", "<= 0.2 ms"),
        ("two threads vs one, non-durable",
         f"{results['two_threads_MBps']:,.0f} / {results['one_thread_MBps']:,.0f} MB/s",
         f"{ratios['two_threads_vs_one']:.2f} x", ">= 1.7"),
    ]
    print_table(("workload", "result", "ratio", "target"), rows)
    path = write_json("bench_store", {"machine": info, "results": results, "ratios": ratios,
                                      "settings": {"gib": args.gib, "small": args.small,
                                                   "index_layers": args.index_layers, "repeat": rep}})
    print(f"results written to {path}")
    return 0


def two_threads(s: Store, src: Source, per_thread: int, seed_part: int) -> float:
    """Wall time of two threads each uploading ``per_thread`` bytes (parts only) at once."""
    chunks = [parts(src, per_thread, PART, seed_part + k * 200) for k in range(2)]
    ups = [s.initiate_layer_upload(repo).upload_id for repo in ("bench", "other")]
    barrier = threading.Barrier(3)
    def run(k):
        barrier.wait()
        first = 0
        for chunk in chunks[k]:
            s.upload_layer_part(("bench", "other")[k], ups[k], first, first + len(chunk) - 1, chunk)
            first += len(chunk)
    ths = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for th in ths:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in ths:
        th.join()
    return time.perf_counter() - t0


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def batch_check(root: Path, n: int) -> dict[str, float]:
    """Median latency of checking 100 digests (half present) in a repository of ``n`` layers.

    The index is filled through the index module's own record writers in large transactions
    (uploading a million layers one by one would measure the upload path, not the check).
    """
    rng = np.random.default_rng(7)
    digests = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    with Store(root / "million", durable=False) as s:
        repo = s.create_repository("bench")
        with s._index.read() as t:
            rid = t.get_repo(repo.registry_id, "bench").id
        now = time.time()
        blob = BlobRecord(4096, now)
        link = LinkRecord(4096, now)
        for start in range(0, n, 100_000):
            chunk = [bytes(d) for d in digests[start:start + 100_000]]

            def fill(t, chunk=chunk):
                for dg in chunk:
                    t.put_blob(dg, blob)
                    t.put_link(rid, dg, link)

            s._index.write(fill)
        present = ["sha256:" + bytes(d).hex() for d in digests[rng.choice(n, 50, replace=False)]]
        absent = ["sha256:" + bytes(d).hex() for d in rng.integers(0, 256, size=(50, 32), dtype=np.uint8)]
        query = present + absent
        for _ in range(50):
            res = s.batch_check_layer_availability("bench", query)
        assert len(res.layers) == 50 and len(res.failures) == 50
        runs = []
        for _ in range(500):
            t0 = time.perf_counter()
            s.batch_check_layer_availability("bench", query)
            runs.append(time.perf_counter() - t0)
    shutil.rmtree(root / "million")
    return {"batch_check_100_ms": statistics.median(runs) * 1e3}


if __name__ == "__main__":
    sys.exit(main())
