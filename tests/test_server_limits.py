"""Limits and robustness of a real server: body size, bad input, slow clients, concurrency."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from server_fixtures import (
    KEY_A,
    TARGET,
    digest_of,
    push_layer,
    repo_name,
    sign_request,
    start_server,
    unique_bytes,
)

pytestmark = pytest.mark.timeout(180)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def signed(server, body: bytes, operation: str) -> dict[str, str]:
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + operation}
    return sign_request("POST", server.endpoint + "/", body, headers, KEY_A)


def raw(server, head: bytes, body: bytes = b"", timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        return _read_response(sock)


def request_head(headers: dict[str, str], length: int | None, port: int = 0) -> bytes:
    """An HTTP/1.1 request head; ``port`` completes the Host header the signature covers."""
    host = f"127.0.0.1:{port}" if port else "127.0.0.1"
    lines = ["POST / HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in headers.items()
                                                    if k.lower() != "host"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_oversized_content_length_is_refused_without_reading(ecr_server):
    # Only the headers are sent: an answer proves the server did not wait for 100 MB.
    headers = {"X-Amz-Target": TARGET + "UploadLayerPart", "Content-Type": "application/x-amz-json-1.1"}
    started = time.monotonic()
    status, response_headers, body = raw(ecr_server, request_head(headers, 100_000_000))
    assert time.monotonic() - started < 5
    assert status == 400
    assert json.loads(body)["__type"] == "InvalidParameterException"
    assert response_headers["connection"] == "close"
    assert "x-amzn-requestid" in response_headers


def test_oversized_chunked_body_is_refused_by_counting(ecr_server):
    # The headers pass the signature's header checks; the body is refused while it is counted,
    # before the signature over it could be checked.
    headers = {**signed(ecr_server, b"", "UploadLayerPart"), "Transfer-Encoding": "chunked"}
    with socket.create_connection(("127.0.0.1", ecr_server.port), timeout=30) as sock:
        sock.sendall(request_head(headers, None, ecr_server.port))
        chunk = b"x" * 1_000_000
        try:
            for _ in range(40):  # 40 MB announced in pieces, more than the limit allows
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:
            pass  # the server may close while we are still sending
        status, _, body = _read_response(sock)
    assert status == 400 and json.loads(body)["__type"] == "InvalidParameterException"


def test_malformed_json(ecr_server):
    body = b'{"repositoryName": '
    status, _, answer = raw(ecr_server, request_head(signed(ecr_server, body, "DescribeRepositories"), len(body),
                                                     ecr_server.port), body)
    assert status == 400 and json.loads(answer)["__type"] == "SerializationException"


def test_unknown_target(ecr_server):
    head = request_head(signed(ecr_server, b"{}", "DescribeEverything"), 2, ecr_server.port)
    status, _, answer = raw(ecr_server, head, b"{}")
    assert status == 400 and json.loads(answer)["__type"] == "UnknownOperationException"


def test_truncated_body_does_not_pin_the_server(ecr_server):
    # A client announces 1000 bytes, sends 10 and goes away; the server must keep serving.
    body = b'{"repositoryName": "x"}'
    with socket.create_connection(("127.0.0.1", ecr_server.port), timeout=10) as sock:
        sock.sendall(request_head(signed(ecr_server, body, "DescribeRepositories"), 1000, ecr_server.port) + body[:10])
    assert ecr_server.client().describe_repositories()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_slow_body_gets_408(tmp_path):
    server = start_server(tmp_path, keys=[KEY_A], extra=["--body-timeout", "1"])
    try:
        body = b'{"repositoryName": "slow-one"}'
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(request_head(signed(server, body, "CreateRepository"), len(body), server.port) + body[:5])
            started = time.monotonic()
            status, headers, answer = _read_response(sock)
        assert status == 408 and json.loads(answer)["__type"] == "RequestTimeoutException"
        assert time.monotonic() - started < 10
    finally:
        server.stop()


def test_concurrent_clients(ecr_server):
    shared = repo_name("shared")
    ecr_server.client().create_repository(repositoryName=shared)
    common = unique_bytes(2500)
    errors: list[BaseException] = []
    results: dict[int, tuple[str, str, list[str]]] = {}

    def work(n: int) -> None:
        try:
            ecr = ecr_server.client()  # one client per thread, as boto3 requires
            own_repo = repo_name("own")
            ecr.create_repository(repositoryName=own_repo)
            own = unique_bytes(4000 + n)
            got_own = push_layer(ecr, own_repo, own)
            got_common = push_layer(ecr, own_repo, common)
            try:
                push_layer(ecr, shared, common)
                outcome = ["pushed"]
            except ecr.exceptions.LayerAlreadyExistsException:
                outcome = ["exists"]
            results[n] = (got_own == digest_of(own), got_common, outcome)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert all(ok for ok, _, _ in results.values())
    assert {digest for _, digest, _ in results.values()} == {digest_of(common)}
    outcomes = sorted(o for _, _, (o,) in results.values())
    assert outcomes == ["exists", "exists", "exists", "pushed"]  # exactly one push to the shared repo wins


def test_several_workers_share_one_store(tmp_path):
    server = start_server(tmp_path, keys=[KEY_A], workers=2)
    try:
        repo = repo_name("workers")
        server.client().create_repository(repositoryName=repo)
        errors: list[BaseException] = []
        digests: list[str] = []

        def work(n: int) -> None:
            try:
                data = unique_bytes(3000 + n)
                ecr = server.client()
                assert push_layer(ecr, repo, data) == digest_of(data)
                digests.append(digest_of(data))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        check = server.client().batch_check_layer_availability(repositoryName=repo, layerDigests=digests)
        assert len(check["layers"]) == 6 and not check["failures"]
        assert "started 2 workers" in server.log()
    finally:
        server.stop()
    assert server.process.returncode == 0
