"""Keeps the architecture honest by reading the source: who may import what."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "ecrstore"


def imports(path: Path) -> set[str]:
    """Absolute module names imported by a file (relative imports resolved against ecrstore)."""
    tree = ast.parse(path.read_text())
    rel_base = ["ecrstore"] + list(path.relative_to(PKG).parent.parts)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = rel_base[: len(rel_base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                out.add(mod)
                if not node.module:
                    out.update(f"{mod}.{a.name}" for a in node.names)
            else:
                out.add(node.module or "")
    return out


def modules() -> dict[str, set[str]]:
    return {
        ".".join(p.relative_to(PKG.parent).with_suffix("").parts): imports(p)
        for p in PKG.rglob("*.py")
    }


def test_only_the_index_imports_lmdb():
    users = {m for m, imp in modules().items() if any(i == "lmdb" or i.startswith("lmdb.") for i in imp)}
    assert users == {"ecrstore.index"}


def test_errors_module_imports_nothing_from_the_package():
    assert not {i for i in modules()["ecrstore.errors"] if i.startswith("ecrstore")}


@pytest.mark.parametrize("low", ["ecrstore.store", "ecrstore.uploads", "ecrstore.index", "ecrstore.maintenance",
                                 "ecrstore.hashing", "ecrstore.layout", "ecrstore.digest"])
def test_engine_never_imports_front_ends(low):
    mods = modules()
    if low not in mods:
        pytest.skip(f"{low} does not exist")
    bad = {i for i in mods[low] if i.startswith(("ecrstore.server", "ecrstore.cli"))}
    assert not bad, f"{low} imports front ends: {bad}"


def test_environment_is_read_in_one_place():
    readers = set()
    for p in PKG.rglob("*.py"):
        src = p.read_text()
        if "os.environ" in src or "getenv(" in src:
            readers.add(p.name)
    assert readers <= {"settings.py"}, readers


def test_modules_stay_readable():
    long = {p.name: n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 800}
    assert not long, f"modules over 800 lines: {long}"
