"""Starting the server: store and credentials preparation, then uvicorn with N workers.

:func:`run` serves any ASGI app given as an *app factory*: a picklable callable that builds
the app. Workers are processes started with the ``spawn`` method, so no store handle, lock or
thread crosses a fork; each receives the factory and calls it once it started, so each builds
its own app (and opens its own Store). :func:`serve` runs ECR's endpoints for a
:class:`ServerConfig` (:class:`.factory.AppFactory`).

Connections are dealt to the workers round-robin by the supervisor: it alone accepts on the
listening socket and passes each accepted connection's descriptor to the next worker over a
Unix socket (``SCM_RIGHTS``); the worker hands it to its event loop
(``loop.connect_accepted_socket``) with uvicorn's own protocol. Letting every worker accept on
a shared socket instead leaves the choice to the kernel's wake-up order, which on an idle
server tends to give every new connection to the same worker: two clients then share one
process while the other idles. (Node's cluster module deals connections round-robin for the
same reason.) Only the accept goes through the supervisor; the requests themselves never do.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .auth.credentials import Credential, ensure_credentials_file, load_credentials
from .config import ServerConfig
from .http.guard import HeadLimits, guarded_protocol

__all__ = [
    "CREDENTIALS_FILENAME",
    "endpoint_url",
    "prepare_credentials",
    "prepare_store",
    "run",
    "serve",
    "usage_hint",
]

#: A picklable callable building the ASGI app; called once in every worker process.
AsgiAppFactory = Callable[[], Any]

#: Name of the credentials file ``ecrstore serve`` keeps inside the store directory.
CREDENTIALS_FILENAME = "credentials"
GRACEFUL_SHUTDOWN_SECONDS = 30
#: uvicorn's exit status for a worker that could not start.
STARTUP_FAILURE = 3
MAX_STARTUP_FAILURES = 3
#: A worker that dies within this many seconds of its start counts as failing to start,
#: whatever its exit status; restarts wait 0.5 s, 1 s, 2 s ... up to MAX_RESTART_DELAY.
QUICK_DEATH_SECONDS = 10.0
MAX_RESTART_DELAY = 30.0

log = logging.getLogger("ecrstore.server")
#: How long the supervisor's accept waits before it looks at the stop flag again (seconds).
ACCEPT_POLL_SECONDS = 0.2
#: Idle keep-alive connections are kept this long. Well above uvicorn's default of 5 s: SDK
#: clients reuse pooled connections after pauses, and a close racing a reuse costs a retry.
KEEP_ALIVE_SECONDS = 60


def prepare_store(store_path: str, store_options: dict[str, Any]) -> None:
    """Create (or check) the store once in this process, before any worker starts, so that a
    bad path or setting is reported once and clearly. The store is closed again: each worker
    opens its own."""
    from .. import Store

    with Store(store_path, **store_options):
        pass


def prepare_credentials(store_path: str, credentials_file: str | None, registry_id: str
                        ) -> tuple[str, dict[str, Credential], bool]:
    """The credentials file to use, its credentials, and whether it was just created.

    With an explicit ``credentials_file`` it must exist and parse. Otherwise
    ``<store>/credentials`` is used, created with a fresh key for ``registry_id`` if absent.
    Raises CredentialsFileError.
    """
    if credentials_file:
        return credentials_file, load_credentials(credentials_file), False
    path = os.path.join(store_path, CREDENTIALS_FILENAME)
    creds, created = ensure_credentials_file(path, registry_id)
    return path, creds, created


def endpoint_url(host: str, port: int) -> str:
    """The URL a local client reaches a server listening on ``host:port`` at (a wildcard
    address becomes 127.0.0.1, an IPv6 address is bracketed)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def usage_hint(path: str, credential: Credential, host: str, port: int, created: bool,
               public_url: str | None = None) -> str:
    """How to point the AWS CLI / boto3 at this server with ``credential`` (for stderr). The
    secret is shown only when the file was just created: later starts name the file instead,
    so a secret does not end up in every log that captures the server's output."""
    verb = "created" if created else "using"
    secret = credential.secret_access_key if created else f"<the secret for {credential.access_key_id} in {path}>"
    return (
        f"ecrstore: {verb} credentials file {path}\n"
        f"ecrstore: to use this server (registry {credential.registry_id}):\n"
        f"  export AWS_ACCESS_KEY_ID={credential.access_key_id}\n"
        f"  export AWS_SECRET_ACCESS_KEY={secret}\n"
        f"  export AWS_ENDPOINT_URL_ECR={endpoint_url(host, port)}\n"
        f"  export AWS_DEFAULT_REGION=us-east-1\n"
        f"  aws ecr describe-repositories\n"
        f"  aws ecr get-login-password | docker login --username AWS --password-stdin "
        f"{(public_url or endpoint_url(host, port)).split('://', 1)[1]}\n"
    )


class RedactSignatures(logging.Filter):
    """Access-log lines show a request's path without the query's signature values: a signed
    download URL in a log is as good as the layer to whoever reads the log."""

    _SECRET = re.compile(r"((?:X-Ecrstore-Signature|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=)[^&\s\"]*",
                         re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._SECRET.sub(r"\1REDACTED", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup with every log (access lines included) on stderr, signatures
    redacted from access lines, and the ecrstore loggers sharing its handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config.setdefault("filters", {})["redact"] = {"()": RedactSignatures}
    config["handlers"]["access"]["filters"] = ["redact"]
    config["loggers"]["ecrstore"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def _uvicorn_config(factory: AsgiAppFactory, host: str, port: int, log_level: str, access_log: bool,
                    limits: ConnectionLimits) -> Any:
    import uvicorn

    return uvicorn.Config(
        factory,
        factory=True,
        http=guarded_protocol(limits.head),
        limit_concurrency=limits.max_connections,
        interface="asgi3",
        host=host,
        port=port,
        lifespan="on",
        log_level=log_level,
        log_config=_log_config(log_level),
        access_log=access_log,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


@dataclass(frozen=True)
class ConnectionLimits:
    """What one worker allows before any app sees a request: head size and time, and how
    many connections it serves at once (503 past it)."""

    head: HeadLimits = HeadLimits()
    max_connections: int = 256


def _worker_main(factory: AsgiAppFactory, host: str, port: int, log_level: str, access_log: bool,
                 limits: ConnectionLimits, channel: socket.socket) -> None:
    """Entry point of a worker process (spawned: nothing but its arguments is inherited).
    Serves the connections the supervisor passes over ``channel``."""
    server = _handoff_server_class()(_uvicorn_config(factory, host, port, log_level, access_log, limits), channel)
    server.run(sockets=[])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


@functools.cache
def _handoff_server_class() -> type:
    import uvicorn

    class HandoffServer(uvicorn.Server):
        """A uvicorn server with no listening socket of its own: connections arrive as
        descriptors over a Unix socket from the supervisor. When the supervisor goes away
        (the channel closes) the worker shuts down gracefully."""

        def __init__(self, config: Any, channel: socket.socket) -> None:
            super().__init__(config)
            self._channel = channel

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=[])
            if not self.started:
                return
            protocol_class: Any = self.config.http_protocol_class  # a class: uvicorn types it as a Protocol
            create_protocol = functools.partial(
                protocol_class, config=self.config,
                server_state=self.server_state, app_state=self.lifespan.state,
            )
            self._channel.setblocking(False)
            asyncio.get_running_loop().add_reader(self._channel.fileno(), self._receive, create_protocol)

        def _receive(self, create_protocol: Any) -> None:
            loop = asyncio.get_running_loop()
            try:
                data, fds, _, _ = socket.recv_fds(self._channel, 64, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the supervisor is gone
                loop.remove_reader(self._channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                conn = socket.socket(fileno=fd)
                if self.should_exit:
                    conn.close()
                    continue
                conn.setblocking(False)
                task = loop.create_task(loop.connect_accepted_socket(create_protocol, conn))
                task.add_done_callback(_log_handoff_failure)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                asyncio.get_running_loop().remove_reader(self._channel.fileno())
            except (ValueError, OSError):
                pass
            self._channel.close()
            await super().shutdown(sockets=sockets)

    return HandoffServer


def _log_handoff_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a connection could not be taken over: %s", task.exception())


def serve(config: ServerConfig, *, host: str = "127.0.0.1", port: int = 5000, workers: int = 1,
          log_level: str = "info", access_log: bool = True) -> int:
    """Serve ECR's endpoints for ``config``: :func:`run` with ``AppFactory(config)``."""
    from .factory import AppFactory  # here: this module needs no server extra to import

    limits = ConnectionLimits(HeadLimits(config.max_head_bytes, config.head_timeout), config.max_connections)
    return run(AppFactory(config), host=host, port=port, workers=workers, log_level=log_level,
               access_log=access_log, limits=limits)


def run(factory: AsgiAppFactory, *, host: str = "127.0.0.1", port: int = 5000, workers: int = 1,
        log_level: str = "info", access_log: bool = True, limits: ConnectionLimits | None = None) -> int:
    """Run the app ``factory`` builds until SIGINT/SIGTERM; returns the exit status after a
    graceful shutdown.

    ``factory`` must be picklable (it travels to spawned workers). With one worker uvicorn runs
    in this process. With more, this process binds the socket, supervises ``workers`` spawned
    processes and deals them the accepted connections in turn; each calls ``factory`` once.
    A worker that dies is restarted (the connections it held are lost), after a delay that
    doubles while workers keep dying young; after MAX_STARTUP_FAILURES workers in a row fail
    to start or die within QUICK_DEATH_SECONDS (e.g. the store cannot be opened) the server
    stops with status 1.
    """
    import uvicorn

    limits = limits or ConnectionLimits()
    uv_config = _uvicorn_config(factory, host, port, log_level, access_log, limits)
    if workers <= 1:
        server = uvicorn.Server(uv_config)
        server.run()
        return 0 if server.started else 1
    sock = uv_config.bind_socket()
    try:
        sock.listen(uv_config.backlog)  # bound, not yet listening: the workers no longer do it
        return _Supervisor(workers, (factory, host, port, log_level, access_log, limits), sock).run()
    finally:
        sock.close()


class _Supervisor:
    """Keeps ``count`` worker processes alive, deals them the accepted connections in turn,
    and stops them all on SIGINT/SIGTERM."""

    def __init__(self, count: int, args: tuple[Any, ...], listener: socket.socket) -> None:
        self._count = count
        self._args = args
        self._listener = listener
        self._context = multiprocessing.get_context("spawn")
        self._stop = threading.Event()
        self._failures = 0
        #: slot -> the supervisor's end of that worker's channel (replaced on restart).
        self._channels: list[socket.socket | None] = [None] * count
        self._channels_lock = threading.Lock()

    def _start(self, slot: int) -> multiprocessing.process.BaseProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = self._context.Process(target=_worker_main, args=(*self._args, theirs), name="ecrstore-worker")
        process.start()
        theirs.close()
        # Never wait on a worker: one whose queue is full (still starting, or stuck) is passed over.
        ours.setblocking(False)
        with self._channels_lock:
            old, self._channels[slot] = self._channels[slot], ours
        if old is not None:
            old.close()
        return process

    def _deal(self) -> None:
        """The accept loop (a thread): each connection goes to the next worker that takes it."""
        self._listener.settimeout(ACCEPT_POLL_SECONDS)
        turn = 0
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, InterruptedError):
                continue
            except OSError as e:
                if self._stop.is_set():
                    return
                log.error("accept failed: %s", e)
                time.sleep(ACCEPT_POLL_SECONDS)  # e.g. EMFILE: give descriptors time to free up
                continue
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for _ in range(self._count):
                    with self._channels_lock:
                        channel = self._channels[turn % self._count]
                    turn += 1
                    try:
                        if channel is not None:
                            socket.send_fds(channel, [b"c"], [conn.fileno()])
                            break
                    except OSError:  # gone (its replacement gets a new channel) or its queue is full
                        continue
                else:
                    log.error("no worker could take a connection; it was closed")

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        processes: list[multiprocessing.process.BaseProcess | None] = [self._start(i) for i in range(self._count)]
        started = [time.monotonic()] * self._count
        due: list[float | None] = [None] * self._count  # when a dead slot is restarted
        log.info("started %d workers (pids %s)", len(processes),
                 ", ".join(str(p.pid) for p in processes if p is not None))
        dealer = threading.Thread(target=self._deal, name="ecrstore-accept", daemon=True)
        dealer.start()
        try:
            while not self._stop.is_set():
                multiprocessing.connection.wait([p.sentinel for p in processes if p is not None], timeout=0.5)
                now = time.monotonic()
                for i, process in enumerate(processes):
                    if self._stop.is_set():
                        break
                    if process is None:
                        when = due[i]
                        if when is not None and now >= when:
                            try:
                                processes[i], started[i], due[i] = self._start(i), now, None
                            except OSError as e:  # the spawn itself failed: count it and wait
                                log.error("cannot start a worker: %s", e)
                                status = self._failed(i, due, now) or status
                        continue
                    if process.is_alive():
                        continue
                    log.error("worker %d exited with status %s", process.pid, process.exitcode)
                    processes[i] = None
                    if process.exitcode == STARTUP_FAILURE or now - started[i] < QUICK_DEATH_SECONDS:
                        status = self._failed(i, due, now) or status
                    else:
                        self._failures = 0
                        due[i] = now
        finally:
            self._stop.set()
            dealer.join()
            alive = [p for p in processes if p is not None]
            for process in alive:
                if process.is_alive():
                    process.terminate()  # SIGTERM: uvicorn finishes its requests and exits
            deadline = time.monotonic() + GRACEFUL_SHUTDOWN_SECONDS + 5
            for process in alive:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            with self._channels_lock:
                for channel in self._channels:
                    if channel is not None:
                        channel.close()
        return status

    def _failed(self, slot: int, due: list[float | None], now: float) -> int:
        """A worker failed to start or died young: schedule its restart with a growing delay,
        or stop the server (answering 1) once failures in a row reach the limit."""
        self._failures += 1
        if self._failures >= MAX_STARTUP_FAILURES:
            log.error("workers keep failing at startup (%d in a row); stopping", self._failures)
            self._stop.set()
            return 1
        delay = min(MAX_RESTART_DELAY, 0.5 * 2 ** (self._failures - 1))
        log.error("restarting worker slot %d in %.1f s", slot, delay)
        due[slot] = now + delay
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop.set()
