"""Scale-out: the (postgresql, s3) backend pair against the embedded (lmdb, local), measured in
the same run, and what each component costs per operation.

Its own PostgreSQL (Debian's binaries, a throw-away cluster on a Unix socket) and SeaweedFS
(``weed server -s3`` on loopback) are started here and stopped at the end, as the test suite
does. Every ``ecrstore serve`` node runs one worker process; clients are boto3 processes of
their own.

1. **One node, both pairs** (rounds alternate between the pairs; the median is reported): a
   1 GiB layer in 10 MiB parts (MB/s), against the same bytes sent as an S3 multipart upload
   straight to SeaweedFS with botocore (the object store's ceiling from one client) and with
   obstore, one part at a time and four; then
   ``--small`` 4 KiB layers (initiate, part, complete) and as many PutImage calls.
2. **Cost per operation** (in this process, on (postgresql, s3)): database statements, commits
   and time, S3 requests and time, for UploadLayerPart of 10 MiB and of 4 KiB,
   CompleteLayerUpload and PutImage; and the CPU each service spends per operation, from
   /proc, for the served runs of (1).
3. **1, 2, 3 nodes** on the shared PostgreSQL and bucket, one client process per node, each
   pushing 4 KiB layers with an image each, then 10 MiB parts, for ``--seconds`` each; with
   PostgreSQL's commits/s over the same span (pg_stat_database).

The machine has 2 cores, so nodes cannot scale here: the projection at the end divides a core
by each component's measured CPU per operation, and names what saturates first.

Run: ``python benchmarks/bench_scale.py [--size-mib 1024] [--small 300] [--seconds 8] [--repeat 3]``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the real services the test suite starts
import postgres_server  # noqa: E402
import seaweed_server  # noqa: E402
from _common import MB, machine_info, parser, print_machine, print_table, write_json  # noqa: E402
from bench_server import (  # noqa: E402
    REPO,
    Layer,
    _client,
    push_with_clients,
    start_server,
    stop_server,
    tree_cpu_seconds,
)

SMALL = 4096
CONFIG_MEDIA = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA = "application/vnd.oci.image.manifest.v1+json"
LAYER_MEDIA = "application/vnd.oci.image.layer.v1.tar"


def manifest(config: tuple[str, int], layer: tuple[str, int]) -> str:
    return json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA,
                       "config": {"mediaType": CONFIG_MEDIA, "digest": config[0], "size": config[1]},
                       "layers": [{"mediaType": LAYER_MEDIA, "digest": layer[0], "size": layer[1]}]})


def small_blob(seed: int, i: int) -> bytes:
    """4 KiB no other call makes."""
    return seed.to_bytes(8, "little") + i.to_bytes(8, "little") + os.urandom(SMALL - 16)


# --- client processes ----------------------------------------------------------------------------


def _push_small(ecr, data: bytes) -> tuple[str, int]:
    """One small layer: initiate, one part, complete; its (digest, size)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    up = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    ecr.upload_layer_part(repositoryName=REPO, uploadId=up, partFirstByte=0, partLastByte=len(data) - 1,
                          layerPartBlob=data)
    ecr.complete_layer_upload(repositoryName=REPO, uploadId=up, layerDigests=[digest])
    return digest, len(data)


def _small_client(endpoint: str, seed: int, count: int, seconds: float, barrier, results) -> None:
    """4 KiB layers and images of them. ``seconds`` 0: ``count`` layers, then ``count`` images
    of them, reporting (count, t0, t_layers, t1); else a layer and its image at a time for
    ``seconds``, reporting (images, t0, t0, t1)."""
    ecr = _client(endpoint)
    config = _push_small(ecr, f'{{"architecture":"amd64","os":"linux","seed":{seed}}}'.encode())
    barrier.wait()
    t0 = time.time()
    if seconds:
        n = 0
        while time.time() - t0 < seconds:
            layer = _push_small(ecr, small_blob(seed, n))
            ecr.put_image(repositoryName=REPO, imageManifest=manifest(config, layer), imageTag=f"s{seed}-{n}")
            n += 1
        results.put((n, t0, t0, time.time()))
        return
    layers = [_push_small(ecr, small_blob(seed, i)) for i in range(count)]
    t_layers = time.time()
    for i, layer in enumerate(layers):
        ecr.put_image(repositoryName=REPO, imageManifest=manifest(config, layer), imageTag=f"p{seed}-{i}")
    results.put((count, t0, t_layers, time.time()))


def _parts_client(endpoint: str, seed: int, part: int, seconds: float, barrier, results) -> None:
    """10 MiB parts of one upload for ``seconds``; reports (bytes, t0, t0, t1)."""
    ecr = _client(endpoint)
    layer = Layer(seed, 1 << 40, part)
    up = ecr.initiate_layer_upload(repositoryName=REPO)["uploadId"]
    barrier.wait()
    t0 = time.time()
    sent = 0
    for first, data in layer.parts():
        if time.time() - t0 >= seconds:
            break
        ecr.upload_layer_part(repositoryName=REPO, uploadId=up, partFirstByte=first,
                              partLastByte=first + len(data) - 1, layerPartBlob=data)
        sent += len(data)
    results.put((sent, t0, t0, time.time()))


def _s3_client(env: dict[str, str], bucket: str, seed: int, size: int, part: int, barrier, results) -> None:
    """The reference: the same bytes as one S3 multipart upload, straight to the object store."""
    import botocore.session
    from botocore.config import Config

    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4", read_timeout=300,
                      request_checksum_calculation="when_required", response_checksum_validation="when_required"))
    s3.head_bucket(Bucket=bucket)
    barrier.wait()
    t0 = time.time()
    key = f"reference/{seed}"
    mp = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for i, (_, data) in enumerate(Layer(seed, size, part).parts(), start=1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=mp, PartNumber=i, Body=data)["ETag"]
        parts.append({"PartNumber": i, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=mp, MultipartUpload={"Parts": parts})
    results.put((size, t0, t0, time.time()))
    s3.delete_object(Bucket=bucket, Key=key)


def _obstore_client(env: dict[str, str], bucket: str, seed: int, size: int, part: int, concurrency: int,
                    barrier, results) -> None:
    """The same reference with obstore (Rust's object_store) as the S3 client: its multipart
    put of the same parts, ``concurrency`` of them in flight."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(bucket, config={"endpoint": env["AWS_ENDPOINT_URL_S3"], "region": env["AWS_DEFAULT_REGION"],
                                    "access_key_id": env["AWS_ACCESS_KEY_ID"],
                                    "secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                                    "virtual_hosted_style_request": False},
                    client_options={"allow_http": True})
    key = f"reference/obstore-{seed}"
    obstore.put(store, key + "-warm", b"warm")  # the client and its connection warmed up
    barrier.wait()
    t0 = time.time()
    obstore.put(store, key, (data for _, data in Layer(seed, size, part).parts()), use_multipart=True,
                chunk_size=part, max_concurrency=concurrency)
    results.put((size, t0, t0, time.time()))
    obstore.delete(store, [key, key + "-warm"])


def run_clients(target: Callable[..., None], args_per_client: list[tuple]) -> list[tuple]:
    """One spawned process per argument tuple (``target(*args, barrier, results)``), released
    together; their reports."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(args_per_client)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, results)) for a in args_per_client]
    for p in procs:
        p.start()
    reports: list[tuple] = []
    while len(reports) < len(procs):
        try:
            reports.append(results.get(timeout=1))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                for p in procs:
                    p.kill()
                raise RuntimeError("a client process failed: its traceback is above") from None
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise RuntimeError(f"a client process failed with {p.exitcode}")
    return reports


# --- services ------------------------------------------------------------------------------------


class Services:
    """PostgreSQL and SeaweedFS for the run, and the CPU they spend."""

    def __init__(self) -> None:
        self.pg = postgres_server.start()
        try:
            self.weed = seaweed_server.start()
        except BaseException:
            self.pg.stop()
            raise
        self.env = {**os.environ, **self.weed.env()}

    def new_pair(self) -> tuple[str, str]:
        """A fresh database and bucket: (index URL, blobs URL)."""
        return self.pg.new_database(), f"s3://{self.weed.new_bucket()}/registry"

    def cpu(self) -> dict[str, float]:
        return {"postgresql": sum(tree_cpu_seconds(self.pg.process.pid).values()),
                "seaweedfs": sum(tree_cpu_seconds(self.weed.process.pid).values())}

    def commits(self) -> int:
        import psycopg

        with psycopg.connect(self.pg.admin_dsn, autocommit=True) as c:
            row = c.execute("SELECT sum(xact_commit) FROM pg_stat_database").fetchone()
        return int(row[0]) if row else 0

    def commit_ceiling(self, seconds: float, sessions: int = 4) -> float:
        """The reference for the index: durable one-row INSERT commits/s of this PostgreSQL
        from ``sessions`` connections at once (synchronous_commit on, as durable nodes run)."""
        import psycopg

        dsn = self.pg.new_database()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("CREATE TABLE t (session int, n int, at timestamptz DEFAULT now())")
        counts = [0] * sessions
        stop_at = time.monotonic() + seconds

        def session(i: int) -> None:
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("SET synchronous_commit = on")
                while time.monotonic() < stop_at:
                    c.execute("INSERT INTO t (session, n) VALUES (%s, %s)", (i, counts[i]))
                    counts[i] += 1

        threads = [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts) / (time.monotonic() - t0)

    def stop(self) -> None:
        self.weed.stop()
        self.pg.stop()


_node_numbers = itertools.count()


class Node:
    """One ``ecrstore serve`` with one worker."""

    def __init__(self, root: Path, name: str, services: Services, pair: tuple[str, str] | None, part: int,
                 durable: bool) -> None:
        extra = ["--index", pair[0], "--blobs", pair[1]] if pair else []
        self.log = open(root / f"{name}.log", "wb")
        self.process, self.endpoint = start_server(root / name, 1, durable, part, self.log, extra, services.env)

    def cpu(self) -> float:
        return sum(tree_cpu_seconds(self.process.pid).values())

    def stop(self) -> None:
        stop_server(self.process)
        self.log.close()


@contextmanager
def nodes(root: Path, services: Services, pair: tuple[str, str] | None, count: int, part: int,
          durable: bool) -> Iterator[list[Node]]:
    started: list[Node] = []
    try:
        for _ in range(count):
            started.append(Node(root, f"node-{next(_node_numbers)}", services, pair, part, durable))
        try:
            _client(started[0].endpoint).create_repository(repositoryName=REPO)
        except Exception as e:  # a shared store from an earlier phase has it already
            if "RepositoryAlreadyExists" not in str(e):
                raise
        yield started
    finally:
        for n in started:
            n.stop()


class Meter:
    """CPU seconds of the node(s) and of both services over a span."""

    def __init__(self, services: Services, served: list[Node]) -> None:
        self.services, self.served = services, served
        self.before = self._read()

    def _read(self) -> dict[str, float]:
        return {"node": sum(n.cpu() for n in self.served), **self.services.cpu()}

    def spent(self) -> dict[str, float]:
        after = self._read()
        return {k: after[k] - self.before[k] for k in after}


# --- cost per operation, in this process ---------------------------------------------------------


class Probe:
    """Counts and times this process's database statements (every psycopg round trip is one
    ``Cursor.execute``, BEGIN and COMMIT included) and S3 requests (botocore's call events)."""

    def __init__(self, store: Any) -> None:
        import psycopg

        self.statements: Counter[str] = Counter()
        self.sql_seconds = 0.0
        self.s3: Counter[str] = Counter()
        self.s3_seconds = 0.0
        self._lock = threading.Lock()
        original = psycopg.Cursor.execute
        probe = self

        def execute(cur: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(cur, query, *args, **kwargs)
            finally:
                word = str(query).split(None, 1)[0].upper() if isinstance(query, str) else "SQL"
                with probe._lock:
                    probe.statements[word] += 1
                    probe.sql_seconds += time.perf_counter() - t0

        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        self.uninstall = lambda: setattr(psycopg.Cursor, "execute", original)
        events = store._blobs.bucket.client.meta.events
        events.register("before-call.s3", self._before)
        events.register("after-call.s3", self._after)

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.perf_counter()

    def _after(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        took = time.perf_counter() - context.get("bench_started", time.perf_counter())
        with self._lock:
            self.s3[model.name] += 1
            self.s3_seconds += took

    def reading(self) -> tuple[Counter[str], float, Counter[str], float, float]:
        with self._lock:
            return Counter(self.statements), self.sql_seconds, Counter(self.s3), self.s3_seconds, time.perf_counter()


class Costs:
    """What each kind of operation cost, summed over its calls."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.calls: Counter[str] = Counter()
        self.totals: dict[str, list[Any]] = {}

    def measure(self, kind: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        before = self.probe.reading()
        result = fn(*args, **kwargs)
        after = self.probe.reading()
        t = self.totals.setdefault(kind, [Counter(), 0.0, Counter(), 0.0, 0.0])
        t[0].update(after[0] - before[0])
        t[2].update(after[2] - before[2])
        for i in (1, 3, 4):
            t[i] += after[i] - before[i]
        self.calls[kind] += 1
        return result

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for kind, (sql, sql_s, s3, s3_s, wall) in self.totals.items():
            n = self.calls[kind]
            out.append({"operation": kind, "calls": n, "wall_ms": 1000 * wall / n,
                        "statements": sum(sql.values()) / n, "commits": sql["COMMIT"] / n, "sql_ms": 1000 * sql_s / n,
                        "s3_requests": sum(s3.values()) / n, "s3_ms": 1000 * s3_s / n,
                        "s3_by_request": {k: v / n for k, v in sorted(s3.items())}})
        return out


def cost_split(root: Path, services: Services, part: int, small: int, big_parts: int) -> list[dict[str, Any]]:
    """The per-operation cost on (postgresql, s3), from a Store in this process."""
    from ecrstore import Store

    os.environ.update(services.weed.env())
    index, blobs = services.new_pair()
    store = Store(root / "in-process", index=index, blobs=blobs, part_size=part)
    probe = Probe(store)
    costs = Costs(probe)
    try:
        store.create_repository(REPO)
        config = b'{"architecture":"amd64","os":"linux"}'
        config_ref = _store_push(store, config)
        layers = []
        for i in range(small):
            data = small_blob(1, i)
            up = costs.measure("InitiateLayerUpload", store.initiate_layer_upload, REPO).upload_id
            costs.measure("UploadLayerPart 4 KiB", store.upload_layer_part, REPO, up, 0, len(data) - 1, data)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            costs.measure("CompleteLayerUpload 4 KiB", store.complete_layer_upload, REPO, up, [digest])
            layers.append((digest, len(data)))
        for i, layer in enumerate(layers):
            costs.measure("PutImage", store.put_image, REPO, manifest(config_ref, layer), image_tag=f"c{i}")
        for seed in range(2, 2 + max(1, big_parts // 2)):
            layer = Layer(seed, 2 * part, part)
            up = store.initiate_layer_upload(REPO).upload_id
            for first, data in layer.parts():
                costs.measure(f"UploadLayerPart {part >> 20} MiB", store.upload_layer_part, REPO, up, first,
                              first + len(data) - 1, data)
            digest = layer.digest()
            costs.measure(f"CompleteLayerUpload {2 * part >> 20} MiB", store.complete_layer_upload, REPO, up, [digest])
        return costs.rows()
    finally:
        probe.uninstall()
        store.close()


def _store_push(store: Any, data: bytes) -> tuple[str, int]:
    up = store.initiate_layer_upload(REPO).upload_id
    store.upload_layer_part(REPO, up, 0, len(data) - 1, data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    store.complete_layer_upload(REPO, up, [digest])
    return digest, len(data)


# --- main ----------------------------------------------------------------------------------------


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def one_node(root: Path, services: Services, args: Any, size: int, part: int) -> dict[str, Any]:
    """Section 1: both pairs through one node each, rounds alternating; the S3 reference."""
    pairs: dict[str, tuple[str, str] | None] = {"lmdb+local": None, "postgresql+s3": services.new_pair()}
    ref_bucket = services.weed.new_bucket()
    weed_env = services.weed.env()
    parts = -(-size // part)
    out: dict[str, Any] = {"big_mb_s": {k: [] for k in pairs}, "s3_reference_mb_s": [],
                           "layers_s": {k: [] for k in pairs}, "images_s": {k: [] for k in pairs},
                           "cpu_ms_per_part": {k: [] for k in pairs}, "cpu_ms_per_small_push": {k: [] for k in pairs}}
    seed = 10
    with nodes(root, services, None, 1, part, args.durable) as (local,), \
            nodes(root, services, pairs["postgresql+s3"], 1, part, args.durable) as (remote,):
        served = {"lmdb+local": local, "postgresql+s3": remote}
        for r in range(args.repeat):
            (ref,) = run_clients(_s3_client, [(weed_env, ref_bucket, seed, size, part)])
            out["s3_reference_mb_s"].append(size / (ref[3] - ref[1]) / MB)
            for concurrency in (1, 4):
                (ref,) = run_clients(_obstore_client, [(weed_env, ref_bucket, seed, size, part, concurrency)])
                out.setdefault(f"obstore_{concurrency}_mb_s", []).append(size / (ref[3] - ref[1]) / MB)
            for name in (list(pairs) if r % 2 == 0 else list(reversed(pairs))):
                node = served[name]
                meter = Meter(services, [node])
                out["big_mb_s"][name].append(push_with_clients(node.endpoint, [seed], size, part) / MB)
                out["cpu_ms_per_part"][name].append({k: 1000 * v / parts for k, v in meter.spent().items()})
                meter = Meter(services, [node])
                ((n, t0, t_layers, t1),) = run_clients(_small_client, [(node.endpoint, seed, args.small, 0)])
                out["layers_s"][name].append(n / (t_layers - t0))
                out["images_s"][name].append(n / (t1 - t_layers))
                out["cpu_ms_per_small_push"][name].append({k: 1000 * v / n for k, v in meter.spent().items()})
                seed += 1
            print(f"round {r + 1}: " + "; ".join(
                f"{k}: {out['big_mb_s'][k][-1]:,.0f} MB/s, {out['layers_s'][k][-1]:,.0f} layers/s, "
                f"{out['images_s'][k][-1]:,.0f} images/s" for k in pairs)
                + f"; S3 multipart straight to SeaweedFS {out['s3_reference_mb_s'][-1]:,.0f} MB/s (botocore), "
                f"{out['obstore_1_mb_s'][-1]:,.0f} / {out['obstore_4_mb_s'][-1]:,.0f} MB/s (obstore, 1 / 4 parts "
                "at a time)", flush=True)
    return out


def many_nodes(root: Path, services: Services, args: Any, part: int) -> list[dict[str, Any]]:
    """Section 3: 1, 2, 3 nodes on one database and bucket, one client per node."""
    shared = services.new_pair()
    rows = []
    for count in (1, 2, 3):
        with nodes(root, services, shared, count, part, args.durable) as served:
            seeds = [1000 * count + i for i in range(count)]
            time.sleep(2)  # PostgreSQL's statistics reach pg_stat_database within about a second
            commits, meter = services.commits(), Meter(services, served)
            pairs = list(zip(served, seeds, strict=True))
            reps = run_clients(_small_client, [(n.endpoint, s, 0, args.seconds) for n, s in pairs])
            cpu = meter.spent()
            time.sleep(2)
            commits = services.commits() - commits - 1
            span = max(r[3] for r in reps) - min(r[1] for r in reps)
            pushes = sum(r[0] for r in reps)
            meter = Meter(services, served)
            sent = run_clients(_parts_client, [(n.endpoint, s, part, args.seconds) for n, s in pairs])
            cpu_parts = meter.spent()
            bytes_sent = sum(r[0] for r in sent)
            parts_span = max(r[3] for r in sent) - min(r[1] for r in sent)
            rows.append({"nodes": count, "small_pushes_s": pushes / span, "commits_s": commits / span,
                         "commits_per_push": commits / pushes,
                         "cpu_ms_per_small_push": {k: 1000 * v / pushes for k, v in cpu.items()},
                         "parts_mb_s": bytes_sent / parts_span / MB,
                         "cpu_ms_per_part": {k: 1000 * v * part / bytes_sent for k, v in cpu_parts.items()}})
            print(f"{count} node(s): {rows[-1]['small_pushes_s']:,.0f} small pushes/s "
                  f"({rows[-1]['commits_s']:,.0f} commits/s), {rows[-1]['parts_mb_s']:,.0f} MB/s of parts", flush=True)
    return rows


SERVICES = {"postgresql": "PostgreSQL", "seaweedfs": "SeaweedFS"}


def projection(cpu_small: dict[str, float], cpu_part: dict[str, float], part: int) -> dict[str, Any]:
    """A core of each component divided by its CPU per operation: operations/s per core; the
    shared service with the fewest per core is the one that runs out first as nodes are added,
    at (its rate / a node core's rate) node cores per core of it."""
    out: dict[str, Any] = {}
    for kind, cpu, unit in (("small", cpu_small, 1.0), ("parts", cpu_part, part / MB)):
        rate = {k: unit * 1000 / v for k, v in cpu.items() if v > 0}
        first = min(SERVICES, key=lambda k: rate.get(k, float("inf")))
        out[kind] = {"per_core": rate, "first_to_run_out": first,
                     "node_cores_per_core_of_it": rate.get(first, float("inf")) / rate["node"]}
    return out


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(repeat=3)
    p.add_argument("--size-mib", type=int, default=1024, help="the large layer, MiB (default: 1024)")
    p.add_argument("--part-mib", type=int, default=10, help="part size, MiB (default: 10)")
    p.add_argument("--small", type=int, default=300, help="4 KiB layers (and images) per round (default: 300)")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each multi-node phase (default: 8)")
    p.add_argument("--no-durable", dest="durable", action="store_false",
                   help="commits and files not synced (default: durable, as ecrstore serve runs)")
    args = p.parse_args()
    size, part = args.size_mib << 20, args.part_mib << 20

    info = machine_info()
    print_machine(info)
    print(f"one worker per node; {'durable' if args.durable else 'not durable'}; layer {args.size_mib} MiB in "
          f"{args.part_mib} MiB parts, {args.small} small layers per round; median of {args.repeat} round(s)\n")
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    services = Services()
    try:
        single = one_node(root, services, args, size, part)
        costs = cost_split(root, services, part, min(args.small, 100), 10)
        scaling = many_nodes(root, services, args, part)
        ceiling = services.commit_ceiling(args.seconds)
    finally:
        services.stop()
        shutil.rmtree(root, ignore_errors=True)

    print()
    pairs = list(single["big_mb_s"])
    ref = med(single["s3_reference_mb_s"])
    print_table(["one node", "1 GiB layer MB/s", "vs S3 straight", "4 KiB layers/s", "PutImage/s"], [
        (k, med(single["big_mb_s"][k]), f"{med(single['big_mb_s'][k]) / ref:.2f} x", med(single["layers_s"][k]),
         med(single["images_s"][k])) for k in pairs] + [("botocore multipart -> SeaweedFS", ref, "1.00 x", "", "")]
        + [(f"obstore multipart -> SeaweedFS, {c} part(s) at a time", med(single[f"obstore_{c}_mb_s"]),
            f"{med(single[f'obstore_{c}_mb_s']) / ref:.2f} x", "", "") for c in (1, 4)])
    print_table(["operation (postgresql, s3)", "ms", "SQL statements", "COMMITs", "SQL ms", "S3 requests", "S3 ms",
                 "S3 requests by kind"],
                [(c["operation"], c["wall_ms"], f"{c['statements']:.1f}", f"{c['commits']:.1f}", c["sql_ms"],
                  f"{c['s3_requests']:.1f}", c["s3_ms"],
                  " ".join(f"{k}={v:g}" for k, v in c["s3_by_request"].items())) for c in costs])

    def cpu_of(key: str, name: str) -> dict[str, float]:
        return {k: med([r[k] for r in single[key][name]]) for k in ("node", "postgresql", "seaweedfs")}

    cpu_small, cpu_part = cpu_of("cpu_ms_per_small_push", "postgresql+s3"), cpu_of("cpu_ms_per_part", "postgresql+s3")
    local_small, local_part = cpu_of("cpu_ms_per_small_push", "lmdb+local"), cpu_of("cpu_ms_per_part", "lmdb+local")
    print_table(["CPU ms per operation", "node (pg+s3)", "PostgreSQL", "SeaweedFS", "node (lmdb+local)"], [
        ("a 4 KiB layer pushed and an image put", cpu_small["node"], cpu_small["postgresql"], cpu_small["seaweedfs"],
         local_small["node"]),
        (f"a {args.part_mib} MiB part", cpu_part["node"], cpu_part["postgresql"], cpu_part["seaweedfs"],
         local_part["node"]),
    ])
    print_table(["nodes", "small pushes/s", "PG commits/s", "commits per push", "MB/s of parts"],
                [(r["nodes"], r["small_pushes_s"], r["commits_s"], f"{r['commits_per_push']:.1f}", r["parts_mb_s"])
                 for r in scaling])
    proj = projection(cpu_small, cpu_part, part)
    print(f"PostgreSQL alone (reference): {ceiling:,.0f} durable commits/s from 4 sessions; the nodes "
          f"used {max(r['commits_s'] for r in scaling):,.0f} at most")
    print("projection, per core of each component (its CPU per operation, measured above):")
    for kind, label in (("small", "small pushes/s"), ("parts", f"MB/s in {args.part_mib} MiB parts")):
        rate, first = proj[kind]["per_core"], proj[kind]["first_to_run_out"]
        print(f"  {label}: a node core {rate['node']:,.0f}, " + ", ".join(
            f"a {SERVICES[k]} core {rate.get(k, float('inf')):,.0f}" for k in SERVICES)
            + f": {SERVICES[first]} runs out first, at {proj[kind]['node_cores_per_core_of_it']:.1f} "
            f"node cores per core of it")
    load_after = os.getloadavg()
    print(f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} cores")
    path = write_json("bench_scale", {
        "machine": info,
        "settings": {"size_mib": args.size_mib, "part_mib": args.part_mib, "small": args.small,
                     "seconds": args.seconds, "durable": args.durable, "repeat": args.repeat,
                     "load_average_before_after": [load_before[0], load_after[0]]},
        "one_node": single, "cost_per_operation": costs, "nodes": scaling, "projection": proj,
        "postgresql_durable_commits_s_4_sessions": ceiling,
    })
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
