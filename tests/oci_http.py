"""Raw HTTP to the OCI distribution API (``/v2/``) of a test server, and the image pieces
pushed through it.

Every request goes out on a fresh connection, so a server with several workers spreads them
over its workers. Every answer is checked on its way back: no status is a 5xx, and every
4xx (but a HEAD's, which has no body) carries the spec's error body ``{"errors": [{"code",
"message", ...}]}`` as JSON — so a test states only which status and code it expects, and
an answer that breaks the error format fails whichever test met it.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "Registry",
    "Reply",
    "basic",
    "descriptor",
    "digest_of",
    "expect_error",
    "login_password",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

#: A request's headers: a mapping, or (name, value) pairs when a name repeats.
Headers = Mapping[str, str] | Sequence[tuple[str, str]]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def login_password(client: Any) -> str:
    """The ``/v2/`` password GetAuthorizationToken gives the caller of boto3 ``client``."""
    token = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    assert user == "AWS"
    return password


def basic(password: str, user: str = "AWS") -> str:
    """An ``Authorization`` header value for HTTP Basic credentials."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Reply:
    """One answer: its status, headers (case-insensitive) and body."""

    method: str
    path: str
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_list(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        """The first entry of the error body."""
        return self.json()["errors"][0]

    def __str__(self) -> str:
        head = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path} -> {self.status} [{head}] {self.body[:500]!r}"


def _check(reply: Reply) -> None:
    assert reply.status < 500, f"a server error: {reply}"
    if reply.status < 400 or reply.method == "HEAD":
        return
    content_type = (reply.header("content-type") or "").split(";")[0].strip()
    assert content_type == "application/json", f"an error answer that is not JSON: {reply}"
    doc = json.loads(reply.body)
    errors = doc.get("errors") if isinstance(doc, dict) else None
    assert isinstance(errors, list) and errors, f"an error answer without errors: {reply}"
    for entry in errors:
        assert isinstance(entry.get("code"), str) and entry["code"], f"an error without a code: {reply}"
        assert isinstance(entry.get("message"), str), f"an error without a message: {reply}"


def expect_error(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """Assert ``reply`` is the error ``status``/``code``; the error entry (empty for a HEAD)."""
    assert reply.status == status, f"expected {status} {code}: {reply}"
    if reply.method == "HEAD":
        assert reply.body == b""
        return {}
    assert reply.error["code"] == code, f"expected {status} {code}: {reply}"
    return reply.error


class Registry:
    """The ``/v2/`` API of the server on 127.0.0.1:``port`` as one caller: ``password`` from
    GetAuthorizationToken, or None to send no credentials."""

    def __init__(self, port: int, password: str | None = None, *, timeout: float = 30.0) -> None:
        self.port = port
        self.password = password
        self.timeout = timeout

    def request(self, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
                headers: Headers = (), *, authorization: str | None = None,
                content_length: bool = True) -> Reply:
        """Send one request on a new connection and read the whole answer.

        ``body`` bytes go with a Content-Length (unless ``content_length`` is False or the
        headers give one); an iterable of bytes goes chunked (Transfer-Encoding). None sends
        no body at all, whatever the headers announce. ``authorization`` replaces the
        caller's credentials header."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        names = {name.lower() for name, _ in pairs}
        if authorization is not None:
            pairs.append(("Authorization", authorization))
        elif self.password is not None and "authorization" not in names:
            pairs.append(("Authorization", basic(self.password)))
        chunked = body is not None and not isinstance(body, (bytes, bytearray, memoryview))
        if chunked:
            pairs.append(("Transfer-Encoding", "chunked"))
        elif body is not None and content_length and "content-length" not in names:
            pairs.append(("Content-Length", str(len(body))))
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in pairs:
                conn.putheader(name, value)
            conn.endheaders()
            if chunked:
                for chunk in body:  # type: ignore[union-attr]
                    if chunk:
                        conn.send(b"%x\r\n" % len(chunk) + bytes(chunk) + b"\r\n")
                conn.send(b"0\r\n\r\n")
            elif body:
                conn.send(bytes(body))  # type: ignore[arg-type]
            response = conn.getresponse()
            reply = Reply(method, path, response.status, response.headers, response.read())
        finally:
            conn.close()
        _check(reply)
        return reply

    def get(self, path: str, headers: Headers = (), **kw: Any) -> Reply:
        return self.request("GET", path, None, headers, **kw)

    def head(self, path: str, headers: Headers = (), **kw: Any) -> Reply:
        return self.request("HEAD", path, None, headers, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, None, (), **kw)

    # --- pushing -------------------------------------------------------------------------

    def start_upload(self, repo: str) -> str:
        """POST a new upload session; its Location."""
        reply = self.request("POST", f"/v2/{repo}/blobs/uploads/", b"")
        assert reply.status == 202, str(reply)
        location = reply.header("location")
        assert location
        return location

    def push_blob(self, repo: str, data: bytes) -> str:
        """Push ``data`` in one POST (end-4b); its digest."""
        digest = digest_of(data)
        reply = self.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data,
                             {"Content-Type": "application/octet-stream"})
        assert reply.status == 201, str(reply)
        return digest

    def put_manifest(self, repo: str, reference: str, manifest: bytes, media_type: str | None) -> Reply:
        headers = {"Content-Type": media_type} if media_type else {}
        return self.request("PUT", f"/v2/{repo}/manifests/{reference}", manifest, headers)

    def push_manifest(self, repo: str, reference: str | None, doc: dict[str, Any]) -> tuple[str, bytes]:
        """PUT ``doc`` (serialised here, with its mediaType as Content-Type) under the tag
        ``reference``, or by its digest when None; its digest and bytes."""
        raw = json.dumps(doc, indent=1).encode()
        reply = self.put_manifest(repo, reference or digest_of(raw), raw, doc.get("mediaType"))
        assert reply.status == 201, str(reply)
        assert reply.header("docker-content-digest") == digest_of(raw)
        return digest_of(raw), raw

    def image_doc(self, repo: str, *, media_type: str = OCI_MANIFEST, layer: bytes | None = None,
                  config_type: str | None = None, **fields: Any) -> dict[str, Any]:
        """An image manifest whose config and single layer (random unless given) are pushed to
        ``repo`` first; ``fields`` are added to it (subject, artifactType, annotations)."""
        docker = media_type == DOCKER_MANIFEST
        layer = layer if layer is not None else os.urandom(48)
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
            "type": "layers", "diff_ids": [digest_of(layer)]}}).encode()
        self.push_blob(repo, layer)
        self.push_blob(repo, config)
        config_type = config_type or (DOCKER_CONFIG if docker else OCI_CONFIG)
        return {"schemaVersion": 2, "mediaType": media_type, "config": descriptor(config_type, config),
                "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, layer)], **fields}

    def push_image(self, repo: str, reference: str | None, **kw: Any) -> tuple[str, bytes]:
        """Push a one-layer image (see :meth:`image_doc`) under ``reference``; its digest and bytes."""
        return self.push_manifest(repo, reference, self.image_doc(repo, **kw))
