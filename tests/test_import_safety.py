"""Import refuses what it must and leaves nothing half done: tampered blobs, truncated and
corrupt archives, path traversal, escaping links, missing files, interrupted imports (SIGKILL
of a real process) and re-imports."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from transfer_util import (
    Link,
    docker_save_current,
    docker_save_legacy,
    image_count,
    make_image,
    oci_layout,
    oci_manifest,
    open_store,
    sha,
    stored_manifest,
    write_tar,
)

from ecrstore.errors import RepositoryNotFoundException
from ecrstore.transfer import BlobMismatchError, SourceError, import_image
from ecrstore.transfer import importer as importer_module

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store")
    s.create_repository("app")
    yield s
    s.close()


def nothing_visible(store, repo="app") -> bool:
    return image_count(store, repo) == 0


# --- digests -----------------------------------------------------------------------------------


def test_tampered_legacy_layer_is_refused_and_no_image_appears(store, tmp_path):
    img = make_image(1, layers=3)
    good = make_image(2)
    img.layers[1] = img.layers[1][:-600] + b"X" * 600  # same size, other bytes; diff_ids unchanged
    src = docker_save_legacy(tmp_path / "save.tar", [(good, ["app:good"]), (img, ["app:bad"])])
    with pytest.raises(BlobMismatchError) as info:
        import_image(store, src, "app")
    assert "layer.tar in" in info.value.name and str(src) in info.value.name
    assert info.value.digest == json.loads(img.config)["rootfs"]["diff_ids"][1]
    assert "does not match its digest" in str(info.value)
    assert nothing_visible(store)  # not even the untouched image of the same source


def test_tampered_oci_blob_is_refused(store, tmp_path):
    img = make_image(3)
    root = tmp_path / "layout"
    oci_layout(root, [(img, "v1")])
    path = root / "blobs" / "sha256" / img.layer_digests[0][7:]
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BlobMismatchError, match=img.layer_digests[0]):
        import_image(store, root, "app")
    assert nothing_visible(store)


def test_tampered_manifest_is_refused_before_anything_is_stored(store, tmp_path):
    img = make_image(4)
    root = tmp_path / "layout"
    digests = oci_layout(root, [(img, "v1")])
    path = root / "blobs" / "sha256" / digests["v1"][7:]
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))
    with pytest.raises(SourceError, match="does not match its digest"):
        import_image(store, root, "app")
    assert store.batch_check_layer_availability("app", [img.config_digest]).failures  # nothing stored


# --- damaged archives --------------------------------------------------------------------------


def cut_points(data: bytes, img) -> dict[str, int]:
    layer_at = data.index(img.layers[0])
    header = data.index(b"manifest.json")  # the last member's header starts with its name
    assert header % 512 == 0
    return {
        "inside a layer": layer_at + len(img.layers[0]) // 2,
        "inside a header": header + 100,
        "at a member boundary": header,
        "without the end marker": len(data.rstrip(b"\0")) + (-len(data.rstrip(b"\0")) % 512),
        "empty": 0,
    }


@pytest.mark.parametrize("where", ["inside a layer", "inside a header", "at a member boundary",
                                   "without the end marker", "empty"])
def test_truncated_archive_is_refused(store, tmp_path, where):
    img = make_image(5)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:v1"])])
    data = src.read_bytes()
    src.write_bytes(data[:cut_points(data, img)[where]])
    with pytest.raises(SourceError, match="truncated|corrupt|not a valid tar"):
        import_image(store, src, "app")
    assert nothing_visible(store)


def test_truncated_gzip_is_refused(store, tmp_path):
    src = docker_save_legacy(tmp_path / "save.tar", [(make_image(6), ["app:v1"])], compress="gzip")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(SourceError, match="truncated"):
        import_image(store, src, "app")


def test_corrupt_gzip_is_refused(store, tmp_path):
    src = tmp_path / "bad.tar.gz"
    data = bytearray(gzip.compress(os.urandom(100_000)))
    data[50:60] = b"\xff" * 10
    src.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="gzip"):
        import_image(store, src, "app")


def test_garbage_is_refused(store, tmp_path):
    src = tmp_path / "random.bin"
    src.write_bytes(os.urandom(4096))
    with pytest.raises(SourceError, match="not a valid tar archive"):
        import_image(store, src, "app")


def test_corrupt_header_in_the_middle_is_refused(store, tmp_path):
    img = make_image(7)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:v1"])])
    data = bytearray(src.read_bytes())
    at = data.index(b"manifest.json")
    at -= at % 512
    data[at:at + 512] = os.urandom(512)
    src.write_bytes(bytes(data))
    with pytest.raises(SourceError, match="corrupt"):
        import_image(store, src, "app")


def test_missing_source(store, tmp_path):
    with pytest.raises(SourceError, match="no such file or directory"):
        import_image(store, tmp_path / "nope.tar", "app")


def test_missing_repository_is_the_stores_error(store, tmp_path):
    src = docker_save_legacy(tmp_path / "save.tar", [(make_image(8), ["app:v1"])])
    with pytest.raises(RepositoryNotFoundException):
        import_image(store, src, "other")


def test_missing_layer_file(store, tmp_path):
    img = make_image(9)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:v1"])])
    write_tar(src, [e for e in tree_entries_of_tar(src) if not e[0].endswith("/layer.tar")])
    with pytest.raises(SourceError, match="no such member"):
        import_image(store, src, "app")


def test_missing_oci_blob(store, tmp_path):
    img = make_image(10)
    root = tmp_path / "layout"
    oci_layout(root, [(img, "v1")])
    (root / "blobs" / "sha256" / img.layer_digests[1][7:]).unlink()
    with pytest.raises(SourceError, match="is missing"):
        import_image(store, root, "app")


def tree_entries_of_tar(path: Path):
    import tarfile

    out = []
    with tarfile.open(path) as tf:
        for ti in tf:
            if ti.isdir():
                out.append((ti.name, None))
            elif ti.issym():
                out.append((ti.name, Link(ti.linkname)))
            else:
                out.append((ti.name, tf.extractfile(ti).read()))
    return out


# --- unsafe names and links --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/etc/evil", "blobs/../../evil"])
def test_path_traversal_members_are_refused(store, tmp_path, name):
    src = docker_save_legacy(tmp_path / "save.tar", [(make_image(11), ["app:v1"])], extra=[(name, b"x")])
    with pytest.raises(SourceError, match="refusing"):
        import_image(store, src, "app")
    assert nothing_visible(store)


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "a/../../x"])
def test_escaping_symlinks_in_an_archive_are_refused(store, tmp_path, target):
    src = docker_save_legacy(tmp_path / "save.tar", [(make_image(12), ["app:v1"])],
                             extra=[("sneaky", Link(target))])
    with pytest.raises(SourceError, match="outside the archive"):
        import_image(store, src, "app")


def test_manifest_json_naming_a_path_outside_is_refused(store, tmp_path):
    img = make_image(13)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:v1"])])
    entries = tree_entries_of_tar(src)
    manifest = json.loads(dict(entries)["manifest.json"])
    manifest[0]["Layers"][0] = "../" + manifest[0]["Layers"][0]
    entries = [(n, json.dumps(manifest).encode() if n == "manifest.json" else v) for n, v in entries]
    write_tar(src, entries)
    with pytest.raises(SourceError, match="outside the source"):
        import_image(store, src, "app")


def test_escaping_symlink_in_a_layout_directory_is_refused(store, tmp_path):
    img = make_image(14)
    root = tmp_path / "layout"
    oci_layout(root, [(img, "v1")])
    outside = tmp_path / "outside.bin"
    blob = root / "blobs" / "sha256" / img.layer_digests[0][7:]
    blob.rename(outside)
    blob.symlink_to(outside)
    with pytest.raises(SourceError, match="leads outside the directory"):
        import_image(store, root, "app")
    assert nothing_visible(store)


def test_symlinks_inside_a_layout_directory_are_followed(store, tmp_path):
    img = make_image(15)
    root = tmp_path / "layout"
    oci_layout(root, [(img, "v1")])
    blob = root / "blobs" / "sha256" / img.layer_digests[0][7:]
    (root / "elsewhere").mkdir()
    blob.rename(root / "elsewhere" / "layer")
    blob.symlink_to("../../elsewhere/layer")
    import_image(store, root, "app")
    assert stored_manifest(store, "app", "v1")


def test_symlink_loops_are_refused(store, tmp_path):
    img = make_image(16)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:v1"])], skopeo_style=True)
    entries = tree_entries_of_tar(src)
    manifest = json.loads(dict(entries)["manifest.json"])
    manifest[0]["Layers"][0] = "loop/a"
    entries = [(n, json.dumps(manifest).encode() if n == "manifest.json" else v) for n, v in entries]
    entries += [("loop", None), ("loop/a", Link("b")), ("loop/b", Link("a"))]
    write_tar(src, entries)
    with pytest.raises(SourceError, match="too many levels"):
        import_image(store, src, "app")


# --- re-import and interruption ----------------------------------------------------------------


def test_reimport_skips_everything_and_reads_no_layer(store, tmp_path, monkeypatch):
    img = make_image(17, layers=3)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:v1", "app:v2"])])
    first = import_image(store, src, "app")
    assert first.images_imported == 1

    def no_reads(*a, **k):
        raise AssertionError("a re-import must not store any blob")

    monkeypatch.setattr(importer_module, "store_blob", no_reads)
    again = import_image(store, src, "app")
    assert (again.images_imported, again.images_skipped) == (0, 1)
    assert (again.layers_stored, again.layers_skipped) == (0, 4)
    assert again.bytes_skipped == first.bytes_stored
    assert again.images[0].status == "PRESENT"


def test_reimport_into_an_immutable_repository_succeeds(tmp_path):
    with open_store(tmp_path / "store") as s:
        s.create_repository("frozen", image_tag_mutability="IMMUTABLE")
        src = docker_save_legacy(tmp_path / "save.tar", [(make_image(18), ["app:v1"])])
        import_image(s, src, "frozen")
        assert import_image(s, src, "frozen").images_skipped == 1


def test_reimport_adds_new_tags_to_a_present_image(store, tmp_path):
    img = make_image(19)
    import_image(store, docker_save_legacy(tmp_path / "a.tar", [(img, ["app:v1"])]), "app")
    report = import_image(store, docker_save_legacy(tmp_path / "b.tar", [(img, ["app:v2"])]), "app")
    assert report.images[0].status == "PRESENT"
    v1, v2 = stored_manifest(store, "app", "v1"), stored_manifest(store, "app", "v2")
    assert v2.image_id.image_digest == v1.image_id.image_digest


def test_layers_present_in_another_repository_are_stored_once(store, tmp_path):
    img = make_image(20)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:v1"])])
    import_image(store, src, "app")
    before = store.stats().blob_bytes
    store.create_repository("copy")
    report = import_image(store, src, "copy")
    assert report.layers_stored == 3
    assert store.stats().blob_bytes == before  # the bytes are kept once


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from transfer_util import open_store
    from ecrstore.transfer import import_image

    events = {{"n": 0}}

    def progress(ev):
        if ev.kind == {kind!r}:
            events["n"] += 1
            if events["n"] == {count}:
                print("STOP", flush=True)
                time.sleep(60)  # killed here

    with open_store({store!r}) as s:
        import_image(s, {src!r}, "app", jobs=1, progress=progress)
    print("DONE", flush=True)
""")


@pytest.mark.parametrize("kind,count", [("layer", 2), ("bytes", 5)], ids=["between-layers", "inside-a-layer"])
def test_sigkill_mid_import_then_rerun_completes(tmp_path, kind, count):
    """A real process killed with SIGKILL mid-import: no image is visible, and running the same
    import again stores only what is missing and makes the image visible."""
    store_path = tmp_path / "store"
    with open_store(store_path) as s:
        s.create_repository("app")
    img = make_image(21, layers=4, size=120_000)
    src = docker_save_current(tmp_path / "save.tar", [(img, ["app:v1"])], work=tmp_path)
    src = tmp_path / "save.tar"
    code = CHILD.format(tests=str(ROOT / "tests"), store=str(store_path), src=str(src), kind=kind, count=count)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "STOP"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with open_store(store_path) as s:
        assert nothing_visible(s)
        digests = [img.config_digest, *img.layer_digests]
        res = s.batch_check_layer_availability("app", digests)
        before = {x.layer_digest for x in res.layers if x.layer_availability == "AVAILABLE"}
        assert (len(before) >= 1) if kind == "layer" else (len(before) < len(digests))
        report = import_image(s, src, "app")
        assert report.layers_skipped == len(before)
        assert report.layers_stored == len(digests) - len(before)
        assert report.images_imported == 1
        assert stored_manifest(s, "app", "v1").image_manifest.encode() == oci_manifest(img)
        assert s.verify().mismatches == ()


def test_a_failed_import_stops_the_other_workers(store, tmp_path):
    imgs = [make_image(30 + i, layers=2, size=200_000) for i in range(3)]
    imgs[0].layers[0] = imgs[0].layers[0][:-1] + b"!"
    src = docker_save_legacy(tmp_path / "save.tar", [(im, [f"app:{i}"]) for i, im in enumerate(imgs)])
    with pytest.raises(BlobMismatchError):
        import_image(store, src, "app", jobs=2)
    assert nothing_visible(store)


def test_sha_helper_matches_the_report(store, tmp_path):
    img = make_image(40)
    report = import_image(store, docker_save_legacy(tmp_path / "s.tar", [(img, [])]), "app")
    assert report.images[0].image_tags == ()
    assert stored_manifest(store, "app", digest=report.images[0].image_digest)
    assert sha(img.config) == img.config_digest
