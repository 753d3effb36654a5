"""The upstream registries of tests/test_pull_through.py: Debian's docker-registry on loopback
(anonymous, or with htpasswd Basic auth), and a forwarding HTTP proxy that stands in front of
it where a test must count or shape the upstream's answers (one fetch for concurrent pulls, the
docker token protocol, a lying upstream, redirects, failures); and pushes of test images to it.
"""

from __future__ import annotations

import base64
import collections
import http.client
import http.server
import json
import subprocess
import threading
import urllib.parse
from pathlib import Path

from oci_tools import Registry, free_port, oci_layout_blobs, require, start_daemon, wait_for
from transfer_util import make_image, oci_layout

__all__ = ["PASSWORD", "USER", "Proxy", "push_upstream", "start_upstream"]

#: The login of the htpasswd upstream and of the proxy's token service.
USER, PASSWORD = "mirror", "s3cret-pass"


def start_upstream(workdir: Path, *, htpasswd: bool = False) -> Registry:
    """docker-registry on a free loopback port (with ``htpasswd``: Basic auth for USER)."""
    binary = require("docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    auth = ""
    if htpasswd:
        done = subprocess.run([require("htpasswd"), "-Bbn", USER, PASSWORD], capture_output=True, text=True,
                              check=True, timeout=60)
        (workdir / "htpasswd").write_text(done.stdout)
        auth = f"auth:\n  htpasswd:\n    realm: upstream\n    path: {workdir / 'htpasswd'}\n"
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}")
    log_path = workdir / f"registry-{port}.log"
    process = start_daemon([binary, "serve", config], log_path)
    registry = Registry("distribution", port, workdir, process, log_path)
    wait_for("docker-registry", lambda: registry.get("/v2/", key=None)[0] in (200, 401), process=process,
             log=log_path)
    return registry


def push_upstream(containers, upstream: Registry, tmp: Path, name: str, tag: str, *, seed: int,
                  creds: str | None = None, index: bool = False) -> tuple[str, dict[str, str | bytes]]:
    """Push a fresh image (or a two-platform index) to ``upstream``; (manifest digest, layout blobs)."""
    layout = tmp / f"layout-{seed}"
    if index:
        imgs = [make_image(seed, arch="amd64", gzip_layers=True), make_image(seed + 1, arch="arm64")]
        digest = oci_layout(layout, indexes=[(imgs, tag)])[tag]
    else:
        digest = oci_layout(layout, [(make_image(seed, gzip_layers=True), tag)])[tag]
    login = ["--dest-creds", creds] if creds else []
    containers.skopeo("copy", *(["--all"] if index else []), "--preserve-digests", "--dest-tls-verify=false",
                      *login, f"oci:{layout}:{tag}", f"docker://{upstream.host}/{name}:{tag}")
    return digest, oci_layout_blobs(layout)


class Proxy:
    """A forwarding HTTP proxy to ``target`` that counts the GETs and HEADs it forwards, by path
    (``counts``) and by method (``methods``).

    ``bearer``: requests need ``Authorization: Bearer <token>``, else 401 with a docker token
    challenge whose realm is this proxy's ``/token`` (which hands out the token for Basic
    USER:PASSWORD, and anonymously when ``anonymous_tokens``). ``corrupt``: blob bodies have a
    byte flipped (a lying upstream). ``redirect``: blob reads answer 307 to ``/moved/<path>``
    (as registries send them to their storage). ``status``: every request answers it.
    ``no_digest``: manifest answers name no ``Docker-Content-Digest`` (as some registries)."""

    TOKEN = "the-token"

    def __init__(self, target: int, *, bearer: bool = False, anonymous_tokens: bool = False, corrupt: bool = False,
                 redirect: bool = False, status: int | None = None, no_digest: bool = False) -> None:
        self.target = target
        self.bearer = bearer
        self.anonymous_tokens = anonymous_tokens
        self.corrupt = corrupt
        self.redirect = redirect
        self.status = status
        self.no_digest = no_digest
        self.counts: collections.Counter[str] = collections.Counter()
        self.methods: collections.Counter[str] = collections.Counter()  # forwarded requests by method
        self.token_requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                proxy.handle(self)

            do_HEAD = do_GET  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        path = urllib.parse.urlsplit(req.path).path
        if path == "/token":
            self._token(req)
            return
        if self.bearer and req.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            scope = ""
            parts = path.split("/")
            if "manifests" in parts or "blobs" in parts:
                name = "/".join(parts[2:-2])
                scope = f',scope="repository:{name}:pull"'
            challenge = f'Bearer realm="{self.url}/token",service="proxy"{scope}'
            self._send(req, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
            return
        with self._lock:
            self.counts[path] += 1
            self.methods[req.command] += 1
        if self.status is not None:
            self._send(req, self.status, b'{"errors":[{"code":"UNKNOWN","message":"upstream trouble"}]}', {})
            return
        if self.redirect and "/blobs/" in path and not path.startswith("/moved/"):
            self._send(req, 307, b"", {"Location": f"{self.url}/moved{path}"})
            return
        if path.startswith("/moved/"):
            req.path = path[len("/moved"):]
        headers = {k: v for k, v in req.headers.items() if k.lower() in ("accept", "range")}
        conn = http.client.HTTPConnection("127.0.0.1", self.target, timeout=60)
        try:
            conn.request(req.command, req.path, headers=headers)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if self.corrupt and "/blobs/" in path and body:
            body = bytes([body[0] ^ 1]) + body[1:]
        keep = {k: v for k, v in response.getheaders()
                if k.lower() in ("content-type", "docker-content-digest", "www-authenticate")}
        if self.no_digest:
            keep = {k: v for k, v in keep.items() if k.lower() != "docker-content-digest"}
        self._send(req, response.status, body, keep)

    def _token(self, req: http.server.BaseHTTPRequestHandler) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(req.path).query))
        with self._lock:
            self.token_requests.append({**query, "authorization": req.headers.get("Authorization", "")})
        good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        given = req.headers.get("Authorization")
        if given != good and not (self.anonymous_tokens and given is None):
            self._send(req, 401, b'{"details":"bad credentials"}', {})
            return
        self._send(req, 200, json.dumps({"token": self.TOKEN, "expires_in": 300}).encode(), {})

    @staticmethod
    def _send(req: http.server.BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        req.send_response(status)
        for k, v in headers.items():
            req.send_header(k, v)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)

    def manifest_gets(self) -> int:
        return sum(n for p, n in self.counts.items() if "/manifests/" in p)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


