"""tests/netns.py: namespaces on a private bridge reach the root namespace and each other, and
leave nothing behind."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading

import netns
import pytest

#: Fetches argv[1] (retrying while the server is starting) and prints the body.
FETCH = """
import sys, time, urllib.request
deadline = time.monotonic() + 10
while True:
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
"""


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from the root namespace, {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _fetch_in(link: netns.Link, ns: str, url: str) -> str:
    done = subprocess.run([*link.exec_prefix(ns), sys.executable, "-c", FETCH, url],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _exists(*args: str) -> bool:
    return subprocess.run(["ip", *args], capture_output=True).returncode == 0


def test_namespaces_reach_the_host_and_each_other_and_are_removed_on_exit(tmp_path):
    reason = netns.unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces are unavailable: {reason}")
    (tmp_path / "page").write_text("served from namespace 2")
    with netns.private_link(2) as link:
        (ns1, ip1), (ns2, ip2) = link.nodes
        assert link.host_ip.startswith("10.") and link.host_ip.endswith(".1")
        assert [ip1.rsplit(".", 1)[1], ip2.rsplit(".", 1)[1]] == ["2", "3"]
        assert all(len(name) <= 15 for name in (link.bridge, ns1, ns2))

        root_server = http.server.ThreadingHTTPServer((link.host_ip, 0), _Hello)
        threading.Thread(target=root_server.serve_forever, daemon=True).start()
        try:
            url = f"http://{link.host_ip}:{root_server.server_address[1]}/"
            for ns, ip in link.nodes:
                assert _fetch_in(link, ns, url) == f"hello from the root namespace, {ip}"
        finally:
            root_server.shutdown()
            root_server.server_close()

        # Left running on purpose: leaving the link must kill it.
        inner = subprocess.Popen([*link.exec_prefix(ns2), sys.executable, "-m", "http.server", "--bind", ip2,
                                  "--directory", str(tmp_path), "8000"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert _fetch_in(link, ns1, f"http://{ip2}:8000/page") == "served from namespace 2"

    assert inner.wait(10) < 0
    assert not _exists("netns", "pids", ns1) and not _exists("netns", "pids", ns2)
    assert not _exists("link", "show", link.bridge)
