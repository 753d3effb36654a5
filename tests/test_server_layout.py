"""The server package's own layering, read from the source: protocol-neutral pieces never
depend on a protocol, and each protocol reaches the others only through the router."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parent.parent / "ecrstore" / "server"

#: Module (dotted, under ecrstore.server) -> the server modules it may import, as prefixes.
#: Every module of the package must be listed: a new one has to find its place here.
ALLOWED = {
    "__init__": {"asgi", "auth", "awsjson", "config", "factory", "runner"},
    "asgi": {"http.types"},
    "config": set(),
    "factory": {"asgi", "auth", "awsjson", "config", "oci.app", "oci.pull_through"},
    "runner": {"auth.credentials", "config", "factory", "http.guard"},
    "http.__init__": set(),
    "http.types": set(),
    "http.headers": set(),
    "http.ranges": set(),
    "http.body": {"http.types"},
    "http.hasher": set(),
    "http.guard": set(),
    "http.send": {"http.ranges", "http.types"},
    "auth.__init__": set(),
    "auth.credentials": set(),
    "auth.sigv4": {"auth.credentials"},
    "auth.registry_tokens": {"auth.credentials"},
    "awsjson.__init__": set(),
    "awsjson.codec": set(),
    "awsjson.decode": set(),
    "awsjson.operations": {"awsjson.codec", "awsjson.decode"},
    "awsjson.responses": {"awsjson.codec", "http.send", "http.types"},
    "awsjson.app": {"auth", "config", "http", "awsjson.codec", "awsjson.decode", "awsjson.login",
                    "awsjson.operations", "awsjson.responses"},
    "awsjson.login": {"auth.credentials", "auth.registry_tokens"},
    "awsjson.downloads": {"http", "awsjson.codec", "awsjson.responses"},
    "oci.__init__": set(),
    "oci.routes": set(),
    "oci.errors": set(),
    "oci.ingest": set(),
    "oci.access": {"oci.errors", "oci.routes"},
    "oci.app": {"auth.registry_tokens", "config", "http", "oci.access", "oci.errors", "oci.ingest",
                "oci.parsing", "oci.pull_through", "oci.routes"},
    "oci.parsing": {"oci.errors"},
    "oci.upstream": set(),
    "oci.pull_through": {"oci.errors", "oci.upstream"},
}

#: Third-party packages of the ``server`` extra, which these modules must not import at load time.
EXTRA = ("uvicorn", "orjson", "pybase64", "botocore")
LIGHT = {"__init__", "config", "runner", "auth.__init__", "auth.credentials", "awsjson.__init__",
         "awsjson.codec", "http.__init__", "http.types", "http.headers", "http.ranges", "http.body", "http.guard"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SERVER).with_suffix("").parts)


def server_imports(path: Path, top_level_only: bool = False) -> tuple[set[str], set[str]]:
    """(server modules, other absolute modules) imported by ``path``; with ``top_level_only``
    only the imports executed when the module loads (not inside functions or TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    package = list(path.relative_to(SERVER).parent.parts)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    inside, outside = set(), set()
    for node in nodes:
        if isinstance(node, ast.Import):
            outside.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if not node.level:
                outside.add(node.module or "")
                continue
            base = package[: len(package) - node.level + 1]
            if node.level - 1 > len(package):  # above ecrstore.server: the engine
                continue
            target = ".".join(base + ([node.module] if node.module else []))
            if not target:
                inside.update(a.name for a in node.names)
            else:
                inside.add(target)
    return inside, outside


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in SERVER.rglob("*.py")}


def test_every_module_has_a_place():
    assert set(all_modules()) == set(ALLOWED)


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_server_imports_follow_the_layers(name):
    inside, _ = server_imports(all_modules()[name])
    allowed = ALLOWED[name]
    bad = {m for m in inside if m != name and not any(m == a or m.startswith(a + ".") for a in allowed)}
    assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize("name", sorted(LIGHT))
def test_light_modules_load_without_the_server_extra(name):
    _, outside = server_imports(all_modules()[name], top_level_only=True)
    assert not {m for m in outside if m.split(".")[0] in EXTRA}
