"""``ecrstore import`` / ``ecrstore export``: output, progress, exit codes and signals."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from transfer_util import (
    docker_save_legacy,
    image_count,
    make_image,
    open_store,
    stored_manifest,
)

from ecrstore import cli as ecrstore_cli

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = ecrstore_cli.main(list(argv))
    except SystemExit as e:  # argparse: --help (0) and usage errors (2)
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    with open_store(path) as s:
        s.create_repository("app")
    return str(path)


@pytest.fixture
def source(tmp_path):
    return str(docker_save_legacy(tmp_path / "save.tar", [(make_image(1, size=300_000), ["app:v1"])]))


def test_the_parser_has_import_and_export():
    parser = ecrstore_cli.build_parser()
    args = parser.parse_args(["import", "x.tar", "--repo", "app"])
    assert callable(args.func) and args.jobs is None and not args.create_repo
    args = parser.parse_args(["export", "app:v1", "out", "--format", "docker-archive"])
    assert callable(args.func) and args.format == "docker-archive"


@pytest.mark.parametrize("command", ["import", "export"])
def test_help(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and out.startswith("usage: ecrstore") and "Exit codes" in out


def test_import_prints_progress_lines_and_a_summary(capsys, store, source):
    code, out, err = run(capsys, "import", source, "--repo", "app", "--store", store)
    assert code == 0, err
    assert out.startswith("imported 1 image into app from docker-archive") and out.count("\n") == 1
    assert "3 layers stored" in out
    lines = err.splitlines()
    assert lines[0] == "import: 3 layers, 616.2 KiB" or lines[0].startswith("import: 3 layers")
    assert sum(1 for x in lines if x.startswith("[")) == 3
    assert any(x.startswith("image sha256:") and x.endswith("[v1]: imported") for x in lines)
    with open_store(store) as s:
        assert stored_manifest(s, "app", "v1")


def test_import_quiet_and_json(capsys, store, source):
    code, out, err = run(capsys, "import", source, "--repo", "app", "--store", store, "--quiet", "--json")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["imagesImported"] == 1 and report["layersStored"] == 3
    assert report["images"][0]["imageTags"] == ["v1"]
    code, out, err = run(capsys, "import", source, "--repo", "app", "--store", store, "-q", "--json")
    again = json.loads(out)
    assert (again["imagesSkipped"], again["layersSkipped"], again["layersStored"]) == (1, 3, 0)


def test_import_create_repo_and_tag(capsys, store, source):
    code, _, err = run(capsys, "import", source, "--repo", "team/new", "--store", store, "-q")
    assert code == 1 and "RepositoryNotFoundException" in err
    code, out, err = run(capsys, "import", source, "--repo", "team/new", "--store", store, "-q",
                         "--create-repo", "--tag", "prod", "--jobs", "1")
    assert code == 0, err
    with open_store(store) as s:
        assert stored_manifest(s, "team/new", "prod")


def test_import_failures_exit_1(capsys, store, tmp_path):
    code, _, err = run(capsys, "import", str(tmp_path / "nope.tar"), "--repo", "app", "--store", store)
    assert code == 1 and err.startswith("error: ") and "no such file" in err
    code, _, err = run(capsys, "import", str(tmp_path), "--repo", "app", "--store", str(tmp_path / "nostore"))
    assert code == 1 and "no store at" in err
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"\0" * 10)
    code, _, err = run(capsys, "import", str(bad), "--repo", "app", "--store", store)
    assert code == 1 and "not a valid tar archive" in err
    img = make_image(2)
    img.layers[0] = img.layers[0][:-1] + b"?"
    tampered = docker_save_legacy(tmp_path / "t.tar", [(img, ["app:t"])])
    code, _, err = run(capsys, "import", str(tampered), "--repo", "app", "--store", store, "-q")
    assert code == 1 and "does not match its digest" in err and "layer.tar" in err
    with open_store(store) as s:
        assert image_count(s, "app") == 0


def test_import_usage_errors_exit_2(capsys, store, tmp_path):
    assert run(capsys, "import", "x.tar")[0] == 2  # --repo missing
    assert run(capsys, "import", "x.tar", "--repo", "app", "--jobs", "0")[0] == 2
    two = docker_save_legacy(tmp_path / "two.tar", [(make_image(3), ["app:a"]), (make_image(4), ["app:b"])])
    code, _, err = run(capsys, "import", str(two), "--repo", "app", "--store", store, "--tag", "x", "-q")
    assert code == 2 and "holds 2 images" in err


def test_export_formats_and_errors(capsys, store, source, tmp_path):
    assert run(capsys, "import", source, "--repo", "app", "--store", store, "-q")[0] == 0
    code, out, err = run(capsys, "export", "app:v1", str(tmp_path / "layout"), "--store", store)
    assert code == 0, err
    assert out.startswith("exported app:v1 (sha256:") and "as oci:" in out
    assert (tmp_path / "layout" / "index.json").is_file()
    code, out, _ = run(capsys, "export", "app:v1", str(tmp_path / "img.tar"), "--store", store, "--json", "-q")
    assert code == 0 and json.loads(out)["format"] == "oci-archive"
    code, out, _ = run(capsys, "export", "app:v1", str(tmp_path / "d.tar"), "--store", store, "-q",
                       "--format", "docker-archive")
    assert code == 0 and "as docker-archive" in out
    assert run(capsys, "export", "app", str(tmp_path / "x"), "--store", store)[0] == 2
    assert run(capsys, "export", "app:v1", str(tmp_path / "x"), "--store", store, "--format", "zip")[0] == 2
    code, _, err = run(capsys, "export", "app:missing", str(tmp_path / "x"), "--store", store)
    assert code == 1 and "ImageNotFoundException" in err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    code, _, err = run(capsys, "export", "app:v1", str(tmp_path / "junk"), "--store", store)
    assert code == 1 and "not an OCI image layout" in err


def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "ecrstore.cli", *argv]


def test_progress_bar_on_a_terminal(store, tmp_path):
    src = docker_save_legacy(tmp_path / "big.tar", [(make_image(5, layers=3, size=2_000_000), ["app:tty"])])
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(cli("import", str(src), "--repo", "app", "--store", store, "--jobs", "1"),
                            stdout=subprocess.PIPE, stderr=slave, cwd=ROOT)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the child
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=30)
    os.close(master)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert "import:" in text and "layers" in text and "B/s" in text  # tqdm: bytes, layers, rate
    assert b"imported 1 image" in out


def test_sigint_stops_the_import_with_130_and_no_image(store, tmp_path):
    src = docker_save_legacy(tmp_path / "big.tar", [(make_image(6, layers=8, size=12_000_000), ["app:int"])])
    proc = subprocess.Popen(cli("import", str(src), "--repo", "app", "--store", store, "--jobs", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stderr.readline().startswith("import:")  # the plan
    assert proc.stderr.readline().startswith("[1/9]")  # the first layer is in: 8 more to go
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # finished before the signal landed: nothing to check
        pytest.skip("the import finished before SIGINT arrived")
    assert proc.returncode == 130 and "interrupted" in err, err
    assert out == ""
    with open_store(store) as s:
        assert image_count(s, "app") == 0
