"""SHA-256 throughput: ecrstore's kernels against hashlib, hash_file against memory, threads.

    python benchmarks/bench_hash.py [--size-mib 256] [--repeat 5]

All figures come from one run on one buffer of random bytes, timed interleaved (median of
``--repeat``):

* hashlib.sha256 (OpenSSL) as the reference, and each usable ecrstore kernel against it;
* on x86, OpenSSL with its SHA extensions masked off (OPENSSL_ia32cap, in a subprocess): the
  best non-SHA-NI code OpenSSL has, the yardstick for the portable kernel;
* hash_file of the same bytes from a file in the page cache, against hashing them in memory;
* two threads each hashing its own buffer, against one thread (aggregate MB/s).

Writes benchmarks/results/bench_hash.json.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import _common
import numpy as np

from ecrstore import Sha256, hash_file, sha256_kernel, sha256_kernels

# The targets the native core is held to (figure, comparison, threshold).
TARGETS = [
    ("shani vs hashlib", "kernel shani / hashlib", 0.97),
    ("portable MB/s", "kernel portable MB/s", 500.0),
    ("hash_file warm vs in-memory", "hash_file / in-memory", 0.95),
    ("2 threads vs 1 thread", "2 threads / 1 thread", 1.9),
]

# Masks CPUID.7.0:EBX bit 29 (SHA) and the AVX2/BMI bits, and CPUID.1:ECX AVX and SSSE3:
# OpenSSL then runs its plain x86-64 scalar code. The first form keeps its SIMD schedule.
_OPENSSL_NO_SHA = ":~0x20000000"
_OPENSSL_SCALAR = "~0x1000020000000000:~0x20000128"
_OPENSSL_PROBE = """
import hashlib, statistics, sys, time
import numpy as np
buf = np.random.default_rng(1).integers(0, 256, int(sys.argv[1]), dtype=np.uint8)
hashlib.sha256(buf)
runs = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); hashlib.sha256(buf).digest(); runs.append(time.perf_counter() - t)
print(buf.nbytes / statistics.median(runs))
"""


def openssl_masked(mask: str, size: int, repeat: int) -> float | None:
    """hashlib's throughput (bytes/s) with OpenSSL's CPU capability vector masked."""
    env = dict(os.environ, OPENSSL_ia32cap=mask)
    r = subprocess.run(
        [sys.executable, "-c", _OPENSSL_PROBE, str(size), str(repeat)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    return float(r.stdout) if r.returncode == 0 else None


def hash_in_threads(buffers: list[np.ndarray]) -> None:
    barrier = threading.Barrier(len(buffers))

    def work(buf: np.ndarray) -> None:
        h = Sha256()
        barrier.wait()
        h.update(buf)

    threads = [threading.Thread(target=work, args=(b,)) for b in buffers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=256, help="buffer and file size (MiB)")
    p.add_argument("--dir", default=None, help="where to write the hash_file test file (default: temp dir)")
    args = p.parse_args()
    size = args.size_mib << 20
    repeat = args.repeat
    mbs = lambda seconds: size / seconds / _common.MB  # noqa: E731

    info = _common.machine_info()
    _common.print_machine(info)
    print(f"buffer {args.size_mib} MiB of random bytes, median of {repeat} runs, MB = 10^6 bytes\n")

    rng = np.random.default_rng(1)
    buf = rng.integers(0, 256, size, dtype=np.uint8)
    buf2 = rng.integers(0, 256, size, dtype=np.uint8)
    expected = hashlib.sha256(buf).digest()

    # 1. kernels against hashlib, interleaved.
    fns = {"hashlib": lambda: hashlib.sha256(buf).digest()}
    for k in sha256_kernels():
        fns[f"kernel {k}"] = lambda k=k: Sha256(buf, kernel=k).digest()
    for k in sha256_kernels():
        assert Sha256(buf, kernel=k).digest() == expected, k
    times = _common.median_times(fns, repeat)
    speed = {k: mbs(t) for k, t in times.items()}
    rows = [["hashlib.sha256", "reference", speed["hashlib"], 1.0]]
    for k in sha256_kernels():
        active = " (active)" if k == sha256_kernel() else ""
        rows.append([f"ecrstore {k}{active}", "hashlib", speed[f"kernel {k}"], speed[f"kernel {k}"] / speed["hashlib"]])

    openssl = {}
    if platform.machine() in ("x86_64", "AMD64"):
        for label, mask in (("hashlib, OpenSSL without SHA-NI", _OPENSSL_NO_SHA),
                            ("hashlib, OpenSSL scalar x86-64 only", _OPENSSL_SCALAR)):
            bps = openssl_masked(mask, size, repeat)
            if bps is not None:
                openssl[label] = bps / _common.MB
                rows.append([label, "hashlib", openssl[label], openssl[label] / speed["hashlib"]])

    # 2. hash_file from the page cache against the same bytes in memory.
    tmpdir = tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_hash.")
    path = Path(tmpdir.name) / "data"
    with open(path, "wb") as f:
        f.write(buf)
    try:
        assert hash_file(path).digest() == expected  # also warms the page cache
        ft = _common.median_times({
            "hash_file": lambda: hash_file(path).digest(),
            "memory": lambda: Sha256(buf).digest(),
        }, repeat)
    finally:
        tmpdir.cleanup()
    file_speed, mem_speed = mbs(ft["hash_file"]), mbs(ft["memory"])
    rows.append([f"hash_file, warm cache ({sha256_kernel()})", "in-memory", file_speed, file_speed / mem_speed])

    # 3. two threads, two objects, two buffers: aggregate throughput against one thread.
    tt = _common.median_times({
        "1 thread": lambda: hash_in_threads([buf]),
        "2 threads": lambda: hash_in_threads([buf, buf2]),
    }, repeat)
    one, two = mbs(tt["1 thread"]), 2 * mbs(tt["2 threads"])
    rows.append(["1 thread (aggregate)", "reference", one, 1.0])
    rows.append(["2 threads (aggregate)", "1 thread", two, two / one])

    _common.print_table(["measurement", "compared with", "MB/s", "ratio"], rows)

    figures = {
        "kernel shani / hashlib": speed.get("kernel shani", 0) / speed["hashlib"] if "kernel shani" in speed else None,
        "kernel portable MB/s": speed["kernel portable"],
        "hash_file / in-memory": file_speed / mem_speed,
        "2 threads / 1 thread": two / one,
    }
    verdicts = []
    print("targets")
    for label, key, threshold in TARGETS:
        value = figures[key]
        if value is None:
            verdict = "n/a (kernel not on this CPU)"
        else:
            verdict = "met" if value >= threshold else "MISSED"
        verdicts.append({"target": label, "value": value, "threshold": threshold, "verdict": verdict})
        shown = "-" if value is None else (f"{value:,.0f}" if threshold > 10 else f"{value:.3f}")
        print(f"  {label:<30} {shown:>8}  (>= {threshold:g})  {verdict}")

    out = _common.write_json("bench_hash", {
        "machine": info,
        "config": {"size_mib": args.size_mib, "repeat": repeat},
        "mb_per_s": {
            "hashlib": speed["hashlib"],
            **{k: v for k, v in speed.items() if k.startswith("kernel ")},
            **openssl,
            "hash_file warm": file_speed,
            "in-memory (same run as hash_file)": mem_speed,
            "1 thread": one,
            "2 threads aggregate": two,
        },
        "ratios": figures,
        "targets": verdicts,
    })
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
