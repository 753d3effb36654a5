"""boto3 against a real server: image operations and layer download URLs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from server_fixtures import digest_of, push_layer, repo_name, unique_bytes


@pytest.fixture(scope="module")
def ecr_server(ecr_server_per_backend):
    """This module runs on both backend pairs."""
    return ecr_server_per_backend


pytestmark = pytest.mark.timeout(120)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
LAYER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@pytest.fixture
def ecr(ecr_server):
    return ecr_server.client()


@pytest.fixture
def repo(ecr):
    name = repo_name("images")
    ecr.create_repository(repositoryName=name)
    yield name
    ecr.delete_repository(repositoryName=name, force=True)


def make_image(ecr, repo: str, n_layers: int = 2) -> tuple[str, list[tuple[str, bytes]]]:
    """Push a config and layers with boto3; the manifest text and the (digest, bytes) of each layer."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": unique_bytes(8).hex()}).encode()
    config_digest = push_layer(ecr, repo, config)
    layers = []
    for _ in range(n_layers):
        data = unique_bytes(2500)
        layers.append((push_layer(ecr, repo, data), data))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": config_digest},
        "layers": [{"mediaType": LAYER_GZ, "size": len(data), "digest": d} for d, data in layers],
    }, indent=3)
    return manifest, layers


def test_put_get_list_describe_delete(ecr, repo):
    manifest, layers = make_image(ecr, repo)
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    put = ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")["image"]
    assert put["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert put["imageManifestMediaType"] == DOCKER_MANIFEST

    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}, {"imageTag": "nope"}])
    assert got["images"][0]["imageManifest"] == manifest  # byte for byte
    assert got["failures"][0]["failureCode"] == "ImageNotFound"

    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")
    assert e.value.response["Error"]["Code"] == "ImageAlreadyExistsException"

    ids = ecr.list_images(repositoryName=repo)["imageIds"]
    assert ids == [{"imageDigest": digest, "imageTag": "v1"}]
    details = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert details[0]["imageTags"] == ["v1"] and details[0]["imageDigest"] == digest
    assert details[0]["imagePushedAt"].year >= 2024  # epoch seconds on the wire, a datetime in boto3

    check = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[layers[0][0]])
    assert check["layers"][0]["mediaType"] == LAYER_GZ

    deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert deleted["imageIds"][0]["imageDigest"] == digest and not deleted["failures"]
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


def test_put_image_needs_its_layers(ecr, repo):
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                   "digest": digest_of(b"{}")},
        "layers": [{"mediaType": LAYER_GZ, "size": 5, "digest": digest_of(b"absent")}],
    })
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=manifest)
    assert e.value.response["Error"]["Code"] == "LayersNotFoundException"


def test_download_url_serves_the_layer(ecr, repo, ecr_server):
    manifest, layers = make_image(ecr, repo, n_layers=1)
    layer_digest, data = layers[0]
    with pytest.raises(ClientError) as e:  # no image references it yet
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=layer_digest)
    assert e.value.response["Error"]["Code"] == "LayerInaccessibleException"

    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="latest")
    result = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=layer_digest)
    url = result["downloadUrl"]
    assert result["layerDigest"] == layer_digest
    if ecr_server.remote_blobs:  # a presigned GET of the object store, as ECR hands out
        assert url.startswith(os.environ["AWS_ENDPOINT_URL_S3"] + "/") and "X-Amz-Signature=" in url
        tampered = re.sub("X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=" + "0" * 64, url)
    else:
        assert url.startswith(ecr_server.endpoint + "/layers/")
        tampered = url.replace(layer_digest[-6:], "000000")
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == data
        if not ecr_server.remote_blobs:
            assert response.headers["Docker-Content-Digest"] == layer_digest
    head = urllib.request.Request(url, method="HEAD")
    if not ecr_server.remote_blobs:  # a presigned URL is signed for GET only
        with urllib.request.urlopen(head, timeout=30) as response:
            assert int(response.headers["Content-Length"]) == len(data) and response.read() == b""

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(tampered, timeout=30)
    assert e.value.code == 403
    if not ecr_server.remote_blobs:
        assert json.loads(e.value.read())["__type"] == "AccessDeniedException"

    with pytest.raises(ClientError) as e:
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest_of(b"never pushed"))
    assert e.value.response["Error"]["Code"] == "LayersNotFoundException"


def test_large_layer_download_streams_in_chunks(ecr, repo):
    data = unique_bytes(3 * 2**20 + 5)  # several download chunks, not a multiple of the chunk size
    config = json.dumps({"os": "linux", "nonce": unique_bytes(8).hex()}).encode()
    config_digest = push_layer(ecr, repo, config)
    layer_digest = push_layer(ecr, repo, data, part=2**20)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": config_digest},
        "layers": [{"mediaType": LAYER_GZ, "size": len(data), "digest": layer_digest}],
    })
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="big")
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=layer_digest)["downloadUrl"]
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
    assert hashlib.sha256(body).hexdigest() == layer_digest[7:]
