"""Keeps the architecture honest by reading the source: one table of layers covering every
module, and the rules that keep backends behind their seams (see ARCHITECTURE.md).

A module may import modules of its own layer or lower ones, never higher; a module missing
from the table fails (a new module has to find its place here first).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "ecrstore"

ERRORS, VALUES, LOW, BACKENDS, POLICY, FACADE, FRONT = range(7)

#: Every module of the package -> its layer. Package modules are named by their folder.
LAYERS: dict[str, int] = {
    "ecrstore.errors": ERRORS,
    **dict.fromkeys(["ecrstore.limits", "ecrstore.settings", "ecrstore.digest", "ecrstore.models",
                     "ecrstore.tokens", "ecrstore._sha256", "ecrstore.scan_models"], VALUES),
    **dict.fromkeys(["ecrstore.fsutil", "ecrstore.hashing", "ecrstore.manifest", "ecrstore.validate",
                     "ecrstore.policy", "ecrstore.lifecycle_rules"], LOW),
    **dict.fromkeys(["ecrstore.index", "ecrstore.index.base", "ecrstore.index.records", "ecrstore.index.lmdb",
                     "ecrstore.index.lmdb_codec", "ecrstore.index.lmdb_migrate", "ecrstore.index.postgres",
                     "ecrstore.index.pg_schema", "ecrstore.blobs", "ecrstore.blobs.base", "ecrstore.blobs.local",
                     "ecrstore.blobs.s3", "ecrstore.blobs.s3_bucket", "ecrstore.urls"], BACKENDS),
    **dict.fromkeys(["ecrstore.uploads", "ecrstore.images", "ecrstore.repositories", "ecrstore.layers",
                     "ecrstore.maintenance", "ecrstore.documents", "ecrstore.repository_settings",
                     "ecrstore.policies", "ecrstore.lifecycle", "ecrstore.replication", "ecrstore.pull_through",
                     "ecrstore.scanning", "ecrstore.scanning_rules", "ecrstore.creation_templates"], POLICY),
    **dict.fromkeys(["ecrstore", "ecrstore.store", "ecrstore.backends"], FACADE),
}
#: Front-end packages: every module in them is a front end (their inner layering is checked
#: by their own tests, e.g. tests/test_server_layout.py).
FRONT_PACKAGES = ("ecrstore.server", "ecrstore.cli", "ecrstore.transfer")

#: Backend internals: only the facade may build them; policy and front ends go through seams.
BACKEND_INTERNALS = {"ecrstore.index.lmdb", "ecrstore.index.lmdb_codec", "ecrstore.index.lmdb_migrate",
                     "ecrstore.index.postgres", "ecrstore.index.pg_schema", "ecrstore.blobs.local",
                     "ecrstore.blobs.s3", "ecrstore.blobs.s3_bucket"}
#: The only modules that make file-system calls on store files (front ends read their own
#: inputs: import sources, credentials files).
FILE_CALLERS = {"ecrstore.blobs.local", "ecrstore.hashing", "ecrstore.fsutil", "ecrstore.urls"}
FILE_CALLS = {"open", "pwrite", "pread", "write", "read", "ftruncate", "truncate", "rename", "link", "unlink",
              "fsync", "fdatasync", "chmod", "mkdir", "listdir", "stat", "fstat", "copy_file_range", "sendfile",
              "remove", "replace", "scandir"}
FILE_MODULES = {"fcntl", "mmap", "shutil"}


def name_of(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def imports(path: Path) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved)."""
    package = name_of(path).split(".") if path.name == "__init__.py" else name_of(path).split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                if node.module:  # ``from . import x`` names modules of the package, not the package
                    out.add(mod)
                out.update(f"{mod}.{a.name}" for a in node.names)
            else:
                out.add(node.module or "")
                out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def modules() -> dict[str, Path]:
    return {name_of(p): p for p in PKG.rglob("*.py")} | {"ecrstore._sha256": PKG / "_sha256.pyi"}


def layer_of(module: str) -> int | None:
    if module in LAYERS:
        return LAYERS[module]
    if any(module == f or module.startswith(f + ".") for f in FRONT_PACKAGES):
        return FRONT
    return None


def package_modules(imported: set[str]) -> set[str]:
    """The ecrstore modules among imported names (``from x import y`` may name a module or a
    name in it: the longest known module wins)."""
    known = set(modules())
    out = set()
    for name in imported:
        if not name.startswith("ecrstore"):
            continue
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def test_every_module_has_a_layer():
    missing = sorted(m for m in modules() if layer_of(m) is None)
    assert not missing, f"modules with no place in the table: {missing}"
    stale = sorted(m for m in LAYERS if m not in modules())
    assert not stale, f"the table names modules that do not exist: {stale}"


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_point_down(module):
    if module == "ecrstore._sha256":
        return
    mine = layer_of(module)
    assert mine is not None
    up = {m for m in package_modules(imports(modules()[module])) if (layer_of(m) or 0) > mine}
    assert not up, f"{module} (layer {mine}) imports higher layers: {up}"


def test_only_the_lmdb_backend_imports_lmdb():
    users = {m for m, p in modules().items() if p.suffix == ".py"
             and any(i == "lmdb" or i.startswith("lmdb.") for i in imports(p))}
    assert users == {"ecrstore.index.lmdb"}


def test_only_the_postgres_backend_imports_psycopg():
    users = {m for m, p in modules().items() if p.suffix == ".py"
             and any(i.split(".")[0] in ("psycopg", "psycopg_pool") for i in imports(p))}
    assert users == {"ecrstore.index.postgres"}


def test_only_the_s3_bucket_talks_to_s3_among_the_backends():
    users = {m for m, p in modules().items() if LAYERS.get(m) == BACKENDS
             and any(i.split(".")[0] in ("botocore", "boto3") for i in imports(p))}
    assert users == {"ecrstore.blobs.s3_bucket"}


def test_errors_import_nothing_of_the_package():
    assert not package_modules(imports(modules()["ecrstore.errors"]))


def test_backend_internals_are_reached_only_by_the_facade_and_themselves():
    for module, path in modules().items():
        if path.suffix != ".py" or module in BACKEND_INTERNALS or module in ("ecrstore.store", "ecrstore.backends"):
            continue
        bad = package_modules(imports(path)) & BACKEND_INTERNALS
        assert not bad, f"{module} reaches backend internals {bad}"


def _file_calls(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            if isinstance(target, ast.Name) and target.id == "os" and node.func.attr in FILE_CALLS:
                found.add(f"os.{node.func.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            found.add("open")
    found.update(i for i in imports(path) if i.split(".")[0] in FILE_MODULES)
    return found


@pytest.mark.parametrize("module", sorted(m for m in LAYERS if m not in FILE_CALLERS and m != "ecrstore._sha256"))
def test_engine_file_calls_live_in_the_blob_backend(module):
    calls = _file_calls(modules()[module])
    assert not calls, f"{module} makes file-system calls {calls}: they belong in blobs/local.py or fsutil.py"


def test_the_environment_is_read_in_one_place():
    readers = {m for m, p in modules().items() if p.suffix == ".py"
               and ("os.environ" in p.read_text() or "getenv(" in p.read_text())}
    assert readers == {"ecrstore.settings"}


def test_modules_stay_readable():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines: {long}"
