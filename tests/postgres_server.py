"""A real PostgreSQL server for the test session: Debian's binaries, a throw-away cluster.

Never mocked and never skipped: without the ``postgresql`` package the tests fail, naming it.
The cluster lives in a temporary directory, listens on a Unix socket only (no TCP port can
clash) and runs as an unprivileged user (PostgreSQL refuses root): ``ecrstore-pg``, a system
user made here when the tests run as root and it does not exist yet.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass

import psycopg
import pytest

USER = "ecrstore-pg"
PORT = 5432  # names the socket file only: the socket directory is private


def _bin_dir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        pytest.fail("PostgreSQL is not installed: it comes with the Debian package 'postgresql' "
                    "(make test installs it; or: apt-get install -y postgresql)")
    return os.path.dirname(found[-1])


def _run_as() -> str | None:
    """The user the server runs as: ourselves unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True, capture_output=True, timeout=30)
    return USER


@dataclass
class PostgresServer:
    root: str
    process: subprocess.Popen[bytes]
    socket_dir: str

    @property
    def admin_dsn(self) -> str:
        return f"host={self.socket_dir} port={PORT} user=postgres dbname=postgres"

    def new_database(self) -> str:
        """A fresh, empty database; its conninfo."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        return f"host={self.socket_dir} port={PORT} user=postgres dbname={name}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT) of the server started here, by its PID; then remove it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> PostgresServer:
    bindir, user = _bin_dir(), _run_as()
    root = tempfile.mkdtemp(prefix="ecrstore-pg-")
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.mkdir(sock)
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (root, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    init = subprocess.run([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
                           "-E", "UTF8", "--no-locale", "--no-sync"],
                          user=user, capture_output=True, timeout=120, cwd=root)
    if init.returncode:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stderr.decode(errors='replace')}")
    log = open(os.path.join(root, "server.log"), "wb")
    proc = subprocess.Popen([os.path.join(bindir, "postgres"), "-D", data, "-k", sock, "-p", str(PORT),
                             "-c", "listen_addresses=", "-c", "max_connections=200"],
                            user=user, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    log.close()
    server = PostgresServer(root, proc, sock)
    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg.connect(server.admin_dsn, connect_timeout=2).close()
            return server
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(root, "server.log"), errors="replace") as f:
                    text = f.read()
                server.stop()
                pytest.fail(f"PostgreSQL did not start: {text[-2000:]}")
            time.sleep(0.1)
