"""GetDownloadUrlForLayer's URLs served by ``ecrstore serve``: ranges, validators, refusals,
expiry, the Host the client used, and flat memory for a large layer."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from server_fixtures import (
    KEY_A,
    REGISTRY_A,
    TARGET,
    digest_of,
    push_layer,
    repo_name,
    sign_request,
    start_server,
    unique_bytes,
)

from ecrstore import FileRange, Store

pytestmark = pytest.mark.timeout(180)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
LAYER_SIZE = 3000


def manifest_for(config: tuple[str, int], layers: list[tuple[str, int]]) -> str:
    return json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "size": config[1], "digest": config[0]},
        "layers": [{"mediaType": LAYER_GZ, "size": size, "digest": digest} for digest, size in layers],
    })


def push_image(ecr, repo: str, data: bytes, tag: str = "v1") -> str:
    """Push ``data`` as the one layer of an image; the layer digest."""
    config = json.dumps({"os": "linux", "nonce": unique_bytes(8).hex()}).encode()
    config_digest = push_layer(ecr, repo, config)
    layer_digest = push_layer(ecr, repo, data)
    ecr.put_image(repositoryName=repo, imageManifest=manifest_for((config_digest, len(config)),
                                                                   [(layer_digest, len(data))]), imageTag=tag)
    return layer_digest


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None
          ) -> tuple[int, dict[str, str], bytes]:
    """One request to a download URL: status, lower-case headers, body."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, parts.path + ("?" + parts.query if parts.query else ""), headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture
def ecr(ecr_server):
    return ecr_server.client()


@pytest.fixture
def image(ecr):
    """A repository with one image whose layer is LAYER_SIZE bytes: (repo, digest, data, url)."""
    repo = repo_name("download")
    ecr.create_repository(repositoryName=repo)
    data = unique_bytes(LAYER_SIZE)
    digest = push_image(ecr, repo, data)
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    yield repo, digest, data, url
    try:
        ecr.delete_repository(repositoryName=repo, force=True)
    except ClientError:
        pass


def test_full_get_and_head_headers(image):
    _, digest, data, url = image
    status, headers, body = fetch(url)
    assert status == 200 and body == data
    assert headers["content-length"] == str(len(data))
    assert headers["content-type"] == "application/octet-stream"
    assert headers["accept-ranges"] == "bytes"
    assert headers["etag"] == f'"{digest}"'
    assert headers["docker-content-digest"] == digest
    assert "content-range" not in headers

    status, head_headers, body = fetch(url, "HEAD")
    assert status == 200 and body == b""
    assert head_headers["content-length"] == str(len(data))
    assert head_headers["etag"] == headers["etag"]


@pytest.mark.parametrize("spec, first, last", [
    ("bytes=0-99", 0, 99),
    ("bytes=100-100", 100, 100),
    ("bytes=2990-", 2990, 2999),
    ("bytes=-5", 2995, 2999),
    ("bytes=-100000", 0, 2999),          # a suffix longer than the layer: all of it
    ("bytes=2000-999999", 2000, 2999),   # an end past the layer is clamped
    ("Bytes = 10 - 19", 10, 19),         # unit case and spaces
])
def test_single_range_is_206(image, spec, first, last):
    _, _, data, url = image
    status, headers, body = fetch(url, headers={"Range": spec})
    assert status == 206
    assert headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
    assert headers["content-length"] == str(last - first + 1)
    assert body == data[first:last + 1]

    status, headers, body = fetch(url, "HEAD", headers={"Range": spec})
    assert status == 206 and body == b""
    assert headers["content-range"] == f"bytes {first}-{last}/{len(data)}"


@pytest.mark.parametrize("spec", ["bytes=3000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_range_is_416(image, spec):
    _, _, data, url = image
    status, headers, _ = fetch(url, headers={"Range": spec})
    assert status == 416
    assert headers["content-range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "bytes=abc", "bytes=9-3", "items=0-5", "bytes=-"])
def test_other_ranges_get_the_whole_layer(image, spec):
    _, _, data, url = image
    status, headers, body = fetch(url, headers={"Range": spec})
    assert status == 200 and body == data and "content-range" not in headers


def test_if_range(image):
    _, digest, data, url = image
    status, _, body = fetch(url, headers={"Range": "bytes=0-9", "If-Range": f'"{digest}"'})
    assert status == 206 and body == data[:10]
    status, _, body = fetch(url, headers={"Range": "bytes=0-9", "If-Range": '"sha256:' + "0" * 64 + '"'})
    assert status == 200 and body == data


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _with(url: str, *, path: str | None = None, **query: str) -> str:
    parts = urllib.parse.urlsplit(url)
    q = {**_query(url), **query}
    return urllib.parse.urlunsplit(parts._replace(path=path or parts.path, query=urllib.parse.urlencode(q)))


def test_tampered_urls_are_403(ecr, image):
    repo, digest, data, url = image
    signature = _query(url)["X-Ecrstore-Signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    other_repo = repo_name("download")
    ecr.create_repository(repositoryName=other_repo)
    try:
        path = urllib.parse.urlsplit(url).path
        cases = {
            "signature": _with(url, **{"X-Ecrstore-Signature": flipped}),
            "path: another repository": _with(url, path=path.replace(f"/{repo}/", f"/{other_repo}/")),
            "path: another digest": _with(url, path=path.replace(digest[-6:], "abcdef")),
            "expiry pushed back": _with(url, **{"X-Ecrstore-Expires": str(int(time.time()) + 10**6)}),
            "unsigned": urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(query="")),
        }
        for what, bad in cases.items():
            for method in ("GET", "HEAD"):
                status, _, body = fetch(bad, method)
                assert status == 403, (what, method)
                if method == "GET":
                    assert json.loads(body)["__type"] == "AccessDeniedException", what
    finally:
        ecr.delete_repository(repositoryName=other_repo, force=True)
    assert fetch(url)[2] == data  # the untouched URL still works


def test_url_of_a_deleted_repository_is_404(ecr, image):
    repo, _, _, url = image
    ecr.delete_repository(repositoryName=repo, force=True)
    status, _, body = fetch(url)
    assert status == 404
    assert json.loads(body)["__type"] == "RepositoryNotFoundException"


def test_layer_inaccessible_and_not_found(ecr):
    repo = repo_name("download")
    ecr.create_repository(repositoryName=repo)
    try:
        digest = push_layer(ecr, repo, unique_bytes(100))
        with pytest.raises(ClientError) as e:
            ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)
        assert e.value.response["Error"]["Code"] == "LayerInaccessibleException"
        with pytest.raises(ClientError) as e:
            ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest_of(b"never pushed here"))
        assert e.value.response["Error"]["Code"] == "LayersNotFoundException"
    finally:
        ecr.delete_repository(repositoryName=repo, force=True)


def test_url_base_is_the_host_the_client_used(ecr_server, image):
    repo, digest, data, _ = image
    # boto3 through "localhost" instead of 127.0.0.1
    import boto3
    from botocore.config import Config

    local = boto3.client("ecr", region_name="us-east-1", endpoint_url=f"http://localhost:{ecr_server.port}",
                         aws_access_key_id=KEY_A[0], aws_secret_access_key=KEY_A[1],
                         config=Config(retries={"max_attempts": 1}))
    url = local.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
    assert url.startswith(f"http://localhost:{ecr_server.port}/layers/{REGISTRY_A}/")

    # A signed request naming another host (as behind a port forward): the URL points there.
    host = f"registry.example.test:{ecr_server.port + 1}"
    body = json.dumps({"repositoryName": repo, "layerDigest": digest}).encode()
    headers = sign_request("POST", f"http://{host}/", body, {
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + "GetDownloadUrlForLayer",
    }, KEY_A)
    conn = http.client.HTTPConnection("127.0.0.1", ecr_server.port, timeout=30)
    try:
        conn.request("POST", "/", body=body, headers={**headers, "Host": host})
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200, answer
    assert answer["downloadUrl"].startswith(f"http://{host}/layers/{REGISTRY_A}/")
    # The same URL served on the address it was really reached at.
    parts = urllib.parse.urlsplit(answer["downloadUrl"])
    status, _, got = fetch(f"{ecr_server.endpoint}{parts.path}?{parts.query}")
    assert status == 200 and got == data


def test_download_urls_expire(tmp_path):
    server = start_server(tmp_path, keys=[KEY_A], extra=["--download-url-ttl", "1"])
    try:
        ecr = server.client()
        repo = repo_name("expiry")
        ecr.create_repository(repositoryName=repo)
        data = unique_bytes(500)
        digest = push_image(ecr, repo, data)
        url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
        expires = int(_query(url)["X-Ecrstore-Expires"])
        assert expires <= time.time() + 1.5
        deadline = expires + 1.2
        while time.time() < deadline:
            time.sleep(0.2)
        status, _, body = fetch(url)
        assert status == 403
        assert json.loads(body)["__type"] == "AccessDeniedException"
        assert "expired" in json.loads(body)["message"]
    finally:
        server.stop()


def _vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read the server's RSS")
def test_large_layer_download_keeps_memory_flat(tmp_path):
    """A 256 MiB layer streams from the memory map without the worker's RSS following it."""
    size = 256 * 2**20
    server = start_server(tmp_path / "srv", keys=[KEY_A], workers=1)
    try:
        # The layer goes in through the engine on the same store (another process may open it):
        # a file range per part, so this test's process stays small too.
        block = os.urandom(1 << 20)
        layer_path = tmp_path / "layer.bin"
        sha = hashlib.sha256()
        with open(layer_path, "wb") as f:
            for i in range(size >> 20):
                chunk = i.to_bytes(8, "little") + block[8:]
                sha.update(chunk)
                f.write(chunk)
        digest = "sha256:" + sha.hexdigest()
        config = b'{"os": "linux"}'
        repo = repo_name("bigdownload")
        part = 16 * 2**20
        with Store(server.store, registry_id=REGISTRY_A, durable=False) as store:
            store.create_repository(repo)
            upload = store.initiate_layer_upload(repo)
            for offset in range(0, size, part):
                store.upload_layer_part(repo, upload.upload_id, offset, offset + part - 1,
                                        FileRange(str(layer_path), offset, part))
            store.complete_layer_upload(repo, upload.upload_id, [digest])
            upload = store.initiate_layer_upload(repo)
            store.upload_layer_part(repo, upload.upload_id, 0, len(config) - 1, config)
            config_digest = store.complete_layer_upload(repo, upload.upload_id, [digest_of(config)]).layer_digest
            store.put_image(repo, manifest_for((config_digest, len(config)), [(digest, size)]), image_tag="big")
        layer_path.unlink()

        url = server.client().get_download_url_for_layer(repositoryName=repo, layerDigest=digest)["downloadUrl"]
        pid = server.process.pid  # one worker: uvicorn runs in the server process itself
        fetch(url, headers={"Range": "bytes=0-0"})  # code paths warmed up before the baseline
        before = _vm_rss(pid)
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(_vm_rss(pid))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        got = hashlib.sha256()
        received = 0
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        try:
            conn.request("GET", f"{parts.path}?{parts.query}")
            response = conn.getresponse()
            assert response.status == 200
            while chunk := response.read(1 << 20):
                got.update(chunk)
                received += len(chunk)
        finally:
            conn.close()
            done.set()
            sampler.join()
        assert received == size and "sha256:" + got.hexdigest() == digest
        growth = max(samples + [_vm_rss(pid)]) - before
        assert len(samples) > 3
        assert growth < 48 * 2**20, f"server RSS grew by {growth / 2**20:.1f} MiB during the download"
    finally:
        server.stop()
