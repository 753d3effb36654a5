"""OCI registry throughput: ``ecrstore serve``'s ``/v2/`` against docker-registry, in one run.

Debian's ``docker-registry`` (distribution 2.8) and ``ecrstore serve`` are both started by this
benchmark. They listen on 127.0.0.1 and store into a temporary directory:

- ``docker-registry``: filesystem storage, a config file written here, no authentication;
- ``ecrstore serve``: its default (durable) store, authentication on: a credentials file, and
  on ``/v2/`` HTTP Basic with user ``AWS`` and the password GetAuthorizationToken (boto3) hands
  out; each repository is created with boto3's ``create_repository`` before it is pushed to,
  as ECR requires.

Both make a blob durable before acknowledging it: docker-registry's filesystem driver fsyncs the
files it writes, and ecrstore's store is durable by default.

Workloads, all on both servers; the servers alternate run by run (docker-registry, ecrstore,
docker-registry, ecrstore, ...), ``--runs`` runs each:

- push: ``skopeo copy --preserve-digests --dest-tls-verify=false oci:DIR docker://…`` of a 1 GiB
  single-layer image and of a 100 x 1 MiB-layer image;
- pull: the same images back with ``skopeo copy docker://… oci:FRESH_DIR``; afterwards (not
  timed) every blob pulled is checked against the sha256 and size it was pushed with;
- raw PUT: ``POST /v2/NAME/blobs/uploads/`` for a ``Location``, then ``curl -T FILE -X PUT
  'LOCATION?digest=sha256:…'``: a 1 GiB blob in one streamed request, timed, against
  ``hashlib.sha256`` over the same 1 GiB buffer in the same run (and, for scale, the time that
  buffer takes to be written to its file and fdatasync'ed);
- as a reference in each round, ``skopeo copy oci: -> oci:`` of both images on the same disk:
  what the client reaches reading, verifying and writing layouts with no server in the way;
- after the runs, the server's memory while a 4 GiB blob streams in one such PUT: VmRSS summed
  over the server's process tree, sampled every 50 ms, the baseline before and the peak during.

The data is incompressible (PCG64 output), fresh in every round of runs, and the same bytes go to
both servers within a round; each layer is a tar of one random file, stored uncompressed
(``--preserve-digests``: nothing is recompressed). Every push goes to a fresh repository and
every skopeo runs with its own HOME and XDG directories (its blob-info cache lives there), so no
blob is found already present, skipped or mounted.

Figures: wall-clock throughput in decimal MB/s of blob and manifest bytes moved, medians over the
runs; the ecrstore / docker-registry ratio of those medians; the servers' CPU-seconds per GiB
moved (user + system of the server's process tree, from /proc, before and after each workload),
which other load on the machine hardly moves. Every timed workload starts after ``os.sync()``
and right after memory of its footprint was touched (see ``_common.warm_memory``).

Targets: push and pull >= 3 x docker-registry's throughput on both images; raw PUT >= 0.7 x
hashlib's sha256 rate; RSS growth during the 4 GiB PUT <= 50 MiB. A workload that fails (a
client's non-zero exit, an unexpected status, a byte that does not verify, a server gone) is
reported with its command, output and the server's log, and the exit status is 1.

Run: ``python benchmarks/bench_oci.py [--runs 3] [--quick] [--workers N] [--dir DIR]``.
``--quick`` (a smoke run) uses 128 MiB, 20 x 1 MiB, 128 MiB and 512 MiB instead of 1 GiB,
100 x 1 MiB, 1 GiB and 4 GiB. Needs the Debian packages docker-registry, skopeo and curl, and
about 30 GiB free (with less, the sizes are scaled down and the output says so).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import itertools
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MB, machine_info, parser, print_machine, print_table, warm_memory, write_json

MiB, GiB = 2**20, 2**30
REF, ECR = "docker-registry", "ecrstore"
#: command -> the Debian package that installs it
TOOLS = {"docker-registry": "docker-registry", "skopeo": "skopeo", "curl": "curl"}
TAG = "bench"
REGION = "us-east-1"
KEY_ID, SECRET, REGISTRY = "AKIABENCHMARKKEY0000", "benchmark-secret-benchmark-secret-000000", "000000000000"
TARGET_VS_REF = 3.0
TARGET_PUT_VS_HASHLIB = 0.7
TARGET_RSS_GROWTH = 50 * MiB
RSS_INTERVAL = 0.05
CLIENT_TIMEOUT = 1800  # seconds one skopeo or curl may take: a server that hangs fails the run
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
TAR_OVERHEAD = 512 + 1024  # one header block, the two zero blocks that end the archive
#: Log lines of a run that went well, left out of the excerpts a failure shows: docker-registry
#: logs the 404 of every blob a push first asks for as an error; skopeo, told not to verify TLS,
#: tries HTTPS first and both servers log the handshake as a malformed request.
EXPECTED_LOG = ('err.code="blob unknown"', "Invalid HTTP request received", "http: TLS handshake error")
WORKLOADS = ("push_big", "push_many", "pull_big", "pull_many", "put_raw")


@dataclass(frozen=True)
class Sizes:
    big: int  # the single-layer image's layer
    small: int  # each layer of the many-layer image
    layers: int  # how many of those
    raw: int  # the raw PUT's blob
    stream: int  # the blob streamed while the server's memory is sampled

    def round_bytes(self) -> int:
        return self.big + self.small * self.layers + self.raw

    def disk_needed(self, runs: int) -> int:
        """Inputs of one round, both servers' stores after every round, one pull, a margin."""
        stores = 2 * (runs * self.round_bytes() + self.stream)
        return self.round_bytes() + self.stream + stores + self.big + self.small * self.layers + GiB

    def scaled(self, k: int) -> Sizes:
        return replace(self, big=_blocks(self.big // k), raw=_blocks(self.raw // k),
                       stream=_blocks(self.stream // k))


def _blocks(n: int) -> int:
    return max(MiB, n // MiB * MiB)


FULL = Sizes(big=GiB, small=MiB, layers=100, raw=GiB, stream=4 * GiB)
QUICK = Sizes(big=128 * MiB, small=MiB, layers=20, raw=128 * MiB, stream=512 * MiB)


def human(n: int) -> str:
    return f"{n // GiB} GiB" if n % GiB == 0 else f"{n // MiB} MiB"


class Failed(Exception):
    """A workload that did not complete as it should: what went wrong, the command and its output."""

    def __init__(self, what: str, command: list[str] | None = None, output: str = "") -> None:
        super().__init__(what)
        self.what, self.command, self.output = what, command, output


# --- data ------------------------------------------------------------------------------------------


def random_chunks(rng: np.random.PCG64, n: int, chunk: int = 64 * MiB) -> Iterator[np.ndarray]:
    """``n`` incompressible bytes from ``rng``, in chunks."""
    while n > 0:
        k = min(chunk, n)
        yield rng.random_raw(-(-k // 8)).view(np.uint8)[:k]
        n -= k


@dataclass
class Image:
    """An ``oci:`` layout on disk holding one image tagged ``TAG``."""

    layout: Path
    manifest_digest: str
    manifest_size: int
    blobs: dict[str, int]  # config and layers: digest -> size

    @property
    def nbytes(self) -> int:
        return sum(self.blobs.values()) + self.manifest_size


def _put_blob(blobs: Path, data: bytes) -> tuple[str, int]:
    hexdigest = hashlib.sha256(data).hexdigest()
    (blobs / hexdigest).write_bytes(data)
    return "sha256:" + hexdigest, len(data)


def write_layer(blobs: Path, size: int, rng: np.random.PCG64) -> tuple[str, int]:
    """A tar of ``size`` bytes holding one file of random bytes, into ``blobs``; (digest, size)."""
    payload = size - TAR_OVERHEAD
    info = tarfile.TarInfo("data/random.bin")
    info.size, info.mode, info.mtime = payload, 0o644, 0
    h = hashlib.sha256()
    tmp = blobs / ".layer.partial"
    with open(tmp, "wb") as f:
        for piece in itertools.chain([info.tobuf(format=tarfile.USTAR_FORMAT)], random_chunks(rng, payload),
                                     [bytes(-payload % 512 + 1024)]):
            f.write(piece)
            h.update(piece)
    if tmp.stat().st_size != size:
        raise RuntimeError(f"layer of {tmp.stat().st_size} bytes, not {size}")
    tmp.rename(blobs / h.hexdigest())
    return "sha256:" + h.hexdigest(), size


def make_image(layout: Path, layer_sizes: list[int], seed: int) -> Image:
    """An uncompressed OCI image of random layers as an ``oci:`` layout at ``layout``."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    rng = np.random.PCG64(seed)
    layers = []
    for size in layer_sizes:
        digest, n = write_layer(blobs, size, rng)
        layers.append({"mediaType": OCI_LAYER, "digest": digest, "size": n})
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        # The layers are uncompressed: each one's diff id is its digest.
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
    }).encode()
    config_digest, config_size = _put_blob(blobs, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layers,
    }).encode()
    manifest_digest, manifest_size = _put_blob(blobs, manifest)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": TAG}}],
    }))
    sizes = {config_digest: config_size, **{layer["digest"]: layer["size"] for layer in layers}}
    return Image(layout, manifest_digest, manifest_size, sizes)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(8 * MiB)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(memoryview(buf)[:n])
    return "sha256:" + h.hexdigest()


def verify_layout(dest: Path, image: Image) -> None:
    """Raise Failed unless ``dest`` holds ``image``'s manifest and every blob, byte for byte."""
    try:
        index = json.loads((dest / "index.json").read_text())
    except (OSError, ValueError) as e:
        raise Failed(f"pulled layout {dest} has no readable index.json: {e}") from e
    digests = [m.get("digest") for m in index.get("manifests", [])]
    if digests != [image.manifest_digest]:
        raise Failed(f"pulled index.json names manifests {digests}, expected [{image.manifest_digest}]")
    for digest, size in {image.manifest_digest: image.manifest_size, **image.blobs}.items():
        path = dest / "blobs" / "sha256" / digest.removeprefix("sha256:")
        if not path.is_file():
            raise Failed(f"pulled layout lacks blob {digest}")
        if path.stat().st_size != size:
            raise Failed(f"pulled blob {digest} has {path.stat().st_size} bytes, expected {size}")
        got = file_sha256(path)
        if got != digest:
            raise Failed(f"pulled blob {digest} hashes to {got}")


@dataclass
class Blob:
    path: Path
    digest: str
    size: int


def write_blob(path: Path, size: int, seed: int) -> Blob:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for chunk in random_chunks(np.random.PCG64(seed), size):
            f.write(chunk)
            h.update(chunk)
    return Blob(path, "sha256:" + h.hexdigest(), size)


# --- the servers' processes ------------------------------------------------------------------------


def _proc_stat() -> dict[int, list[str]]:
    """Every process's /proc/<pid>/stat fields after the command name, by pid."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    out[int(entry)] = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
    return out


def tree_pids(root: int, stats: dict[int, list[str]] | None = None) -> list[int]:
    """``root`` and all its descendants."""
    stats = _proc_stat() if stats is None else stats
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, ()))
    return pids


def tree_cpu_seconds(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``root``'s process tree, counting its reaped children too
    (a worker that exited moved its time into its parent's cutime/cstime)."""
    stats = _proc_stat()
    pids = [pid for pid in tree_pids(root, stats) if pid in stats]
    user = sum(int(stats[pid][11]) + int(stats[pid][13]) for pid in pids)
    system = sum(int(stats[pid][12]) + int(stats[pid][14]) for pid in pids)
    ticks = os.sysconf("SC_CLK_TCK")
    return user / ticks, system / ticks


def cpu_figures(before: tuple[float, float], after: tuple[float, float], nbytes: int) -> dict[str, float]:
    user, system = after[0] - before[0], after[1] - before[1]
    gib = nbytes / GiB
    return {"cpu_seconds": user + system, "cpu_seconds_per_gib": (user + system) / gib,
            "cpu_user_seconds_per_gib": user / gib, "cpu_system_seconds_per_gib": system / gib}


def rss_of(pids: list[int]) -> tuple[int, int]:
    """(VmRSS, RssAnon) summed over ``pids``, in bytes."""
    rss = anon = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("RssAnon:"):
                        anon += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, anon


class RssSampler(threading.Thread):
    """Samples the RSS of a process tree every ``interval`` seconds until stopped (the tree is
    looked up again every second, so a worker that restarts is followed)."""

    def __init__(self, root: int, interval: float = RSS_INTERVAL) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.samples: list[tuple[float, int, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        pids, looked_up = tree_pids(self.root), time.monotonic()
        while True:
            if time.monotonic() - looked_up > 1.0:
                pids, looked_up = tree_pids(self.root), time.monotonic()
            self.samples.append((time.monotonic(), *rss_of(pids)))
            if self._done.wait(self.interval):
                return

    def stop(self) -> list[tuple[float, int, int]]:
        self._done.set()
        self.join()
        return self.samples


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def version_of(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return (out.stdout or out.stderr).strip().splitlines()[0]


class Server:
    """One server under test: its process (stopped by PID), address, credentials and log."""

    def __init__(self, name: str, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log
        self.host = f"127.0.0.1:{port}"
        self.url = f"http://{self.host}"
        self.password: str | None = None
        self.ecr: Any = None  # boto3's ECR client, for ecrstore

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def creds(self) -> str | None:
        return f"AWS:{self.password}" if self.password is not None else None

    def headers(self) -> dict[str, str]:
        if self.creds is None:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(self.creds.encode()).decode()}

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise Failed(f"{self.name} (pid {self.pid}) exited with status {self.proc.returncode}")

    def create_repository(self, repo: str) -> None:
        if self.ecr is not None:
            self.ecr.create_repository(repositoryName=repo)

    def log_tail(self, lines: int = 40) -> str:
        """The log's last lines, without those every run writes (see ``EXPECTED_LOG``)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        kept = [line for line in text.splitlines() if not any(e in line for e in EXPECTED_LOG)]
        return "\n".join(kept[-lines:])

    def request(self, method: str, path: str,
                headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
        """One request on a connection of its own: the response and its body."""
        conn = http.client.HTTPConnection(self.host, timeout=60)
        try:
            conn.request(method, path, headers={**self.headers(), **(headers or {})})
            resp = conn.getresponse()
            return resp, resp.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _wait_ready(server: Server, ready: Callable[[int], bool]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with status {server.proc.returncode}:\n{server.log_tail()}")
        try:
            conn = http.client.HTTPConnection(server.host, timeout=5)
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
            conn.close()
        except OSError:
            time.sleep(0.2)
            continue
        if ready(status):
            return status
        server.stop()
        raise RuntimeError(f"{server.name} answers GET /v2/ with {status}:\n{server.log_tail()}")
    server.stop()
    raise RuntimeError(f"{server.name} did not answer on {server.host} within 60 s:\n{server.log_tail()}")


def start_registry(root: Path) -> Server:
    """docker-registry with filesystem storage under ``root``, its config written here."""
    root.mkdir()
    port = free_port()
    config = root / "config.yml"
    config.write_text(f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root / "data"}
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {os.urandom(16).hex()}
""")
    log = root / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([shutil.which("docker-registry") or "docker-registry", "serve", str(config)],
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    server = Server(REF, proc, port, log)
    _wait_ready(server, lambda status: status == 200)
    return server


def start_ecrstore(root: Path, workers: int | None) -> Server:
    """``ecrstore serve`` over a default (durable) store under ``root``, authentication on."""
    import boto3
    from botocore.config import Config

    root.mkdir()
    creds = root / "credentials"
    creds.write_text(f"{KEY_ID} {SECRET} {REGISTRY}\n")
    creds.chmod(0o600)  # the server refuses a credentials file others may read
    port = free_port()
    argv = [sys.executable, "-m", "ecrstore.cli", "--log-level", "warning", "serve", "--store", str(root / "store"),
            "--port", str(port), "--credentials", str(creds), "--no-access-log"]
    if workers is not None:
        argv += ["--workers", str(workers)]
    log = root / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    server = Server(ECR, proc, port, log)
    _wait_ready(server, lambda status: status == 401)  # /v2/ is there, and wants a login
    server.ecr = boto3.client("ecr", region_name=REGION, endpoint_url=server.url, aws_access_key_id=KEY_ID,
                              aws_secret_access_key=SECRET,
                              config=Config(retries={"max_attempts": 1}, read_timeout=300, connect_timeout=30))
    login_token(server)
    return server


def login_token(server: Server) -> None:
    """The /v2/ password from GetAuthorizationToken, checked once against ``GET /v2/``."""
    token = server.ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    if user != "AWS" or not password:
        raise RuntimeError(f"GetAuthorizationToken answered a token for user {user!r}")
    server.password = password
    status = server.request("GET", "/v2/")[0].status
    if status != 200:
        server.stop()
        raise RuntimeError(f"{server.name} answers GET /v2/ with the login's password with {status}")


# --- the clients -----------------------------------------------------------------------------------


def run(argv: list[str], env: dict[str, str] | None = None) -> str:
    """Run a client to completion; Failed (with its output) unless it exits 0 within CLIENT_TIMEOUT."""
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, errors="replace",
                              stdin=subprocess.DEVNULL, timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        output = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x for x in (e.stdout, e.stderr) if x)
        raise Failed(f"{Path(argv[0]).name} did not finish within {CLIENT_TIMEOUT} s (killed)", argv, output) from e
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise Failed(f"{Path(argv[0]).name} exited with status {proc.returncode}", argv, output)
    return output


def skopeo_env(home: Path) -> dict[str, str]:
    """A fresh HOME and XDG directories: a blob-info cache (and auth file) of its own."""
    dirs = {"HOME": home, "XDG_CONFIG_HOME": home / ".config", "XDG_DATA_HOME": home / ".local" / "share",
            "XDG_CACHE_HOME": home / ".cache", "XDG_RUNTIME_DIR": home / "run", "TMPDIR": home / "tmp"}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG")}
    return {**env, **{k: str(v) for k, v in dirs.items()}}


def skopeo_copy(server: Server, src: str, dest: str, home: Path, pushing: bool) -> None:
    side = "dest" if pushing else "src"
    argv = [shutil.which("skopeo") or "skopeo", "--insecure-policy", "copy", "--preserve-digests",
            f"--{side}-tls-verify=false"]
    if server.creds is not None:
        argv += [f"--{side}-creds", server.creds]
    run(argv + [src, dest], skopeo_env(home))


def start_upload(server: Server, repo: str) -> str:
    """``POST /v2/<repo>/blobs/uploads/``: the absolute upload URL its ``Location`` names."""
    resp, body = server.request("POST", f"/v2/{repo}/blobs/uploads/", {"Content-Length": "0"})
    location = resp.getheader("Location")
    if resp.status != 202 or not location:
        raise Failed(f"POST /v2/{repo}/blobs/uploads/ answered {resp.status} (Location: {location!r})",
                     output=body.decode(errors="replace")[:2000])
    return urllib.parse.urljoin(server.url + "/", location)


def curl_put(server: Server, location: str, blob: Blob, scratch: Path) -> None:
    """``curl -T FILE -X PUT 'LOCATION?digest=…'``: the whole blob in one streamed request."""
    url = location + ("&" if "?" in location else "?") + "digest=" + blob.digest
    head, body = scratch / "put.headers", scratch / "put.body"
    argv = [shutil.which("curl") or "curl", "-sS", "-o", str(body), "-D", str(head), "-w", "%{http_code}",
            "-H", "Content-Type: application/octet-stream", "-T", str(blob.path), "-X", "PUT"]
    if server.creds is not None:
        argv += ["-u", server.creds]
    status = run(argv + [url])
    if status != "201":
        raise Failed(f"the PUT answered {status}", argv + [url], body.read_text(errors="replace")[:2000])
    headers = {}
    for line in head.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    if headers.get("docker-content-digest") != blob.digest:
        raise Failed(f"the PUT's Docker-Content-Digest is {headers.get('docker-content-digest')!r}, "
                     f"expected {blob.digest}", argv + [url])


def check_blob(server: Server, repo: str, blob: Blob) -> None:
    resp, _ = server.request("HEAD", f"/v2/{repo}/blobs/{blob.digest}")
    length = resp.getheader("Content-Length")
    if resp.status != 200 or length != str(blob.size):
        raise Failed(f"HEAD /v2/{repo}/blobs/{blob.digest} answered {resp.status}, Content-Length {length}")


# --- one run on one server -------------------------------------------------------------------------


def measure(server: Server, nbytes: int, fn: Callable[[], None]) -> dict[str, float]:
    """Time ``fn`` and take the server's CPU time around it; the machine settled first."""
    server.check_alive()
    warm_memory(nbytes + nbytes // 2)
    os.sync()  # no dirty pages of an earlier workload written back during this one
    cpu0, t0 = tree_cpu_seconds(server.pid), time.perf_counter()
    fn()
    seconds, cpu1 = time.perf_counter() - t0, tree_cpu_seconds(server.pid)
    server.check_alive()
    return {"seconds": seconds, "bytes": nbytes, "mb_per_s": nbytes / seconds / MB, **cpu_figures(cpu0, cpu1, nbytes)}


def redact(argv: list[str] | None, server: Server) -> str | None:
    if argv is None:
        return None
    text = shlex.join(argv)
    return text.replace(server.password, "<password>") if server.password else text


def failure(server: Server | None, e: BaseException) -> dict[str, Any]:
    """The record of a failed workload: what went wrong, the command, its output, the server's log."""
    if isinstance(e, Failed):
        what, command, output = e.what, e.command, e.output
    else:
        what, command, output = f"{type(e).__name__}: {e}", None, ""
    if server is None:
        return {"ok": False, "error": what, "command": shlex.join(command) if command else None,
                "output": output[-4000:]}
    if server.password:
        output = output.replace(server.password, "<password>")
    return {"ok": False, "error": what, "command": redact(command, server), "output": output[-4000:],
            "server_log": server.log_tail()}


@dataclass
class Round:
    """One round's data, pushed to both servers."""

    number: int
    big: Image
    many: Image
    raw: Blob
    hashlib_mb_per_s: float
    write_mb_per_s: float  # write + fdatasync of the raw blob's buffer into its file


def make_round(work: Path, sizes: Sizes, number: int) -> Round:
    base = 1000 * (number + 1)
    big = make_image(work / "big", [sizes.big], base + 1)
    many = make_image(work / "many", [sizes.small] * sizes.layers, base + 2)
    words = np.random.PCG64(base + 3).random_raw(sizes.raw // 8)
    buf = words.view(np.uint8)
    t0 = time.perf_counter()
    digest = "sha256:" + hashlib.sha256(buf).hexdigest()
    hash_rate = sizes.raw / (time.perf_counter() - t0) / MB
    path = work / "raw.bin"
    warm_memory(sizes.raw + sizes.raw // 2)
    os.sync()
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        f.write(buf)
        os.fdatasync(f.fileno())
    write_rate = sizes.raw / (time.perf_counter() - t0) / MB
    del words, buf
    return Round(number, big, many, Blob(path, digest, sizes.raw), hash_rate, write_rate)


def run_side(server: Server, rnd: Round, work: Path, runs: int) -> dict[str, dict[str, Any]]:
    """Every workload once on ``server`` with ``rnd``'s data; one result (or failure) each."""
    out: dict[str, dict[str, Any]] = {}
    repos = {"big": f"bench/big-{rnd.number}", "many": f"bench/many-{rnd.number}", "raw": f"bench/raw-{rnd.number}"}
    images = {"big": rnd.big, "many": rnd.many}

    def attempt(key: str, nbytes: int, fn: Callable[[], None], after: Callable[[], None] | None = None,
                before: Callable[[], None] | None = None) -> None:
        """``before`` (untimed), ``fn`` (timed), ``after`` (untimed: the checks)."""
        try:
            if before is not None:
                before()
            result = measure(server, nbytes, fn)
            if after is not None:
                after()
            out[key] = {"ok": True, **result}
            print(f"run {rnd.number + 1}/{runs}  {server.name:<15}  {key:<9}  {result['mb_per_s']:8,.0f} MB/s  "
                  f"{result['seconds']:7.2f} s  server {result['cpu_seconds_per_gib']:6.2f} CPU-s/GiB", flush=True)
        except Exception as e:
            out[key] = failure(server, e)
            print(f"run {rnd.number + 1}/{runs}  {server.name:<15}  {key:<9}  FAILED: {out[key]['error']}", flush=True)

    try:
        if server.ecr is not None:
            login_token(server)
        for repo in repos.values():
            server.create_repository(repo)
    except Exception as e:
        record = failure(server, e)
        print(f"run {rnd.number + 1}/{runs}  {server.name:<15}  FAILED before the workloads: {record['error']}")
        return {key: record for key in WORKLOADS}
    for kind, image in images.items():
        home = work / f"home-{server.name}-push-{kind}"
        attempt(f"push_{kind}", image.nbytes,
                lambda image=image, kind=kind, home=home: skopeo_copy(
                    server, f"oci:{image.layout}:{TAG}", f"docker://{server.host}/{repos[kind]}:{TAG}", home, True))
        shutil.rmtree(home, ignore_errors=True)
    for kind, image in images.items():
        key = f"pull_{kind}"
        if not out[f"push_{kind}"]["ok"]:
            out[key] = {"ok": False, "error": f"not run: its push failed ({out[f'push_{kind}']['error']})"}
            continue
        home, dest = work / f"home-{server.name}-pull-{kind}", work / f"pulled-{server.name}-{kind}"
        attempt(key, image.nbytes,
                lambda image=image, kind=kind, home=home, dest=dest: skopeo_copy(
                    server, f"docker://{server.host}/{repos[kind]}:{TAG}", f"oci:{dest}:{TAG}", home, False),
                after=lambda image=image, dest=dest: verify_layout(dest, image))
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)

    location: list[str] = []
    attempt("put_raw", rnd.raw.size, lambda: curl_put(server, location[0], rnd.raw, work),
            before=lambda: location.append(start_upload(server, repos["raw"])),
            after=lambda: check_blob(server, repos["raw"], rnd.raw))
    return out


def client_alone(image: Image, work: Path, kind: str) -> dict[str, Any]:
    """``skopeo copy oci: -> oci:`` on the same disk: what the client reaches with no server."""
    home, dest = work / f"home-local-{kind}", work / f"local-{kind}"
    argv = [shutil.which("skopeo") or "skopeo", "--insecure-policy", "copy", "--preserve-digests",
            f"oci:{image.layout}:{TAG}", f"oci:{dest}:{TAG}"]
    try:
        warm_memory(image.nbytes + image.nbytes // 2)
        os.sync()
        t0 = time.perf_counter()
        run(argv, skopeo_env(home))
        seconds = time.perf_counter() - t0
        verify_layout(dest, image)
    except Exception as e:
        return failure(None, e)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)
    return {"ok": True, "seconds": seconds, "bytes": image.nbytes, "mb_per_s": image.nbytes / seconds / MB}


def stream_rss(server: Server, blob: Blob, work: Path) -> dict[str, Any]:
    """One PUT of ``blob`` while the server tree's RSS is sampled; baseline before, peak during."""
    repo = "bench/stream"
    try:
        if server.ecr is not None:
            login_token(server)
        server.create_repository(repo)
        server.check_alive()
        warm_memory(blob.size + blob.size // 2)
        os.sync()
        location = start_upload(server, repo)
        before = RssSampler(server.pid)
        before.start()
        time.sleep(10 * RSS_INTERVAL)
        baseline = before.stop()
        sampler = RssSampler(server.pid)
        cpu0, t0 = tree_cpu_seconds(server.pid), time.perf_counter()
        sampler.start()
        try:
            curl_put(server, location, blob, work)
        finally:
            samples = sampler.stop()
        seconds, cpu1 = time.perf_counter() - t0, tree_cpu_seconds(server.pid)
        server.check_alive()
        check_blob(server, repo, blob)
    except Exception as e:
        return failure(server, e)
    base_rss = statistics.median(s[1] for s in baseline)
    base_anon = statistics.median(s[2] for s in baseline)
    peak_rss, peak_anon = max(s[1] for s in samples), max(s[2] for s in samples)
    return {"ok": True, "bytes": blob.size, "seconds": seconds, "mb_per_s": blob.size / seconds / MB,
            **cpu_figures(cpu0, cpu1, blob.size), "samples": len(samples),
            "baseline_rss_mib": base_rss / MiB, "peak_rss_mib": peak_rss / MiB,
            "growth_rss_mib": (peak_rss - base_rss) / MiB,
            "baseline_anon_mib": base_anon / MiB, "peak_anon_mib": peak_anon / MiB,
            "growth_anon_mib": (peak_anon - base_anon) / MiB}


# --- report ----------------------------------------------------------------------------------------


def medians(records: list[dict[str, Any]]) -> dict[str, float] | None:
    ok = [r for r in records if r["ok"]]
    if not ok:
        return None
    keys = ("mb_per_s", "seconds", "cpu_seconds_per_gib", "cpu_user_seconds_per_gib", "cpu_system_seconds_per_gib")
    return {k: statistics.median(r[k] for r in ok) for k in keys if k in ok[0]}


def cpu_cell(m: dict[str, float] | None) -> str:
    if not m:
        return ""
    return (f"{m['cpu_seconds_per_gib']:.2f} (u {m['cpu_user_seconds_per_gib']:.2f}, "
            f"s {m['cpu_system_seconds_per_gib']:.2f})")


def verdict(value: float | None, target: float, complete: bool) -> str:
    if value is None or not complete:
        return "n/a (failed runs)"
    return "met" if value >= target else "MISSED"


def choose_sizes(sizes: Sizes, runs: int, root: Path) -> tuple[Sizes, int, str | None]:
    """``sizes``, divided by a power of two if ``root``'s file system lacks room for them:
    (sizes, divisor, the message saying so). SystemExit if even 1/64 does not fit."""
    free, scale = shutil.disk_usage(root).free, 1
    while sizes.scaled(scale).disk_needed(runs) > free and scale < 64:
        scale *= 2
    if scale == 1:
        return sizes, 1, None
    scaled = sizes.scaled(scale)
    if scaled.disk_needed(runs) > free:
        raise SystemExit(f"not enough disk in {root}: {free / GiB:.1f} GiB free, {scaled.disk_needed(runs) / GiB:.1f}"
                         " GiB needed even with the large blobs divided by 64")
    return scaled, scale, (f"SCALED DOWN: {free / GiB:.1f} GiB free in {root}, the full sizes need "
                           f"{sizes.disk_needed(runs) / GiB:.1f} GiB; large blobs divided by {scale}")


def collect(root: Path, sizes: Sizes, runs: int, workers: int | None) -> dict[str, Any]:
    """Start both servers, run every round and the stream, stop the servers."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {name: {k: [] for k in WORKLOADS} for name in (REF, ECR)}
    hashlib_rates: list[float] = []
    write_rates: list[float] = []
    stream: dict[str, dict[str, Any]] = {}
    alone: dict[str, list[dict[str, Any]]] = {"big": [], "many": []}
    servers: dict[str, Server] = {}
    work = root / "work"
    try:
        servers[REF] = start_registry(root / "registry")
        servers[ECR] = start_ecrstore(root / "ecrstore", workers)
        for r in range(runs):
            work.mkdir()
            t0 = time.perf_counter()
            rnd = make_round(work, sizes, r)
            hashlib_rates.append(rnd.hashlib_mb_per_s)
            write_rates.append(rnd.write_mb_per_s)
            print(f"round {r + 1}: data generated in {time.perf_counter() - t0:.1f} s; the {human(sizes.raw)} "
                  f"buffer: hashlib sha256 {rnd.hashlib_mb_per_s:,.0f} MB/s, write + fdatasync "
                  f"{rnd.write_mb_per_s:,.0f} MB/s", flush=True)
            for kind, image in (("big", rnd.big), ("many", rnd.many)):
                record = client_alone(image, work, kind)
                alone[kind].append({"run": r + 1, **record})
                print(f"run {r + 1}/{runs}  {'skopeo alone':<15}  {kind:<9}  " + (
                    f"{record['mb_per_s']:8,.0f} MB/s  {record['seconds']:7.2f} s" if record["ok"]
                    else f"FAILED: {record['error']}"), flush=True)
            for name in (REF, ECR):
                for key, record in run_side(servers[name], rnd, work, runs).items():
                    results[name][key].append({"run": r + 1, **record})
            shutil.rmtree(work)
        work.mkdir()
        blob = write_blob(work / "stream.bin", sizes.stream, 99)
        for name in (REF, ECR):
            s = stream[name] = stream_rss(servers[name], blob, work)
            if s["ok"]:
                print(f"stream {name:<15}  {human(sizes.stream)} PUT {s['mb_per_s']:,.0f} MB/s; RSS "
                      f"{s['baseline_rss_mib']:.1f} MiB before, {s['peak_rss_mib']:.1f} MiB peak "
                      f"({s['samples']} samples)", flush=True)
            else:
                print(f"stream {name:<15}  FAILED: {s['error']}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    return {"runs": results, "hashlib_mb_per_s": hashlib_rates, "write_fdatasync_mb_per_s": write_rates,
            "skopeo_oci_to_oci": alone, "stream": stream}


def report(data: dict[str, Any], sizes: Sizes, runs: int) -> dict[str, Any]:
    """Print the tables; answer the medians, ratios and verdicts for the results file."""
    results, stream = data["runs"], data["stream"]
    images = {"big": f"{human(sizes.big)} single-layer image",
              "many": f"{sizes.layers} x {human(sizes.small)}-layer image"}
    labels = {**{f"{verb}_{kind}": f"{verb}, {text}" for verb in ("push", "pull") for kind, text in images.items()},
              "put_raw": f"raw PUT (curl -T), {human(sizes.raw)} blob"}
    med = {name: {k: medians(v) for k, v in per.items()} for name, per in results.items()}
    complete = {k: all(r["ok"] for name in results for r in results[name][k]) for k in WORKLOADS}
    hashlib_med = statistics.median(data["hashlib_mb_per_s"])
    write_med = statistics.median(data["write_fdatasync_mb_per_s"])
    ratios: dict[str, float | None] = {}
    verdicts: dict[str, str] = {}
    rows = []
    for key in WORKLOADS:
        ref, ecr = med[REF][key], med[ECR][key]
        ratio = ratios[key] = ecr["mb_per_s"] / ref["mb_per_s"] if ref and ecr else None
        if key == "put_raw":
            vs_hashlib = ratios["put_raw_vs_hashlib"] = ecr["mb_per_s"] / hashlib_med if ecr else None
            verdicts[key] = verdict(vs_hashlib, TARGET_PUT_VS_HASHLIB, complete[key])
            target = f">= {TARGET_PUT_VS_HASHLIB} x hashlib: " + (f"{vs_hashlib:.2f} x " if vs_hashlib else "")
        else:
            verdicts[key] = verdict(ratio, TARGET_VS_REF, complete[key])
            target = f">= {TARGET_VS_REF:g} x ref: "
        ok = "/".join(str(sum(r["ok"] for r in results[name][key])) for name in (REF, ECR))
        rows.append((labels[key], ref["mb_per_s"] if ref else "FAILED", ecr["mb_per_s"] if ecr else "FAILED",
                     f"{ratio:.2f}" if ratio else "", target + verdicts[key],
                     cpu_cell(ref), cpu_cell(ecr), f"{ok} of {runs}"))
    print()
    print(f"medians of {runs} run(s) on each server; MB/s = 10^6 bytes/s of blobs and manifests moved; "
          "CPU-s/GiB: user + system of the server's process tree (medians of each)")
    print_table(("workload", "docker-registry MB/s", "ecrstore MB/s", "ecrstore/ref", "target",
                 "ref CPU-s/GiB", "ecrstore CPU-s/GiB", "runs ok ref/ecr"), rows)
    alone = {kind: medians(v) for kind, v in data["skopeo_oci_to_oci"].items()}
    print("references measured in the same run:")
    print_table(("reference", "MB/s"), [
        (f"hashlib sha256 over the {human(sizes.raw)} buffer", hashlib_med),
        ("write + fdatasync of that buffer to a file on the same disk", write_med),
        *((f"skopeo copy oci: -> oci:, {images[kind]} (no server)",
           m["mb_per_s"] if m else "FAILED") for kind, m in alone.items()),
    ])
    srows = []
    for name in (REF, ECR):
        s = stream[name]
        target = ""
        if name == ECR:
            growth = s["growth_rss_mib"] * MiB if s["ok"] else None
            verdicts["stream_rss"] = "n/a (failed)" if growth is None else (
                "met" if growth <= TARGET_RSS_GROWTH else "MISSED")
            target = f"<= {TARGET_RSS_GROWTH // MiB} MiB: {verdicts['stream_rss']}"
        if s["ok"]:
            srows.append((name, s["mb_per_s"], cpu_cell(s), f"{s['baseline_rss_mib']:.1f}",
                          f"{s['peak_rss_mib']:.1f}", f"{s['growth_rss_mib']:.1f}", f"{s['growth_anon_mib']:.1f}",
                          target))
        else:
            srows.append((name, "FAILED", "", "", "", "", "", target))
    print(f"one {human(sizes.stream)} blob in one PUT (curl -T); VmRSS of the server's process tree every "
          f"{RSS_INTERVAL * 1000:.0f} ms: median before, peak during")
    print_table(("server", "MB/s", "CPU-s/GiB", "RSS before MiB", "RSS peak MiB", "growth MiB",
                 "anon growth MiB", "target"), srows)
    return {"medians": med, "hashlib_median_mb_per_s": hashlib_med,
            "write_fdatasync_median_mb_per_s": write_med, "skopeo_oci_to_oci_medians": alone,
            "ratios_ecrstore_vs_ref": ratios,
            "verdicts": verdicts}


def print_failures(data: dict[str, Any]) -> int:
    """List every failed workload run with its details on stderr; answer how many."""
    failures = [(name, key, r) for name, per in data["runs"].items() for key in WORKLOADS for r in per[key]
                if not r["ok"]]
    failures += [("skopeo oci: -> oci:", kind, r) for kind, v in data["skopeo_oci_to_oci"].items() for r in v
                 if not r["ok"]]
    failures += [(name, "stream", s) for name, s in data["stream"].items() if not s["ok"]]
    if failures:
        print(f"\n{len(failures)} FAILED workload run(s):", file=sys.stderr)
    for name, key, r in failures:
        run_no = f" run {r['run']}" if "run" in r else ""
        print(f"--- {name} {key}{run_no}: {r['error']}", file=sys.stderr)
        for field, title in (("command", "command: "), ("output", "output:\n"),
                             ("server_log", "server log (last lines):\n")):
            if r.get(field):
                print(title + r[field], file=sys.stderr)
    return len(failures)


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(repeat=3)
    p.add_argument("--runs", dest="repeat", type=int, metavar="N",
                   help="runs on each server (default: 3; same as --repeat)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--workers", type=int, default=None, help="ecrstore serve's workers (default: serve's own)")
    p.add_argument("--dir", default=None, help="where to work (default: a temporary directory)")
    args = p.parse_args()
    runs = args.repeat
    if runs < 1:
        p.error("--runs must be at least 1")
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (Debian package '{package}'): this benchmark needs it", file=sys.stderr)
            return 1

    info = machine_info()
    print_machine(info)
    versions = {tool: version_of([tool, "--version"]) for tool in TOOLS}
    print(f"ecrstore serve (/v2/, default durable store, Basic auth, workers: {args.workers or 'default'}) "
          f"against {versions['docker-registry']} (filesystem storage, no auth)")
    print(f"clients: {versions['skopeo']}; {versions['curl']}")
    if args.quick:
        print("--quick: smaller sizes, a smoke run")
    if runs < 3:
        print(f"note: {runs} run(s) on each server; medians of fewer than 3 say little")
    root = Path(tempfile.mkdtemp(prefix="ecrstore-bench-oci-", dir=args.dir))
    try:
        sizes, scale, scaled_note = choose_sizes(QUICK if args.quick else FULL, runs, root)
        if scaled_note:
            print(scaled_note)
        print(f"{runs} run(s) on each server, alternating; then one PUT of {human(sizes.stream)}\n")
        load_before = os.getloadavg()
        data = collect(root, sizes, runs, args.workers)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    summary = report(data, sizes, runs)
    if scaled_note:
        print(scaled_note)
    print(f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} on {os.cpu_count()} cores")
    failed = print_failures(data)
    path = write_json("bench_oci", {
        "machine": info,
        "compared": {"reference": versions["docker-registry"] + " (filesystem storage, no auth)",
                     "ecrstore": "ecrstore serve /v2/ (default durable store, Basic auth from GetAuthorizationToken)",
                     "clients": [versions["skopeo"], versions["curl"]]},
        "settings": {"runs": runs, "quick": args.quick, "workers": args.workers, "sizes": vars(sizes),
                     "scaled_down_by": scale, "scaled_note": scaled_note,
                     "load_average_before_after": [load_before[0], load_after[0]]},
        **summary,
        "targets": {"vs_ref": TARGET_VS_REF, "put_vs_hashlib": TARGET_PUT_VS_HASHLIB,
                    "rss_growth_mib": TARGET_RSS_GROWTH / MiB},
        **data,
        "failed": failed,
    })
    print(f"results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
