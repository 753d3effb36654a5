"""Real OCI clients push to and pull from ``ecrstore serve`` over /v2/, with every byte checked.

docker (against a dockerd of its own), podman, buildah, containerd's ctr (against a containerd
of its own), skopeo and oras-py log in with the password of ``aws ecr get-login-password`` and
push images built here (tests/transfer_util.py) to the server, pull them back, and compare
manifests, configs and layers with what they pushed; the JSON API sees what they pushed and
they pull what the JSON API put. Interrupted, concurrent and cross-registry pushes are covered
too. The daemons are started once per session and stopped by PID (tests/oci_tools.py).

``OCI_CLIENTS_REGISTRY=distribution`` runs the same flows against Debian's docker-registry, to
tell a client's behaviour from the server's (the tests of the JSON API and of credentials skip
there).
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import threading
import time
from pathlib import Path

import pytest
from oci_tools import (
    Containerd,
    ContainersEnv,
    DockerDaemon,
    gunzip,
    is_running,
    iter_descriptors,
    mounts_under,
    oci_layout_blobs,
    sha256,
    start_registry,
    tar_files,
    written_bytes,
)
from server_fixtures import KEY_A, KEY_B, push_layer
from transfer_util import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    docker_save_current,
    docker_save_legacy,
    make_image,
    oci_layout,
    oci_manifest,
    rand_bytes,
    tree_entries,
    write_tar,
)

pytestmark = pytest.mark.timeout(300)

REGISTRY_KIND = os.environ.get("OCI_CLIENTS_REGISTRY", "ecrstore")


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """The registry under test, with keys for registries A and B."""
    reg = start_registry(REGISTRY_KIND, tmp_path_factory.mktemp("oci-registry"), [KEY_A, KEY_B])
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def docker():
    daemon = DockerDaemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def containerd():
    daemon = Containerd.start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def containers(tmp_path_factory):
    """One isolated podman/buildah/skopeo home for the session."""
    return ContainersEnv.create(tmp_path_factory.mktemp("containers"))


def layout_of(root: Path, *images, tag: str = "v1") -> tuple[Path, str]:
    """An OCI layout holding ``images`` under tags v1, v2, ...; (layout, manifest digest of ``tag``)."""
    digests = oci_layout(root, [(img, f"v{n}") for n, img in enumerate(images, 1)])
    return root, digests[tag]


def check_image_in_registry(registry, repo: str, reference: str, blobs: dict[str, bytes], *,
                            key=KEY_A) -> dict:
    """The manifest of ``repo:reference`` parsed, after checking that every blob it names is in
    the registry with exactly the bytes of ``blobs``."""
    manifest = registry.manifest(repo, reference, key=key)
    doc = json.loads(manifest)
    for descriptor in iter_descriptors(doc):
        data = registry.blob(repo, descriptor["digest"], key=key)
        assert len(data) == descriptor["size"]
        assert data == blobs[descriptor["digest"]]
    return doc


def skopeo_dest(registry, key=KEY_A) -> list[str]:
    return ["--dest-tls-verify=false", "--dest-creds", registry.creds(key)]


def skopeo_src(registry, key=KEY_A) -> list[str]:
    return ["--src-tls-verify=false", "--src-creds", registry.creds(key)]


def docker_login(docker, registry, key=KEY_A) -> None:
    done = docker("login", "--username", "AWS", "--password-stdin", registry.host, input=registry.password(key))
    assert "Login Succeeded" in done.stdout


def saved_layers(archive: Path) -> list[bytes]:
    """The uncompressed layers of a ``docker save`` archive, in order."""
    with tarfile.open(archive) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        assert len(manifest) == 1
        return [tf.extractfile(name).read() for name in manifest[0]["Layers"]]


# --- credentials ------------------------------------------------------------------------------


def test_v2_without_valid_credentials_answers_401_with_a_basic_challenge(registry):
    registry.require_ecr()
    status, headers, _ = registry.get("/v2/", key=None)
    assert status == 401
    assert headers.get("www-authenticate", "").startswith("Basic realm=")
    status, _, _ = registry.get("/v2/", headers={"Authorization": "Basic QVdTOndyb25n"}, key=None)
    assert status == 401
    assert registry.get("/v2/")[0] == 200


def test_docker_login_takes_the_login_password_and_refuses_a_wrong_one(registry, docker):
    registry.require_ecr()
    done = docker("login", "--username", "AWS", "--password-stdin", registry.host, input="wrong", check=False)
    assert done.returncode != 0
    docker_login(docker, registry)


# --- docker -----------------------------------------------------------------------------------


@pytest.mark.parametrize("source_format", ["docker-save", "oci-save"])
def test_docker_push_pull_and_save_round_trip_the_layers(registry, docker, tmp_path, source_format):
    """docker pushes what it loaded as Docker schema 2 (an OCI image gets a new manifest
    digest): the config and the uncompressed layers stay the same bytes."""
    name = f"src/docker-{source_format}:v1"
    if source_format == "docker-save":
        img = make_image(1101, layers=3)
        source = docker_save_legacy(tmp_path / "in.tar", [(img, [name])])
    else:
        img = make_image(1102, layers=2, gzip_layers=True)
        source = tmp_path / "in.tar"
        docker_save_current(source, [(img, [name])], work=tmp_path)
    uncompressed = [gunzip(x) for x in img.layers]
    repo = registry.new_repository("docker/app")
    ref = f"{registry.host}/{repo}:v1"
    docker_login(docker, registry)
    docker("load", "-i", str(source))
    docker("tag", name, ref)
    digest = re.search(r"v1: digest: (sha256:[0-9a-f]{64})", docker("push", ref).stdout).group(1)

    doc = json.loads(registry.manifest(repo, "v1"))
    assert sha256(registry.manifest(repo, digest)) == digest
    assert doc["mediaType"] == DOCKER_MANIFEST
    assert registry.blob(repo, doc["config"]["digest"]) == img.config
    assert [gunzip(registry.blob(repo, d["digest"])) for d in doc["layers"]] == uncompressed

    docker("rmi", ref, name)
    assert f"Digest: {digest}" in docker("pull", ref).stdout
    inspected = json.loads(docker("image", "inspect", ref).stdout)[0]
    assert inspected["Id"] == img.config_digest
    assert f"{registry.host}/{repo}@{digest}" in inspected["RepoDigests"]
    docker("save", "-o", str(tmp_path / "out.tar"), ref)
    assert saved_layers(tmp_path / "out.tar") == uncompressed
    docker("rmi", ref)


def test_docker_push_shows_in_the_json_api_with_the_registry_digest(registry, docker, tmp_path):
    registry.require_ecr()
    img = make_image(1201)
    source = docker_save_legacy(tmp_path / "in.tar", [(img, ["src/docker-json:v1"])])
    repo = registry.new_repository("docker/json")
    ref = f"{registry.host}/{repo}:v1"
    docker_login(docker, registry)
    docker("load", "-i", str(source))
    docker("tag", "src/docker-json:v1", ref)
    digest = re.search(r"v1: digest: (sha256:[0-9a-f]{64})", docker("push", ref).stdout).group(1)
    docker("rmi", ref, "src/docker-json:v1")

    ecr = registry.ecr()
    [detail] = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageDigest"] == digest and detail["imageTags"] == ["v1"]
    assert detail["imageManifestMediaType"] == DOCKER_MANIFEST
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}],
                              acceptedMediaTypes=[DOCKER_MANIFEST])
    assert not got["failures"]
    assert got["images"][0]["imageId"]["imageDigest"] == digest
    assert got["images"][0]["imageManifest"].encode() == registry.manifest(repo, "v1")
    layers = json.loads(got["images"][0]["imageManifest"])["layers"]
    available = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[x["digest"] for x in layers])
    assert {x["layerAvailability"] for x in available["layers"]} == {"AVAILABLE"}


def test_an_image_put_with_the_json_api_pulls_with_docker_and_skopeo(registry, docker, containers, tmp_path):
    registry.require_ecr()
    img = make_image(1301, gzip_layers=True)
    repo = registry.new_repository("json/put")
    ecr = registry.ecr()
    for blob in (img.config, *img.layers):
        assert push_layer(ecr, repo, blob, part=16 * 1024) == sha256(blob)
    manifest = oci_manifest(img, media_type=DOCKER_MANIFEST)
    put = ecr.put_image(repositoryName=repo, imageManifest=manifest.decode(), imageTag="v1",
                        imageManifestMediaType=DOCKER_MANIFEST)
    digest = put["image"]["imageId"]["imageDigest"]
    assert digest == sha256(manifest)
    assert registry.manifest(repo, "v1") == manifest

    ref = f"{registry.host}/{repo}:v1"
    docker_login(docker, registry)
    assert f"Digest: {digest}" in docker("pull", ref).stdout
    docker("save", "-o", str(tmp_path / "out.tar"), ref)
    assert saved_layers(tmp_path / "out.tar") == [gunzip(x) for x in img.layers]
    docker("rmi", ref)

    out = tmp_path / "dir"
    containers.skopeo("copy", *skopeo_src(registry), f"docker://{ref}", f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == manifest
    for blob in (img.config, *img.layers):
        assert (out / sha256(blob)[7:]).read_bytes() == blob


def test_a_docker_mount_from_another_registrys_repository_falls_back_to_an_upload(registry, docker, tmp_path):
    """dockerd remembers which repositories it pushed a layer to and asks to mount it from
    there; a repository of registry A is invisible to registry B's credentials, so the mount
    must not happen and the layers are uploaded."""
    img = make_image(1401)
    source = docker_save_legacy(tmp_path / "in.tar", [(img, ["src/docker-mount:v1"])])
    docker("load", "-i", str(source))
    repo_a = registry.new_repository("mount/source", KEY_A)
    docker_login(docker, registry, KEY_A)
    docker("tag", "src/docker-mount:v1", f"{registry.host}/{repo_a}:v1")
    docker("push", f"{registry.host}/{repo_a}:v1")
    pushed_a = json.loads(registry.manifest(repo_a, "v1", key=KEY_A))
    if not registry.is_ecrstore:
        # docker-registry has one namespace: unlinking the layers from repo_a is how it comes
        # to hold them no more than registry B's view of it does.
        for d in pushed_a["layers"]:
            assert registry.get(f"/v2/{repo_a}/blobs/{d['digest']}", method="DELETE")[0] == 202

    repo_b = registry.new_repository("mount/target", KEY_B)
    docker_login(docker, registry, KEY_B)
    docker("tag", "src/docker-mount:v1", f"{registry.host}/{repo_b}:v1")
    output = docker("push", f"{registry.host}/{repo_b}:v1").stdout
    assert "Mounted from" not in output
    doc = json.loads(registry.manifest(repo_b, "v1", key=KEY_B))
    assert registry.blob(repo_b, doc["config"]["digest"], key=KEY_B) == img.config
    assert [gunzip(registry.blob(repo_b, d["digest"], key=KEY_B)) for d in doc["layers"]] == img.layers
    if registry.is_ecrstore:
        assert not registry.has_blob(repo_a, doc["layers"][0]["digest"], key=KEY_B)
    docker("rmi", f"{registry.host}/{repo_a}:v1", f"{registry.host}/{repo_b}:v1", "src/docker-mount:v1")


def test_a_killed_dockerd_is_cleaned_up_nothing_left_mounted_running_or_on_disk():
    daemon = DockerDaemon.start()
    containerd_pid = int((daemon.root / "exec" / "containerd" / "containerd.pid").read_text())
    daemon.process.kill()
    daemon.process.wait(10)
    assert mounts_under(daemon.root), "a killed dockerd leaves its data root mounted"
    daemon.stop()
    assert not is_running(containerd_pid)
    assert mounts_under(daemon.root) == []
    assert not daemon.root.exists()


# --- podman and buildah -----------------------------------------------------------------------


def test_podman_push_pull_round_trip_the_config_and_layers(registry, containers, tmp_path):
    img = make_image(2101, layers=2)
    source = docker_save_legacy(tmp_path / "in.tar", [(img, ["localhost/src/podman:v1"])])
    repo = registry.new_repository("podman/app")
    ref = f"{registry.host}/{repo}:v1"
    containers.podman("login", "--tls-verify=false", "--username", "AWS", "--password-stdin", registry.host,
                      input=registry.password())
    containers.podman("load", "-i", str(source))
    containers.podman("push", "--tls-verify=false", "--digestfile", str(tmp_path / "digest"),
                      "localhost/src/podman:v1", ref)
    digest = (tmp_path / "digest").read_text().strip()

    doc = json.loads(registry.manifest(repo, "v1"))
    assert sha256(registry.manifest(repo, digest)) == digest
    assert registry.blob(repo, doc["config"]["digest"]) == img.config
    assert [gunzip(registry.blob(repo, d["digest"])) for d in doc["layers"]] == img.layers

    containers.podman("rmi", "localhost/src/podman:v1")
    containers.podman("pull", "--tls-verify=false", ref)
    [inspected] = json.loads(containers.podman("image", "inspect", ref).stdout)
    assert inspected["Id"] == img.config_digest[7:]
    assert inspected["Digest"] == digest
    out = tmp_path / "saved"
    containers.podman("save", "--format", "docker-dir", "-o", str(out), ref)
    saved = json.loads((out / "manifest.json").read_text())
    assert (out / saved["config"]["digest"][7:]).read_bytes() == img.config
    assert [(out / d["digest"][7:]).read_bytes() for d in saved["layers"]] == img.layers
    containers.podman("rmi", ref)


def test_buildah_commits_from_scratch_pushes_and_pulls_back_the_file(registry, containers, tmp_path):
    payload = rand_bytes(150_000, 2201)
    (tmp_path / "payload.bin").write_bytes(payload)
    repo = registry.new_repository("buildah/app")
    ref = f"{registry.host}/{repo}:v1"
    local = "localhost/buildah/scratch:v1"
    containers.buildah("login", "--tls-verify=false", "--username", "AWS", "--password-stdin", registry.host,
                       input=registry.password())
    working = containers.buildah("from", "scratch").stdout.strip()
    containers.buildah("copy", working, str(tmp_path / "payload.bin"), "/data/payload.bin")
    containers.buildah("config", "--label", "built-by=buildah", working)
    containers.buildah("commit", "--format", "oci", working, local)
    containers.buildah("rm", working)
    containers.buildah("push", "--tls-verify=false", "--digestfile", str(tmp_path / "digest"), local,
                       f"docker://{ref}")
    digest = (tmp_path / "digest").read_text().strip()

    manifest = registry.manifest(repo, "v1")
    assert sha256(manifest) == digest
    doc = json.loads(manifest)
    assert doc["mediaType"] == OCI_MANIFEST
    config = json.loads(registry.blob(repo, doc["config"]["digest"]))
    assert config["config"]["Labels"]["built-by"] == "buildah"
    [layer] = doc["layers"]
    assert tar_files(registry.blob(repo, layer["digest"]))["data/payload.bin"] == payload

    containers.buildah("rmi", local)
    containers.buildah("pull", "--tls-verify=false", ref)
    working = containers.buildah("from", ref).stdout.strip()
    mountpoint = Path(containers.buildah("mount", working).stdout.strip())
    try:
        assert (mountpoint / "data" / "payload.bin").read_bytes() == payload
    finally:
        containers.buildah("umount", working)
        containers.buildah("rm", working)
        containers.buildah("rmi", ref)


# --- containerd -------------------------------------------------------------------------------


def test_ctr_import_push_pull_keep_every_blob_exact(registry, containerd, tmp_path):
    img = make_image(3101, gzip_layers=True)
    layout, digest = layout_of(tmp_path / "layout", img)
    blobs = oci_layout_blobs(layout)
    archive = write_tar(tmp_path / "image.tar", tree_entries(layout))
    repo = registry.new_repository("ctr/app")
    ref = f"{registry.host}/{repo}:v1"
    containerd("images", "import", "--base-name", "src/ctr", "--no-unpack", str(archive))
    containerd("images", "tag", "src/ctr:v1", ref)
    containerd("images", "push", "--plain-http", "--user", registry.creds(), ref)

    assert registry.manifest(repo, "v1") == blobs[digest]
    check_image_in_registry(registry, repo, digest, blobs)

    containerd("images", "rm", "--sync", ref, "src/ctr:v1")
    assert containerd("content", "ls", "-q").stdout.split() == []
    containerd("images", "pull", "--plain-http", "--user", registry.creds(), ref)
    listed = containerd("images", "ls").stdout
    assert ref in listed and digest in listed
    for blob_digest in [digest, img.config_digest, *img.layer_digests]:
        assert containerd.content(blob_digest) == blobs[blob_digest]
    containerd("images", "rm", "--sync", ref)


# --- skopeo -----------------------------------------------------------------------------------


def test_skopeo_copies_an_oci_layout_in_and_out_with_digests_preserved(registry, containers, tmp_path):
    img = make_image(4101, gzip_layers=True)
    layout, digest = layout_of(tmp_path / "layout", img)
    blobs = oci_layout_blobs(layout)
    repo = registry.new_repository("skopeo/oci")
    ref = f"docker://{registry.host}/{repo}:v1"
    containers.skopeo("copy", "--preserve-digests", *skopeo_dest(registry), f"oci:{layout}:v1", ref)

    assert registry.manifest(repo, "v1") == blobs[digest]
    check_image_in_registry(registry, repo, digest, blobs)
    creds = ["--tls-verify=false", "--creds", registry.creds()]
    assert containers.skopeo("inspect", "--raw", *creds, ref).stdout.encode() == blobs[digest]
    inspected = json.loads(containers.skopeo("inspect", *creds, ref).stdout)
    assert inspected["Digest"] == digest and inspected["Layers"] == img.layer_digests
    tags = json.loads(containers.skopeo("list-tags", *creds, f"docker://{registry.host}/{repo}").stdout)
    assert tags["Tags"] == ["v1"]

    out = tmp_path / "out-layout"
    containers.skopeo("copy", "--preserve-digests", *skopeo_src(registry), ref, f"oci:{out}:v1")
    [entry] = json.loads((out / "index.json").read_text())["manifests"]
    assert entry["digest"] == digest
    assert oci_layout_blobs(out) == blobs
    out_dir = tmp_path / "out-dir"
    containers.skopeo("copy", "--preserve-digests", *skopeo_src(registry), ref, f"dir:{out_dir}")
    assert (out_dir / "manifest.json").read_bytes() == blobs[digest]
    for blob_digest in [img.config_digest, *img.layer_digests]:
        assert (out_dir / blob_digest[7:]).read_bytes() == blobs[blob_digest]


def test_skopeo_copies_a_multi_platform_index_exactly(registry, containers, tmp_path):
    platforms = [make_image(4201, arch="amd64", gzip_layers=True), make_image(4202, arch="arm64", gzip_layers=True)]
    layout = tmp_path / "layout"
    digest = oci_layout(layout, indexes=[(platforms, "multi")])["multi"]
    blobs = oci_layout_blobs(layout)
    repo = registry.new_repository("skopeo/index")
    containers.skopeo("copy", "--all", "--preserve-digests", *skopeo_dest(registry), f"oci:{layout}:multi",
                      f"docker://{registry.host}/{repo}:multi")

    index = registry.manifest(repo, "multi")
    assert index == blobs[digest]
    assert json.loads(index)["mediaType"] == OCI_INDEX
    for entry in json.loads(index)["manifests"]:
        assert registry.manifest(repo, entry["digest"]) == blobs[entry["digest"]]
        check_image_in_registry(registry, repo, entry["digest"], blobs)


def test_skopeo_copies_a_docker_archive_in_as_schema_2_with_gzipped_layers(registry, containers, tmp_path):
    img = make_image(4301, layers=2)
    source = docker_save_legacy(tmp_path / "in.tar", [(img, ["src/archive:v1"])])
    repo = registry.new_repository("skopeo/archive")
    ref = f"docker://{registry.host}/{repo}:v1"
    containers.skopeo("copy", *skopeo_dest(registry), f"docker-archive:{source}", ref)

    manifest = registry.manifest(repo, "v1")
    doc = json.loads(manifest)
    assert doc["mediaType"] == DOCKER_MANIFEST
    assert registry.blob(repo, doc["config"]["digest"]) == img.config
    assert [gunzip(registry.blob(repo, d["digest"])) for d in doc["layers"]] == img.layers
    inspected = json.loads(containers.skopeo("inspect", "--tls-verify=false", "--creds", registry.creds(), ref).stdout)
    assert inspected["Digest"] == sha256(manifest)


def test_skopeo_delete_removes_the_image_and_its_tag_only(registry, containers, tmp_path):
    first, second = make_image(4401, gzip_layers=True), make_image(4402, gzip_layers=True)
    layout = tmp_path / "layout"
    digests = oci_layout(layout, [(first, "v1"), (second, "v2")])
    blobs = oci_layout_blobs(layout)
    repo = registry.new_repository("skopeo/delete")
    for tag in ("v1", "v2"):
        containers.skopeo("copy", "--preserve-digests", *skopeo_dest(registry), f"oci:{layout}:{tag}",
                          f"docker://{registry.host}/{repo}:{tag}")
    assert registry.tags(repo) == ["v1", "v2"]

    creds = ["--tls-verify=false", "--creds", registry.creds()]
    containers.skopeo("delete", *creds, f"docker://{registry.host}/{repo}@{digests['v1']}")
    assert registry.tags(repo) == ["v2"]
    status, _, _ = registry.get(f"/v2/{repo}/manifests/{digests['v1']}")
    assert status == 404
    gone = containers.skopeo("inspect", *creds, f"docker://{registry.host}/{repo}:v1", check=False)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower()
    assert registry.manifest(repo, "v2") == blobs[digests["v2"]]
    if registry.is_ecrstore:
        assert registry.image_digests(repo) == {digests["v2"]}


def test_a_reused_blob_info_cache_pointing_at_an_invisible_repository_falls_back_to_an_upload(registry, tmp_path):
    """skopeo remembers where it pushed each blob and, pushing the same blobs elsewhere on the
    same registry, checks those repositories first to mount from them. Registry B's
    credentials cannot see registry A's repository, so skopeo must find nothing there and upload."""
    shared = ContainersEnv.create(tmp_path / "shared-cache")
    img = make_image(4501, gzip_layers=True)
    layout, digest = layout_of(tmp_path / "layout", img)
    blobs = oci_layout_blobs(layout)
    repo_a = registry.new_repository("cache/source", KEY_A)
    shared.skopeo("copy", "--preserve-digests", *skopeo_dest(registry, KEY_A), f"oci:{layout}:v1",
                  f"docker://{registry.host}/{repo_a}:v1")
    assert any(shared.cache.iterdir()), "skopeo wrote no blob-info cache"
    if not registry.is_ecrstore:
        # docker-registry has one namespace: unlinking the layers from repo_a is how it comes
        # to hold them no more than registry B's view of it does.
        for layer in img.layer_digests:
            assert registry.get(f"/v2/{repo_a}/blobs/{layer}", method="DELETE")[0] == 202

    repo_b = registry.new_repository("cache/target", KEY_B)
    done = shared.skopeo("--debug", "copy", "--preserve-digests", *skopeo_dest(registry, KEY_B),
                         f"oci:{layout}:v1", f"docker://{registry.host}/{repo_b}:v1")
    assert f"/v2/{repo_a}/blobs/{img.layer_digests[0]}" in done.stderr, "the cached location was not tried"
    assert registry.manifest(repo_b, "v1", key=KEY_B) == blobs[digest]
    check_image_in_registry(registry, repo_b, digest, blobs, key=KEY_B)
    if registry.is_ecrstore:
        assert not registry.has_blob(repo_a, img.layer_digests[0], key=KEY_B)


# --- interrupted and concurrent pushes --------------------------------------------------------


def test_an_interrupted_skopeo_push_of_a_large_layer_succeeds_when_pushed_again(registry, containers, tmp_path):
    img = make_image(5101, layers=1, size=64 * 1024 * 1024)
    layout, digest = layout_of(tmp_path / "layout", img)
    blobs = oci_layout_blobs(layout)
    [layer] = img.layer_digests
    repo = registry.new_repository("resume/app")
    argv = ["copy", "--preserve-digests", *skopeo_dest(registry), f"oci:{layout}:v1",
            f"docker://{registry.host}/{repo}:v1"]

    push = containers.popen("skopeo", *argv, stderr_path=tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 60
        while push.poll() is None and written_bytes(push.pid) < 16 * 1024 * 1024 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert push.poll() is None, "skopeo finished before it could be interrupted"
        sent = written_bytes(push.pid)
    finally:
        push.kill()
        push.wait(30)
    assert sent < len(img.layers[0]), "the layer was sent whole before the interruption"
    assert not registry.has_blob(repo, layer), "a partly uploaded layer is visible"

    containers.skopeo(*argv, timeout=180)
    assert registry.manifest(repo, "v1") == blobs[digest]
    check_image_in_registry(registry, repo, digest, blobs)


def test_two_clients_pushing_the_same_layer_at_once_both_succeed_with_one_image(registry, tmp_path):
    img = make_image(5201, layers=1, size=16 * 1024 * 1024)
    layout, digest = layout_of(tmp_path / "layout", img)
    blobs = oci_layout_blobs(layout)
    repo = registry.new_repository("concurrent/app")
    clients = [ContainersEnv.create(tmp_path / f"client{n}") for n in range(2)]
    results = {}

    def push(n: int) -> None:
        results[n] = clients[n].skopeo("copy", "--preserve-digests", *skopeo_dest(registry), f"oci:{layout}:v1",
                                       f"docker://{registry.host}/{repo}:v1", check=False, timeout=180)

    threads = [threading.Thread(target=push, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(200)
    for n in range(2):
        assert results[n].returncode == 0, results[n].stderr
    assert registry.tags(repo) == ["v1"]
    assert registry.manifest(repo, "v1") == blobs[digest]
    check_image_in_registry(registry, repo, digest, blobs)
    if registry.is_ecrstore:
        assert registry.image_digests(repo) == {digest}


# --- oras-py ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
def test_oras_pushes_and_pulls_files_exactly(registry, tmp_path, chunked):
    import oras.provider

    files = {"small.txt": b"hello from oras\n", "large.bin": rand_bytes(300_007, 6101 + chunked)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    config = tmp_path / "docker-config.json"
    client = oras.provider.Registry(registry.host, insecure=True, auth_backend="basic")
    client.login(username="AWS", password=registry.password(), hostname=registry.host, config_path=str(config))
    repo = registry.new_repository("oras/files")
    target = f"{registry.host}/{repo}:v1"
    response = client.push(target=target, files=[str(tmp_path / name) for name in files], config_path=str(config),
                           disable_path_validation=True, do_chunked=chunked, chunk_size=64 * 1024, quiet=True)
    assert response.status_code == 201

    manifest = client.get_manifest(target)
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in manifest["layers"]] == list(files)
    for layer, data in zip(manifest["layers"], files.values(), strict=True):
        assert layer["digest"] == sha256(data) and layer["size"] == len(data)
        assert registry.blob(repo, layer["digest"]) == data
    out = tmp_path / "pulled"
    pulled = client.pull(target=target, config_path=str(config), outdir=str(out))
    assert sorted(Path(p).name for p in pulled) == sorted(files)
    for name, data in files.items():
        assert (out / name).read_bytes() == data
