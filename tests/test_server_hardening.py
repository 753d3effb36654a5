"""Operational hardening seen from outside a running server: keys revoked without a restart,
no secrets in logs, a bad download signature of any shape is a 403, idle uploads purged by
the server itself."""

from __future__ import annotations

import socket
import time

import pytest
from server_fixtures import KEY_A, KEY_B, push_layer, start_server

from ecrstore import Store


def test_a_key_removed_from_the_file_stops_working_without_a_restart(tmp_path):
    srv = start_server(tmp_path, keys=[KEY_A, KEY_B])
    try:
        srv.client(KEY_B).describe_repositories()
        assert srv.credentials is not None
        srv.credentials.write_text(f"{KEY_A[0]} {KEY_A[1]} {KEY_A[2]}\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                srv.client(KEY_B, retries=0).describe_repositories()
            except Exception as e:  # noqa: BLE001 - the refusal is what is awaited
                assert "UnrecognizedClient" in str(e)
                break
            time.sleep(0.2)
        else:
            pytest.fail("the removed key kept working")
        srv.client(KEY_A).describe_repositories()  # the remaining key is unaffected
    finally:
        srv.stop()


def test_download_signatures_stay_out_of_the_access_log(tmp_path):
    import json
    import urllib.request

    srv = start_server(tmp_path, keys=[KEY_A])
    try:
        client = srv.client()
        client.create_repository(repositoryName="app")
        layer, config = b"logged layer", b"{}"
        dl, dc = push_layer(client, "app", layer), push_layer(client, "app", config)
        client.put_image(repositoryName="app", imageManifest=json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": dc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(layer), "digest": dl}]}))
        url = client.get_download_url_for_layer(repositoryName="app", layerDigest=dl)["downloadUrl"]
        assert urllib.request.urlopen(url, timeout=30).read() == layer
        signature = url.rsplit("X-Ecrstore-Signature=", 1)[1]
        time.sleep(0.3)
        log = srv.log()
        assert "X-Ecrstore-Signature=REDACTED" in log
        assert signature not in log
    finally:
        srv.stop()


@pytest.mark.parametrize("signature", ["%C3%A9" * 32, "%FF" * 64, "zz" * 32, "0" * 200, "%00"])
def test_a_download_signature_of_any_shape_is_a_403(tmp_path, signature):
    srv = start_server(tmp_path, keys=[KEY_A])
    try:
        path = (f"/layers/111111111111/app/sha256:{'0' * 64}"
                f"?X-Ecrstore-Expires=99999999999&X-Ecrstore-Signature={signature}")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 403"), answer[:100]
    finally:
        srv.stop()


def test_the_server_purges_idle_uploads_itself(tmp_path):
    srv = start_server(tmp_path, keys=[KEY_A], store_options={"upload_ttl": 1}, extra=["--purge-interval", "1"])
    try:
        client = srv.client()
        client.create_repository(repositoryName="app")
        client.initiate_layer_upload(repositoryName="app")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with Store(srv.store, read_only=True, registry_id=KEY_A[2]) as s:
                if not s.list_uploads():
                    break
        else:
            pytest.fail("the idle upload was never purged")
        assert not list((srv.store / "uploads").iterdir())
    finally:
        srv.stop()
