"""The README's main job, run for real as a user runs it (on a small file)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from ecrstore import Store

ECRSTORE = [sys.executable, "-m", "ecrstore.cli"]


def run_demo(store: Path, file: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    return subprocess.run([*ECRSTORE, "demo", "--store", str(store), "--file", str(file)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_the_demo_pushes_an_image_twice_and_finds_it_in_place(tmp_path):
    layer = tmp_path / "layer.bin"
    layer.write_bytes(os.urandom(3 * 2**20 + 17))
    store = tmp_path / "demo-store"
    first = run_demo(store, layer)
    assert first.returncode == 0, first.stderr
    second = run_demo(store, layer)
    assert second.returncode == 0, second.stderr
    assert "LayerAlreadyExists" in second.stdout + second.stderr
    digest = "sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()
    with Store(store, read_only=True) as s:
        repos = [r.repository_name for r in s.describe_repositories().repositories]
        assert len(repos) == 2
        for name in repos:
            assert digest in dict(s.list_layers(name))
            assert s.describe_images(name).image_details
            with s.open_layer(name, digest) as r:
                assert hashlib.sha256(r.read()).hexdigest() == digest[7:]
        assert s.stats().blobs == 2  # the layer and the config, each stored once
        assert s.verify().ok
