"""Repository creation templates: the four operations through boto3 against a real server, and
the templates applied where ecrstore creates repositories for you — a replica (REPLICATION, in
the destination registry), a /v2/ push to a missing repository (CREATE_ON_PUSH) — with their
settings, tags and policies written with the repository."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from oci_http import Registry, descriptor, digest_of, login_password
from server_fixtures import KEY_A, KEY_OTHER_REGISTRY, REGISTRY_A, REGISTRY_B, repo_name, start_server

from ecrstore import Store
from ecrstore.creation_templates import MAX_TEMPLATES_PER_REGISTRY, RepositorySettings
from ecrstore.errors import LimitExceededException, RepositoryAlreadyExistsException
from ecrstore.models import EncryptionConfiguration, Tag

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "pull", "Effect": "Allow", "Principal": {"AWS": REGISTRY_A}, "Action": "ecr:BatchGetImage"}]})
LIFECYCLE = json.dumps({"rules": [{"rulePriority": 1, "selection": {
    "tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 3}, "action": {"type": "expire"}}]})
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("templates"), keys=[KEY_A, KEY_OTHER_REGISTRY])
    yield srv
    srv.stop()


def error(call, **kwargs) -> dict[str, str]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]


def test_template_operations_and_their_errors(server):
    ecr = server.client(KEY_A)
    made = ecr.create_repository_creation_template(
        prefix="ops/", appliedFor=["CREATE_ON_PUSH", "REPLICATION", "REPLICATION"], description="for ops",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}],
        resourceTags=[{"Key": "team", "Value": "ops"}], encryptionConfiguration={"encryptionType": "KMS"},
        repositoryPolicy=POLICY, lifecyclePolicy=LIFECYCLE)
    template = made["repositoryCreationTemplate"]
    assert made["registryId"] == REGISTRY_A
    assert template["prefix"] == "ops"  # the trailing "/" is the one ECR assumes anyway
    assert template["appliedFor"] == ["REPLICATION", "CREATE_ON_PUSH"]
    assert template["resourceTags"] == [{"Key": "team", "Value": "ops"}]
    assert template["repositoryPolicy"] == POLICY and template["lifecyclePolicy"] == LIFECYCLE
    assert template["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "latest"}]
    assert error(ecr.create_repository_creation_template, prefix="ops", appliedFor=["REPLICATION"])["Code"] == (
        "TemplateAlreadyExistsException")
    for bad in ({"prefix": "Bad Prefix", "appliedFor": ["REPLICATION"]},
                {"prefix": "ok", "appliedFor": ["SOMETIMES"]},
                {"prefix": "ok", "appliedFor": []},
                {"prefix": "ok", "appliedFor": ["REPLICATION"], "repositoryPolicy": "{not json"},
                {"prefix": "ok", "appliedFor": ["REPLICATION"], "lifecyclePolicy": '{"rules": []}'},
                {"prefix": "ok", "appliedFor": ["REPLICATION"], "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION"},
                {"prefix": "ok", "appliedFor": ["REPLICATION"], "description": "d" * 257}):
        assert error(ecr.create_repository_creation_template, **bad)["Code"] == "InvalidParameterException", bad
    assert ecr.describe_repository_creation_templates(prefixes=["ok"])["repositoryCreationTemplates"] == []
    bad_tags = [{"Key": "aws:reserved", "Value": "v"}]
    assert error(ecr.create_repository_creation_template, prefix="ok", appliedFor=["REPLICATION"],
                 resourceTags=bad_tags)["Code"] == "InvalidParameterException"
    ecr.create_repository_creation_template(prefix="ROOT", appliedFor=["PULL_THROUGH_CACHE"])
    listed = ecr.describe_repository_creation_templates(maxResults=1)
    assert [t["prefix"] for t in listed["repositoryCreationTemplates"]] == ["ROOT"] and listed["nextToken"]
    rest = ecr.describe_repository_creation_templates(nextToken=listed["nextToken"])
    assert [t["prefix"] for t in rest["repositoryCreationTemplates"]] == ["ops"] and "nextToken" not in rest
    assert error(ecr.describe_repository_creation_templates, nextToken="bent")["Code"] == "InvalidParameterException"
    updated = ecr.update_repository_creation_template(prefix="ops", imageTagMutability="MUTABLE",
                                                      resourceTags=[{"Key": "team", "Value": "sre"}])
    template = updated["repositoryCreationTemplate"]
    assert template["imageTagMutability"] == "MUTABLE" and "imageTagMutabilityExclusionFilters" not in template
    assert template["resourceTags"] == [{"Key": "team", "Value": "sre"}] and template["description"] == "for ops"
    assert template["updatedAt"] >= template["createdAt"]
    assert error(ecr.update_repository_creation_template, prefix="nope")["Code"] == "TemplateNotFoundException"
    other = server.client(KEY_OTHER_REGISTRY)  # registries are tenants
    assert other.describe_repository_creation_templates()["repositoryCreationTemplates"] == []
    assert ecr.delete_repository_creation_template(prefix="ROOT")["repositoryCreationTemplate"]["prefix"] == "ROOT"
    assert error(ecr.delete_repository_creation_template, prefix="ROOT")["Code"] == "TemplateNotFoundException"
    ecr.delete_repository_creation_template(prefix="ops")


def test_a_replicas_repository_takes_the_destination_registrys_template(server):
    a, b = server.client(KEY_A), server.client(KEY_OTHER_REGISTRY)
    name = repo_name("tpl/app")
    b.put_registry_policy(policyText=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{REGISTRY_A}:root"},
        "Action": ["ecr:ReplicateImage", "ecr:CreateRepository"]}]}))
    b.create_repository_creation_template(prefix="tpl", appliedFor=["REPLICATION"], imageTagMutability="IMMUTABLE",
                                          resourceTags=[{"Key": "replica", "Value": "yes"}],
                                          repositoryPolicy=POLICY, lifecyclePolicy=LIFECYCLE)
    a.create_repository(repositoryName=name)
    a.put_replication_configuration(replicationConfiguration={"rules": [{
        "destinations": [{"region": "us-east-1", "registryId": REGISTRY_B}],
        "repositoryFilters": [{"filter": "tpl/", "filterType": "PREFIX_MATCH"}]}]})
    try:
        layer = b"templated layer"
        registry = Registry(server.port, login_password(a))
        config = registry.push_blob(name, layer)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": descriptor("application/vnd.oci.image.config.v1+json", layer),
                               "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)]})
        assert config == digest_of(layer)
        a.put_image(repositoryName=name, imageManifest=manifest, imageTag="v1")
        replica = b.describe_repositories(repositoryNames=[name])["repositories"][0]
        assert replica["imageTagMutability"] == "IMMUTABLE"
        assert b.list_tags_for_resource(resourceArn=replica["repositoryArn"])["tags"] == [
            {"Key": "replica", "Value": "yes"}]
        assert b.get_repository_policy(repositoryName=name)["policyText"] == POLICY
        assert b.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"] == LIFECYCLE
        got = b.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])["images"]
        assert got[0]["imageManifest"] == manifest
    finally:
        a.put_replication_configuration(replicationConfiguration={"rules": []})


def test_a_push_to_a_missing_repository_creates_it_only_under_a_create_on_push_template(server):
    a = server.client(KEY_A)
    registry = Registry(server.port, login_password(a))
    refused = registry.request("POST", f"/v2/{repo_name('loose')}/blobs/uploads/")
    assert refused.status == 404 and refused.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    a.create_repository_creation_template(prefix="pushed", appliedFor=["CREATE_ON_PUSH"],
                                          resourceTags=[{"Key": "made", "Value": "on-push"}])
    name = repo_name("pushed/svc")
    assert registry.push_blob(name, b"first blob of a new repository") == digest_of(b"first blob of a new repository")
    repo = a.describe_repositories(repositoryNames=[name])["repositories"][0]
    assert a.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [
        {"Key": "made", "Value": "on-push"}]


def test_create_for_applies_the_closest_template_atomically(tmp_path):
    with Store(tmp_path / "store", registry_id=REGISTRY_A) as store:
        t = store.templates
        t.create_repository_creation_template("a", ["REPLICATION"], resource_tags=[Tag("from", "a")])
        t.create_repository_creation_template("a/b", ["REPLICATION"], resource_tags=[Tag("from", "a/b")],
                                              lifecycle_policy=LIFECYCLE)
        t.create_repository_creation_template("ROOT", ["PULL_THROUGH_CACHE"],
                                              encryption_configuration=EncryptionConfiguration("KMS"))
        arn = t.create_for("REPLICATION", REGISTRY_A, "a/b/c").repository_arn
        assert store.settings.list_tags_for_resource(arn).tags == (Tag("from", "a/b"),)
        assert store.lifecycle.get_lifecycle_policy("a/b/c").lifecycle_policy_text == LIFECYCLE
        arn = t.create_for("REPLICATION", REGISTRY_A, "a/x").repository_arn
        assert store.settings.list_tags_for_resource(arn).tags == (Tag("from", "a"),)
        # No REPLICATION template covers "zz": the caller's settings; ROOT's is for the cache only.
        made = t.create_for("REPLICATION", REGISTRY_A, "zz", RepositorySettings("IMMUTABLE"))
        assert made.image_tag_mutability == "IMMUTABLE" and made.encryption_configuration.encryption_type == "AES256"
        assert t.create_for("PULL_THROUGH_CACHE", REGISTRY_A, "z2").encryption_configuration.encryption_type == "KMS"
        with pytest.raises(RepositoryAlreadyExistsException):  # nothing of a refused creation is written
            t.create_for("REPLICATION", REGISTRY_A, "a/b/c")
        for i in range(MAX_TEMPLATES_PER_REGISTRY - 3):
            t.create_repository_creation_template(f"fill{i}", ["CREATE_ON_PUSH"])
        with pytest.raises(LimitExceededException):
            t.create_repository_creation_template("onetoomany", ["CREATE_ON_PUSH"])
        store.delete_repository("a/b/c")
        t.create_for("REPLICATION", REGISTRY_A, "a/b/c")  # re-created: the template's policy again, once
        assert store.lifecycle.get_lifecycle_policy("a/b/c").lifecycle_policy_text == LIFECYCLE
