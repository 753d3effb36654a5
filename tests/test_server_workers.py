"""Several workers: the supervisor deals connections to them in turn, replaces a worker that
dies, and its workers do not outlive it."""

from __future__ import annotations

import http.client
import os
import signal
import time
from pathlib import Path

import pytest
from server_fixtures import KEY_A, TARGET, repo_name, start_server

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads connection owners from /proc"),
]


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def workers_of(server) -> list[int]:
    """The server's worker processes (its children that hold TCP sockets to serve)."""
    found = []
    for pid in children(server.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.spawn" in cmdline:
            found.append(pid)
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def server_side_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the server's end of the connection from ``client_port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return inode
    return None


def open_connection(port: int) -> http.client.HTTPConnection:
    """A keep-alive connection that has had one answer (so a worker has it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/", body=b"{}", headers={"X-Amz-Target": TARGET + "DescribeRepositories"})
    response = conn.getresponse()
    response.read()
    assert response.status == 403  # unsigned: refused, but the connection stays open
    return conn


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_connections_are_dealt_to_every_worker(tmp_path):
    server = start_server(tmp_path, keys=[KEY_A], workers=2)
    connections = []
    try:
        assert wait_for(lambda: len(workers_of(server)) == 2)
        workers = workers_of(server)
        connections = [open_connection(server.port) for _ in range(4)]
        owners = []
        for conn in connections:
            inode = server_side_inode(server.port, conn.sock.getsockname()[1])
            assert inode is not None
            owner = [pid for pid in workers if inode in socket_inodes(pid)]
            assert len(owner) == 1, "one worker, and not the supervisor, serves a connection"
            owners.append(owner[0])
        assert sorted(owners.count(pid) for pid in workers) == [2, 2], owners
        assert inode not in socket_inodes(server.process.pid)
    finally:
        for conn in connections:
            conn.close()
        server.stop()
    assert server.process.returncode == 0


def test_a_dead_worker_is_replaced_and_connections_go_on(tmp_path):
    server = start_server(tmp_path, keys=[KEY_A], workers=2)
    try:
        assert wait_for(lambda: len(workers_of(server)) == 2)
        victim = workers_of(server)[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda: victim not in workers_of(server) and len(workers_of(server)) == 2)
        ecr = server.client()
        for _ in range(4):  # fresh connections, dealt to both the old and the new worker
            repo = repo_name("respawn")
            ecr.create_repository(repositoryName=repo)
            ecr.close()
            ecr = server.client()
        assert "exited with status" in server.log()
    finally:
        server.stop()


def test_workers_do_not_outlive_the_supervisor(tmp_path):
    server = start_server(tmp_path, keys=[KEY_A], workers=2)
    assert wait_for(lambda: len(workers_of(server)) == 2)
    workers = workers_of(server)
    server.process.kill()  # no chance to stop them itself
    server.process.wait(10)

    def gone(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    try:
        assert wait_for(lambda: all(gone(pid) for pid in workers), timeout=45)
    finally:
        for pid in workers:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
