"""HTTP front end throughput: a layer pushed by boto3 through ``ecrstore serve`` against the
same upload through the in-process API, measured in the same run.

Workloads (each round runs them all, interleaved, and the median round is reported):

- ``in-process``: ``Store.upload_layer_part`` for every 10 MiB part of a 1 GiB layer;
- ``boto3 -> null endpoint``: the same boto3 calls against an endpoint that reads and discards
  each request: what the client alone costs (serialising 10 MiB as base64 inside JSON and
  hashing it for SigV4), the ceiling of any server;
- ``boto3 -> ecrstore serve, 1 client``: the real server (SigV4 checked, JSON and base64 decoded,
  parts stored);
- ``boto3 -> ecrstore serve, 2 clients``: two client processes, each with its own boto3 client
  pushing its own layer at the same time; aggregate MB/s over the span of both.

Both stores use the same settings (default part sizes; ``durable=False`` unless ``--durable``).
Clients run in their own processes, so the benchmark's process never competes with them for
the GIL. Targets: 1 client >= 0.5 x in-process; 2 clients >= 1.6 x 1 client.

Besides MB/s (wall clock, which other load on the machine skews), it reports the server's CPU
time per part (user + system of the server and its workers, from /proc), a figure that load
hardly moves, and, for 2 clients, how that CPU time split between the workers.

Run: ``python benchmarks/bench_server.py [--size-mib 1024] [--part-mib 10] [--workers N] [--durable]``.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MB, machine_info, parser, print_machine, print_table, write_json

REPO = "bench/layers"
REGION = "us-east-1"
TARGET_ONE = 0.5
TARGET_TWO = 1.6
KEY_ID, SECRET, REGISTRY = "AKIABENCHMARKKEY0000", "benchmark-secret-benchmark-secret-000000", "000000000000"


# --- layer bytes ---------------------------------------------------------------------------------


class Layer:
    """Deterministic, distinct layer bytes without holding the layer in memory: part ``i`` is a
    shifted window into a 32 MiB random pool with the layer's seed and the part number in front.
    Every scenario builds its parts the same way, inside its timed loop."""

    POOL = 32 * 2**20

    def __init__(self, seed: int, size: int, part: int) -> None:
        self.seed, self.size, self.part_size = seed, size, part
        self.pool = random.Random(seed).randbytes(self.POOL + part)

    def parts(self):
        first = 0
        i = 0
        while first < self.size:
            n = min(self.part_size, self.size - first)
            start = (i * 7_340_033) % self.POOL
            head = self.seed.to_bytes(8, "little") + i.to_bytes(8, "little")
            yield first, head[:n] + self.pool[start + len(head):start + n]
            first += n
            i += 1

    def digest(self) -> str:
        h = hashlib.sha256()
        for _, data in self.parts():
            h.update(data)
        return "sha256:" + h.hexdigest()


# --- the pushes ------------------------------------------------------------------------------------


def push_in_process(store, layer: Layer, digest: str) -> tuple[float, float]:
    t0 = time.time()
    upload_id = store.initiate_layer_upload(REPO).upload_id
    for first, data in layer.parts():
        store.upload_layer_part(REPO, upload_id, first, first + len(data) - 1, data)
    store.complete_layer_upload(REPO, upload_id, [digest])
    return t0, time.time()


def _client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client("ecr", region_name=REGION, endpoint_url=endpoint, aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET,
                        config=Config(retries={"max_attempts": 1}, read_timeout=300, connect_timeout=30))


def _client_process(endpoint: str, seed: int, size: int, part: int, complete: bool, barrier, results) -> None:
    """One boto3 client pushing one layer; reports (start, end) wall-clock times."""
    layer = Layer(seed, size, part)
    digest = layer.digest() if complete else None
    ecr = _client(endpoint)
    ecr.describe_repositories(maxResults=1)  # the client and its connection warmed up
    barrier.wait()
    t0 = time.time()
    upload_id = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    for first, data in layer.parts():
        ecr.upload_layer_part(repositoryName=REPO, uploadId=upload_id, partFirstByte=first,
                              partLastByte=first + len(data) - 1, layerPartBlob=data)
    if complete:
        ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[digest])
    results.put((t0, time.time()))


def push_with_clients(endpoint: str, seeds: list[int], size: int, part: int, complete: bool = True) -> float:
    """Run one client process per seed, released together; aggregate bytes/s over their span."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(seeds))
    results = ctx.Queue()
    procs = [ctx.Process(target=_client_process, args=(endpoint, s, size, part, complete, barrier, results))
             for s in seeds]
    for p in procs:
        p.start()
    spans = [results.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise RuntimeError(f"client process failed with {p.exitcode}")
    start = min(s for s, _ in spans)
    end = max(e for _, e in spans)
    return len(seeds) * size / (end - start)


# --- endpoints -------------------------------------------------------------------------------------


class _NullHandler(http.server.BaseHTTPRequestHandler):
    """Reads each request completely and answers a fixed, well-formed response."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        remaining = int(self.headers.get("content-length", "0"))
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                return
            remaining -= len(chunk)
        target = self.headers.get("x-amz-target", "")
        if target.endswith("InitiateLayerUpload"):
            answer = {"uploadId": "00000000-0000-4000-8000-000000000000", "partSize": 10485760}
        elif target.endswith("UploadLayerPart"):
            answer = {"registryId": REGISTRY, "repositoryName": REPO,
                      "uploadId": "00000000-0000-4000-8000-000000000000", "lastByteReceived": 0}
        else:
            answer = {"repositories": []}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/x-amz-json-1.1")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _null_server(port_queue) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _NullHandler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def start_null_endpoint() -> tuple[multiprocessing.Process, str]:
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_null_server, args=(q,), daemon=True)
    proc.start()
    return proc, f"http://127.0.0.1:{q.get(timeout=60)}"


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``pid`` and of its children, by pid (empty without /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            out[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    return {p: after[p] - before.get(p, 0.0) for p in after}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(store: Path, workers: int, durable: bool, part: int, log, extra: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``ecrstore serve`` on a free loopback port (``extra``: more options, such as --index and
    --blobs); the process and its endpoint, once it answers."""
    creds = store.parent / "credentials"
    creds.write_text(f"{KEY_ID} {SECRET} {REGISTRY}\n")
    creds.chmod(0o600)  # the server refuses a credentials file others may read
    port = free_port()
    argv = [sys.executable, "-m", "ecrstore.cli", "--log-level", "warning", "serve", "--store", str(store),
            "--port", str(port), "--workers", str(workers), "--credentials", str(creds),
            "--part-size", str(part), "--no-access-log", *extra]
    if not durable:
        argv.append("--no-durable")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint + "/", data=b"{}"), timeout=2)
        except urllib.error.HTTPError:
            return proc, endpoint  # it answers (403: unsigned)
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (a graceful shutdown), SIGKILL after 60 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


# --- main ------------------------------------------------------------------------------------------


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(repeat=3)
    p.add_argument("--size-mib", type=int, default=1024, help="layer size in MiB (default: 1024)")
    p.add_argument("--part-mib", type=int, default=10, help="part size in MiB (default: 10)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="server worker processes (default: number of CPUs)")
    p.add_argument("--durable", action="store_true", help="fsync in both stores (default: durable=False in both)")
    p.add_argument("--dir", help="directory for the stores (default: a temporary directory)")
    args = p.parse_args()

    from ecrstore import Store

    size, part = args.size_mib * 2**20, args.part_mib * 2**20
    info = machine_info()
    print_machine(info)
    durability = "durable=True (fsync)" if args.durable else "durable=False"
    print(f"layer {args.size_mib} MiB in {args.part_mib} MiB parts; both stores {durability}; "
          f"server: {args.workers} worker(s), SigV4 on; median of {args.repeat} round(s)\n")

    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench-server-", dir=args.dir))
    runs: dict[str, list[float]] = {"in_process": [], "client_ceiling": [], "server_1": [], "server_2": []}
    parts = -(-size // part)
    cpu_ms: dict[str, list[float]] = {"server_1": [], "server_2": []}  # server CPU per part
    worker_split: list[list[float]] = []  # 2 clients: CPU seconds of each process, largest first
    null_proc, null_endpoint = start_null_endpoint()
    log = open(root / "server.log", "wb")
    server, endpoint = start_server(root / "served", args.workers, args.durable, part, log)
    seed = 1
    try:
        _client(endpoint).create_repository(repositoryName=REPO)
        store = Store(root / "in-process", durable=args.durable, part_size=part)
        store.create_repository(REPO)
        for r in range(args.repeat):
            layer = Layer(seed, size, part)
            digest = layer.digest()  # before the clock starts, as for the clients
            t0, t1 = push_in_process(store, layer, digest)
            runs["in_process"].append(size / (t1 - t0))
            runs["client_ceiling"].append(push_with_clients(null_endpoint, [seed + 1], size, part, complete=False))
            before = tree_cpu_seconds(server.pid)
            runs["server_1"].append(push_with_clients(endpoint, [seed + 2], size, part))
            middle = tree_cpu_seconds(server.pid)
            runs["server_2"].append(push_with_clients(endpoint, [seed + 3, seed + 4], size, part))
            after = tree_cpu_seconds(server.pid)
            cpu_ms["server_1"].append(1000 * sum(cpu_delta(before, middle).values()) / parts)
            split = cpu_delta(middle, after)
            cpu_ms["server_2"].append(1000 * sum(split.values()) / (2 * parts))
            worker_split.append(sorted((round(v, 2) for v in split.values()), reverse=True))
            seed += 5
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1] / MB:,.0f} MB/s" for k, v in runs.items()),
                  flush=True)
        store.close()
    finally:
        stop_server(server)
        null_proc.terminate()
        log.close()
        shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in runs.items()}
    one = med["server_1"] / med["in_process"]
    two = med["server_2"] / med["server_1"]
    ceiling = med["client_ceiling"] / med["in_process"]
    print()
    print_table(["scenario", "MB/s", "ratio", "target"], [
        ("in-process Store (reference)", med["in_process"] / MB, "1.00 x in-process", ""),
        ("boto3 -> null endpoint (client ceiling)", med["client_ceiling"] / MB, f"{ceiling:.2f} x in-process", ""),
        ("boto3 -> ecrstore serve, 1 client", med["server_1"] / MB, f"{one:.2f} x in-process",
         f">= {TARGET_ONE} {'met' if one >= TARGET_ONE else 'MISSED'}"),
        ("boto3 -> ecrstore serve, 2 clients", med["server_2"] / MB, f"{two:.2f} x 1 client",
         f">= {TARGET_TWO} {'met' if two >= TARGET_TWO else 'MISSED'}"),
    ])
    server_vs_ceiling = med["server_1"] / med["client_ceiling"]
    print(f"1 client reaches {server_vs_ceiling:.2f} x what boto3 alone can send (the null endpoint).")
    cpu_med = {k: statistics.median(v) for k, v in cpu_ms.items() if v}
    if cpu_med:
        print(f"server CPU per {args.part_mib} MiB part: {cpu_med['server_1']:.1f} ms (1 client), "
              f"{cpu_med['server_2']:.1f} ms (2 clients); 2 clients, CPU seconds by server process "
              f"(supervisor and workers) per round: {worker_split}")
    # Clients and server share this machine's cores: other load skews the parallel figure most.
    load_after = os.getloadavg()
    print(f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} cores")
    path = write_json("bench_server", {
        "machine": info,
        "settings": {"size_mib": args.size_mib, "part_mib": args.part_mib, "workers": args.workers,
                     "durable": args.durable, "repeat": args.repeat, "sigv4": True,
                     "load_average_before_after": [load_before[0], load_after[0]]},
        "mb_per_s": {k: v / MB for k, v in med.items()},
        "runs_mb_per_s": {k: [x / MB for x in v] for k, v in runs.items()},
        "server_cpu_ms_per_part": cpu_med,
        "server_cpu_seconds_by_process_2_clients": worker_split,
        "ratios": {"server_1_vs_in_process": one, "server_2_vs_server_1": two,
                   "client_ceiling_vs_in_process": ceiling, "server_1_vs_client_ceiling": server_vs_ceiling},
        "targets": {"server_1_vs_in_process": TARGET_ONE, "server_2_vs_server_1": TARGET_TWO,
                    "met": {"one_client": one >= TARGET_ONE, "two_clients": two >= TARGET_TWO}},
    })
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
