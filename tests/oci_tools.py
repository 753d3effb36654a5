"""Real OCI clients and the daemons they need, for tests/test_oci_clients.py.

Owns: the registry the clients talk to (``ecrstore serve``, whose /v2/ API shares the port of
the JSON API, or Debian's docker-registry as a reference), the AWS CLI's login password,
dockerd and containerd started in temporary directories and stopped by PID, the isolated
environments podman, buildah and skopeo run in, a direct /v2/ reader for byte checks, and the
image sources the tests push (built by transfer_util).

Every subprocess is bounded by a timeout. A missing tool fails the test with the Debian package
that provides it. Nothing outside the temporary directories is written, with one exception: as
root, containers/image keeps its blob-info cache in /var/lib/containers/cache whatever HOME
says, so podman, buildah and skopeo run in a private mount namespace where a directory of the
test session is bind-mounted there (the empty mount point is created once).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import dataclasses
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from server_fixtures import KEY_A, ServerProcess, free_port, repo_name, start_server
from transfer_util import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, require_tool

#: Debian's docker client; /usr/local/bin may hold another one earlier on PATH.
DOCKER_CLIENT = "/usr/bin/docker"
#: What a pull accepts, so a registry answers with the manifest as it was pushed.
MANIFEST_ACCEPT = ", ".join([
    OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, "application/vnd.docker.distribution.manifest.list.v2+json",
])
#: Where containers/image keeps its blob-info cache when it runs as root.
SYSTEM_BLOB_INFO_CACHE = Path("/var/lib/containers/cache")
TIMEOUT = 120.0
DAEMON_START_TIMEOUT = 30.0
#: The registry kinds :func:`start_registry` knows.
REGISTRY_KINDS = ("ecrstore", "distribution")


def require(name: str) -> str:
    """The program's path (Debian's docker client for ``docker``); fails, naming its package."""
    return require_tool(name, DOCKER_CLIENT if name == "docker" else None)


def clean_environment(**extra: str) -> dict[str, str]:
    """The test process's environment without proxies, AWS or client settings, plus ``extra``."""
    dropped = ("AWS_", "DOCKER_", "CONTAINERD_", "REGISTRY_AUTH_FILE", "CONTAINERS_", "XDG_", "BUILDAH_")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(dropped) and "proxy" not in k.lower()}
    env.update(extra)
    return env


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, input: bytes | str | None = None,
        timeout: float = TIMEOUT, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a program to completion (text output); with ``check`` a failure shows its output."""
    argv = [str(a) for a in argv]
    data = input.encode() if isinstance(input, str) else input
    try:
        done = subprocess.run(argv, env=env, input=data, capture_output=True, timeout=timeout, cwd=cwd,
                              stdin=None if data is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(argv)} did not finish within {timeout}s:\n"
                             f"{(e.stderr or b'').decode(errors='replace')}") from e
    out = subprocess.CompletedProcess(argv, done.returncode, done.stdout.decode(errors="replace"),
                                      done.stderr.decode(errors="replace"))
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def start_daemon(argv: Sequence[str], log_path: Path) -> subprocess.Popen:
    """Start a daemon in a session of its own, its output to ``log_path``. It gets SIGTERM if
    the test process dies without stopping it (PR_SET_PDEATHSIG), so no daemon outlives a
    killed test run."""
    def die_with_parent() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    with open(log_path, "wb") as log:
        return subprocess.Popen([str(a) for a in argv], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=clean_environment(), start_new_session=True,
                                preexec_fn=die_with_parent)


def stop_process(process: subprocess.Popen, *, grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaps the process."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def kill_orphan(pid_file: Path, marker: str) -> None:
    """Kill the process named in ``pid_file`` if it still runs and its command line has ``marker``
    (a daemon's child left behind when its parent was killed)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return
    if not is_running(pid) or marker not in cmdline:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    prefix = str(root.resolve())
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


def short_tempdir(prefix: str) -> Path:
    """A new directory directly under /tmp: daemons put unix sockets below their directories,
    and a socket's path may not exceed 104 bytes, which pytest's temporary paths can."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def remove_tree(root: Path) -> None:
    """Delete a daemon's directory once nothing is mounted below it any more."""
    unmount_under(root)
    assert mounts_under(root) == [], f"still mounted below {root}: {mounts_under(root)}"
    shutil.rmtree(root, ignore_errors=True)


def unmount_under(root: Path) -> None:
    """Lazily unmount whatever a killed daemon left mounted below ``root``."""
    for point in mounts_under(root):
        run([require("umount"), "-l", point], check=False, timeout=30)


def wait_for(what: str, ready, *, timeout: float = DAEMON_START_TIMEOUT, process: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
    """Poll ``ready()`` until it is true; fail with the daemon's log when it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{read_log(log)}")
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} was not ready within {timeout}s:\n{read_log(log)}")


def read_log(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(errors="replace")[-20000:]
    except OSError:
        return ""


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def gunzip(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def tar_files(data: bytes) -> dict[str, bytes]:
    """The regular files of a (possibly gzipped) layer, by name."""
    with tarfile.open(fileobj=io.BytesIO(gunzip(data))) as tf:
        return {m.name.lstrip("./"): tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


# --- the registry -----------------------------------------------------------------------------


@dataclasses.dataclass
class Registry:
    """A registry on 127.0.0.1 the clients push to: ``ecrstore serve`` or docker-registry.

    ``password(key)`` is what ``aws ecr get-login-password`` prints for the key (docker-registry
    takes no credentials, so any password logs in). ``new_repository`` creates the repository
    first where the registry wants that (ECR does). ``get`` reads /v2/ directly, for byte checks.
    """

    kind: str
    port: int
    workdir: Path
    process: subprocess.Popen
    log_path: Path
    server: ServerProcess | None = None
    _passwords: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}"

    @property
    def is_ecrstore(self) -> bool:
        return self.kind == "ecrstore"

    def log(self) -> str:
        return read_log(self.log_path)

    def require_ecr(self) -> None:
        """Skip a test of the ECR JSON API or of credentials when the registry has neither."""
        if not self.is_ecrstore:
            pytest.skip(f"{self.kind} has no ECR JSON API and no credentials")

    def ecr(self, key: tuple[str, str, str] = KEY_A) -> Any:
        """A boto3 ECR client signing with ``key``."""
        self.require_ecr()
        return self.server.client(key)

    def password(self, key: tuple[str, str, str] = KEY_A) -> str:
        """The registry password for ``key``, from ``aws ecr get-login-password`` (cached)."""
        if not self.is_ecrstore:
            return "unused-password"
        if key[0] not in self._passwords:
            env = aws_environment(self.workdir, key)
            done = run([aws_executable(), "ecr", "get-login-password", "--region", "us-east-1",
                        "--endpoint-url", self.endpoint], env=env)
            password = done.stdout.strip()
            assert password and "\n" not in password, done
            self._passwords[key[0]] = password
        return self._passwords[key[0]]

    def creds(self, key: tuple[str, str, str] = KEY_A) -> str:
        """``AWS:<password>``, as skopeo's --creds and ctr's --user take it."""
        return f"AWS:{self.password(key)}"

    def new_repository(self, prefix: str, key: tuple[str, str, str] = KEY_A) -> str:
        """A fresh repository name, created first when the registry is ecrstore."""
        name = repo_name(prefix)
        if self.is_ecrstore:
            self.server.client(key).create_repository(repositoryName=name)
        return name

    def get(self, path: str, *, key: tuple[str, str, str] | None = KEY_A, method: str = "GET",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request to the registry: (status, lower-cased headers, body)."""
        hdrs = dict(headers or {})
        if key is not None and self.is_ecrstore:
            hdrs["Authorization"] = "Basic " + base64.b64encode(self.creds(key).encode()).decode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, headers=hdrs)
            response = conn.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def manifest(self, repo: str, reference: str, key: tuple[str, str, str] = KEY_A) -> bytes:
        """The manifest as stored; its digest header must name its bytes."""
        status, headers, body = self.get(f"/v2/{repo}/manifests/{reference}", key=key,
                                         headers={"Accept": MANIFEST_ACCEPT})
        assert status == 200, (status, body[:500])
        assert headers.get("docker-content-digest") == sha256(body), headers
        return body

    def blob(self, repo: str, digest: str, key: tuple[str, str, str] = KEY_A) -> bytes:
        """A blob's bytes, checked against its digest."""
        status, _, body = self.get(f"/v2/{repo}/blobs/{digest}", key=key)
        assert status == 200, (status, body[:500])
        assert sha256(body) == digest
        return body

    def has_blob(self, repo: str, digest: str, key: tuple[str, str, str] = KEY_A) -> bool:
        status, _, _ = self.get(f"/v2/{repo}/blobs/{digest}", key=key, method="HEAD")
        assert status in (200, 404), status
        return status == 200

    def tags(self, repo: str, key: tuple[str, str, str] = KEY_A) -> list[str]:
        status, _, body = self.get(f"/v2/{repo}/tags/list", key=key)
        assert status == 200, (status, body[:500])
        return sorted(json.loads(body).get("tags") or [])

    def image_digests(self, repo: str, key: tuple[str, str, str] = KEY_A) -> set[str]:
        """The digests of the images in ``repo`` as the JSON API lists them (ecrstore only)."""
        pages = self.ecr(key).get_paginator("list_images").paginate(repositoryName=repo)
        return {i["imageDigest"] for page in pages for i in page["imageIds"]}

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        else:
            stop_process(self.process)


def aws_executable() -> str:
    """The AWS CLI of this interpreter's environment (the awscli test extra); fails when missing."""
    candidate = Path(sys.executable).parent / "aws"
    path = str(candidate) if candidate.exists() else shutil.which("aws")
    if path is None:
        pytest.fail("the AWS CLI is not installed: it comes with the test extra (pip install awscli)")
    return path


def aws_environment(workdir: Path, key: tuple[str, str, str]) -> dict[str, str]:
    """The AWS CLI's environment for ``key``: no config or credentials files of the user."""
    return clean_environment(
        AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1], AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(workdir / "no-aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(workdir / "no-aws-credentials"),
        AWS_PAGER="", HOME=str(workdir))


def start_distribution(workdir: Path) -> Registry:
    """Debian's docker-registry (distribution 2.8) on a free port, storing under ``workdir``."""
    binary = require("docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a free port can be taken between choosing and binding it
        port = free_port()
        config = workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n")
        log_path = workdir / f"registry-{port}.log"
        process = start_daemon([binary, "serve", config], log_path)
        registry = Registry("distribution", port, workdir, process, log_path)

        try:
            wait_for("docker-registry", lambda reg=registry: reg.get("/v2/", key=None)[0] == 200,
                     process=process, log=log_path)
            return registry
        except RuntimeError:
            stop_process(process)
            if "address already in use" not in registry.log():
                raise
    raise RuntimeError("could not start docker-registry on a free port")


def start_ecrstore(workdir: Path, keys: list[tuple[str, str, str]]) -> Registry:
    """``ecrstore serve`` (server_fixtures.start_server) with credentials for ``keys``."""
    server = start_server(workdir, keys=keys)
    return Registry("ecrstore", server.port, workdir, server.process, server.log_path, server)


def start_registry(kind: str, workdir: Path, keys: list[tuple[str, str, str]]) -> Registry:
    if kind not in REGISTRY_KINDS:
        raise ValueError(f"unknown registry kind {kind!r}: one of {', '.join(REGISTRY_KINDS)}")
    return start_ecrstore(workdir, keys) if kind == "ecrstore" else start_distribution(workdir)


# --- dockerd ----------------------------------------------------------------------------------


def unix_http_ok(sock: Path, path: str) -> bool:
    """Whether an HTTP GET of ``path`` over the unix socket ``sock`` answers 200."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(str(sock))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        return s.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))


@dataclasses.dataclass
class DockerDaemon:
    """A dockerd of its own (vfs storage, no networking set-up) and a docker client config dir.

    127.0.0.0/8 registries are insecure for dockerd by default, so plain http works."""

    root: Path
    process: subprocess.Popen
    log_path: Path

    @property
    def socket(self) -> Path:
        return self.root / "sock"

    @property
    def env(self) -> dict[str, str]:
        return clean_environment(DOCKER_HOST=f"unix://{self.socket}", DOCKER_CONFIG=str(self.root / "config"),
                                 HOME=str(self.root / "home"))

    @classmethod
    def start(cls) -> DockerDaemon:
        """Start a dockerd in a new directory under /tmp and wait until it answers /_ping."""
        binary = require("dockerd")
        require("docker")
        root = short_tempdir("dockerd-")
        for sub in ("config", "home"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "daemon.json").write_text("{}")
        log_path = root / "dockerd.log"
        argv = [binary, "--config-file", str(root / "daemon.json"), "--host", f"unix://{root / 'sock'}",
                "--data-root", str(root / "data"), "--exec-root", str(root / "exec"), "--pidfile", str(root / "pid"),
                "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs"]
        process = start_daemon(argv, log_path)
        daemon = cls(root, process, log_path)
        try:
            wait_for("dockerd", lambda: unix_http_ok(daemon.socket, "/_ping"), process=process, log=log_path)
        except RuntimeError:
            daemon.stop()
            raise
        return daemon

    def __call__(self, *args: str, input: str | None = None, check: bool = True,
                 timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        """Run the docker client against this daemon."""
        return run([DOCKER_CLIENT, *args], env=self.env, input=input, check=check, timeout=timeout)

    def stop(self, *, grace: float = 20.0) -> None:
        """Stop dockerd by PID (SIGTERM, then SIGKILL), kill the containerd it started if it was
        left behind, unmount what a killed dockerd leaves mounted (its data root) and delete
        its directory."""
        stop_process(self.process, grace=grace)
        kill_orphan(self.root / "exec" / "containerd" / "containerd.pid", str(self.root))
        remove_tree(self.root)


# --- containerd -------------------------------------------------------------------------------


@dataclasses.dataclass
class Containerd:
    """A containerd of its own (no CRI plugin, its own root, state, socket and opt dir) and
    ``ctr`` against it in the namespace ``test``."""

    root: Path
    process: subprocess.Popen
    log_path: Path

    @property
    def socket(self) -> Path:
        return self.root / "containerd.sock"

    @classmethod
    def start(cls) -> Containerd:
        """Start a containerd in a new directory under /tmp and wait until ``ctr version`` answers."""
        binary = require("containerd")
        require("ctr")
        root = short_tempdir("containerd-")
        config = root / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{root / "root"}"\n'
            f'state = "{root / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{root / "containerd.sock"}"\n'
            f'[ttrpc]\n  address = "{root / "containerd.sock.ttrpc"}"\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{root / "opt"}"\n')
        log_path = root / "containerd.log"
        process = start_daemon([binary, "--config", config], log_path)
        daemon = cls(root, process, log_path)

        def answers() -> bool:
            return daemon.socket.exists() and daemon("version", check=False, timeout=10).returncode == 0

        try:
            wait_for("containerd", answers, process=process, log=log_path)
        except RuntimeError:
            daemon.stop()
            raise
        return daemon

    def __call__(self, *args: str, check: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        """Run ``ctr -a <socket> -n test ...``."""
        return run([require("ctr"), "-a", self.socket, "-n", "test", *args],
                   env=clean_environment(HOME=str(self.root)), check=check, timeout=timeout)

    def content(self, digest: str) -> bytes:
        """A blob of containerd's content store, checked against its digest."""
        done = subprocess.run([require("ctr"), "-a", str(self.socket), "-n", "test", "content", "get", digest],
                              capture_output=True, timeout=TIMEOUT, env=clean_environment(HOME=str(self.root)))
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        assert sha256(done.stdout) == digest
        return done.stdout

    def stop(self) -> None:
        stop_process(self.process)
        remove_tree(self.root)


# --- podman, buildah and skopeo ---------------------------------------------------------------


@dataclasses.dataclass
class ContainersEnv:
    """An isolated home for the containers/image tools (podman, buildah, skopeo).

    HOME and the XDG directories point into ``root``; REGISTRY_AUTH_FILE is an existing file
    there; registries.conf names no search registries, containers.conf is empty and
    storage.conf names storage under ``root`` with the vfs driver (the machine's own files are
    not read), which podman and buildah are also given as flags. The blob-info cache, which
    remembers which repositories hold a blob and so drives cross-repository mounts, is
    ``root/cache``: as root it is bind-mounted over /var/lib/containers/cache in a private
    mount namespace for each command. Two commands in one ContainersEnv share that cache, as
    one user's runs do.
    """

    root: Path

    @classmethod
    def create(cls, root: Path) -> ContainersEnv:
        for sub in ("home", "config", "data", "cache-home", "runtime", "cache", "storage", "runroot", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "runtime").chmod(0o700)
        (root / "auth.json").write_text("{}")
        (root / "containers.conf").write_text("")
        (root / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{root / "runroot"}"\ngraphroot = "{root / "storage"}"\n')
        (root / "registries.conf").write_text("unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n")
        if os.geteuid() == 0:
            SYSTEM_BLOB_INFO_CACHE.mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def auth_file(self) -> Path:
        return self.root / "auth.json"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def env(self) -> dict[str, str]:
        return clean_environment(
            HOME=str(self.root / "home"), XDG_CONFIG_HOME=str(self.root / "config"),
            XDG_DATA_HOME=str(self.root / "data"), XDG_CACHE_HOME=str(self.root / "cache-home"),
            XDG_RUNTIME_DIR=str(self.root / "runtime"), REGISTRY_AUTH_FILE=str(self.auth_file),
            CONTAINERS_REGISTRIES_CONF=str(self.root / "registries.conf"),
            CONTAINERS_CONF=str(self.root / "containers.conf"), CONTAINERS_STORAGE_CONF=str(self.root / "storage.conf"),
            TMPDIR=str(self.root / "tmp"))

    def storage_flags(self) -> list[str]:
        return ["--root", str(self.root / "storage"), "--runroot", str(self.root / "runroot"),
                "--storage-driver", "vfs"]

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run in this environment (inside a private mount namespace as root)."""
        if os.geteuid() != 0:
            return [str(a) for a in argv]
        script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
        return [require("unshare"), "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                str(self.cache), str(SYSTEM_BLOB_INFO_CACHE), *[str(a) for a in argv]]

    def run(self, tool: str, *args: str, input: str | None = None, check: bool = True,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        argv = [require(tool)]
        if tool in ("podman", "buildah"):
            argv += self.storage_flags()
        return run(self.command([*argv, *args]), env=self.env, input=input, check=check, timeout=timeout)

    def popen(self, tool: str, *args: str, stderr_path: Path) -> subprocess.Popen:
        """Start a tool without waiting (its standard error goes to ``stderr_path``)."""
        argv = self.command([require(tool), *args])
        with open(stderr_path, "wb") as err:
            return subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err)

    def podman(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run("podman", *args, **kw)

    def buildah(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run("buildah", *args, **kw)

    def skopeo(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run("skopeo", *args, **kw)


def written_bytes(pid: int) -> int:
    """How many bytes a process has written so far (files and sockets), from /proc/<pid>/io."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no wchar in /proc/{pid}/io")


def oci_layout_blobs(layout: Path) -> dict[str, bytes]:
    """Every blob of an OCI layout, by digest."""
    return {"sha256:" + p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}


def iter_descriptors(manifest: dict) -> Iterator[dict]:
    """The config and layer descriptors of an image manifest."""
    yield manifest["config"]
    yield from manifest["layers"]
