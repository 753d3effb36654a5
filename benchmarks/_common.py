"""Helpers shared by the benchmarks: the machine, timing, tables and JSON results.

Every benchmark prints the machine it ran on (CPU, cores, active sha256 kernel, C compiler,
Python) next to its figures, measures its reference in the same run, and writes its results to
``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import ssl
import statistics
import subprocess
import sysconfig
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MB = 1_000_000  # throughput is reported in decimal MB/s, as hashing benchmarks usually are


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (falls back to ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                # "model name" on x86; aarch64 kernels only give implementer/part numbers.
                if key.strip() in ("model name", "Model", "Hardware"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU feature flags relevant to hashing that /proc/cpuinfo reports."""
    wanted = {"sha_ni", "ssse3", "sse4_1", "avx2", "avx512f", "bmi2", "sha2", "asimd"}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return sorted(wanted & set(value.split()))
    except OSError:
        pass
    return []


def compiler_version() -> str:
    """First line of ``$CC --version`` for the compiler Python builds extensions with."""
    cc = sysconfig.get_config_var("CC") or "cc"
    argv = shlex.split(cc)[:1] + ["--version"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return f"{cc} (version unknown)"
    return out.splitlines()[0].strip() if out else cc


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare figures across runs."""
    import ecrstore

    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "sha256_kernel": ecrstore.sha256_kernel(),
        "sha256_kernels": list(ecrstore.sha256_kernels()),
        "compiler": compiler_version(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "openssl": ssl.OPENSSL_VERSION,
        "platform": platform.platform(),
    }


def print_machine(info: dict[str, Any]) -> None:
    rows = [
        ("CPU", f"{info['cpu']} ({info['cores']} cores; {' '.join(info['cpu_flags'])})"),
        ("sha256 kernel", f"{info['sha256_kernel']} (usable: {', '.join(info['sha256_kernels'])})"),
        ("compiler", info["compiler"]),
        ("python", info["python"]),
        ("hashlib", info["openssl"]),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print()


def median_time(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``repeat`` calls of ``fn`` (seconds), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def median_times(fns: dict[str, Callable[[], object]], repeat: int = 5, warmup: int = 1) -> dict[str, float]:
    """Like :func:`median_time` for several functions, interleaved round by round so that a
    slow spell of the machine (frequency, a neighbour's load) hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in runs.items()}


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """An aligned text table: numbers right-aligned, text left-aligned."""
    cells = [[_fmt(c) for c in headers]] + [[_fmt(c) for c in r] for r in rows]
    numeric = [all(_is_num(r[i]) for r in cells[1:]) for i in range(len(headers))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        text = "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric, strict=True))
        return text.rstrip()

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        print(line(r))
    print()


def _fmt(c: object) -> str:
    if isinstance(c, float):
        return f"{c:,.0f}" if abs(c) >= 100 else f"{c:.3f}"
    return "" if c is None else str(c)


def _is_num(s: str) -> bool:
    return s == "" or s.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus a timestamp) to ``benchmarks/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **payload}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark accepts."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--repeat", type=int, default=5, help="timed runs per figure; the median is reported")
    return p


def warm_memory(nbytes: int | None = None, fraction: float = 0.7) -> None:
    """Touch and free ``nbytes`` of memory (default: ``fraction`` of MemAvailable).

    On a virtual machine with free page reporting (this one: the guest hands freed memory
    back to the host in 8 MiB blocks), memory is slow to fault in again after it was freed
    (measured here: ~0.45 GB/s for new page-cache pages, against ~5 GB/s when the host still
    backs them). Call this right before a timed workload that fills the page cache, with
    about its footprint, so that it and its reference start from the same state."""
    import numpy as np

    if nbytes is None:
        available = 4 * 2**30
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
        nbytes = int(fraction * available)
    np.ones(nbytes, dtype=np.uint8)

