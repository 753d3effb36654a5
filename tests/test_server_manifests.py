"""boto3 against a real server: every supported manifest media type, byte for byte, and the
image operations' errors and per-item failures."""

from __future__ import annotations

import hashlib
import json

import pytest
from botocore.exceptions import ClientError
from server_fixtures import push_layer, repo_name, unique_bytes


@pytest.fixture(scope="module")
def ecr_server(ecr_server_per_backend):
    """This module runs on both backend pairs."""
    return ecr_server_per_backend


pytestmark = pytest.mark.timeout(120)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def code_of(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def ecr(ecr_server):
    return ecr_server.client()


def _repo(ecr, **kw):
    name = repo_name("manifests")
    ecr.create_repository(repositoryName=name, **kw)
    return name


@pytest.fixture
def repo(ecr):
    name = _repo(ecr)
    yield name
    try:
        ecr.delete_repository(repositoryName=name, force=True)
    except ClientError:
        pass


class Blobs:
    """A config and two layers pushed to a repository with boto3."""

    def __init__(self, ecr, repo: str) -> None:
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "n": unique_bytes(8).hex()}).encode()
        self.config_digest = push_layer(ecr, repo, self.config)
        self.layers = [unique_bytes(n) for n in (2100, 3300)]
        self.layer_digests = [push_layer(ecr, repo, data) for data in self.layers]

    def descriptors(self, layer_type: str) -> list[dict]:
        return [{"mediaType": layer_type, "size": len(d), "digest": dg}
                for d, dg in zip(self.layers, self.layer_digests, strict=True)]

    @property
    def layer_bytes(self) -> int:
        return sum(len(d) for d in self.layers)


def docker_manifest(b: Blobs, note: str = "") -> str:
    # Formatting the server must keep: indentation, key order, non-ASCII and a slash.
    return json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(b.config), "digest": b.config_digest},
        "layers": b.descriptors(DOCKER_LAYER),
        "x-note": f"café ✓ a/b {note}",
    }, indent=3, ensure_ascii=False)


def oci_manifest(b: Blobs, *, with_media_type: bool = True) -> str:
    doc = {"schemaVersion": 2,
           "config": {"mediaType": OCI_CONFIG, "size": len(b.config), "digest": b.config_digest},
           "layers": b.descriptors(OCI_LAYER),
           "annotations": {"org.opencontainers.image.title": "naïve/über"}}
    if with_media_type:
        doc = {"mediaType": OCI_MANIFEST, **doc}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def index_of(media_type: str, children: list[tuple[str, str]]) -> str:
    """A manifest list / OCI index over (manifest text, media type) children."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": media_type,
        "manifests": [{"mediaType": mt, "size": len(text.encode()), "digest": sha(text),
                       "platform": {"architecture": arch, "os": "linux"}}
                      for (text, mt), arch in zip(children, ("amd64", "arm64", "s390x"), strict=False)],
    }, indent=1)


def test_every_media_type_round_trips_byte_for_byte(ecr, repo):
    blobs = Blobs(ecr, repo)
    docker = docker_manifest(blobs)
    oci = oci_manifest(blobs)
    oci_bare = oci_manifest(blobs, with_media_type=False)  # media type given beside it instead
    docker_list = index_of(DOCKER_LIST, [(docker, DOCKER_MANIFEST)])
    oci_index = index_of(OCI_INDEX, [(oci, OCI_MANIFEST), (oci_bare, OCI_MANIFEST)])
    pushes = [
        ("docker", docker, None, DOCKER_MANIFEST),
        ("oci", oci, None, OCI_MANIFEST),
        ("oci-bare", oci_bare, OCI_MANIFEST, OCI_MANIFEST),
        ("list", docker_list, None, DOCKER_LIST),
        ("index", oci_index, OCI_INDEX, OCI_INDEX),
    ]
    for tag, text, declared, media_type in pushes:
        kwargs = {"imageManifestMediaType": declared} if declared else {}
        image = ecr.put_image(repositoryName=repo, imageManifest=text, imageTag=tag, **kwargs)["image"]
        assert image["imageId"] == {"imageDigest": sha(text), "imageTag": tag}
        assert image["imageManifestMediaType"] == media_type
        assert image["imageManifest"] == text

    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag} for tag, *_ in pushes])
    assert not got["failures"]
    by_tag = {image["imageId"]["imageTag"]: image for image in got["images"]}
    for tag, text, _, media_type in pushes:
        assert by_tag[tag]["imageManifest"] == text  # byte for byte, as pushed
        assert by_tag[tag]["imageManifest"].encode() == text.encode()
        assert by_tag[tag]["imageManifestMediaType"] == media_type
        assert by_tag[tag]["imageId"]["imageDigest"] == sha(text)

    by_digest = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": sha(docker_list)}])
    assert by_digest["images"][0]["imageManifest"] == docker_list

    # acceptedMediaTypes: an image of another type is a per-item failure
    only_oci = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "docker"}, {"imageTag": "oci"}],
                                   acceptedMediaTypes=[OCI_MANIFEST])
    assert [i["imageId"]["imageTag"] for i in only_oci["images"]] == ["oci"]
    assert only_oci["failures"][0]["imageId"] == {"imageTag": "docker"}

    details = {d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}
    assert len(details) == 5
    for text in (docker, oci, oci_bare):
        assert details[sha(text)]["imageSizeInBytes"] == blobs.layer_bytes  # the layers, as ECR counts
    assert details[sha(docker)]["imageManifestMediaType"] == DOCKER_MANIFEST
    assert details[sha(docker)]["artifactMediaType"] == DOCKER_CONFIG
    assert details[sha(oci)]["artifactMediaType"] == OCI_CONFIG
    for text in (docker_list, oci_index):
        assert details[sha(text)]["imageSizeInBytes"] == blobs.layer_bytes  # the largest child's
    assert details[sha(oci_index)]["imageManifestMediaType"] == OCI_INDEX
    assert details[sha(docker)]["imageTags"] == ["docker"]


def test_tag_status_filters(ecr, repo):
    blobs = Blobs(ecr, repo)
    tagged = docker_manifest(blobs, "tagged")
    untagged = docker_manifest(blobs, "untagged")
    two_tags = docker_manifest(blobs, "two")
    ecr.put_image(repositoryName=repo, imageManifest=tagged, imageTag="t1")
    ecr.put_image(repositoryName=repo, imageManifest=untagged)
    ecr.put_image(repositoryName=repo, imageManifest=two_tags, imageTag="a")
    ecr.put_image(repositoryName=repo, imageManifest=two_tags, imageTag="b")

    def listed(status: str | None) -> set[tuple[str, str | None]]:
        kw = {"filter": {"tagStatus": status}} if status else {}
        return {(i["imageDigest"], i.get("imageTag")) for i in ecr.list_images(repositoryName=repo, **kw)["imageIds"]}

    tagged_ids = {(sha(tagged), "t1"), (sha(two_tags), "a"), (sha(two_tags), "b")}
    assert listed("TAGGED") == tagged_ids
    assert listed("UNTAGGED") == {(sha(untagged), None)}
    assert listed("ANY") == listed(None) == tagged_ids | {(sha(untagged), None)}

    def described(status: str) -> set[str]:
        return {d["imageDigest"] for d in
                ecr.describe_images(repositoryName=repo, filter={"tagStatus": status})["imageDetails"]}

    assert described("TAGGED") == {sha(tagged), sha(two_tags)}
    assert described("UNTAGGED") == {sha(untagged)}
    untagged_detail = ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": sha(untagged)}])
    assert "imageTags" not in untagged_detail["imageDetails"][0]

    with pytest.raises(ClientError) as e:
        ecr.list_images(repositoryName=repo, filter={"tagStatus": "SOMETIMES"})
    assert code_of(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "nope"}])
    assert code_of(e) == "ImageNotFoundException"


def test_batch_delete_by_tag_and_by_digest(ecr, repo):
    blobs = Blobs(ecr, repo)
    two_tags = docker_manifest(blobs, "two")
    one_tag = docker_manifest(blobs, "one")
    by_digest = docker_manifest(blobs, "digest")
    ecr.put_image(repositoryName=repo, imageManifest=two_tags, imageTag="x")
    ecr.put_image(repositoryName=repo, imageManifest=two_tags, imageTag="y")
    ecr.put_image(repositoryName=repo, imageManifest=one_tag, imageTag="solo")
    ecr.put_image(repositoryName=repo, imageManifest=by_digest, imageTag="d1")
    ecr.put_image(repositoryName=repo, imageManifest=by_digest, imageTag="d2")

    # by tag, with another tag left: only the tag goes
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "x"}])
    assert out["imageIds"] == [{"imageDigest": sha(two_tags), "imageTag": "x"}] and not out["failures"]
    details = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "y"}])["imageDetails"]
    assert details[0]["imageTags"] == ["y"]
    # by its last tag: the image goes
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "solo"}])
    assert out["imageIds"] == [{"imageDigest": sha(one_tag), "imageTag": "solo"}]
    # by digest: the image and all its tags
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": sha(by_digest)},
                                                                {"imageTag": "missing"},
                                                                {"imageDigest": "sha256:" + "0" * 64}])
    assert sorted(i["imageTag"] for i in out["imageIds"]) == ["d1", "d2"]
    assert {i["imageDigest"] for i in out["imageIds"]} == {sha(by_digest)}
    assert sorted(f["failureCode"] for f in out["failures"]) == ["ImageNotFound", "ImageNotFound"]

    left = {(i["imageDigest"], i.get("imageTag")) for i in ecr.list_images(repositoryName=repo)["imageIds"]}
    assert left == {(sha(two_tags), "y")}


def test_manifest_list_protects_its_children(ecr, repo):
    blobs = Blobs(ecr, repo)
    child = docker_manifest(blobs, "child")
    ecr.put_image(repositoryName=repo, imageManifest=child, imageTag="child")
    parent = index_of(DOCKER_LIST, [(child, DOCKER_MANIFEST)])
    ecr.put_image(repositoryName=repo, imageManifest=parent, imageTag="multi")

    for ident in ({"imageDigest": sha(child)}, {"imageTag": "child"}):
        out = ecr.batch_delete_image(repositoryName=repo, imageIds=[ident])
        assert out["imageIds"] == []
        assert out["failures"][0]["failureCode"] == "ImageReferencedByManifestList"
        assert out["failures"][0]["imageId"] == ident

    ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])
    out = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": sha(child)}])
    assert out["imageIds"] == [{"imageDigest": sha(child), "imageTag": "child"}] and not out["failures"]


def test_immutable_tags(ecr):
    repo = _repo(ecr, imageTagMutability="IMMUTABLE")
    try:
        blobs = Blobs(ecr, repo)
        first, second = docker_manifest(blobs, "1"), docker_manifest(blobs, "2")
        ecr.put_image(repositoryName=repo, imageManifest=first, imageTag="release")
        for text in (second, first):  # another image, and the same image again
            with pytest.raises(ClientError) as e:
                ecr.put_image(repositoryName=repo, imageManifest=text, imageTag="release")
            assert code_of(e) == "ImageTagAlreadyExistsException"
            assert "release" in e.value.response["Error"]["Message"]
        ecr.put_image(repositoryName=repo, imageManifest=second, imageTag="other")  # a new tag is fine
    finally:
        ecr.delete_repository(repositoryName=repo, force=True)


def test_mutable_tag_moves(ecr, repo):
    blobs = Blobs(ecr, repo)
    first, second = docker_manifest(blobs, "1"), docker_manifest(blobs, "2")
    ecr.put_image(repositoryName=repo, imageManifest=first, imageTag="latest")
    ecr.put_image(repositoryName=repo, imageManifest=second, imageTag="latest")
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "latest"}])["images"][0]
    assert got["imageId"]["imageDigest"] == sha(second)
    ids = {(i["imageDigest"], i.get("imageTag")) for i in ecr.list_images(repositoryName=repo)["imageIds"]}
    assert ids == {(sha(first), None), (sha(second), "latest")}


def test_put_image_errors(ecr, repo, ecr_server):
    blobs = Blobs(ecr, repo)
    good = docker_manifest(blobs)

    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=good, imageDigest="sha256:" + "ab" * 32)
    assert code_of(e) == "ImageDigestDoesNotMatchException"
    ecr.put_image(repositoryName=repo, imageManifest=good, imageDigest=sha(good))  # the right one is fine

    # A layer that exists, but in another repository only: not this repository's.
    elsewhere = _repo(ecr)
    try:
        foreign = push_layer(ecr, elsewhere, unique_bytes(1500))
        doc = json.loads(good)
        doc["layers"].append({"mediaType": DOCKER_LAYER, "size": 1500, "digest": foreign})
        with pytest.raises(ClientError) as e:
            ecr.put_image(repositoryName=repo, imageManifest=json.dumps(doc))
        assert code_of(e) == "LayersNotFoundException"
        assert foreign in e.value.response["Error"]["Message"]
    finally:
        ecr.delete_repository(repositoryName=elsewhere, force=True)

    missing_child = docker_manifest(blobs, "never pushed")
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=index_of(OCI_INDEX, [(missing_child, DOCKER_MANIFEST)]))
    assert code_of(e) == "ReferencedImagesNotFoundException"

    for bad in ("not json", json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": []}),
                json.dumps({"schemaVersion": 2, "config": {}, "layers": []})):
        with pytest.raises(ClientError) as e:
            ecr.put_image(repositoryName=repo, imageManifest=bad)
        assert code_of(e) == "InvalidParameterException", bad

    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=good)
    assert code_of(e) == "ImageAlreadyExistsException"


def test_delete_repository_with_images_needs_force(ecr):
    repo = _repo(ecr)
    blobs = Blobs(ecr, repo)
    ecr.put_image(repositoryName=repo, imageManifest=docker_manifest(blobs), imageTag="v1")
    with pytest.raises(ClientError) as e:
        ecr.delete_repository(repositoryName=repo)
    assert code_of(e) == "RepositoryNotEmptyException"
    assert ecr.list_images(repositoryName=repo)["imageIds"]  # nothing was removed
    assert ecr.delete_repository(repositoryName=repo, force=True)["repository"]["repositoryName"] == repo
    with pytest.raises(ClientError) as e:
        ecr.list_images(repositoryName=repo)
    assert code_of(e) == "RepositoryNotFoundException"
