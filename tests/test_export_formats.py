"""Export to an OCI layout, an OCI archive and a docker-archive, and the round trip: importing
an export gives the same manifests (byte for byte, so the same digests) and the same blobs."""

from __future__ import annotations

import json
import os
import tarfile

import pytest
from transfer_util import (
    OCI_INDEX,
    docker_save_legacy,
    layer_bytes,
    make_image,
    oci_layout,
    oci_manifest,
    open_store,
    sha,
    stored_manifest,
)

from ecrstore.errors import ImageNotFoundException, RepositoryNotFoundException
from ecrstore.transfer import DestinationError, TransferUsageError, export_image, exporter, import_image
from ecrstore.transfer.exporter import parse_reference

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store")
    s.create_repository("team/app")
    yield s
    s.close()


@pytest.fixture
def images(store, tmp_path):
    """A legacy-imported image (v1), an OCI one with gzip layers (v2), a multi-platform
    index (multi) and an untagged image."""
    legacy = make_image(1, layers=3)
    import_image(store, docker_save_legacy(tmp_path / "legacy.tar", [(legacy, ["app:v1"])]), "team/app")
    gz, amd, arm, untagged = make_image(2, gzip_layers=True), make_image(3), make_image(4, arch="arm64"), make_image(5)
    digests = oci_layout(tmp_path / "src", [(gz, "v2"), (untagged, None)], indexes=[([amd, arm], "multi")])
    import_image(store, tmp_path / "src", "team/app")
    return {"v1": legacy, "v2": gz, "amd": amd, "arm": arm, "untagged": untagged, "digests": digests}


def manifests_of(store, repo: str) -> dict[str, str]:
    out = {}
    for ident in store.list_images(repo).image_ids:
        image = stored_manifest(store, repo, digest=ident.image_digest)
        out[ident.image_digest] = image.image_manifest
    return out


def tags_of(store, repo: str) -> dict[str, str]:
    return {i.image_tag: i.image_digest for i in store.list_images(repo).image_ids if i.image_tag}


def blobs_of(store, repo: str) -> dict[str, bytes]:
    return {d: layer_bytes(store, repo, d) for d, _ in store.list_layers(repo)}


def test_parse_reference():
    assert parse_reference("team/app:v1") == ("team/app", "v1", None)
    assert parse_reference("team/app@sha256:" + "A" * 64) == ("team/app", None, "sha256:" + "a" * 64)
    for bad in ("team/app", "app:", ":v1", "app@sha256:abc", "app:v1/x", "app@md5:" + "a" * 32):
        with pytest.raises(TransferUsageError):
            parse_reference(bad)


def test_oci_directory(store, images, tmp_path):
    dest = tmp_path / "out"
    report = export_image(store, "team/app:v2", dest)
    assert report.format == "oci" and report.image_tag == "v2" and report.manifests == 1
    img = images["v2"]
    assert json.loads((dest / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((dest / "index.json").read_text())
    assert index["mediaType"] == OCI_INDEX
    [entry] = index["manifests"]
    assert entry["digest"] == sha(oci_manifest(img)) and entry["size"] == len(oci_manifest(img))
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "v2"}
    blobs = dest / "blobs" / "sha256"
    assert (blobs / entry["digest"][7:]).read_bytes() == oci_manifest(img)
    assert (blobs / img.config_digest[7:]).read_bytes() == img.config
    for layer in img.layers:
        assert (blobs / sha(layer)[7:]).read_bytes() == layer
    assert report.blobs_written == 3 and report.bytes_written == len(img.config) + sum(map(len, img.layers))
    assert not [n for n in os.listdir(blobs) if n.startswith(".")]  # no temporary files left


def test_a_layout_collects_several_images(store, images, tmp_path):
    dest = tmp_path / "out"
    export_image(store, "team/app:v1", dest)
    export_image(store, "team/app:v2", dest)
    again = export_image(store, "team/app:v1", dest)  # same tag: the entry is replaced, blobs kept
    assert again.blobs_written == 0
    index = json.loads((dest / "index.json").read_text())
    assert sorted(e["annotations"]["org.opencontainers.image.ref.name"] for e in index["manifests"]) == ["v1", "v2"]
    with open_store(tmp_path / "other") as other:
        other.create_repository("copy")
        report = import_image(other, dest, "copy")
        assert report.images_imported == 2
        assert tags_of(other, "copy") == {t: d for t, d in tags_of(store, "team/app").items() if t in ("v1", "v2")}


@pytest.mark.parametrize("fmt", ["oci", "oci-archive", "docker-archive"])
def test_round_trip_reproduces_manifests_and_blobs(store, images, tmp_path, fmt):
    dests = {}
    for ref in ("team/app:v1", "team/app:v2", "team/app:multi", f"team/app@{images['digests']['#1']}"):
        dest = tmp_path / (ref.replace("/", "_").replace(":", "_").replace("@", "_") + (".tar" if fmt != "oci" else ""))
        export_image(store, ref, dest, format=fmt)
        dests[ref] = dest
    with open_store(tmp_path / "other") as other:
        other.create_repository("team/app")
        for dest in dests.values():
            import_image(other, dest, "team/app")
        assert manifests_of(other, "team/app") == manifests_of(store, "team/app")
        assert blobs_of(other, "team/app") == blobs_of(store, "team/app")
        assert tags_of(other, "team/app") == tags_of(store, "team/app")


class _WithoutFileno:
    """A blob reader as a backend without files gives it: no ``fileno()`` (the BlobReader
    protocol does not promise one)."""

    def __init__(self, reader):
        self._reader = reader

    def __getattr__(self, name):
        if name == "fileno":
            raise AttributeError(name)
        return getattr(self._reader, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._reader.close()


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_readers_without_a_descriptor_export_the_same_bytes(store, images, tmp_path, monkeypatch, fmt):
    copied_in_kernel = tmp_path / "kernel.tar"
    export_image(store, "team/app:v2", copied_in_kernel, format=fmt)
    open_layer = store.open_layer
    monkeypatch.setattr(store, "open_layer", lambda *a, **kw: _WithoutFileno(open_layer(*a, **kw)))
    monkeypatch.setattr(exporter, "_copy_fd", None)  # no descriptor: the kernel copy is never reached
    events = []
    chunked = tmp_path / "chunked.tar"
    report = export_image(store, "team/app:v2", chunked, format=fmt, progress=events.append)
    assert chunked.read_bytes() == copied_in_kernel.read_bytes()
    assert sum(e.nbytes for e in events if e.kind == "bytes") == report.bytes_written
    export_image(store, "team/app:v2", tmp_path / "layout")
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    img = images["v2"]
    assert (blobs / img.config_digest[7:]).read_bytes() == img.config
    for layer in img.layers:
        assert (blobs / sha(layer)[7:]).read_bytes() == layer


def test_index_export_carries_every_platform(store, images, tmp_path):
    dest = tmp_path / "multi.tar"
    report = export_image(store, "team/app:multi", dest, format="oci-archive")
    assert report.manifests == 3 and report.image_manifest_media_type == OCI_INDEX
    with tarfile.open(dest) as tf:
        names = set(tf.getnames())
    for img in (images["amd"], images["arm"]):
        assert f"blobs/sha256/{sha(oci_manifest(img))[7:]}" in names
        assert {f"blobs/sha256/{d[7:]}" for d in [img.config_digest, *img.layer_digests]} <= names


def test_docker_archive_layout(store, images, tmp_path):
    dest = tmp_path / "d.tar"
    export_image(store, "team/app:v1", dest, format="docker-archive")
    img = images["v1"]
    with tarfile.open(dest) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        index = json.load(tf.extractfile("index.json"))
        members = {m.name: m for m in tf.getmembers()}
        assert tf.extractfile(manifest[0]["Config"]).read() == img.config
        for name, layer in zip(manifest[0]["Layers"], img.layers, strict=True):
            assert tf.extractfile(name).read() == layer
    assert manifest == [{"Config": f"blobs/sha256/{img.config_digest[7:]}", "RepoTags": ["team/app:v1"],
                         "Layers": [f"blobs/sha256/{d[7:]}" for d in img.layer_digests]}]
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "team/app:v1"
    assert all(m.mtime == 0 and m.uid == 0 for m in members.values())
    assert dest.stat().st_size % tarfile.RECORDSIZE == 0


def test_docker_archive_of_an_index_lists_every_platform_untagged(store, images, tmp_path):
    dest = tmp_path / "m.tar"
    export_image(store, "team/app:multi", dest, format="docker-archive")
    with tarfile.open(dest) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
    assert len(manifest) == 2 and all(e["RepoTags"] == [] for e in manifest)


def test_export_by_digest_is_untagged(store, images, tmp_path):
    digest = images["digests"]["#1"]
    report = export_image(store, f"team/app@{digest}", tmp_path / "out")
    assert report.image_tag is None and report.image_digest == digest
    [entry] = json.loads((tmp_path / "out" / "index.json").read_text())["manifests"]
    assert "annotations" not in entry


def test_export_errors(store, images, tmp_path):
    with pytest.raises(ImageNotFoundException, match="team/app:nope"):
        export_image(store, "team/app:nope", tmp_path / "x")
    with pytest.raises(ImageNotFoundException):
        export_image(store, "team/app@sha256:" + "0" * 64, tmp_path / "x")
    with pytest.raises(RepositoryNotFoundException):
        export_image(store, "nothing:v1", tmp_path / "x")
    with pytest.raises(TransferUsageError, match="unknown export format"):
        export_image(store, "team/app:v1", tmp_path / "x", format="zip")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "data").write_text("mine")
    with pytest.raises(DestinationError, match="not an OCI image layout"):
        export_image(store, "team/app:v1", tmp_path / "full")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DestinationError, match="not a directory"):
        export_image(store, "team/app:v1", tmp_path / "afile")
    with pytest.raises(DestinationError, match="is a directory"):
        export_image(store, "team/app:v1", tmp_path / "full", format="oci-archive")
    with pytest.raises(DestinationError, match="cannot write"):
        export_image(store, "team/app:v1", tmp_path / "missing-dir" / "x.tar", format="oci-archive")
    assert (tmp_path / "full" / "data").read_text() == "mine"
    assert not list(tmp_path.glob(".*tmp-*"))


def test_export_progress(store, images, tmp_path):
    events = []
    report = export_image(store, "team/app:v1", tmp_path / "o.tar", format="oci-archive", progress=events.append)
    assert events[0].kind == "plan" and events[0].total_layers == 4
    assert sum(e.nbytes for e in events if e.kind == "bytes") == report.bytes_written


def test_convert_to_oci(store, images, tmp_path):
    legacy = images["v1"]
    report = export_image(store, "team/app:v1", tmp_path / "conv", convert_to_oci=True)
    original = stored_manifest(store, "team/app", "v1").image_id.image_digest
    assert report.image_digest != original
    assert report.image_manifest_media_type == "application/vnd.oci.image.manifest.v1+json"
    manifest = json.loads((tmp_path / "conv" / "blobs" / "sha256" / report.image_digest[7:]).read_text())
    assert manifest["config"]["digest"] == legacy.config_digest
    assert [x["digest"] for x in manifest["layers"]] == legacy.layer_digests
    # OCI manifests need no conversion: same digest
    same = export_image(store, "team/app:multi", tmp_path / "conv", convert_to_oci=True)
    assert same.image_digest == images["digests"]["multi"]
    with pytest.raises(TransferUsageError):
        export_image(store, "team/app:v1", tmp_path / "d.tar", format="docker-archive", convert_to_oci=True)
    with open_store(tmp_path / "other") as other:
        other.create_repository("conv")
        import_image(other, tmp_path / "conv", "conv")
        assert stored_manifest(other, "conv", "v1").image_id.image_digest == report.image_digest
