"""Faults in a store's surroundings: a full disk, a read-only mount, a store removed under a
running server, damaged and planted files. Each test builds its fault itself (a small tmpfs,
a read-only bind mount) and removes it; where the machine does not allow mounting, the test
is skipped saying so."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from server_fixtures import KEY_A, push_layer, start_server
from storeutil import push

from ecrstore import Store, errors

PYTHONPATH = str(Path(__file__).resolve().parent.parent)


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here ({result.stderr.strip() or result.returncode}): fault not testable")


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def small_fs(tmp_path):
    """A 12 MiB tmpfs: fills up after a few parts."""
    path = tmp_path / "fs"
    path.mkdir()
    mount("-t", "tmpfs", "-o", "size=12m", "tmpfs", str(path))
    yield path
    umount(path)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_full_disk_loses_nothing_acknowledged_and_keeps_no_partial_part(small_fs):
    part = os.urandom(2 * 2**20)
    with Store(small_fs / "s", min_part_size=1024, part_size=2**20, map_size=2**21) as store:
        store.create_repository("app")
        up = store.initiate_layer_upload("app").upload_id
        acked = 0
        with pytest.raises(errors.ServerException, match="storage failure"):
            for _ in range(10):
                store.upload_layer_part("app", up, acked, acked + len(part) - 1, part)
                acked += len(part)
        assert acked > 0
        data_file = small_fs / "s" / "uploads" / up.replace("-", "")
        assert data_file.stat().st_size == acked  # the refused part's bytes were given back
        (info,) = store.list_uploads()
        assert info.received == acked
        store.abort_upload(up)  # space comes back; the store still works
        small = b"after the disk filled"
        up2 = store.initiate_layer_upload("app").upload_id
        store.upload_layer_part("app", up2, 0, len(small) - 1, small)
        assert store.complete_layer_upload("app", up2, [digest(small)]).layer_digest == digest(small)
        assert store.verify().ok


def test_a_read_only_store_can_be_read_listed_and_verified(tmp_path):
    src = tmp_path / "s"
    with Store(src) as store:
        store.create_repository("app")
        data = b"layer on a read-only disk"
        push(store, "app", data)
    ro = tmp_path / "ro"
    ro.mkdir()
    mount("--bind", str(src), str(ro))
    try:
        mount("-o", "remount,bind,ro", str(ro))
        with Store(ro, read_only=True) as store:
            assert [r.repository_name for r in store.describe_repositories().repositories] == ["app"]
            assert store.verify().ok and store.stats().blobs == 1
            with store.open_layer("app", digest(data)) as r:
                assert r.read() == data
            with pytest.raises(errors.ServerException, match="read-only"):
                store.create_repository("other")
        for command in (["verify"], ["stats"], ["repo", "ls"]):
            run = subprocess.run([sys.executable, "-m", "ecrstore.cli", *command, "--store", str(ro)],
                                 capture_output=True, text=True, timeout=60,
                                 env=dict(os.environ, PYTHONPATH=PYTHONPATH))
            assert run.returncode == 0, (command, run.stderr)
    finally:
        umount(ro)


def test_a_store_removed_under_the_server_refuses_writes_and_is_never_recreated(tmp_path):
    srv = start_server(tmp_path, keys=[KEY_A], workers=2)
    try:
        client = srv.client(retries=0)
        client.create_repository(repositoryName="before")
        subprocess.run(["rm", "-rf", str(srv.store)], check=True)
        with pytest.raises(Exception) as e:
            client.create_repository(repositoryName="after")
        assert "ServerException" in str(e.value) and "removed" in str(e.value)
        # A worker restarted now finds no store: it must not make an empty one and serve it.
        for child in subprocess.run(["pgrep", "-P", str(srv.process.pid)], capture_output=True,
                                    text=True).stdout.split():
            os.kill(int(child), 9)
        srv.process.wait(60)
        assert srv.process.returncode == 1
        assert not srv.store.exists()
        assert "failing at startup" in srv.log()
    finally:
        srv.stop()


@pytest.mark.parametrize("damage", ["truncate", "remove", "symlink"])
def test_a_damaged_blob_fails_before_any_byte_is_served(tmp_path, damage):
    srv = start_server(tmp_path, keys=[KEY_A])
    try:
        client = srv.client(retries=0)
        client.create_repository(repositoryName="app")
        layer = os.urandom(100_000)
        dg = push_layer(client, "app", layer, part=2**20)
        config = b"{}"
        cdg = push_layer(client, "app", config)
        import json

        client.put_image(repositoryName="app", imageManifest=json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": cdg},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(layer), "digest": dg}]}))
        url = client.get_download_url_for_layer(repositoryName="app", layerDigest=dg)["downloadUrl"]
        blob = srv.store / "blobs" / "sha256" / dg[7:9] / dg[7:]
        os.chmod(blob, 0o644)
        if damage == "truncate":
            os.truncate(blob, 50_000)
        elif damage == "remove":
            blob.unlink()
        else:
            blob.unlink()
            secret = tmp_path / "secret"
            secret.write_bytes(b"x" * len(layer))
            blob.symlink_to(secret)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=30)
        assert e.value.code == 500 and b"ServerException" in e.value.read()
    finally:
        srv.stop()


def test_a_planted_symlink_is_not_followed_for_upload_data(tmp_path):
    with Store(tmp_path / "s", min_part_size=1, part_size=1024) as store:
        store.create_repository("app")
        up = store.initiate_layer_upload("app").upload_id
        target = tmp_path / "elsewhere"
        target.write_bytes(b"")
        data_file = tmp_path / "s" / "uploads" / up.replace("-", "")
        data_file.unlink()
        data_file.symlink_to(target)
        with pytest.raises(errors.ServerException):
            store.upload_layer_part("app", up, 0, 2, b"abc")
        assert target.read_bytes() == b""


def test_a_damaged_url_signing_key_is_refused(tmp_path):
    Store(tmp_path / "s").close()
    key = tmp_path / "s" / "url-signing.key"
    key.write_bytes(b"short")
    with pytest.raises(errors.ServerException, match="url-signing.key is damaged"):
        Store(tmp_path / "s")
    key.write_bytes(b"")
    with pytest.raises(errors.ServerException, match="damaged"):
        Store(tmp_path / "s")
    key.unlink()
    Store(tmp_path / "s").close()  # a removed key is made anew
    assert len(key.read_bytes()) == 32


def test_store_files_are_private(tmp_path):
    with Store(tmp_path / "s") as store:
        store.create_repository("app")
        push(store, "app", b"private")
    root = tmp_path / "s"
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    assert mode(root) == 0o700
    assert mode(root / "index" / "data.mdb") == 0o600
    assert mode(root / "url-signing.key") == 0o600
    (blob,) = [p for p in (root / "blobs").rglob("*") if p.is_file()]
    assert mode(blob) == 0o440


def test_a_store_that_cannot_be_opened_stops_serve_with_one_line(tmp_path):
    store = tmp_path / "s"
    Store(store).close()
    t0 = time.monotonic()
    (store / "index" / "data.mdb").write_bytes(b"not an lmdb file" * 1000)
    run = subprocess.run([sys.executable, "-m", "ecrstore.cli", "serve", "--store", str(store), "--no-auth",
                          "--workers", "2", "--port", "0"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=PYTHONPATH))
    assert run.returncode == 1
    assert time.monotonic() - t0 < 90
    assert "Traceback" not in run.stderr
