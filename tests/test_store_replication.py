"""Registry replication in the engine: the configuration's validation, DescribeRegistry, each
push replicated into another registry of the store (blobs linked, never copied), statuses,
filters, permissions, manifest lists, and resume after a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from storeutil import digest_of, open_store, push

from ecrstore import EncryptionConfiguration, ImageIdentifier, ImageScanningConfiguration, errors
from ecrstore.manifest import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from ecrstore.models import (
    DeleteReplication,
    ReplicationConfiguration,
    ReplicationDestination,
    ReplicationRule,
    RepositoryFilter,
)

pytestmark = pytest.mark.timeout(120)

A, B, C = "111111111111", "222222222222", "333333333333"
REGION = "us-east-1"
LAYER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "store", registry_id=A, region=REGION) as s:
        yield s


def to(*registries: str, region: str = REGION, filters: tuple[str, ...] | None = None) -> ReplicationConfiguration:
    dests = tuple(ReplicationDestination(region, r) for r in registries)
    flt = tuple(RepositoryFilter(f, "PREFIX_MATCH") for f in filters) if filters is not None else None
    return ReplicationConfiguration((ReplicationRule(dests, flt),))


def allow(store, registry: str, account: str, actions=("ecr:ReplicateImage", "ecr:CreateRepository")) -> None:
    """Give ``registry`` a registry policy letting ``account`` replicate into it."""
    store.policies.put_registry_policy(json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "replication", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
        "Action": list(actions), "Resource": f"arn:aws:ecr:{REGION}:{registry}:repository/*"}]}),
        registry_id=registry)


def image(store, repo: str, seed: int, media: str = DOCKER_MANIFEST) -> tuple[str, list[tuple[str, bytes]]]:
    """Push a config and two layers into ``repo`` of registry A; the manifest and the layers."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    cfg = push(store, repo, config, registry_id=A)
    layers = [(push(store, repo, data, registry_id=A), data)
              for data in (f"layer {seed}/{i} ".encode() * (150 + i) for i in range(2))]
    oci = media == OCI_MANIFEST
    doc = {"schemaVersion": 2, "mediaType": media,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json" if oci
                      else "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": cfg},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip" if oci else LAYER_GZ,
                       "size": len(data), "digest": d} for d, data in layers]}
    return json.dumps(doc, indent=2), layers


def statuses(store, repo: str, ident: ImageIdentifier, registry: str = A):
    res = store.replication.describe_image_replication_status(repo, ident, registry_id=registry)
    return [(s.registry_id, s.region, s.status, s.failure_code) for s in res.replication_statuses]


# --- configuration -------------------------------------------------------------------------------


def test_describe_registry_without_configuration(store):
    res = store.replication.describe_registry(registry_id=A)
    assert res.registry_id == A and res.replication_configuration.rules == ()
    assert store.replication.describe_registry().registry_id == A  # the store's default registry


def test_put_and_describe_configuration(store):
    conf = ReplicationConfiguration((
        ReplicationRule((ReplicationDestination(REGION, B), ReplicationDestination("eu-west-1", A)),
                        (RepositoryFilter("app", "PREFIX_MATCH"),)),
        ReplicationRule((ReplicationDestination(REGION, C),), None, DeleteReplication(False)),
    ))
    put = store.replication.put_replication_configuration(conf, registry_id=A)
    assert put.replication_configuration == conf
    assert store.replication.describe_registry(registry_id=A).replication_configuration == conf
    assert store.replication.describe_registry(registry_id=B).replication_configuration.rules == ()
    store.replication.put_replication_configuration(ReplicationConfiguration(()), registry_id=A)
    assert store.replication.describe_registry(registry_id=A).replication_configuration.rules == ()


@pytest.mark.parametrize("conf, where", [
    (ReplicationConfiguration(tuple(ReplicationRule((ReplicationDestination(REGION, B),)) for _ in range(26))),
     "replicationConfiguration.rules"),
    (ReplicationConfiguration((ReplicationRule(tuple(ReplicationDestination(REGION, f"{i:012d}")
                                                     for i in range(1, 102))),)),
     "replicationConfiguration.rules.1.destinations"),
    (to(B, region="US_EAST"), "replicationConfiguration.rules.1.destinations.1.region"),
    (to(B, region="x"), "replicationConfiguration.rules.1.destinations.1.region"),
    (to("12345"), "replicationConfiguration.rules.1.destinations.1.registryId"),
    (to(B, filters=()), "replicationConfiguration.rules.1.repositoryFilters"),
    (to(B, filters=("Upper",)), "replicationConfiguration.rules.1.repositoryFilters.1.filter"),
    (to(B, filters=("a",)), "replicationConfiguration.rules.1.repositoryFilters.1.filter"),
    (ReplicationConfiguration((ReplicationRule((ReplicationDestination(REGION, B),),
                                               (RepositoryFilter("app", "SUFFIX_MATCH"),)),)),
     "replicationConfiguration.rules.1.repositoryFilters.1.filterType"),
    (to(B, filters=("app", "app")), "replicationConfiguration.rules.1.repositoryFilters.2"),
    (to(B, B), "replicationConfiguration.rules.1.destinations.2"),
    (to(A), "replicationConfiguration.rules.1.destinations.1"),
    (ReplicationConfiguration((ReplicationRule((ReplicationDestination(REGION, B),), None,
                                               DeleteReplication(True)),)),
     "replicationConfiguration.rules.1.deleteReplication.enabled"),
])
def test_invalid_configurations_are_refused_and_change_nothing(store, conf, where):
    before = to(C)
    store.replication.put_replication_configuration(before, registry_id=A)
    with pytest.raises(errors.InvalidParameterException) as e:
        store.replication.put_replication_configuration(conf, registry_id=A)
    assert e.value.message.startswith(f"Invalid parameter at '{where}' failed to satisfy constraint: '")
    assert store.replication.describe_registry(registry_id=A).replication_configuration == before


def test_the_source_itself_is_named_in_the_refusal(store):
    with pytest.raises(errors.InvalidParameterException, match="cannot be the source registry itself"):
        store.replication.put_replication_configuration(to(A), registry_id=A)
    # The same registry in another region is a destination (not served here: see below).
    store.replication.put_replication_configuration(to(A, region="eu-west-1"), registry_id=A)


def test_bad_registry_id_is_refused(store):
    with pytest.raises(errors.InvalidParameterException, match="registryId"):
        store.replication.describe_registry(registry_id="abc")


# --- replication on push -------------------------------------------------------------------------


def test_push_replicates_into_another_registry_without_copying_bytes(store):
    store.create_repository("app/web", registry_id=A, image_tag_mutability="IMMUTABLE",
                            image_scanning_configuration=ImageScanningConfiguration(True),
                            encryption_configuration=EncryptionConfiguration("KMS", "alias/k"))
    store.replication.put_replication_configuration(to(B), registry_id=A)
    allow(store, B, A)
    manifest, layers = image(store, "app/web", 1)
    blobs_before = store.stats().blobs
    put = store.put_image("app/web", manifest, image_tag="v1", registry_id=A)

    got = store.batch_get_image("app/web", [ImageIdentifier(image_tag="v1")], registry_id=B)
    assert got.failures == () and got.images[0].image_manifest == manifest  # same bytes, same digest
    assert got.images[0].image_id.image_digest == put.image.image_id.image_digest == digest_of(manifest.encode())
    for d, data in layers:
        assert read_layer_in(store, "app/web", d, B) == data
    stats = store.stats()
    assert stats.blobs == blobs_before  # linked, not stored again
    repo = store.describe_repositories(registry_id=B, repository_names=["app/web"]).repositories[0]
    assert repo.image_tag_mutability == "IMMUTABLE" and repo.image_scanning_configuration.scan_on_push
    assert repo.encryption_configuration == EncryptionConfiguration("KMS", "alias/k")
    assert statuses(store, "app/web", ImageIdentifier(image_tag="v1")) == [(B, REGION, "COMPLETE", None)]
    assert statuses(store, "app/web", ImageIdentifier(put.image.image_id.image_digest, "v1")) == [
        (B, REGION, "COMPLETE", None)]


def read_layer_in(store, repo, digest, registry):
    with store.open_layer(repo, digest, registry_id=registry) as rd:
        return rd.read()


def test_without_the_destination_policy_nothing_is_replicated(store):
    store.create_repository("app", registry_id=A)
    store.replication.put_replication_configuration(to(B), registry_id=A)
    manifest, _ = image(store, "app", 2)
    store.put_image("app", manifest, image_tag="v1", registry_id=A)
    assert statuses(store, "app", ImageIdentifier(image_tag="v1")) == [
        (B, REGION, "FAILED", "REPLICATION_NOT_PERMITTED")]
    assert store.repository_names(registry_id=B) == ((), False)


def test_replicate_without_create_needs_an_existing_repository(store):
    store.create_repository("app", registry_id=A)
    store.replication.put_replication_configuration(to(B), registry_id=A)
    allow(store, B, A, actions=("ecr:ReplicateImage",))
    manifest, _ = image(store, "app", 3)
    store.put_image("app", manifest, image_tag="v1", registry_id=A)
    assert statuses(store, "app", ImageIdentifier(image_tag="v1")) == [
        (B, REGION, "FAILED", "REPOSITORY_CREATION_NOT_PERMITTED")]
    store.create_repository("app", registry_id=B)
    store.put_image("app", manifest, image_tag="v2", registry_id=A)
    assert statuses(store, "app", ImageIdentifier(image_tag="v2")) == [(B, REGION, "COMPLETE", None)]
    assert store.get_manifest("app", "v2", registry_id=B).manifest == manifest.encode()


def test_filters_choose_the_repositories(store):
    for name in ("prod/api", "dev/api"):
        store.create_repository(name, registry_id=A)
    store.replication.put_replication_configuration(to(B, filters=("prod",)), registry_id=A)
    allow(store, B, A)
    for seed, name in enumerate(("prod/api", "dev/api")):
        manifest, _ = image(store, name, 10 + seed)
        store.put_image(name, manifest, image_tag="v1", registry_id=A)
    assert statuses(store, "prod/api", ImageIdentifier(image_tag="v1")) == [(B, REGION, "COMPLETE", None)]
    assert statuses(store, "dev/api", ImageIdentifier(image_tag="v1")) == []
    assert store.repository_names(registry_id=B) == (("prod/api",), False)


def test_other_regions_fail_and_the_rest_complete(store):
    store.create_repository("app", registry_id=A)
    conf = ReplicationConfiguration((ReplicationRule((ReplicationDestination("eu-west-1", A),
                                                      ReplicationDestination(REGION, B))),))
    store.replication.put_replication_configuration(conf, registry_id=A)
    allow(store, B, A)
    manifest, _ = image(store, "app", 4)
    store.put_image("app", manifest, image_tag="v1", registry_id=A)
    assert statuses(store, "app", ImageIdentifier(image_tag="v1")) == [
        (A, "eu-west-1", "FAILED", "REGION_NOT_SERVED"), (B, REGION, "COMPLETE", None)]


def test_an_index_replicates_its_children_first(store):
    store.create_repository("multi", registry_id=A)
    store.replication.put_replication_configuration(to(B), registry_id=A)
    allow(store, B, A)
    children = [image(store, "multi", 20 + i, OCI_MANIFEST)[0] for i in range(2)]
    for child in children:  # children pushed first (untagged), as clients push them
        store.put_image("multi", child, registry_id=A)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "size": len(c), "digest": digest_of(c.encode()),
         "platform": {"architecture": arch, "os": "linux"}}
        for c, arch in zip(children, ("amd64", "arm64"), strict=True)]})
    store.put_image("multi", index, image_tag="latest", registry_id=A)
    got = store.get_manifest("multi", "latest", registry_id=B)
    assert got.manifest == index.encode() and got.media_type == OCI_INDEX
    for child in children:
        assert store.get_manifest("multi", digest_of(child.encode()), registry_id=B).manifest == child.encode()
    assert statuses(store, "multi", ImageIdentifier(image_tag="latest")) == [(B, REGION, "COMPLETE", None)]


def test_an_immutable_destination_tag_is_kept(store):
    store.create_repository("app", registry_id=A)
    store.create_repository("app", registry_id=B, image_tag_mutability="IMMUTABLE")
    store.replication.put_replication_configuration(to(B), registry_id=A)
    allow(store, B, A)
    first, _ = image(store, "app", 30)
    second, _ = image(store, "app", 31)
    store.put_image("app", first, image_tag="latest", registry_id=A)
    store.put_image("app", second, image_tag="latest", registry_id=A)  # the tag moves in A only
    assert statuses(store, "app", ImageIdentifier(image_tag="latest")) == [
        (B, REGION, "FAILED", "IMAGE_TAG_IMMUTABLE")]
    assert store.get_manifest("app", "latest", registry_id=B).manifest == first.encode()


def test_status_errors(store):
    store.create_repository("app", registry_id=A)
    with pytest.raises(errors.RepositoryNotFoundException,
                       match="The repository with name 'nope' does not exist in the registry with id "):
        store.replication.describe_image_replication_status("nope", ImageIdentifier(image_tag="v1"),
                                                            registry_id=A)
    with pytest.raises(errors.ImageNotFoundException,
                       match=r"The image with imageId \{imageTag=v1\} does not exist within the repository "
                             r"with name 'app' in the registry with id '111111111111'"):
        store.replication.describe_image_replication_status("app", ImageIdentifier(image_tag="v1"),
                                                            registry_id=A)
    with pytest.raises(errors.InvalidParameterException, match="imageId"):
        store.replication.describe_image_replication_status("app", ImageIdentifier(), registry_id=A)
    with pytest.raises(errors.InvalidParameterException, match="imageId.imageDigest"):
        store.replication.describe_image_replication_status("app", ImageIdentifier("sha256:xyz"), registry_id=A)
    manifest, _ = image(store, "app", 40)
    put = store.put_image("app", manifest, image_tag="v1", registry_id=A)
    other = "sha256:" + "0" * 64
    with pytest.raises(errors.ImageNotFoundException):  # a tag and a digest that disagree
        store.replication.describe_image_replication_status("app", ImageIdentifier(other, "v1"), registry_id=A)
    res = store.replication.describe_image_replication_status(
        "app", ImageIdentifier(put.image.image_id.image_digest), registry_id=A)
    assert res.replication_statuses == ()  # no rules: replicated nowhere
    assert res.image_id.image_digest == put.image.image_id.image_digest and res.repository_name == "app"


_CRASHING_PUSH = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from storeutil import open_store
    store = open_store({path!r}, registry_id="111111111111", region="us-east-1")
    if {where!r} == "after-commit":  # dies right after the push commits, before anything follows it
        store._push_hooks.insert(0, lambda result: os._exit(9))
    else:  # dies at the first step of carrying the replication out
        store.policies.registry_permits = lambda *a: os._exit(9)
    store.put_image("app", {manifest!r}, image_tag="v1", registry_id="111111111111")
""")


@pytest.mark.parametrize("where", ["after-commit", "mid-replication"])
def test_a_crash_after_the_push_commits_is_completed_by_resume(tmp_path, where):
    path = tmp_path / "store"
    with open_store(path, registry_id=A, region=REGION) as s:
        s.create_repository("app", registry_id=A)
        s.replication.put_replication_configuration(to(B), registry_id=A)
        allow(s, B, A)
        manifest, _ = image(s, "app", 50)
    script = _CRASHING_PUSH.format(tests=os.path.dirname(__file__), path=str(path), manifest=manifest, where=where)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
    assert proc.returncode == 9, proc.stderr.decode()
    with open_store(path, registry_id=A, region=REGION) as s:
        assert s.get_manifest("app", "v1", registry_id=A).manifest == manifest.encode()  # the push committed
        assert statuses(s, "app", ImageIdentifier(image_tag="v1")) == [(B, REGION, "IN_PROGRESS", None)]
        assert s.replication.resume() == 1
        assert statuses(s, "app", ImageIdentifier(image_tag="v1")) == [(B, REGION, "COMPLETE", None)]
        assert s.get_manifest("app", "v1", registry_id=B).manifest == manifest.encode()
        assert s.replication.resume() == 0


def test_concurrent_pushes_all_replicate(store):
    from concurrent.futures import ThreadPoolExecutor

    store.create_repository("busy", registry_id=A)
    store.replication.put_replication_configuration(to(B), registry_id=A)
    allow(store, B, A)
    manifests = [image(store, "busy", 60 + i)[0] for i in range(6)]
    with ThreadPoolExecutor(6) as pool:  # the destination repository is created by one of them
        list(pool.map(lambda im: store.put_image("busy", im[1], image_tag=f"t{im[0]}", registry_id=A),
                      enumerate(manifests)))
    for i, manifest in enumerate(manifests):
        assert statuses(store, "busy", ImageIdentifier(image_tag=f"t{i}")) == [(B, REGION, "COMPLETE", None)]
        assert store.get_manifest("busy", f"t{i}", registry_id=B).manifest == manifest.encode()
