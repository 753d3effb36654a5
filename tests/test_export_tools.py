"""Real tools accept what export writes: skopeo inspects and copies the OCI layout, the OCI
archive and the docker-archive, and umoci unpacks the layout (Debian packages ``skopeo`` and
``umoci``; the tests fail, never skip, when they are missing). Everything runs offline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from transfer_util import (
    docker_save_legacy,
    make_image,
    oci_layout,
    oci_manifest,
    open_store,
    require_tool,
    sha,
)

from ecrstore import ImageIdentifier
from ecrstore.transfer import export_image, import_image

pytestmark = pytest.mark.timeout(120)


def tool(*argv: str) -> str:
    require_tool(argv[0])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stderr}"
    return proc.stdout


def inspect(ref: str) -> dict:
    return json.loads(tool("skopeo", "inspect", ref))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A store holding a legacy docker-save image (v1), an OCI image with gzip layers (v2)
    and a two-platform index (multi), exported in every format."""
    work = tmp_path_factory.mktemp("export")
    legacy, gz = make_image(1, layers=3), make_image(2, gzip_layers=True)
    amd, arm = make_image(3), make_image(4, arch="arm64")
    with open_store(work / "store") as store:
        store.create_repository("team/app")
        import_image(store, docker_save_legacy(work / "legacy.tar", [(legacy, ["app:v1"])]), "team/app")
        oci_layout(work / "src", [(gz, "v2")], indexes=[([amd, arm], "multi")])
        import_image(store, work / "src", "team/app")
        digests = {t: store.batch_get_image("team/app", [ImageIdentifier(image_tag=t)]).images[0].image_id.image_digest
                   for t in ("v1", "v2", "multi")}
        for tag in ("v2", "multi"):
            export_image(store, f"team/app:{tag}", work / "layout")
        # v1 has a Docker schema 2 manifest (a legacy docker save): skopeo reads only OCI-typed
        # index.json entries, so it is exported converted (as skopeo itself writes layouts)
        report = export_image(store, "team/app:v1", work / "layout", convert_to_oci=True)
        converted = report.image_digest
        for tag in ("v1", "v2", "multi"):
            export_image(store, f"team/app:{tag}", work / f"{tag}-oci.tar", format="oci-archive",
                         convert_to_oci=tag == "v1")
            if tag != "multi":
                export_image(store, f"team/app:{tag}", work / f"{tag}-docker.tar", format="docker-archive")
    images = {"v1": legacy, "v2": gz, "amd": amd, "arm": arm}
    return work, {**digests, "v1": converted, "v1-docker": digests["v1"]}, images


@pytest.mark.parametrize("tag", ["v1", "v2", "multi"])
def test_skopeo_inspects_the_oci_layout(exported, tag):
    work, digests, _ = exported
    assert inspect(f"oci:{work / 'layout'}:{tag}")["Digest"] == digests[tag]


def test_conversion_keeps_the_blobs(exported):
    work, digests, imgs = exported
    img = imgs["v1"]
    assert digests["v1"] != digests["v1-docker"]
    manifest = json.loads(tool("skopeo", "inspect", "--raw", f"oci:{work / 'layout'}:v1"))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"] == {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "size": len(img.config), "digest": img.config_digest}
    assert [x["digest"] for x in manifest["layers"]] == img.layer_digests
    assert {x["mediaType"] for x in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar"}


@pytest.mark.parametrize("tag", ["v1", "v2"])
def test_skopeo_copies_the_oci_layout_unchanged(exported, tag, tmp_path):
    work, digests, _ = exported
    tool("skopeo", "copy", "--quiet", "--preserve-digests", f"oci:{work / 'layout'}:{tag}",
         f"oci:{tmp_path / 'copy'}:{tag}")
    assert inspect(f"oci:{tmp_path / 'copy'}:{tag}")["Digest"] == digests[tag]


def test_skopeo_copies_every_platform_of_the_index(exported, tmp_path):
    work, digests, imgs = exported
    tool("skopeo", "copy", "--quiet", "--all", "--preserve-digests", f"oci:{work / 'layout'}:multi",
         f"oci:{tmp_path / 'copy'}:multi")
    index = json.loads((tmp_path / "copy" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digests["multi"]
    for img in (imgs["amd"], imgs["arm"]):
        assert (tmp_path / "copy" / "blobs" / "sha256" / sha(oci_manifest(img))[7:]).is_file()


@pytest.mark.parametrize("tag", ["v1", "v2", "multi"])
def test_skopeo_inspects_the_oci_archive(exported, tag):
    work, digests, _ = exported
    assert inspect(f"oci-archive:{work / f'{tag}-oci.tar'}")["Digest"] == digests[tag]


@pytest.mark.parametrize("tag", ["v1", "v2"])
def test_skopeo_reads_the_docker_archive(exported, tag, tmp_path):
    work, _, imgs = exported
    img = imgs[tag]
    info = inspect(f"docker-archive:{work / f'{tag}-docker.tar'}")
    diff_ids = json.loads(img.config)["rootfs"]["diff_ids"]
    assert info["Layers"] == diff_ids  # skopeo names docker-archive layers by their diff IDs
    tool("skopeo", "copy", "--quiet", f"docker-archive:{work / f'{tag}-docker.tar'}", f"oci:{tmp_path / 'copy'}:{tag}")
    # skopeo recompresses the layers it writes to an OCI layout; their content is the same
    config = json.loads(tool("skopeo", "inspect", "--config", f"oci:{tmp_path / 'copy'}:{tag}"))
    assert config["rootfs"]["diff_ids"] == diff_ids
    assert len(inspect(f"oci:{tmp_path / 'copy'}:{tag}")["Layers"]) == len(diff_ids)


def test_umoci_unpacks_the_exported_layout(exported, tmp_path):
    work, _, imgs = exported
    bundle = tmp_path / "bundle"
    tool("umoci", "unpack", "--image", f"{work / 'layout'}:v2", str(bundle))
    rootfs = Path(bundle) / "rootfs" / "data"
    assert sorted(p.name for p in rootfs.iterdir()) == ["2-0.bin", "2-1.bin"]
    assert (rootfs / "2-0.bin").stat().st_size == 40_000
