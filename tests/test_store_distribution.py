"""The engine calls behind the OCI distribution API other than uploads: cross-repository
mounts (never across registries) and layer unlinking, manifests by tag or digest, untagging,
tag and repository listings with their paging, the referrers index (and its one-time build
for stores written before it existed, and read-only opens of those), and repositoryUri under a
public registry host."""

from __future__ import annotations

import json
import os

import lmdb
import pytest
from storeutil import digest_of, open_store, push, random_bytes, read_layer, stored_blobs

from ecrstore import ImageIdentifier, ListImagesFilter, Store, errors
from ecrstore.index import lmdb_codec
from ecrstore.manifest import OCI_INDEX, OCI_MANIFEST
from ecrstore.models import Referrer, TagPage

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SIGNATURE = "application/vnd.example.signature.v1"
SBOM_CONFIG = "application/vnd.example.sbom.config.v1+json"


@pytest.fixture
def store(tmp_path, backends):
    with open_store(tmp_path / "store", **backends) as s:
        s.create_repository("app")
        yield s


def oci_image(store, repo: str = "app", seed: int = 0, **extra) -> str:
    """Push an OCI image's config and layer to ``repo``; its manifest text (``extra`` added)."""
    config, layer = json.dumps({"seed": seed}).encode(), random_bytes(1500, seed=100 + seed)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": push(store, repo, config)},
           "layers": [{"mediaType": OCI_LAYER, "size": len(layer), "digest": push(store, repo, layer)}], **extra}
    return json.dumps(doc)


def blobs_of(manifest: str) -> list[str]:
    doc = json.loads(manifest)
    return [doc["config"]["digest"], *(d["digest"] for d in doc["layers"])]


def test_mount_links_a_layer_of_another_repository(store, tmp_path):
    store.create_repository("src")
    manifest = oci_image(store, "src")
    store.put_image("src", manifest)
    config, layer = blobs_of(manifest)
    assert store.mount_layer("app", layer, "src") == 1500
    assert store.mount_layer("app", layer, "src") == 1500  # already a layer here: its size
    assert store.mount_layer("app", config, "src") == len(json.dumps({"seed": 0}))
    (found,) = store.batch_check_layer_availability("app", [layer]).layers
    assert (found.layer_availability, found.layer_size, found.media_type) == ("AVAILABLE", 1500, OCI_LAYER)
    assert read_layer(store, "app", layer) == random_bytes(1500, seed=100)
    assert len(stored_blobs(store)) == 2  # nothing copied
    assert store.put_image("app", manifest, image_tag="v1").image.image_id.image_digest == digest_of(manifest.encode())


def test_mount_answers_none_when_the_source_lacks_the_layer(store):
    store.create_repository("src")
    held = push(store, "src", b"in src")
    elsewhere = push(store, "app", b"only in app")
    assert store.mount_layer("app", held, "missing") is None
    assert store.mount_layer("app", digest_of(b"never pushed"), "src") is None
    store.create_repository("dst")
    assert store.mount_layer("dst", elsewhere, "src") is None
    assert store.mount_layer("dst", "sha512:" + "ab" * 64, "src") is None
    assert store.batch_check_layer_availability("dst", [elsewhere]).layers[0].layer_availability == "UNAVAILABLE"
    with pytest.raises(errors.RepositoryNotFoundException):
        store.mount_layer("nope", held, "src")
    for digest, source in (("sha256:xyz", "src"), (held, "x"), (held, None)):
        with pytest.raises(errors.InvalidParameterException):
            store.mount_layer("app", digest, source)


def test_mounts_never_cross_registries(store):
    other = "111111111111"
    store.create_repository("src", registry_id=other)
    layer = push(store, "src", b"another tenant's layer", registry_id=other)
    assert store.mount_layer("app", layer, "src") is None  # this registry has no "src"
    store.create_repository("src")
    assert store.mount_layer("app", layer, "src") is None  # and its "src" lacks the layer
    assert [f.failure_code for f in store.batch_check_layer_availability("app", [layer]).failures] == [
        "MissingLayerDigest"]
    store.create_repository("dst", registry_id=other)
    assert store.mount_layer("dst", layer, "src", registry_id=other) == len(b"another tenant's layer")


def test_delete_layer_unlinks_it_and_gc_reclaims_its_bytes(store, tmp_path):
    store.create_repository("keep")
    store.put_image("keep", oci_image(store, "keep"))  # holds (and references) the shared layer
    shared, alone = random_bytes(1500, seed=100), random_bytes(1300, seed=10)
    d_shared, d_alone = push(store, "app", shared), push(store, "app", alone)
    for d in (d_shared, d_alone):
        store.delete_layer("app", d)
    check = store.batch_check_layer_availability("app", [d_shared, d_alone])
    assert [(x.layer_digest, x.layer_availability) for x in check.layers] == [(d_shared, "UNAVAILABLE")]
    assert [(f.layer_digest, f.failure_code) for f in check.failures] == [(d_alone, "MissingLayerDigest")]
    with pytest.raises(errors.LayersNotFoundException):
        store.open_layer("app", d_alone)
    with pytest.raises(errors.LayersNotFoundException):
        store.delete_layer("app", d_alone)
    assert list(store.list_layers("app")) == []
    assert store.stats().blobs == 3  # the bytes stay until gc
    store.gc(grace=0)
    assert store.stats().blobs == 2 and len(stored_blobs(store)) == 2
    assert read_layer(store, "keep", d_shared) == shared


def test_delete_layer_is_refused_while_an_image_references_it(store):
    manifest = oci_image(store)
    store.put_image("app", manifest, image_tag="v1")
    for d in blobs_of(manifest):
        with pytest.raises(errors.LayerInaccessibleException):
            store.delete_layer("app", d)
    assert store.batch_check_layer_availability("app", blobs_of(manifest)).failures == ()
    store.batch_delete_image("app", [ImageIdentifier(image_tag="v1")])
    for d in blobs_of(manifest):
        store.delete_layer("app", d)
    with pytest.raises(errors.RepositoryNotFoundException):
        store.delete_layer("nope", blobs_of(manifest)[0])
    for bad in ("sha256:xyz", None):
        with pytest.raises(errors.InvalidParameterException):
            store.delete_layer("app", bad)
    with pytest.raises(errors.LayersNotFoundException):
        store.delete_layer("app", "sha512:" + "ab" * 64)


# --- manifests by reference, untagging, listings ---------------------------------------------


def test_get_manifest_by_tag_and_by_digest(store):
    manifest = oci_image(store).replace(",", ",\n  ")  # bytes as sent, not as re-serialised
    digest = store.put_image("app", manifest, image_tag="v1").image.image_id.image_digest
    for ref in ("v1", digest, digest.upper().replace("SHA256", "sha256")):
        got = store.get_manifest("app", ref)
        assert (got.digest, got.media_type, got.manifest) == (digest, OCI_MANIFEST, manifest.encode())
    for missing in ("v2", digest_of(b"nothing"), "sha512:" + "ab" * 64, "a:b"):
        with pytest.raises(errors.ImageNotFoundException):
            store.get_manifest("app", missing)
    for bad in ("", "not a tag", "sha256:xyz", "x" * 301, None, 5, b"v1"):
        with pytest.raises(errors.InvalidParameterException):
            store.get_manifest("app", bad)
    with pytest.raises(errors.RepositoryNotFoundException):
        store.get_manifest("nope", "v1")


def test_untag_keeps_the_image(store):
    manifest = oci_image(store)
    digest = store.put_image("app", manifest, image_tag="v1").image.image_id.image_digest
    store.put_image("app", manifest, image_tag="v2")
    assert store.untag_image("app", "v1") == digest
    (detail,) = store.describe_images("app").image_details
    assert detail.image_tags == ("v2",)
    assert store.untag_image("app", "v2") == digest
    (detail,) = store.describe_images("app").image_details
    assert (detail.image_digest, detail.image_tags) == (digest, None)
    untagged = store.list_images("app", filter=ListImagesFilter("UNTAGGED")).image_ids
    assert untagged == (ImageIdentifier(digest),)
    assert store.get_manifest("app", digest).manifest == manifest.encode()
    for tag in ("v1", "v3"):
        with pytest.raises(errors.ImageNotFoundException):
            store.untag_image("app", tag)
    for bad in ("", "no spaces", None):
        with pytest.raises(errors.InvalidParameterException):
            store.untag_image("app", bad)
    with pytest.raises(errors.RepositoryNotFoundException):
        store.untag_image("nope", "v1")


def test_list_tags_in_byte_order_with_paging(store):
    manifest = oci_image(store)
    tags = ["b", "a", "A", "_x", "0", "-z", ".y", "a.b", "a-b", "ab", "Z9", "a_"]
    for tag in tags:
        store.put_image("app", manifest, image_tag=tag)
    store.create_repository("other")
    store.put_image("other", oci_image(store, "other"), image_tag="zz-other")
    order = tuple(sorted(tags, key=str.encode))
    assert store.list_tags("app").tags == order and store.list_tags("app").more is False
    pages, after = [], None
    while True:
        page = store.list_tags("app", limit=5, after=after)
        pages.append(page.tags)
        if not page.more:
            break
        after = page.tags[-1]
    assert pages == [order[:5], order[5:10], order[10:]]
    assert store.list_tags("app", limit=0) == TagPage((), True)
    assert store.list_tags("app", limit=len(tags)).more is False
    assert store.list_tags("app", after="a0").tags == tuple(t for t in order if t.encode() > b"a0")
    assert store.list_tags("app", after=order[-1]) == TagPage((), False)
    assert store.list_tags("app", limit=0, after=order[-1]).more is False
    for kw in ({"limit": -1}, {"limit": True}, {"limit": "3"}, {"after": 3}):
        with pytest.raises(errors.InvalidParameterException):
            store.list_tags("app", **kw)
    with pytest.raises(errors.RepositoryNotFoundException):
        store.list_tags("nope")


def test_repository_names_page_within_one_registry(store):
    for name in ("b-b", "aa/b", "aa", "c.c"):
        store.create_repository(name)
    store.create_repository("zz", registry_id="111111111111")
    everything = ("aa", "aa/b", "app", "b-b", "c.c")
    assert store.repository_names() == (everything, False)
    assert store.repository_names(limit=2) == (everything[:2], True)
    assert store.repository_names(limit=2, after="aa/b") == (everything[2:4], True)
    assert store.repository_names(limit=2, after="b-b") == (everything[4:], False)
    assert store.repository_names(limit=0) == ((), True)
    assert store.repository_names(after="c.c") == ((), False)
    assert store.repository_names(registry_id="111111111111") == (("zz",), False)
    assert store.repository_names(registry_id="222222222222") == ((), False)
    for kw in ({"limit": -1}, {"limit": 1.0}, {"after": 1}, {"registry_id": "1"}):
        with pytest.raises(errors.InvalidParameterException):
            store.repository_names(**kw)


def test_repository_uri_names_the_public_registry_host(tmp_path):
    with Store(tmp_path / "a", registry_host="h:1") as store:
        assert store.create_repository("team/app").repository_uri == "h:1/team/app"
        (repo,) = store.describe_repositories().repositories
        assert repo.repository_uri == "h:1/team/app"
    with Store(tmp_path / "b") as store:
        assert store.create_repository("team/app").repository_uri == \
            "000000000000.dkr.ecr.us-east-1.amazonaws.com/team/app"


# --- referrers -------------------------------------------------------------------------------


def descriptor(text: str, media_type: str = OCI_MANIFEST) -> dict:
    return {"mediaType": media_type, "size": len(text.encode()), "digest": digest_of(text.encode())}


def artifact(store, subject: dict, repo: str = "app", seed: int = 0, **extra) -> str:
    """An OCI artifact manifest naming ``subject``, its empty config and one layer pushed."""
    config, layer = b"{}", random_bytes(200, seed=200 + seed)
    if store.batch_check_layer_availability(repo, [digest_of(config)]).failures:
        push(store, repo, config)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": EMPTY_CONFIG, "size": 2, "digest": digest_of(config)},
           "layers": [{"mediaType": "application/octet-stream", "size": 200, "digest": push(store, repo, layer)}],
           "subject": subject, **extra}
    return json.dumps(doc)


def test_referrers_of_a_subject(store):
    base = oci_image(store)
    store.put_image("app", base, image_tag="v1")
    signature = artifact(store, descriptor(base), artifactType=SIGNATURE,
                         annotations={"org.example.signer": "ci", "created": "today"})
    sbom = oci_image(store, seed=1, subject=descriptor(base))  # no artifactType: the config's media type
    sbom = sbom.replace(OCI_CONFIG, SBOM_CONFIG)
    for m in (signature, sbom):
        store.put_image("app", m)
    found = store.list_referrers("app", digest_of(base.encode()))
    expected = sorted([
        Referrer(digest_of(signature.encode()), OCI_MANIFEST, len(signature.encode()), SIGNATURE,
                          {"org.example.signer": "ci", "created": "today"}),
        Referrer(digest_of(sbom.encode()), OCI_MANIFEST, len(sbom.encode()), SBOM_CONFIG, None),
    ], key=lambda r: r.digest)
    assert found == tuple(expected)
    assert [r.digest for r in store.list_referrers("app", digest_of(base.encode()), artifact_type=SIGNATURE)] == [
        digest_of(signature.encode())]
    assert store.list_referrers("app", digest_of(base.encode()), artifact_type="application/none") == ()
    assert store.list_referrers("app", digest_of(signature.encode())) == ()
    store.create_repository("other")
    assert store.list_referrers("other", digest_of(base.encode())) == ()
    for bad in ("sha256:xyz", "v1", None):
        with pytest.raises(errors.InvalidParameterException):
            store.list_referrers("app", bad)
    assert store.list_referrers("app", "sha512:" + "ab" * 64) == ()
    with pytest.raises(errors.RepositoryNotFoundException):
        store.list_referrers("nope", digest_of(base.encode()))


def test_a_subject_need_not_be_stored(store):
    absent = {"mediaType": OCI_MANIFEST, "size": 123, "digest": digest_of(b"pushed later, or never")}
    sig = artifact(store, absent, artifactType=SIGNATURE)
    store.put_image("app", sig)
    (ref,) = store.list_referrers("app", absent["digest"])
    assert (ref.digest, ref.size, ref.artifact_type, ref.annotations) == (
        digest_of(sig.encode()), len(sig.encode()), SIGNATURE, None)


def test_deleting_a_referrer_or_its_repository_removes_it(store):
    base = oci_image(store)
    store.put_image("app", base)
    subject = digest_of(base.encode())
    first, second = (artifact(store, descriptor(base), seed=i, artifactType=SIGNATURE) for i in (1, 2))
    store.put_image("app", first, image_tag="sig-1")
    store.put_image("app", second, image_tag="sig-2")
    assert len(store.list_referrers("app", subject)) == 2
    deleted = store.batch_delete_image("app", [ImageIdentifier(digest_of(first.encode()))])
    assert deleted.failures == ()
    assert [r.digest for r in store.list_referrers("app", subject)] == [digest_of(second.encode())]
    old = store._repo(None, "app").id
    store.delete_repository("app", force=True)
    with store._index.read() as t:  # nothing left behind under the deleted repository's id
        assert t.referrers(old, bytes.fromhex(subject[7:])) == []
    store.create_repository("app")
    assert store.list_referrers("app", subject) == ()


def test_an_index_with_a_subject_is_a_referrer(store):
    base = oci_image(store)
    store.put_image("app", base)
    child = oci_image(store, seed=3)
    store.put_image("app", child)
    with_type = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(child)],
                            "subject": descriptor(base), "artifactType": SIGNATURE,
                            "annotations": {"k": "v"}})
    without = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(child)],
                          "subject": descriptor(base)})
    for m in (with_type, without):
        store.put_image("app", m)
    found = {r.digest: r for r in store.list_referrers("app", digest_of(base.encode()))}
    assert found == {
        digest_of(with_type.encode()): Referrer(digest_of(with_type.encode()), OCI_INDEX,
                                                         len(with_type), SIGNATURE, {"k": "v"}),
        digest_of(without.encode()): Referrer(digest_of(without.encode()), OCI_INDEX, len(without)),
    }
    store.batch_delete_image("app", [ImageIdentifier(digest_of(without.encode()))])
    assert list(store.list_referrers("app", digest_of(base.encode()))) == [found[digest_of(with_type.encode())]]


def _index_env(store_path) -> lmdb.Environment:
    return lmdb.open(os.path.join(store_path, "index"), max_dbs=32, map_size=1 << 30)


def forget_referrers(path, *, drop: bool = False) -> None:
    """Make the store at ``path`` as one written before referrers were indexed: the flag saying
    they were built gone, and the ``referrers`` database emptied (or with ``drop``, absent)."""
    env = _index_env(path)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"referrers", txn=txn), delete=drop)
        assert txn.delete(lmdb_codec.REFERRERS_FLAG, db=env.open_db(b"meta", txn=txn))
    env.close()


def test_referrers_are_built_for_a_store_made_before_they_were_indexed(tmp_path):
    path = tmp_path / "s"
    with open_store(path) as store:
        store.create_repository("app")
        base = oci_image(store)
        store.put_image("app", base)
        sig = artifact(store, descriptor(base), artifactType=SIGNATURE)
        store.put_image("app", sig)
        plain = oci_image(store, seed=4)
        store.put_image("app", plain)  # names no subject
        expected = store.list_referrers("app", digest_of(base.encode()))
    assert [r.digest for r in expected] == [digest_of(sig.encode())]
    forget_referrers(path)
    with open_store(path) as store:
        assert store.list_referrers("app", digest_of(base.encode())) == expected
        store.batch_delete_image("app", [ImageIdentifier(digest_of(sig.encode()))])  # kept from then on
        assert store.list_referrers("app", digest_of(base.encode())) == ()
    env = _index_env(path)
    with env.begin() as txn:
        assert txn.get(lmdb_codec.REFERRERS_FLAG, db=env.open_db(b"meta", txn=txn)) is not None
    env.close()


def test_the_build_finds_subjects_in_every_spelling_put_image_accepts(tmp_path):
    """A subject digest with the algorithm in capitals is indexed by PutImage (digests are
    case-insensitive); the one-time build for older stores must index it too."""
    path = tmp_path / "s"
    subject = digest_of(b"signed elsewhere")
    with open_store(path) as store:
        store.create_repository("app")
        spelled = {"mediaType": OCI_MANIFEST, "size": 1, "digest": "SHA256:" + subject[7:].upper()}
        sig = artifact(store, spelled, artifactType=SIGNATURE)
        store.put_image("app", sig)
        assert [r.digest for r in store.list_referrers("app", subject)] == [digest_of(sig.encode())]
    forget_referrers(path)
    with open_store(path) as store:
        assert [r.digest for r in store.list_referrers("app", subject)] == [digest_of(sig.encode())]


def test_a_read_only_store_without_the_referrers_database_lists_none(tmp_path):
    path = tmp_path / "s"
    with open_store(path) as store:
        store.create_repository("app")
        base = oci_image(store)
        store.put_image("app", base, image_tag="v1")
        store.put_image("app", artifact(store, descriptor(base), artifactType=SIGNATURE))
    forget_referrers(path, drop=True)
    with Store(path, read_only=True) as ro:
        assert ro.list_referrers("app", digest_of(base.encode())) == ()
        assert ro.get_manifest("app", "v1").manifest == base.encode()
    with open_store(path) as store:  # the next writable open builds them
        assert len(store.list_referrers("app", digest_of(base.encode()))) == 1
