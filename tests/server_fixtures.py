"""Fixtures and shared functions for the HTTP front-end tests.

Servers run as real subprocesses (``python -m ecrstore.cli serve``) on a free 127.0.0.1 port,
over stores with small part settings so multi-part uploads stay fast; boto3 and the AWS CLI
talk to them as they would to ECR. In-process ASGI calls (:func:`asgi_call`) cover protocol
details without HTTP. The fixtures (``ecr_server``, ``credentials_file``) reach every test
through ``tests/conftest.py``; import the helpers by name.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from backend_services import PAIRS, pair_options

__all__ = [
    "KEY_A",
    "KEY_B",
    "KEY_OTHER_REGISTRY",
    "REGISTRY_A",
    "REGISTRY_B",
    "SMALL_PARTS",
    "TARGET",
    "AsgiResponse",
    "ServerProcess",
    "asgi_call",
    "digest_of",
    "free_port",
    "push_layer",
    "repo_name",
    "sign_request",
    "start_server",
    "unique_bytes",
]

TARGET = "AmazonEC2ContainerRegistry_V20150921."
REGISTRY_A = "111111111111"
REGISTRY_B = "222222222222"
# (access key id, secret, registry)
KEY_A = ("AKIATESTKEYAAAAAAAAA", "secretA/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", REGISTRY_A)
KEY_OTHER_REGISTRY = ("AKIATESTKEYBBBBBBBBB", "secretB+bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", REGISTRY_B)
KEY_B = KEY_OTHER_REGISTRY
#: Store settings for fast multi-part tests: parts of 1 KiB suggested, 1 KiB minimum.
SMALL_PARTS = {"part_size": 1024, "min_part_size": 1024}
START_TIMEOUT = 30.0

_counter = itertools.count()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def repo_name(prefix: str = "repo") -> str:
    """A repository name unique within the test session."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


@dataclass
class ServerProcess:
    """A running ``ecrstore serve`` subprocess."""

    process: subprocess.Popen
    port: int
    store: Path
    log_path: Path
    credentials: Path | None
    keys: list[tuple[str, str, str]] = field(default_factory=list)
    store_options: dict[str, Any] = field(default_factory=dict)

    @property
    def remote_blobs(self) -> bool:
        """Whether layer bytes live in an object store (``--blobs s3://…``)."""
        return "blobs" in self.store_options

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def client(self, key: tuple[str, str, str] | None = None, *, retries: int = 2, **kw: Any):
        """A boto3 ECR client for this server signing with ``key`` (default: the first key)."""
        import boto3
        from botocore.config import Config

        key_id, secret, _ = key or (self.keys[0] if self.keys else ("AKIDANY", "anysecret", ""))
        config = Config(retries={"max_attempts": retries, "mode": "legacy"},
                        connect_timeout=10, read_timeout=60, **kw)
        return boto3.client("ecr", region_name="us-east-1", endpoint_url=self.endpoint,
                            aws_access_key_id=key_id, aws_secret_access_key=secret, config=config)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def answers_within(process: subprocess.Popen, host: str, port: int, timeout: float, log: Callable[[], str],
                   name: str = "server") -> bool:
    """Whether the ECR endpoint ``process`` serves on ``host:port`` answers within ``timeout``
    seconds (any answer: an unsigned request is refused); RuntimeError with ``log()`` if the
    process exits first. A caller given False stops the process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log()}")
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("POST", "/", body=b"{}", headers={"X-Amz-Target": TARGET + "DescribeRepositories"})
            conn.getresponse().read()
            conn.close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def _wait_until_answering(server: ServerProcess) -> None:
    if not answers_within(server.process, "127.0.0.1", server.port, START_TIMEOUT, server.log):
        server.stop()
        raise RuntimeError(f"server did not answer within {START_TIMEOUT}s:\n{server.log()}")


def start_server(tmp: Path, *, keys: list[tuple[str, str, str]] | None = None, no_auth: bool = False,
                 store_options: dict[str, Any] | None = None, extra: list[str] = (),
                 workers: int = 1, store: Path | None = None) -> ServerProcess:
    """Start ``ecrstore serve`` over a store in ``tmp`` and wait until it answers.

    With ``keys`` a credentials file is written; with neither keys nor ``no_auth`` the server
    creates ``<store>/credentials`` itself.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    store = store or tmp / "store"
    options = {**SMALL_PARTS, **(store_options or {})}
    args = [sys.executable, "-m", "ecrstore.cli", "--log-level", "info", "serve", "--store", str(store),
            "--workers", str(workers)]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    creds = None
    if no_auth:
        args.append("--no-auth")
    elif keys:
        creds = tmp / "credentials"
        creds.write_text("# test keys\n" + "".join(f"{k} {s} {r}\n" for k, s, r in keys))
        creds.chmod(0o600)
        args += ["--credentials", str(creds)]
    args += list(extra)
    last_error: Exception | None = None
    for _ in range(3):  # a free port can be taken between choosing and binding it
        port = free_port()
        log_path = tmp / f"server-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(args + ["--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        server = ServerProcess(process, port, store, log_path, creds, list(keys or []), options)
        try:
            _wait_until_answering(server)
            return server
        except RuntimeError as e:
            last_error = e
            if "address already in use" not in server.log().lower():
                raise
    raise RuntimeError(f"could not start a server: {last_error}")


@pytest.fixture(scope="session")
def ecr_server(tmp_path_factory):
    """One authenticated server for the session: keys for registries A and B, small parts."""
    server = start_server(tmp_path_factory.mktemp("ecr-server"), keys=[KEY_A, KEY_OTHER_REGISTRY])
    yield server
    server.stop()


@pytest.fixture(scope="session", params=PAIRS)
def ecr_server_per_backend(request, tmp_path_factory):
    """Like ``ecr_server``, once per backend pair (a module runs on both by taking this one
    as its ``ecr_server``)."""
    server = start_server(tmp_path_factory.mktemp("ecr-server"), keys=[KEY_A, KEY_OTHER_REGISTRY],
                          store_options=pair_options(request, request.param))
    yield server
    server.stop()


@pytest.fixture
def credentials_file(tmp_path) -> Path:
    path = tmp_path / "credentials"
    path.write_text("".join(f"{k} {s} {r}\n" for k, s, r in (KEY_A, KEY_OTHER_REGISTRY)))
    path.chmod(0o600)
    return path


def push_layer(client: Any, repo: str, data: bytes, part: int = 1024) -> str:
    """Upload ``data`` with boto3 in parts of ``part`` bytes and complete it; the digest."""
    upload_id = client.initiate_layer_upload(repositoryName=repo)["uploadId"]
    for offset in range(0, len(data), part):
        chunk = data[offset:offset + part]
        client.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=offset,
                                 partLastByte=offset + len(chunk) - 1, layerPartBlob=chunk)
    return client.complete_layer_upload(repositoryName=repo, uploadId=upload_id,
                                        layerDigests=[digest_of(data)])["layerDigest"]


def sign_request(method: str, url: str, body: bytes, headers: dict[str, str], key: tuple[str, str, str],
                 *, when: float | None = None, region: str = "us-east-1", service: str = "ecr") -> dict[str, str]:
    """Headers of a request signed by botocore's SigV4Auth, optionally as if at epoch ``when``."""
    import datetime

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    signer = SigV4Auth(Credentials(key[0], key[1]), service, region)
    if when is None:
        signer.add_auth(request)
    else:
        moment = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).replace(tzinfo=None)
        with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
            signer.add_auth(request)
    return dict(request.headers.items())


# --- in-process ASGI calls ---------------------------------------------------------------------


@dataclass
class AsgiResponse:
    status: int | None
    headers: dict[str, str]
    body: bytes
    received: int  # how many receive() calls the app made

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


def asgi_call(app: Any, body: bytes | list[bytes] = b"{}", *, target: str | None = None,
              headers: dict[str, str] | None = None, method: str = "POST", path: str = "/",
              stall_after: int | None = None, disconnect_after: int | None = None,
              content_length: int | None | bool = True) -> AsgiResponse:
    """Run one HTTP request through an ASGI app in a fresh event loop.

    ``body`` as a list is sent in chunks. ``stall_after=n`` makes receive() hang after n chunks
    (a slow client); ``disconnect_after=n`` reports a disconnect instead. ``content_length``
    True sends the real length, an int a made-up one, None no header (chunked).
    """
    chunks = body if isinstance(body, list) else [body]
    total = sum(len(c) for c in chunks)
    hdrs = {"host": "127.0.0.1:5000", "content-type": "application/x-amz-json-1.1"}
    if target is not None:
        hdrs["x-amz-target"] = TARGET + target if "." not in target else target
    if content_length is True:
        hdrs["content-length"] = str(total)
    elif content_length is not None and content_length is not False:
        hdrs["content-length"] = str(content_length)
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs.items()],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 5000),
    }
    calls = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal calls
        index = calls
        calls += 1
        if disconnect_after is not None and index >= disconnect_after:
            return {"type": "http.disconnect"}
        if stall_after is not None and index >= stall_after:
            await asyncio.sleep(3600)
        if index < len(chunks):
            return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}
        await asyncio.sleep(3600)  # a real server would report a disconnect eventually
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if start is None:
        return AsgiResponse(None, {}, b"", calls)
    headers_out = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
    return AsgiResponse(start["status"], headers_out, body_out, calls)


def unique_bytes(size: int) -> bytes:
    """Random-looking bytes no other test produces (different digests across tests)."""
    seed = uuid.uuid4().bytes
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])
