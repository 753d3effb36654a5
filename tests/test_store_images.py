"""Image operations of the engine: PutImage's algorithm, reads, deletes, pagination, download
URLs and online garbage collection."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qsl, urlsplit

import pytest
from storeutil import digest_of, open_store, push

from ecrstore import DescribeImagesFilter, ExclusionFilter, ImageIdentifier, ListImagesFilter, errors
from ecrstore.manifest import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

BASE = "http://127.0.0.1:9"

LAYER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.fixture
def store(tmp_path, backends):
    with open_store(tmp_path / "store", **backends) as s:
        s.create_repository("app")
        yield s


def image(store, repo="app", n_layers=2, seed=0, media=DOCKER_MANIFEST):
    """Push a config and layers, answer the manifest text (compact JSON, as clients send)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    cfg = push(store, repo, config)
    layers = [push(store, repo, f"layer {seed}/{i} ".encode() * (100 + i)) for i in range(n_layers)]
    sizes = [len(f"layer {seed}/{i} ".encode() * (100 + i)) for i in range(n_layers)]
    layer_type = LAYER_GZ if media == DOCKER_MANIFEST else OCI_LAYER
    cfg_type = ("application/vnd.docker.container.image.v1+json" if media == DOCKER_MANIFEST
                else "application/vnd.oci.image.config.v1+json")
    doc = {"schemaVersion": 2, "mediaType": media,
           "config": {"mediaType": cfg_type, "size": len(config), "digest": cfg},
           "layers": [{"mediaType": layer_type, "size": s, "digest": d} for d, s in zip(layers, sizes, strict=True)]}
    return json.dumps(doc, indent=3), layers, sum(sizes)


def index_of(manifests, media=OCI_INDEX):
    child = OCI_MANIFEST if media == OCI_INDEX else DOCKER_MANIFEST
    return json.dumps({"schemaVersion": 2, "mediaType": media, "manifests": [
        {"mediaType": child, "size": len(m), "digest": digest_of(m.encode()),
         "platform": {"architecture": a, "os": "linux"}}
        for m, a in zip(manifests, ["amd64", "arm64", "s390x"], strict=False)]})


@pytest.mark.parametrize("media", [DOCKER_MANIFEST, OCI_MANIFEST])
def test_put_and_get_image_byte_for_byte(store, media):
    text, layers, size = image(store, media=media)
    res = store.put_image("app", text, image_tag="v1")
    assert res.image.image_id.image_digest == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert res.image.image_manifest == text and res.image.image_manifest_media_type == media
    got = store.batch_get_image("app", [ImageIdentifier(image_tag="v1"),
                                        ImageIdentifier(res.image.image_id.image_digest)])
    assert [i.image_manifest for i in got.images] == [text, text] and got.failures == ()
    # layers now carry the media type the manifest references them with
    check = store.batch_check_layer_availability("app", layers)
    assert {layer.media_type for layer in check.layers} == {LAYER_GZ if media == DOCKER_MANIFEST else OCI_LAYER}
    (detail,) = store.describe_images("app").image_details
    assert detail.image_tags == ("v1",) and detail.image_size_in_bytes == size
    assert detail.image_manifest_media_type == media and detail.artifact_media_type.endswith("json")


def test_put_image_errors(store):
    text, layers, _ = image(store)
    digest = digest_of(text.encode())
    with pytest.raises(errors.RepositoryNotFoundException):
        store.put_image("nope", text)
    for bad in ["{", "[]", json.dumps({"schemaVersion": 2}),
                json.dumps({"schemaVersion": 1, "mediaType": "application/vnd.docker.distribution.manifest.v1+json"})]:
        with pytest.raises(errors.InvalidParameterException):
            store.put_image("app", bad)
    no_layers = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": json.loads(text)["config"],
                            "layers": []})
    with pytest.raises(errors.InvalidParameterException, match="at least 1 layer"):
        store.put_image("app", no_layers)
    with pytest.raises(errors.InvalidParameterException):
        store.put_image("app", text, image_manifest_media_type=OCI_MANIFEST)  # disagrees with the manifest
    with pytest.raises(errors.ImageDigestDoesNotMatchException):
        store.put_image("app", text, image_digest="sha256:" + "0" * 64)
    store.create_repository("other")
    with pytest.raises(errors.LayersNotFoundException):
        store.put_image("other", text)  # the layers are app's, not other's
    with pytest.raises(errors.ReferencedImagesNotFoundException):
        store.put_image("app", index_of([text], DOCKER_MANIFEST_LIST))
    assert store.describe_images("app").image_details == ()
    assert store.put_image("app", text, image_digest=digest).image.image_id.image_digest == digest
    with pytest.raises(errors.ImageAlreadyExistsException):
        store.put_image("app", text)
    store.put_image("app", text, image_tag="a")
    with pytest.raises(errors.ImageAlreadyExistsException):
        store.put_image("app", text, image_tag="a")


def test_too_many_layers(tmp_path):
    with open_store(tmp_path / "s", max_layers_per_image=2) as store:
        store.create_repository("app")
        text, _, _ = image(store, n_layers=3)
        with pytest.raises(errors.InvalidParameterException):
            store.put_image("app", text)


def test_tags_move_in_mutable_and_stay_in_immutable(store):
    one, _, _ = image(store, seed=1)
    two, _, _ = image(store, seed=2)
    store.put_image("app", one, image_tag="latest")
    store.put_image("app", two, image_tag="latest")  # moves
    got = store.batch_get_image("app", [ImageIdentifier(image_tag="latest")]).images[0]
    assert got.image_manifest == two
    store.create_repository("locked", image_tag_mutability="IMMUTABLE")
    one_l, _, _ = image(store, "locked", seed=1)
    two_l, _, _ = image(store, "locked", seed=2)
    store.put_image("locked", one_l, image_tag="v1")
    with pytest.raises(errors.ImageTagAlreadyExistsException):
        store.put_image("locked", two_l, image_tag="v1")
    with pytest.raises(errors.ImageTagAlreadyExistsException):
        store.put_image("locked", one_l, image_tag="v1")  # even for the same digest


@pytest.mark.parametrize("mode, mutable_tag, immutable_tag", [
    ("IMMUTABLE_WITH_EXCLUSION", "dev-1", "v1"),    # filters name the mutable tags
    ("MUTABLE_WITH_EXCLUSION", "dev-1", "release-1"),  # filters name the immutable tags
])
def test_exclusion_filters(store, mode, mutable_tag, immutable_tag):
    pattern = "dev-*" if mode == "IMMUTABLE_WITH_EXCLUSION" else "release-*"
    store.create_repository("ex", image_tag_mutability=mode,
                            image_tag_mutability_exclusion_filters=[ExclusionFilter(pattern)])
    a, _, _ = image(store, "ex", seed=1)
    b, _, _ = image(store, "ex", seed=2)
    for tag in (mutable_tag, immutable_tag):
        store.put_image("ex", a, image_tag=tag)
    store.put_image("ex", b, image_tag=mutable_tag)
    with pytest.raises(errors.ImageTagAlreadyExistsException):
        store.put_image("ex", b, image_tag=immutable_tag)


@pytest.mark.parametrize("media", [DOCKER_MANIFEST_LIST, OCI_INDEX])
def test_manifest_lists_and_indexes(store, media):
    child = DOCKER_MANIFEST if media == DOCKER_MANIFEST_LIST else OCI_MANIFEST
    a, _, size_a = image(store, seed=1, media=child)
    b, _, size_b = image(store, seed=2, n_layers=3, media=child)
    store.put_image("app", a)
    store.put_image("app", b)
    idx = index_of([a, b], media)
    store.put_image("app", idx, image_tag="multi")
    detail = store.describe_images("app", image_ids=[ImageIdentifier(image_tag="multi")]).image_details[0]
    assert detail.image_size_in_bytes == max(size_a, size_b)
    res = store.batch_delete_image("app", [ImageIdentifier(digest_of(a.encode()))])
    assert [f.failure_code for f in res.failures] == ["ImageReferencedByManifestList"]
    store.batch_delete_image("app", [ImageIdentifier(image_tag="multi")])
    assert store.batch_delete_image("app", [ImageIdentifier(digest_of(a.encode()))]).failures == ()


def test_batch_get_failures_are_data(store):
    text, _, _ = image(store)
    d = store.put_image("app", text, image_tag="v1").image.image_id.image_digest
    res = store.batch_get_image("app", [
        ImageIdentifier(), ImageIdentifier("nope"), ImageIdentifier(image_tag="missing"),
        ImageIdentifier("sha256:" + "1" * 64, "v1"), ImageIdentifier(d)], accepted_media_types=[DOCKER_MANIFEST])
    assert [f.failure_code for f in res.failures] == [
        "MissingDigestAndTag", "InvalidImageDigest", "ImageNotFound", "ImageTagDoesNotMatchDigest"]
    assert len(res.images) == 1
    assert store.batch_get_image("app", [ImageIdentifier(d)], accepted_media_types=[OCI_MANIFEST]).images == ()
    with pytest.raises(errors.RepositoryNotFoundException):
        store.batch_get_image("nope", [ImageIdentifier(d)])
    with pytest.raises(errors.InvalidParameterException):
        store.batch_get_image("app", [])


def test_batch_delete_by_tag_and_digest(store):
    text, _, _ = image(store)
    d = store.put_image("app", text, image_tag="a").image.image_id.image_digest
    store.put_image("app", text, image_tag="b")
    res = store.batch_delete_image("app", [ImageIdentifier(image_tag="a")])
    assert [(i.image_digest, i.image_tag) for i in res.image_ids] == [(d, "a")]
    assert store.describe_images("app").image_details[0].image_tags == ("b",)
    res = store.batch_delete_image("app", [ImageIdentifier(image_tag="b")])  # the last tag: the image goes
    assert store.describe_images("app").image_details == ()
    store.put_image("app", text, image_tag="c")
    store.put_image("app", text, image_tag="d")
    res = store.batch_delete_image("app", [ImageIdentifier(d), ImageIdentifier(d)])
    assert sorted(i.image_tag for i in res.image_ids) == ["c", "d"]
    assert [f.failure_code for f in res.failures] == ["ImageNotFound"]
    with pytest.raises(errors.ImageNotFoundException):
        store.describe_images("app", image_ids=[ImageIdentifier(d)])


def test_list_and_describe_pagination_and_filters(store):
    texts = [image(store, seed=i, n_layers=1)[0] for i in range(7)]
    for i, t in enumerate(texts):
        store.put_image("app", t, image_tag=f"t{i}" if i % 2 == 0 else None)
        if i == 0:
            store.put_image("app", t, image_tag="extra")
    def walk(call, key, **kw):
        out, token = [], None
        while True:
            page = call("app", max_results=2, next_token=token, **kw)
            out += getattr(page, key)
            token = page.next_token
            if token is None:
                return out
    ids = walk(store.list_images, "image_ids")
    assert len(ids) == 8  # 4 tagged images (one with 2 tags) + 3 untagged
    assert len({(i.image_digest, i.image_tag) for i in ids}) == 8
    assert len(walk(store.list_images, "image_ids", filter=ListImagesFilter("UNTAGGED"))) == 3
    assert len(walk(store.describe_images, "image_details", filter=DescribeImagesFilter("TAGGED"))) == 4
    with pytest.raises(errors.InvalidParameterException):
        store.list_images("app", next_token="garbage")
    with pytest.raises(errors.InvalidParameterException):
        store.list_images("app", filter=ListImagesFilter("SOME"))


def test_listing_is_stable_while_images_are_pushed(store):
    texts = [image(store, seed=i, n_layers=1)[0] for i in range(12)]
    for t in texts[:6]:
        store.put_image("app", t)
    seen, token, pushed = [], None, 6
    while True:
        page = store.list_images("app", max_results=2, next_token=token)
        seen += [i.image_digest for i in page.image_ids]
        if pushed < 12:
            store.put_image("app", texts[pushed])
            pushed += 1
        token = page.next_token
        if token is None:
            break
    assert len(seen) == len(set(seen))  # nothing twice
    assert {digest_of(t.encode()) for t in texts[:6]} <= set(seen)  # nothing that existed skipped


def test_download_url_signed_and_checked(store, backends):
    text, layers, _ = image(store)
    orphan = push(store, "app", b"not referenced by any image")
    with pytest.raises(errors.LayerInaccessibleException):
        store.get_download_url_for_layer("app", layers[0], base_url=BASE)
    store.put_image("app", text)
    with pytest.raises(errors.LayerInaccessibleException):
        store.get_download_url_for_layer("app", orphan, base_url=BASE)
    with pytest.raises(errors.LayersNotFoundException):
        store.get_download_url_for_layer("app", "sha256:" + "2" * 64, base_url=BASE)
    url = store.get_download_url_for_layer("app", layers[0], base_url="http://127.0.0.1:9", expires_in=60).download_url
    if backends:
        _check_presigned_s3_get(store, url, layers)
        return
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    registry, repository, digest = store.url_signer.verify("GET", parts.path, query)
    assert (registry, repository, digest) == ("000000000000", "app", layers[0])
    with store.open_layer(repository, digest, registry_id=registry) as rd:
        assert digest_of(rd.read()) == layers[0]
    for tampered in (dict(query, **{"X-Ecrstore-Expires": str(int(query["X-Ecrstore-Expires"]) + 1)}),
                     dict(query, **{"X-Ecrstore-Signature": "0" * 64}), {}):
        with pytest.raises(errors.AccessDeniedException):
            store.url_signer.verify("GET", parts.path, tampered)
    with pytest.raises(errors.AccessDeniedException):
        store.url_signer.verify("GET", parts.path.replace(layers[0][7:], layers[1][7:]), query)
    expired = store.get_download_url_for_layer("app", layers[0], base_url=BASE, expires_in=-1).download_url
    with pytest.raises(errors.AccessDeniedException):
        store.url_signer.verify("GET", urlsplit(expired).path, dict(parse_qsl(urlsplit(expired).query)))


def _check_presigned_s3_get(store, url, layers):
    """On S3 the URL is a presigned GET of the layer's object (as ECR hands out), checked by
    the object store: the bytes for the signed URL, 403 for a tampered or expired one."""
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and query["X-Amz-Expires"] == "60"
    with urllib.request.urlopen(url, timeout=30) as r:
        assert digest_of(r.read()) == layers[0]
    for bad in (url.replace(query["X-Amz-Signature"], "0" * 64), url.replace("X-Amz-Expires=60", "X-Amz-Expires=61")):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=30)
        assert e.value.code == 403
    expired = store.get_download_url_for_layer("app", layers[1], base_url=BASE, expires_in=1).download_url
    time.sleep(2.1)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(expired, timeout=30)
    assert e.value.code == 403


def test_delete_repository_honours_images(store):
    text, _, _ = image(store)
    store.put_image("app", text)
    with pytest.raises(errors.RepositoryNotEmptyException):
        store.delete_repository("app")
    store.delete_repository("app", force=True)
    store.create_repository("app")
    assert store.describe_images("app").image_details == ()


def test_gc_unlinks_unreferenced_layers_and_deletes_blobs(store):
    text, layers, _ = image(store)
    store.put_image("app", text, image_tag="keep")
    loose = push(store, "app", b"uploaded but never referenced")
    assert store.gc().layers_unlinked == 0  # within the grace period
    dry = store.gc(grace=0, dry_run=True)
    assert (dry.layers_unlinked, dry.blobs_deleted, dry.dry_run) == (1, 1, True)
    assert store.batch_check_layer_availability("app", [loose]).layers[0].layer_availability == "AVAILABLE"
    report = store.gc(grace=0)
    assert (report.layers_unlinked, report.blobs_deleted) == (1, 1)
    assert store.batch_check_layer_availability("app", [loose]).failures[0].failure_code == "MissingLayerDigest"
    # the image's layers stay; deleting the image frees them at the next collection
    store.batch_delete_image("app", [ImageIdentifier(image_tag="keep")])
    report = store.gc(grace=0)
    assert report.layers_unlinked == 3 and report.blobs_deleted == 3
    assert store.stats().blobs == 0 and store.verify().ok
    # the same bytes can be uploaded again afterwards
    assert push(store, "app", b"uploaded but never referenced") == loose


def test_download_url_signatures_of_any_shape_are_refused(store):
    for bad in ("é" * 64, "\ud800" * 64, "z" * 64, "0" * 63, "0" * 65, ""):
        with pytest.raises(errors.AccessDeniedException):
            store.url_signer.verify("GET", "/layers/000000000000/app/sha256:" + "0" * 64,
                                    {"X-Ecrstore-Expires": str(2**40), "X-Ecrstore-Signature": bad})


@pytest.mark.parametrize("tag", ["💥" * 10, "é" * 290, "a b", "a/b", "x:y", "\x00", "a" * 301, ""])
def test_tags_outside_ecrs_pattern_are_refused_and_change_nothing(store, tag):
    text, _, _ = image(store)
    with pytest.raises(errors.InvalidParameterException, match=r"imageTag|Member must have length"):
        store.put_image("app", text, image_tag=tag)
    assert store.describe_images("app").image_details == ()
    if tag:
        (failure,) = store.batch_get_image("app", [ImageIdentifier(image_tag=tag)]).failures
        assert failure.failure_code == "InvalidImageTag"
        (failure,) = store.batch_delete_image("app", [ImageIdentifier(image_tag=tag)]).failures
        assert failure.failure_code == "InvalidImageTag"
