"""Hostile clients against a real server on loopback: every attack bounded in count and time.

Slow heads, huge headers, bodies declared and never sent, idle connections, saturation. The
server must answer each with the right status and keep its memory and its other clients'
latency bounded meanwhile; the figures measured are printed.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time

import pytest
from server_fixtures import KEY_A, TARGET, push_layer, repo_name, sign_request, start_server, unique_bytes

HEAD_TIMEOUT = 2.0
#: Bounds the abuse run must stay within (stated in the README too).
RSS_BOUND_MB = 400
P99_BOUND_S = 2.0


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_until(sock: socket.socket, timeout: float, done: bytes) -> bytes:
    """What the server sends until ``done`` is in it, it closes, or ``timeout`` passes."""
    sock.settimeout(timeout)
    data = b""
    try:
        while done not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def read_status(sock: socket.socket, timeout: float) -> tuple[str, float]:
    """The status line the server answers with ('' when it just closed), and how long it took."""
    t0 = time.monotonic()
    data = read_until(sock, timeout, b"\r\n")
    return data.split(b"\r\n", 1)[0].decode(errors="replace"), time.monotonic() - t0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def signed_head(port: int, length: int, operation: str = "UploadLayerPart") -> bytes:
    """A request head that passes every header check (a real key, a fresh date): what a
    client holding a key can send before any body byte."""
    url = f"http://127.0.0.1:{port}/"
    headers = sign_request("POST", url, b"{}", {"X-Amz-Target": TARGET + operation,
                                                 "Content-Type": "application/x-amz-json-1.1"}, KEY_A)
    lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("abuse"), keys=[KEY_A],
                       extra=["--head-timeout", str(HEAD_TIMEOUT), "--body-timeout", "4", "--max-connections", "400"])
    srv.client().create_repository(repositoryName="abuse/app")
    yield srv
    srv.stop()


def test_a_huge_header_gets_431_without_being_buffered(server):
    sock = connect(server.port)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    try:
        while sent < 16 * 2**20:
            sock.sendall(b"a" * 65536)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, _ = read_status(sock, 10)
    sock.close()
    assert status in ("HTTP/1.1 431 Request Header Fields Too Large", "")
    assert sent < 4 * 2**20, f"the server read {sent} bytes of one header before refusing"


def test_a_slow_head_gets_408(server):
    sock = connect(server.port)
    sock.sendall(b"POST / HTTP/1.1\r\nHo")
    status, took = read_status(sock, HEAD_TIMEOUT + 10)
    sock.close()
    assert status == "HTTP/1.1 408 Request Timeout"
    assert took < HEAD_TIMEOUT + 5


def test_a_silent_connection_is_closed(server):
    sock = connect(server.port)
    status, took = read_status(sock, HEAD_TIMEOUT + 10)
    sock.close()
    assert status == "" and took < HEAD_TIMEOUT + 5


def test_abuse_keeps_memory_and_latency_bounded(server):
    stop = threading.Event()
    counts = {"slow": 0, "huge": 0, "unsent": 0, "idle": 0}
    lock = threading.Lock()
    held: list[socket.socket] = []

    def bump(kind: str) -> None:
        with lock:
            counts[kind] += 1

    def slow_head() -> None:  # a byte every half second, reconnecting when cut off
        while not stop.is_set():
            try:
                s = connect(server.port)
                for b in b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ":
                    if stop.is_set():
                        break
                    s.sendall(bytes([b]))
                    time.sleep(0.5)
                s.close()
            except OSError:
                pass
            bump("slow")

    def huge_header() -> None:
        while not stop.is_set():
            try:
                s = connect(server.port)
                s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (2 * 2**20))
            except OSError:
                pass
            finally:
                s.close()
            bump("huge")

    def unsent_body() -> None:  # a 28 MB body announced by a real key, 10 bytes sent
        while not stop.is_set():
            try:
                s = connect(server.port)
                s.sendall(signed_head(server.port, 28_000_000) + b'{"upload":')
                s.settimeout(8)
                s.recv(4096)  # the body timeout ends it
                s.close()
            except OSError:
                pass
            bump("unsent")

    for _ in range(60):  # idle connections, held for the whole run
        try:
            held.append(connect(server.port))
            bump("idle")
        except OSError:
            pass
    threads = [threading.Thread(target=f, daemon=True)
               for f, n in ((slow_head, 40), (huge_header, 4), (unsent_body, 40)) for _ in range(n)]
    for t in threads:
        t.start()

    client = server.client(retries=0)
    latencies: list[float] = []
    failures: list[str] = []
    peak = 0.0
    deadline = time.monotonic() + 12
    repo = "abuse/app"
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            client.describe_repositories(repositoryNames=[repo])
            push_layer(client, repo, unique_bytes(3000), part=1024)
        except Exception as e:  # noqa: BLE001 - any failure of a normal client is a finding
            failures.append(repr(e))
        latencies.append(time.monotonic() - t0)
        peak = max(peak, rss_mb(server.process.pid))
    stop.set()
    for t in threads:
        t.join(15)
    for s in held:
        s.close()
    latencies.sort()
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    print(f"\nabuse: {counts}; normal client: {len(latencies)} rounds (describe + 4-call push), "
          f"median {statistics.median(latencies) * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms; "
          f"server RSS peak {peak:.0f} MB")
    assert not failures, failures[:3]
    assert counts["unsent"] >= 40 and counts["slow"] >= 40
    assert p99 < P99_BOUND_S
    assert peak < RSS_BOUND_MB


def test_saturation_gets_503_and_recovers(tmp_path):
    srv = start_server(tmp_path, keys=[KEY_A], extra=["--max-connections", "4", "--head-timeout", "3"])
    try:
        hogs = [connect(srv.port) for _ in range(4)]
        for h in hogs:
            h.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # heads begun, not finished
        time.sleep(0.3)
        sock = connect(srv.port)
        sock.sendall(signed_head(srv.port, 2, "DescribeRepositories") + b"{}")
        status, _ = read_status(sock, 10)
        sock.close()
        assert status.startswith("HTTP/1.1 503")
        for h in hogs:
            h.close()
        time.sleep(0.3)
        assert srv.client().describe_repositories()["repositories"] == []
    finally:
        srv.stop()


def test_buffered_bodies_are_bounded_per_worker(tmp_path):
    """Two large bodies at once past the worker's budget: the second is throttled, not held."""
    srv = start_server(tmp_path, keys=[KEY_A], extra=["--max-buffered", "40MB", "--max-body-size", "29MB"])
    try:
        first = connect(srv.port)
        first.sendall(signed_head(srv.port, 28_000_000) + b"x" * 25_000_000)  # held: its end never comes
        time.sleep(0.5)
        second = connect(srv.port)
        second.sendall(signed_head(srv.port, 28_000_000))
        try:
            second.sendall(b"y" * 20_000_000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until(second, 15, b"}")  # the JSON error body ends the answer
        first.close()
        second.close()
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"ThrottlingException" in answer
        name = repo_name("after")
        srv.client().create_repository(repositoryName=name)  # the budget came back
    finally:
        srv.stop()
