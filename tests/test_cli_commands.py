"""The ``ecrstore`` command as people run it: real processes over real stores in temporary
directories. Global options, ECRSTORE_STORE, the listing and upload commands, exit codes,
read-only stores, hints, and ``serve`` without the server extra."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from transfer_util import docker_save_legacy, make_image

from ecrstore import Sha256, Store
from ecrstore.errors import ServerException

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent
REPO = "team/app"


def ecrstore(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ecrstore ARGV`` (this tree's code) and wait for it, bounded."""
    base = {k: v for k, v in os.environ.items() if k != "ECRSTORE_STORE"}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([base["PYTHONPATH"]] if base.get("PYTHONPATH") else [])])
    return subprocess.run([sys.executable, "-m", "ecrstore.cli", *argv], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr


def push_bytes(store: Store, repo: str, data: bytes) -> str:
    digest = "sha256:" + Sha256(data).hexdigest()
    upload = store.initiate_layer_upload(repo)
    store.upload_layer_part(repo, upload.upload_id, 0, len(data) - 1, data)
    store.complete_layer_upload(repo, upload.upload_id, [digest])
    return digest


def put_image(store: Store, repo: str, tag: str | None, seed: bytes) -> str:
    config = b'{"os": "linux", "seed": "' + seed.hex().encode() + b'"}'
    layer = os.urandom(2000) + seed
    config_digest, layer_digest = push_bytes(store, repo, config), push_bytes(store, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                    "digest": layer_digest}],
    })
    return store.put_image(repo, manifest, image_tag=tag).image.image_id.image_digest


@pytest.fixture
def store(tmp_path) -> Path:
    """A store with REPO holding a tagged and an untagged image, and one upload in progress."""
    path = tmp_path / "store"
    with Store(path) as s:
        s.create_repository(REPO)
        s.create_repository("other")
        put_image(s, REPO, "v1", b"one")
        put_image(s, REPO, None, b"two")
        upload = s.initiate_layer_upload(REPO)
        s.upload_layer_part(REPO, upload.upload_id, 0, 99, os.urandom(100))
    return path


def upload_ids(store: Path) -> list[str]:
    with Store(store, read_only=True) as s:
        return [u.upload_id for u in s.list_uploads()]


# --- global options and ECRSTORE_STORE ---------------------------------------------------------


def test_global_options_before_and_after_the_command(tmp_path, store):
    before = ecrstore("--store", str(store), "--json", "repo", "ls", cwd=tmp_path)
    after = ecrstore("repo", "ls", "--store", str(store), "--json", cwd=tmp_path)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert {r["repositoryName"] for r in json.loads(before.stdout)} == {REPO, "other"}
    # after the command wins over before it
    done = ecrstore("--store", str(tmp_path / "elsewhere"), "stats", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 0 and "repositories                2" in done.stdout
    done = ecrstore("--log-level", "debug", "--registry-id", "123456789012", "repo", "ls", "--store", str(store),
                    cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "no repositories\n"  # another registry's view
    done = ecrstore("--json", "serve", cwd=tmp_path)
    assert done.returncode == 2 and "--json does not apply to serve" in done.stderr


def test_ecrstore_store_names_the_default_store(tmp_path, store):
    env = {"ECRSTORE_STORE": str(store)}
    done = ecrstore("repo", "ls", cwd=tmp_path, env=env)
    assert done.returncode == 0 and {line.split()[0] for line in done.stdout.splitlines()} == {REPO, "other"}
    done = ecrstore("repo", "ls", "--store", str(tmp_path / "none"), cwd=tmp_path, env=env)
    assert done.returncode == 1 and f"no store at {tmp_path / 'none'}" in done.stderr
    done = ecrstore("init", cwd=tmp_path, env={"ECRSTORE_STORE": str(tmp_path / "fresh")})
    assert done.returncode == 0 and (tmp_path / "fresh" / "index").is_dir()
    assert not (tmp_path / "ecrstore-data").exists()


# --- new commands ------------------------------------------------------------------------------


def test_images_ls(tmp_path, store):
    done = ecrstore("images", "ls", REPO, "--store", str(store), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["TAGS", "DIGEST", "SIZE", "PUSHED", "AT", "(UTC)"]
    assert len(rows) == 2 and rows[0].startswith("<untagged>") and rows[1].startswith("v1 ")
    assert all(" sha256:" in row and " KiB " in row for row in rows)
    done = ecrstore("--json", "images", "ls", REPO, "--store", str(store), cwd=tmp_path)
    images = json.loads(done.stdout)
    assert [i.get("imageTags") for i in images] == [None, ["v1"]]
    assert all(i["imageSizeInBytes"] > 2000 and i["imagePushedAt"] > 0 for i in images)
    done = ecrstore("images", "ls", "other", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "" and "no images" in done.stderr


def test_repo_show(tmp_path, store):
    done = ecrstore("repo", "show", REPO, "--store", str(store), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    fields = {line[:20].strip(): line[20:].strip() for line in done.stdout.splitlines()}
    assert fields["name"] == REPO and fields["images"] == "2" and fields["uploads in progress"] == "1"
    assert fields["layers"].startswith("4 ") and fields["uri"].endswith(f"/{REPO}")
    shown = json.loads(ecrstore("repo", "show", REPO, "--json", "--store", str(store), cwd=tmp_path).stdout)
    assert shown["repository"]["repositoryName"] == REPO
    assert (shown["imageCount"], shown["layerCount"], shown["uploadsInProgress"]) == (2, 4, 1)
    done = ecrstore("repo", "show", "missing", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("error: RepositoryNotFoundException: ")
    assert "ecrstore repo ls" in done.stderr and done.stderr.count("\n") == 1


def test_uploads_ls_and_abort(tmp_path, store):
    (upload_id,) = upload_ids(store)
    done = ecrstore("uploads", "ls", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split()[:2] == ["UPLOAD", "ID"] and row.split()[:2] == [upload_id, REPO]
    assert ecrstore("uploads", "ls", "other", "--store", str(store), cwd=tmp_path).stdout == ""
    listed = json.loads(ecrstore("uploads", "ls", REPO, "--json", "--store", str(store), cwd=tmp_path).stdout)
    assert [(u["uploadId"], u["received"], u["parts"]) for u in listed] == [(upload_id, 100, 1)]

    done = ecrstore("uploads", "abort", upload_id, "--store", str(store), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(f"aborted upload {upload_id} of {REPO}")
    assert upload_ids(store) == []
    assert not (store / "uploads" / uuid.UUID(upload_id).hex).exists()
    done = ecrstore("uploads", "abort", upload_id, "--store", str(store), cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("error: UploadNotFoundException: ")
    assert "ecrstore uploads ls" in done.stderr
    done = ecrstore("uploads", "abort", "not-an-id", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 1 and "InvalidParameterException" in done.stderr
    no_traceback(done)


def test_purge_older_than(tmp_path, store):
    done = ecrstore("purge", "--store", str(store), cwd=tmp_path)  # the TTL is a day: kept
    assert done.returncode == 0 and done.stdout.startswith("removed 0 expired upload(s)")
    assert len(upload_ids(store)) == 1
    done = ecrstore("purge", "--older-than", "1h", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("removed 0 idle upload(s)")
    done = ecrstore("purge", "--older-than", "0s", "--store", str(store), "--json", cwd=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout)["uploads_removed"] == 1
    assert upload_ids(store) == []
    done = ecrstore("purge", "--older-than", "soon", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 2 and "invalid duration" in done.stderr


def test_stats_never_shows_negative_savings(tmp_path):
    path = tmp_path / "store"
    with Store(path) as s:
        s.create_repository("gone")
        push_bytes(s, "gone", os.urandom(4096))
        s.delete_repository("gone")  # its blob is stored but linked by no repository
    done = ecrstore("stats", "--store", str(path), "--json", cwd=tmp_path)
    stats = json.loads(done.stdout)
    assert stats["blob_bytes"] == 4096 and stats["linked_bytes"] == 0
    assert stats["dedupe_saved_bytes"] == 0 and stats["reclaimable_bytes"] == 4096
    text = ecrstore("stats", "--store", str(path), cwd=tmp_path).stdout
    assert "dedupe savings              0 B" in text and "reclaimable by gc/purge     4.0 KiB (4096)" in text
    assert "-" not in text.replace("gc/purge", "")


# --- exit codes and hints ----------------------------------------------------------------------


def test_usage_errors_exit_2(tmp_path):
    for argv in (["serve", "--port", "99999"], ["serve", "--port", "-1"], ["no-such-command"], ["images", "ls"],
                 ["uploads"], ["init", "--registry-id", "12"]):
        done = ecrstore(*argv, cwd=tmp_path)
        assert done.returncode == 2, (argv, done.stderr)
        assert "usage: ecrstore" in done.stderr
        no_traceback(done)
    assert "a TCP port is 0 to 65535" in ecrstore("serve", "--port", "99999", cwd=tmp_path).stderr


def test_a_missing_store_is_one_line_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    for argv in (["repo", "ls"], ["repo", "show", "x1"], ["images", "ls", "x1"], ["uploads", "ls"], ["stats"],
                 ["verify"], ["gc", "--dry-run"], ["gc"], ["purge"], ["repo", "create", "x1"],
                 ["export", "x1:v1", str(tmp_path / "out")], ["import", str(tmp_path / "x.tar"), "--repo", "x1"]):
        done = ecrstore(*argv, "--store", str(missing), cwd=tmp_path)
        assert done.returncode == 1, (argv, done.stderr)
        assert done.stderr == f"error: no store at {missing}; create one with: ecrstore init --store {missing}\n"
    assert not missing.exists()


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = ecrstore("serve", "--store", str(tmp_path / "s"), "--no-auth", "--port", str(port), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == f"error: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_a_missing_repository_hints_at_create_repo(tmp_path, store):
    layer = tmp_path / "layer.bin"
    layer.write_bytes(os.urandom(1000))
    done = ecrstore("push-layer", str(layer), "--repo", "new", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: RepositoryNotFoundException: ")
    assert done.stderr.endswith("; add --create-repo to create it\n")
    done = ecrstore("layers", "push", str(layer), "--repo", "new", "--create-repo", "--store", str(store),
                    cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "sha256:" + Sha256(layer.read_bytes()).hexdigest()
    assert ecrstore("layers", "ls", "new", "--store", str(store), cwd=tmp_path).stdout.startswith("sha256:")


def test_import_hints_at_create_repo_and_creates_the_store_with_it(tmp_path):
    source = str(docker_save_legacy(tmp_path / "save.tar", [(make_image(7, size=20_000), ["app:v1"])]))
    path = tmp_path / "store"
    assert ecrstore("init", "--store", str(path), cwd=tmp_path).returncode == 0
    done = ecrstore("import", source, "--repo", "app", "--store", str(path), "-q", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.endswith("; add --create-repo to create it\n")
    fresh = tmp_path / "fresh"
    done = ecrstore("import", source, "--repo", "app", "--create-repo", "--store", str(fresh), "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ecrstore("images", "ls", "app", "--store", str(fresh), cwd=tmp_path).stdout.count("v1 ") == 1


# --- read-only stores --------------------------------------------------------------------------

READ_ONLY_COMMANDS = [["repo", "ls"], ["repo", "show", REPO], ["images", "ls", REPO], ["layers", "ls", REPO],
                      ["ls-layers", "--repo", REPO], ["uploads", "ls"], ["stats"], ["verify"], ["gc", "--dry-run"],
                      ["export", f"{REPO}:v1", "{out}"]]


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path under ``root`` with its mtime, size and (for files) contents. LMDB's lock file
    is left out: it holds the shared reader table, which every reader writes, not store data."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.name == "lock.mdb":
            continue
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_mtime_ns, st.st_size, path.read_bytes() if path.is_file() else b"")
    return out


def test_read_only_commands_change_nothing(tmp_path, store):
    before = snapshot(store)
    for i, argv in enumerate(READ_ONLY_COMMANDS):
        argv = [a.replace("{out}", str(tmp_path / f"out{i}")) for a in argv]
        done = ecrstore(*argv, "--store", str(store), cwd=tmp_path)
        assert done.returncode == 0, (argv, done.stderr)
    assert snapshot(store) == before


def test_write_commands_refuse_a_store_opened_read_only(tmp_path, store):
    with Store(store, read_only=True) as s:
        for call in (lambda: s.create_repository("new"), lambda: s.purge(), lambda: s.gc(),
                     lambda: s.abort_upload(s.list_uploads()[0].upload_id),
                     lambda: s.initiate_layer_upload(REPO)):
            with pytest.raises(ServerException, match="read-only"):
                call()


@pytest.fixture
def read_only_mount(tmp_path, store):
    """The store again, through a read-only bind mount (skipped where mounting is not allowed)."""
    if not shutil.which("mount"):
        pytest.skip("no mount command")
    target = tmp_path / "ro"
    target.mkdir()
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(store), str(target)], capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"read-only bind mounts are not permitted here: {done.stderr.strip()}")
    try:
        if os.access(target, os.W_OK) and _writable(target):
            pytest.skip("the bind mount is writable (mount ignored -o ro)")
        yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True, timeout=30)


def _writable(path: Path) -> bool:
    try:
        (path / ".probe").touch()
    except OSError:
        return False
    (path / ".probe").unlink()
    return True


def test_read_only_commands_work_on_a_read_only_mount(tmp_path, read_only_mount):
    for i, argv in enumerate(READ_ONLY_COMMANDS):
        argv = [a.replace("{out}", str(tmp_path / f"out{i}")) for a in argv]
        done = ecrstore(*argv, "--store", str(read_only_mount), cwd=tmp_path)
        assert done.returncode == 0, (argv, done.stderr)
    for argv in (["repo", "create", "new"], ["purge"], ["gc"]):
        done = ecrstore(*argv, "--store", str(read_only_mount), cwd=tmp_path)
        assert done.returncode == 1 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
        assert "read-only" in done.stderr.lower()
        no_traceback(done)


# --- serve's help and the server extra ---------------------------------------------------------


def test_test_only_flags_are_not_in_help(tmp_path):
    done = ecrstore("serve", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "--no-auth" in done.stdout
    assert "fail-next-upload-parts" not in done.stdout and "testing" not in done.stdout
    assert "(default: 16)" in done.stdout  # ServerConfig's threads, shown in the help


def test_serve_without_the_server_extra_is_a_one_line_hint(tmp_path):
    blocker = tmp_path / "no-server-extra"
    blocker.mkdir()
    # A sitecustomize that makes uvicorn unimportable, as in an install without the extra.
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoUvicorn:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'uvicorn':\n"
        "            raise ImportError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _NoUvicorn())\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)])}
    done = subprocess.run([sys.executable, "-m", "ecrstore.cli", "serve", "--store", str(tmp_path / "s")],
                          cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == ("error: ecrstore serve needs the server extra (uvicorn is not installed); "
                           "install it with: pip install 'ecrstore[server]'\n")
    assert not (tmp_path / "s").exists()
    done = subprocess.run([sys.executable, "-m", "ecrstore.cli", "serve", "--help"], cwd=tmp_path,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "needs the server extra" in done.stdout
