"""Run every benchmarks/bench_*.py, in name order, each in its own process.

    python benchmarks/run_all.py [ARGS...]

ARGS are passed to every benchmark unchanged. Each runs with this interpreter; the exit status
is non-zero if any of them failed, and the failures are listed at the end.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if not scripts:
        print(f"no bench_*.py in {HERE}", file=sys.stderr)
        return 1
    failed = []
    for script in scripts:
        print(f"=== {script.name} {' '.join(argv)}".rstrip(), flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, str(script), *argv], cwd=HERE.parent).returncode
        status = "ok" if rc == 0 else f"FAILED (exit {rc})"
        print(f"=== {script.name}: {status} in {time.perf_counter() - t0:.1f}s\n", flush=True)
        if rc != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(scripts)} benchmark(s) passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
