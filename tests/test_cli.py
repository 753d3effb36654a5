"""The ``ecrstore`` command-line tool: commands, messages and exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from ecrstore import cli
from ecrstore.cli.common import parse_size

pytestmark = pytest.mark.timeout(120)

COMMANDS = [[], ["serve"], ["init"], ["repo"], ["repo", "create"], ["repo", "ls"], ["repo", "show"],
            ["repo", "rm"], ["layers"], ["layers", "push"], ["layers", "ls"], ["push-layer"], ["ls-layers"],
            ["images"], ["images", "ls"], ["uploads"], ["uploads", "ls"], ["uploads", "abort"], ["verify"],
            ["purge"], ["gc"], ["stats"], ["demo"], ["import"], ["export"]]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as e:  # argparse: --help (0) and usage errors (2)
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store(tmp_path, capsys):
    path = str(tmp_path / "store")
    code, out, _ = run(capsys, "init", "--store", path)
    assert code == 0 and "created store" in out
    return path


@pytest.fixture
def layer_file(tmp_path):
    path = tmp_path / "layer.bin"
    # two parts at the default 10 MiB part size
    path.write_bytes(os.urandom(1 << 20) * 12 + b"tail")
    return path


def sha(path) -> str:
    return "sha256:" + hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ecrstore")
def test_every_command_has_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert out.startswith("usage: ecrstore")


def test_help_documents_exit_codes_and_store_default(capsys):
    _, out, _ = run(capsys, "--help")
    assert "Exit codes: 0 success, 1 failure" in out and "2 usage error" in out
    _, out, _ = run(capsys, "stats", "--help")
    assert "./ecrstore-data" in out


def test_usage_errors_exit_2(capsys):
    assert run(capsys)[0] == 2
    assert run(capsys, "no-such-command")[0] == 2
    assert run(capsys, "push-layer", "file")[0] == 2  # --repo missing
    code, _, err = run(capsys, "serve", "--part-size", "lots")
    assert code == 2 and "invalid size" in err
    assert run(capsys, "serve", "--credentials", "f", "--no-auth")[0] == 2


def test_parse_size():
    assert parse_size("65536") == 65536
    assert parse_size("64KiB") == 65536
    assert parse_size("5MiB") == 5 * 2**20
    assert parse_size("10MB") == 10_000_000


def test_missing_store_is_a_clear_failure(capsys, tmp_path):
    code, _, err = run(capsys, "stats", "--store", str(tmp_path / "nowhere"))
    assert code == 1
    assert "error: no store at" in err and "ecrstore init" in err
    assert not (tmp_path / "nowhere").exists()


def test_repo_create_ls_rm(capsys, store):
    code, out, _ = run(capsys, "repo", "create", "team/app", "--store", store, "--tag", "team=storage")
    assert code == 0 and out.strip().endswith(".amazonaws.com/team/app")
    run(capsys, "repo", "create", "other", "--store", store, "--immutable")
    code, out, _ = run(capsys, "repo", "ls", "--store", store)
    assert code == 0
    lines = out.splitlines()
    assert {line.split()[0] for line in lines} == {"team/app", "other"}
    assert any("IMMUTABLE" in line for line in lines)
    code, out, _ = run(capsys, "repo", "ls", "--store", store, "--json")
    assert {r["repositoryName"] for r in json.loads(out)} == {"team/app", "other"}
    assert run(capsys, "repo", "rm", "other", "--store", store)[0] == 0
    code, _, err = run(capsys, "repo", "rm", "other", "--store", store)
    assert code == 1 and err.startswith("error: RepositoryNotFoundException: ")


def test_ecr_errors_are_reported_with_their_code(capsys, store):
    code, out, err = run(capsys, "repo", "create", "Bad Name", "--store", store)
    assert code == 1 and out == ""
    assert err.startswith("error: InvalidParameterException: Invalid parameter at 'repositoryName'")


def test_push_layer_needs_the_repository(capsys, store, layer_file):
    code, out, err = run(capsys, "push-layer", str(layer_file), "--repo", "app", "--store", store)
    assert code == 1 and "RepositoryNotFoundException" in err and out == ""


def test_push_layer_ls_layers_stats_verify(capsys, store, layer_file):
    code, out, _ = run(capsys, "push-layer", str(layer_file), "--repo", "app", "--store", store, "--create-repo")
    assert code == 0 and out.strip() == sha(layer_file)
    # the same bytes in a second repository: stored once
    code, out, _ = run(capsys, "push-layer", str(layer_file), "--repo", "copy", "--store", store, "--create-repo")
    assert code == 0 and out.strip() == sha(layer_file)
    # pushing it again into the same repository is not an error
    code, out, err = run(capsys, "push-layer", str(layer_file), "--repo", "app", "--store", store)
    assert code == 0 and out.strip() == sha(layer_file) and "already" in err

    code, out, _ = run(capsys, "ls-layers", "--repo", "app", "--store", store)
    size = layer_file.stat().st_size
    assert code == 0 and out.split()[:2] == [sha(layer_file), str(size)]

    code, out, _ = run(capsys, "stats", "--store", store, "--json")
    stats = json.loads(out)
    assert stats["repositories"] == 2 and stats["layers"] == 2 and stats["blobs"] == 1
    assert stats["blob_bytes"] == size and stats["linked_bytes"] == 2 * size
    assert stats["dedupe_saved_bytes"] == size
    code, out, _ = run(capsys, "stats", "--store", store)
    assert code == 0 and "dedupe savings" in out and "50.0%" in out

    code, out, _ = run(capsys, "verify", "--store", store)
    assert code == 0 and "checked 1 blobs" in out


def test_push_layer_small_parts_and_empty_file(capsys, store, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    code, _, err = run(capsys, "push-layer", str(empty), "--repo", "app", "--store", store, "--create-repo")
    assert code == 1 and "EmptyUploadException" in err
    missing = tmp_path / "absent"
    code, _, err = run(capsys, "push-layer", str(missing), "--repo", "app", "--store", store)
    assert code == 1 and "cannot open" in err


def test_verify_reports_a_corrupt_blob(capsys, store, layer_file):
    run(capsys, "push-layer", str(layer_file), "--repo", "app", "--store", store, "--create-repo")
    blobs = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(store, "blobs")) for f in files]
    assert len(blobs) == 1
    with open(blobs[0], "r+b") as f:
        f.seek(12345)
        byte = f.read(1)
        f.seek(12345)
        f.write(bytes([byte[0] ^ 0xFF]))
    code, out, _ = run(capsys, "verify", "--store", store)
    assert code == 1
    assert "1 problem(s)" in out and sha(layer_file) in out


def test_purge_reports(capsys, store):
    code, out, _ = run(capsys, "purge", "--store", store)
    assert code == 0 and out.startswith("removed 0 expired upload(s), 0 unreferenced blob(s)")
    code, out, _ = run(capsys, "purge", "--store", store, "--grace", "0")
    assert code == 0 and "freed 0 B" in out


def test_demo_runs_on_a_small_file(capsys, tmp_path):
    layer = tmp_path / "layer.bin"
    layer.write_bytes(os.urandom(300_000))
    store = str(tmp_path / "demo")
    code, out, err = run(capsys, "demo", "--store", store, "--file", str(layer))
    assert code == 0, err
    assert "read back   verified" in out and "all match" in out
    code, out, err = run(capsys, "demo", "--store", store, "--file", str(layer))  # again: all in place
    assert code == 0 and "repository  demo/app exists" in out and "latest exists" in out
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    code, _, err = run(capsys, "demo", "--store", store, "--file", str(empty))
    assert code == 1 and "an empty file cannot be a layer" in err


def test_console_entry_point_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ecrstore.cli", "stats", "--store", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("error: no store at")


def test_region_and_registry_options(capsys, store):
    code, out, _ = run(capsys, "repo", "create", "regional", "--store", store, "--region", "eu-west-3",
                       "--registry-id", "123456789012", "--json")
    repo = json.loads(out)
    assert code == 0
    assert repo["repositoryUri"] == "123456789012.dkr.ecr.eu-west-3.amazonaws.com/regional"
    assert repo["repositoryArn"] == "arn:aws:ecr:eu-west-3:123456789012:repository/regional"
    code, _, err = run(capsys, "repo", "ls", "--store", store, "--registry-id", "12")
    assert code == 2 and "12 digits" in err


def test_gc_unlinks_unreferenced_layers_and_reports(capsys, store, tmp_path):
    from ecrstore import Store

    loose = tmp_path / "loose.bin"
    loose.write_bytes(os.urandom(5000))
    for repo in ("app", "copy"):  # one blob, linked by two repositories, used by no image
        assert run(capsys, "push-layer", str(loose), "--repo", repo, "--store", store, "--create-repo")[0] == 0
    # An image keeps its config and layer.
    with Store(store) as s:
        kept = {}
        for name, data in (("config", b'{"os": "linux"}'), ("layer", os.urandom(3000))):
            upload = s.initiate_layer_upload("app")
            s.upload_layer_part("app", upload.upload_id, 0, len(data) - 1, data)
            kept[name] = (s.complete_layer_upload("app", upload.upload_id, [
                "sha256:" + hashlib.sha256(data).hexdigest()]).layer_digest, len(data))
        s.put_image("app", json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": kept["config"][1], "digest": kept["config"][0]},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": kept["layer"][1], "digest": kept["layer"][0]}],
        }), image_tag="v1")

    code, out, _ = run(capsys, "gc", "--store", store)  # default grace: everything is too young
    assert code == 0 and out.startswith("unlinked 0 unreferenced layer(s), deleted 0 blob(s), freed 0 B")

    code, out, _ = run(capsys, "gc", "--store", store, "--grace", "0", "--dry-run", "--json")
    assert code == 0
    assert json.loads(out) == {"layers_unlinked": 2, "blobs_deleted": 1, "bytes_freed": 5000, "dry_run": True}
    code, out, _ = run(capsys, "gc", "--store", store, "--grace", "0", "--dry-run")
    assert code == 0 and out.startswith("dry run: would unlink 2 unreferenced layer(s), delete 1 blob(s)")
    assert "nothing was changed" in out
    assert json.loads(run(capsys, "stats", "--store", store, "--json")[1])["blobs"] == 3

    code, out, _ = run(capsys, "gc", "--store", store, "--grace", "0")
    assert code == 0
    assert out.strip() == "unlinked 2 unreferenced layer(s), deleted 1 blob(s), freed 4.9 KiB (5000 bytes)"
    stats = json.loads(run(capsys, "stats", "--store", store, "--json")[1])
    assert stats["blobs"] == 2 and stats["layers"] == 2  # the image's config and layer
    code, out, _ = run(capsys, "ls-layers", "--repo", "app", "--store", store)
    assert {line.split()[0] for line in out.splitlines()} == {kept["config"][0], kept["layer"][0]}

    code, out, _ = run(capsys, "gc", "--store", store, "--grace", "0", "--json")
    assert json.loads(out) == {"layers_unlinked": 0, "blobs_deleted": 0, "bytes_freed": 0, "dry_run": False}


def test_gc_usage_errors(capsys, tmp_path):
    code, _, err = run(capsys, "gc", "--grace", "-1")
    assert code == 2 and "non-negative" in err
    code, _, err = run(capsys, "gc", "--store", str(tmp_path / "none"))
    assert code == 1 and "no store at" in err
    code, _, err = run(capsys, "serve", "--download-url-ttl", "0")
    assert code == 2 and "positive" in err


@pytest.mark.parametrize("url", ["ftp://h:1", "h:1", "http://", "http://h:1/path", "http://h:1?x=1"])
def test_serve_refuses_a_public_url_that_is_not_a_registry_address(capsys, tmp_path, url):
    code, _, err = run(capsys, "serve", "--store", str(tmp_path / "s"), "--port", "0", "--public-url", url)
    assert code == 1 and "--public-url must be http(s)://host[:port]" in err
