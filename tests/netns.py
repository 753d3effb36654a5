"""Private networks for multi-node tests: Linux network namespaces on a bridge of their own.

``private_link(n)`` makes a bridge in the root namespace with an address in a random
10.x.y.0/24 (the bridge is .1) and ``n`` namespaces, each joined to it by a veth pair and given
.2, .3, ... A service in the root namespace bound to ``Link.host_ip`` is reachable from every
namespace, and the namespaces reach each other. Everything is removed on exit, errors
included: each namespace's processes are killed first. Names carry a random suffix, so
concurrent uses never meet. Needs root (or CAP_NET_ADMIN) and the ``ip`` command.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can (probed with a throw-away one)."""
    name = f"ecp-{secrets.token_hex(4)}"
    try:
        made = _ip("netns", "add", name, check=False)
    except FileNotFoundError:
        return "the `ip` command (iproute2) is not installed"
    if made.returncode:
        return f"`ip netns add` is refused here: {made.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


def available() -> bool:
    """Whether this process can make network namespaces."""
    return unavailable_reason() is None


@dataclass(frozen=True)
class Link:
    #: The bridge's address in the root namespace.
    host_ip: str
    #: (namespace name, its address), one per namespace.
    nodes: list[tuple[str, str]]
    bridge: str

    @staticmethod
    def exec_prefix(ns: str) -> list[str]:
        """The words that run the command after them inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns]


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 address and route destination of the root namespace, as networks."""
    found = []
    for word in (_ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show").stdout).split():
        with contextlib.suppress(ValueError):
            net = ipaddress.IPv4Network(word, strict=False)
            if net.prefixlen:
                found.append(net)
    return found


def _free_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no address or route on this host overlaps."""
    used = _networks_in_use()
    while True:
        net = ipaddress.IPv4Network(f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net


def _kill_processes_in(ns: str) -> None:
    for word in _ip("netns", "pids", ns, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(word), signal.SIGKILL)


@contextlib.contextmanager
def private_link(n: int) -> Iterator[Link]:
    """A bridge and ``n`` namespaces on it (see the module docstring); all removed on exit.

    Raises RuntimeError, naming the ``ip`` command that failed, when one cannot be made.
    """
    suffix = secrets.token_hex(3)
    net = _free_subnet()
    hosts = list(net.hosts())
    bridge = f"ecbr{suffix}"
    with contextlib.ExitStack() as cleanup:
        _ip("link", "add", bridge, "type", "bridge")
        cleanup.callback(_ip, "link", "del", bridge, check=False)
        _ip("addr", "add", f"{hosts[0]}/{net.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        nodes = []
        for i in range(1, n + 1):
            ns, outside, inside, address = f"ecns{suffix}-{i}", f"ecv{suffix}h{i}", f"ecv{suffix}n{i}", str(hosts[i])
            _ip("netns", "add", ns)
            cleanup.callback(_ip, "netns", "del", ns, check=False)
            cleanup.callback(_kill_processes_in, ns)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns)
            cleanup.callback(_ip, "link", "del", outside, check=False)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{address}/{net.prefixlen}", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            nodes.append((ns, address))
        yield Link(str(hosts[0]), nodes, bridge)
