"""Import what real tools write: an OCI layout built with umoci, and the docker-archive and
OCI archive skopeo makes of it (Debian packages ``umoci`` and ``skopeo``; the tests fail,
never skip, when they are missing). Everything runs offline."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest
from transfer_util import (
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    layer_bytes,
    open_store,
    rand_bytes,
    require_tool,
    sha,
    stored_manifest,
)

from ecrstore.transfer import export_image, import_image

pytestmark = pytest.mark.timeout(120)


def tool(*argv: str, cwd: Path | None = None) -> str:
    require_tool(argv[0])
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120)
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stderr}"
    return proc.stdout


def inspect(ref: str) -> dict:
    return json.loads(tool("skopeo", "inspect", ref))


def raw_manifest(ref: str) -> str:
    return tool("skopeo", "inspect", "--raw", ref)


@pytest.fixture(scope="module")
def umoci_layout(tmp_path_factory) -> Path:
    """An OCI layout made by umoci: v1 with two layers, v2 = v1 plus one more."""
    work = tmp_path_factory.mktemp("umoci")
    layout = work / "layout"
    tool("umoci", "init", "--layout", str(layout))
    tool("umoci", "new", "--image", f"{layout}:v1")
    for n, (tag, new_tag) in enumerate([("v1", None), ("v1", None), ("v1", "v2")]):
        src = work / f"content{n}"
        src.mkdir()
        (src / f"file{n}.bin").write_bytes(rand_bytes(300_000 + n, n))
        (src / "hello.txt").write_text(f"hello {n}\n")
        argv = ["umoci", "insert", "--image", f"{layout}:{tag}"]
        if new_tag:
            argv += ["--tag", new_tag]
        tool(*argv, str(src), f"/opt/layer{n}")
    return layout


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store")
    s.create_repository("app")
    yield s
    s.close()


def test_umoci_layout(store, umoci_layout):
    report = import_image(store, umoci_layout, "app")
    assert report.source_format == "oci" and report.images_imported == 2
    for tag in ("v1", "v2"):
        image = stored_manifest(store, "app", tag)
        assert image.image_id.image_digest == inspect(f"oci:{umoci_layout}:{tag}")["Digest"]
        assert image.image_manifest == raw_manifest(f"oci:{umoci_layout}:{tag}")
    for digest in inspect(f"oci:{umoci_layout}:v2")["Layers"]:
        blob = (umoci_layout / "blobs" / "sha256" / digest[7:]).read_bytes()
        assert layer_bytes(store, "app", digest) == blob


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_skopeo_docker_archive(store, umoci_layout, tmp_path, compress):
    archive = tmp_path / "app.tar"
    tool("skopeo", "copy", "--quiet", f"oci:{umoci_layout}:v2", f"docker-archive:{archive}:example.com/team/app:v2")
    if compress:
        gz = tmp_path / "app.tar.gz"
        gz.write_bytes(gzip.compress(archive.read_bytes(), compresslevel=1))
        archive = gz
    report = import_image(store, archive, "app")
    assert report.source_format == "docker-archive"
    image = stored_manifest(store, "app", "v2")
    doc = json.loads(image.image_manifest)
    assert image.image_manifest_media_type == doc["mediaType"] == DOCKER_MANIFEST
    # skopeo stores uncompressed layers named by their diff IDs: the same digests it reports
    assert [x["digest"] for x in doc["layers"]] == inspect(f"docker-archive:{tmp_path / 'app.tar'}")["Layers"]
    assert {x["mediaType"] for x in doc["layers"]} == {DOCKER_LAYER}
    for x in doc["layers"] + [doc["config"]]:
        assert sha(layer_bytes(store, "app", x["digest"])) == x["digest"]


def test_skopeo_oci_archive(store, umoci_layout, tmp_path):
    archive = tmp_path / "app-oci.tar"
    tool("skopeo", "copy", "--quiet", f"oci:{umoci_layout}:v1", f"oci-archive:{archive}:v1")
    import_image(store, archive, "app")
    assert stored_manifest(store, "app", "v1").image_id.image_digest == inspect(f"oci-archive:{archive}")["Digest"]


def test_skopeo_reads_what_a_reimport_wrote(store, umoci_layout, tmp_path):
    """docker-archive (skopeo) -> import -> export docker-archive -> skopeo copy: same layers."""
    archive = tmp_path / "app.tar"
    tool("skopeo", "copy", "--quiet", f"oci:{umoci_layout}:v1", f"docker-archive:{archive}:app:v1")
    import_image(store, archive, "app")
    out = tmp_path / "again.tar"
    export_image(store, "app:v1", out, format="docker-archive")
    theirs = inspect(f"docker-archive:{archive}")
    ours = inspect(f"docker-archive:{out}")
    assert ours["Layers"] == theirs["Layers"]
    copy = tmp_path / "copy"
    tool("skopeo", "copy", "--quiet", "--dest-oci-accept-uncompressed-layers", f"docker-archive:{out}",
         f"oci:{copy}:v1")
    assert inspect(f"oci:{copy}:v1")["Layers"] == theirs["Layers"]
