"""Import from every source layout, built by hand: docker save (legacy and current, plain and
gzip), OCI layout directories and archives, multi-image sources and multi-platform indexes."""

from __future__ import annotations

import gzip
import json
import os
import resource

import pytest
from transfer_util import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Link,
    docker_save_current,
    docker_save_legacy,
    image_count,
    layer_bytes,
    make_image,
    oci_layout,
    oci_manifest,
    open_store,
    sha,
    stored_manifest,
    tree_entries,
    write_tar,
)

from ecrstore.transfer import ImportReport, SourceError, TransferUsageError, import_image
from ecrstore.transfer.formats import docker_schema2_manifest, tag_of_annotations, tag_of_reference

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store")
    s.create_repository("team/app")
    yield s
    s.close()


def expected_legacy_manifest(img) -> str:
    """The Docker schema 2 manifest of a legacy save, written out member by member."""
    layers = ",".join(f'{{"mediaType":"{DOCKER_LAYER}","size":{len(x)},"digest":"{sha(x)}"}}' for x in img.layers)
    return (f'{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",'
            f'"config":{{"mediaType":"{DOCKER_CONFIG}","size":{len(img.config)},"digest":"{img.config_digest}"}},'
            f'"layers":[{layers}]}}')


def assert_blobs_stored(store, repo, img):
    assert layer_bytes(store, repo, img.config_digest) == img.config
    for x in img.layers:
        assert layer_bytes(store, repo, sha(x)) == x


@pytest.mark.parametrize("compress", [None, "gzip"])
@pytest.mark.parametrize("skopeo_style", [False, True], ids=["layer-dirs", "symlinked-layers"])
def test_legacy_docker_save(store, tmp_path, compress, skopeo_style):
    img = make_image(1, layers=3)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["example.com/team/app:v1", "app:latest"])],
                             compress=compress, skopeo_style=skopeo_style)
    report = import_image(store, src, "team/app", jobs=2)
    assert isinstance(report, ImportReport)
    assert report.source_format == "docker-archive"
    assert (report.images_imported, report.images_skipped) == (1, 0)
    assert (report.layers_stored, report.layers_skipped) == (4, 0)
    assert report.bytes_stored == len(img.config) + sum(map(len, img.layers))
    text = expected_legacy_manifest(img)
    image = stored_manifest(store, "team/app", "v1")
    assert image.image_manifest == text
    assert image.image_id.image_digest == sha(text.encode())
    assert image.image_manifest_media_type == DOCKER_MANIFEST
    assert stored_manifest(store, "team/app", "latest").image_id.image_digest == sha(text.encode())
    assert report.images[0].image_tags == ("v1", "latest")
    assert_blobs_stored(store, "team/app", img)


def test_legacy_manifest_is_deterministic(tmp_path):
    img = make_image(2)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:v1"])])
    digests = []
    for n in range(2):
        with open_store(tmp_path / f"store{n}") as s:
            s.create_repository("app")
            digests.append(import_image(s, src, "app").images[0].image_digest)
    assert digests[0] == digests[1] == sha(expected_legacy_manifest(img).encode())
    assert docker_schema2_manifest((DOCKER_CONFIG, 2, "sha256:" + "a" * 64), []) == (
        '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        '"config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,'
        '"digest":"sha256:' + "a" * 64 + '"},"layers":[]}')


def test_legacy_gzip_layers_are_hashed_and_typed(store, tmp_path):
    img = make_image(3, gzip_layers=True)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:gz"])])
    import_image(store, src, "team/app")
    doc = json.loads(stored_manifest(store, "team/app", "gz").image_manifest)
    assert [x["mediaType"] for x in doc["layers"]] == [DOCKER_LAYER + ".gzip"] * 2
    assert [x["digest"] for x in doc["layers"]] == img.layer_digests
    assert_blobs_stored(store, "team/app", img)


@pytest.mark.parametrize("compress", [None, "gzip"])
def test_current_docker_save_keeps_the_oci_manifests(store, tmp_path, compress):
    a, b = make_image(4), make_image(5, layers=1)
    src = tmp_path / "save.tar"
    digests = docker_save_current(src, [(a, ["docker.io/library/app:1.0"]), (b, ["app:2.0", "app:latest"])],
                                  compress=compress, work=tmp_path)
    report = import_image(store, src, "team/app")
    assert report.source_format == "docker-archive+oci"
    assert report.images_imported == 2
    one = stored_manifest(store, "team/app", "1.0")
    assert one.image_id.image_digest == sha(oci_manifest(a)) == digests["docker.io/library/app:1.0"]
    assert one.image_manifest.encode() == oci_manifest(a)
    assert one.image_manifest_media_type == OCI_MANIFEST
    assert stored_manifest(store, "team/app", "2.0").image_id.image_digest == sha(oci_manifest(b))
    assert stored_manifest(store, "team/app", "latest").image_id.image_digest == sha(oci_manifest(b))
    assert_blobs_stored(store, "team/app", a)
    assert_blobs_stored(store, "team/app", b)


def test_oci_layout_directory(store, tmp_path):
    a, b, c = make_image(6), make_image(7, gzip_layers=True), make_image(8, layers=1)
    digests = oci_layout(tmp_path / "layout", [(a, "v1"), (b, "v2"), (a, "stable"), (c, None)])
    report = import_image(store, tmp_path / "layout", "team/app")
    assert report.source_format == "oci"
    assert report.images_imported == 3
    assert {im.image_digest: im.image_tags for im in report.images} == {
        digests["v1"]: ("v1", "stable"), digests["v2"]: ("v2",), digests["#3"]: ()}
    for tag, img in (("v1", a), ("v2", b), ("stable", a)):
        image = stored_manifest(store, "team/app", tag)
        assert image.image_manifest.encode() == oci_manifest(img)
    stored_manifest(store, "team/app", digest=digests["#3"])  # untagged, present
    for img in (a, b, c):
        assert_blobs_stored(store, "team/app", img)


@pytest.mark.parametrize("compress", [None, "gzip"])
def test_oci_archive(store, tmp_path, compress):
    img = make_image(9)
    digests = oci_layout(tmp_path / "layout", [(img, "v1")])
    src = write_tar(tmp_path / "oci.tar", tree_entries(tmp_path / "layout"), compress=compress)
    report = import_image(store, src, "team/app")
    assert report.source_format == "oci-archive"
    assert stored_manifest(store, "team/app", "v1").image_id.image_digest == digests["v1"]
    assert_blobs_stored(store, "team/app", img)


def test_multi_image_docker_save_shares_layers(store, tmp_path):
    a = make_image(10)
    b = make_image(11)
    b.layers[0] = a.layers[0]  # a shared base layer
    cfg = json.loads(b.config)
    cfg["rootfs"]["diff_ids"][0] = sha(a.layers[0])
    b.config = json.dumps(cfg).encode()
    src = docker_save_legacy(tmp_path / "save.tar", [(a, ["app:a"]), (b, ["app:b"])])
    report = import_image(store, src, "team/app")
    assert report.images_imported == 2
    assert report.layers_stored == 5  # 2 configs + 3 distinct layers
    assert image_count(store, "team/app") == 2
    assert_blobs_stored(store, "team/app", a)
    assert_blobs_stored(store, "team/app", b)


def test_multi_platform_index(store, tmp_path):
    amd, arm = make_image(12, arch="amd64"), make_image(13, arch="arm64")
    digests = oci_layout(tmp_path / "layout", indexes=[([amd, arm], "multi")])
    report = import_image(store, tmp_path / "layout", "team/app")
    assert report.images_imported == 3
    top = stored_manifest(store, "team/app", "multi")
    assert top.image_id.image_digest == digests["multi"]
    assert top.image_manifest_media_type == OCI_INDEX
    for img in (amd, arm):
        child = stored_manifest(store, "team/app", digest=sha(oci_manifest(img)))
        assert child.image_manifest.encode() == oci_manifest(img)
    # children are put before the index that references them
    assert [im.image_digest for im in report.images][-1] == digests["multi"]


def test_partial_index_in_a_current_docker_save(store, tmp_path):
    """A single-platform save of a multi-platform image: the index is left out (with a note),
    the saved platform comes in with the RepoTags."""
    amd, arm = make_image(14, arch="amd64"), make_image(15, arch="arm64")
    root = tmp_path / "save"
    oci_layout(root, indexes=[([amd, arm], "latest")])
    for d in [sha(oci_manifest(arm)), arm.config_digest, *arm.layer_digests]:
        (root / "blobs" / "sha256" / d[7:]).unlink()
    (root / "manifest.json").write_text(json.dumps([{
        "Config": f"blobs/sha256/{amd.config_digest[7:]}", "RepoTags": ["app:latest"],
        "Layers": [f"blobs/sha256/{d[7:]}" for d in amd.layer_digests]}]))
    src = write_tar(tmp_path / "save.tar", tree_entries(root))
    events = []
    report = import_image(store, src, "team/app", progress=events.append)
    assert report.images_imported == 1
    assert stored_manifest(store, "team/app", "latest").image_id.image_digest == sha(oci_manifest(amd))
    assert any(e.kind == "note" and "not complete" in e.message for e in events)


def test_extracted_docker_save_directory(store, tmp_path):
    img = make_image(16)
    root = tmp_path / "extracted"
    docker_save_current(tmp_path / "unused.tar", [(img, ["app:dir"])], work=tmp_path)
    (tmp_path / "save-unused.tar").rename(root)
    report = import_image(store, root, "team/app")
    assert report.source_format == "docker-archive+oci"
    assert stored_manifest(store, "team/app", "dir").image_manifest.encode() == oci_manifest(img)


def test_tag_override(store, tmp_path):
    img = make_image(17)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:v1", "app:v2"])])
    report = import_image(store, src, "team/app", tag="release")
    assert report.images[0].image_tags == ("release",)
    tags = {i.image_tag for i in store.list_images("team/app").image_ids}
    assert tags == {"release"}


def test_tag_override_needs_a_single_image(store, tmp_path):
    src = docker_save_legacy(tmp_path / "save.tar", [(make_image(18), ["app:a"]), (make_image(19), ["app:b"])])
    with pytest.raises(TransferUsageError, match="holds 2 images"):
        import_image(store, src, "team/app", tag="x")
    assert image_count(store, "team/app") == 0


def test_tag_override_on_an_index_tags_the_index(store, tmp_path):
    digests = oci_layout(tmp_path / "layout", indexes=[([make_image(20), make_image(21, arch="arm64")], "multi")])
    import_image(store, tmp_path / "layout", "team/app", tag="both")
    assert stored_manifest(store, "team/app", "both").image_id.image_digest == digests["multi"]


def test_docker_manifests_in_an_oci_layout(store, tmp_path):
    img = make_image(22)
    digests = oci_layout(tmp_path / "layout", [(img, "d")], media_type=DOCKER_MANIFEST)
    import_image(store, tmp_path / "layout", "team/app")
    image = stored_manifest(store, "team/app", "d")
    assert image.image_id.image_digest == digests["d"]
    assert image.image_manifest_media_type == DOCKER_MANIFEST


def test_progress_events(store, tmp_path):
    img = make_image(23, layers=2, size=100_000)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:v1"])])
    events = []
    report = import_image(store, src, "team/app", progress=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "image"
    plan = events[0]
    assert (plan.total_layers, plan.total_bytes) == (3, report.bytes_stored)
    assert sum(e.nbytes for e in events if e.kind == "bytes") == report.bytes_stored
    assert sum(1 for e in events if e.kind == "bytes") > 3  # several parts per layer
    assert {e.digest for e in events if e.kind == "layer"} == {img.config_digest, *img.layer_digests}


def test_tags_of_references_and_annotations():
    assert tag_of_reference("docker.io/library/busybox:1.36") == "1.36"
    assert tag_of_reference("localhost:5000/app") is None
    assert tag_of_reference("localhost:5000/app:v1@sha256:" + "a" * 64) == "v1"
    assert tag_of_annotations({"org.opencontainers.image.ref.name": "v1"}) == "v1"
    assert tag_of_annotations({"org.opencontainers.image.ref.name": "example.com/app:v2"}) == "v2"
    assert tag_of_annotations({"io.containerd.image.name": "docker.io/library/app:v3"}) == "v3"
    assert tag_of_annotations({}) is None


def test_unknown_layout_is_refused(store, tmp_path):
    src = write_tar(tmp_path / "plain.tar", [("hello.txt", b"hi")])
    with pytest.raises(SourceError, match="neither manifest.json"):
        import_image(store, src, "team/app")


def test_empty_blob_is_refused(store, tmp_path):
    img = make_image(24)
    root = tmp_path / "layout"
    oci_layout(root, [(img, "v1")])
    (root / "blobs" / "sha256" / img.layer_digests[0][7:]).write_bytes(b"")
    with pytest.raises(SourceError, match="should be"):
        import_image(store, root, "team/app")


def test_gzip_source_with_trailing_padding(store, tmp_path):
    img = make_image(25)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:pad"])])
    padded = tmp_path / "padded.tar.gz"
    padded.write_bytes(gzip.compress(src.read_bytes()) + b"\0" * 512)
    import_image(store, padded, "team/app")
    assert stored_manifest(store, "team/app", "pad")


def test_hard_links_inside_the_archive(store, tmp_path):
    img = make_image(26, layers=1)
    src = docker_save_legacy(tmp_path / "save.tar", [(img, ["app:hl"])],
                             extra=[("alias/layer.tar", Link("ignored/none", hard=True))])
    import_image(store, src, "team/app")  # an unused link to nothing is harmless
    assert stored_manifest(store, "team/app", "hl")


def test_a_layout_with_many_blobs_keeps_few_files_open(store, tmp_path):
    """Blob files of a directory are open only while they are read or stored."""
    img = make_image(27, layers=120, size=100)
    oci_layout(tmp_path / "layout", [(img, "many")])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard))
    try:
        report = import_image(store, tmp_path / "layout", "team/app", jobs=2)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert report.layers_stored == 121
