"""boto3 against a real ``ecrstore serve``: resource tags on repository ARNs, tag mutability and
scan on push after creation, ListImageReferrers over pushed images and referrer manifests, and
the Repository shape of CreateRepository / DescribeRepositories / DeleteRepository — each
operation with each of its errors, by ECR code and message."""

from __future__ import annotations

import hashlib
import json

import pytest
from botocore.exceptions import ClientError
from server_fixtures import KEY_A, KEY_OTHER_REGISTRY, REGISTRY_A, REGISTRY_B, push_layer, repo_name, unique_bytes

pytestmark = pytest.mark.timeout(120)

REGION = "us-east-1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SIGNATURE = "application/vnd.example.signature.v1"
SBOM = "application/vnd.example.sbom.v1"


def arn(name: str, registry: str = REGISTRY_A, region: str = REGION) -> str:
    return f"arn:aws:ecr:{region}:{registry}:repository/{name}"


def error(excinfo) -> tuple[str, str]:
    err = excinfo.value.response["Error"]
    return err["Code"], err["Message"]


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def ecr(ecr_server):
    return ecr_server.client(KEY_A)


@pytest.fixture
def repo(ecr):
    name = repo_name("settings")
    ecr.create_repository(repositoryName=name, tags=[{"Key": "team", "Value": "infra"}])
    yield name
    try:
        ecr.delete_repository(repositoryName=name, force=True)
    except ClientError:
        pass


# --- resource tags -----------------------------------------------------------------------------


def test_tag_untag_and_list(ecr, repo):
    assert ecr.list_tags_for_resource(resourceArn=arn(repo))["tags"] == [{"Key": "team", "Value": "infra"}]
    reply = ecr.tag_resource(resourceArn=arn(repo), tags=[{"Key": "team", "Value": "platform"},
                                                           {"Key": "cost centre", "Value": "42/a=b+c@d"}])
    assert {k: v for k, v in reply.items() if k != "ResponseMetadata"} == {}
    assert ecr.list_tags_for_resource(resourceArn=arn(repo))["tags"] == [
        {"Key": "team", "Value": "platform"}, {"Key": "cost centre", "Value": "42/a=b+c@d"}]
    reply = ecr.untag_resource(resourceArn=arn(repo), tagKeys=["team", "never-set"])
    assert {k: v for k, v in reply.items() if k != "ResponseMetadata"} == {}
    assert ecr.list_tags_for_resource(resourceArn=arn(repo))["tags"] == [{"Key": "cost centre", "Value": "42/a=b+c@d"}]


def test_tag_limits_and_rules(ecr, repo):
    ecr.tag_resource(resourceArn=arn(repo), tags=[{"Key": f"k{i}", "Value": "v"} for i in range(48)])  # and "team"
    with pytest.raises(ClientError) as e:
        ecr.tag_resource(resourceArn=arn(repo), tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    assert error(e) == ("TooManyTagsException", "A repository may have at most 50 tags; it would have 51")
    ecr.tag_resource(resourceArn=arn(repo), tags=[{"Key": "k0", "Value": "new"}, {"Key": "last", "Value": ""}])
    assert len(ecr.list_tags_for_resource(resourceArn=arn(repo))["tags"]) == 50
    bad = [({"Key": "k" * 129, "Value": "v"}, "Tag keys must be strings of 1 to 128 characters"),
           ({"Key": "k", "Value": "v" * 257}, "Tag values must be strings of at most 256 characters"),
           ({"Key": "aws:created-by", "Value": "v"}, "uses the prefix 'aws:', which is reserved"),
           ({"Key": "semi;colon", "Value": "v"}, "must satisfy regular expression pattern: [\\p{L}"),
           ({"Key": "k", "Value": "<b>"}, "The value of the tag 'k' must satisfy regular expression pattern")]
    for tag, message in bad:
        with pytest.raises(ClientError) as e:
            ecr.tag_resource(resourceArn=arn(repo), tags=[tag])
        code, text = error(e)
        assert code == "InvalidTagParameterException" and message in text
    with pytest.raises(ClientError) as e:
        ecr.untag_resource(resourceArn=arn(repo), tagKeys=["aws:x"])
    assert error(e)[0] == "InvalidTagParameterException"
    assert len(ecr.list_tags_for_resource(resourceArn=arn(repo))["tags"]) == 50  # nothing refused was applied


def test_create_repository_tag_errors(ecr):
    name = repo_name("settings")
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=name, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    assert error(e) == ("TooManyTagsException", "A repository may have at most 50 tags; 51 were given")
    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=name, tags=[{"Key": "aws:k", "Value": "v"}])
    assert error(e)[0] == "InvalidTagParameterException"
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=[name])
    assert error(e)[0] == "RepositoryNotFoundException"


@pytest.mark.parametrize("bad, reason", [
    ("not-an-arn", "'not-an-arn' is not a valid repository ARN (arn:aws:ecr:<region>:<registry>:repository/<name>)"),
    ("arn:aws:sns:us-east-1:111111111111:topic", "is not a valid repository ARN"),
    ("arn:aws:ecr:us-east-1:111111111111:pull-through-cache/x", "is not a valid repository ARN"),
    ("arn:aws:ecr:eu-west-1:111111111111:repository/xy",
     "The ARN's region 'eu-west-1' is not this registry's region 'us-east-1'"),
    ("arn:aws:ecr:us-east-1:222222222222:repository/xy",
     "The ARN's registry '222222222222' is not the caller's registry '111111111111'"),
    ("arn:aws:ecr:us-east-1:111111111111:repository/Bad_Name", "Member must satisfy regular expression pattern"),
])
def test_arns_other_than_the_callers_repositories_are_invalid(ecr, bad, reason):
    calls = [lambda: ecr.list_tags_for_resource(resourceArn=bad),
             lambda: ecr.tag_resource(resourceArn=bad, tags=[{"Key": "k", "Value": "v"}]),
             lambda: ecr.untag_resource(resourceArn=bad, tagKeys=["k"])]
    for call in calls:
        with pytest.raises(ClientError) as e:
            call()
        code, message = error(e)
        assert code == "InvalidParameterException"
        assert message.startswith("Invalid parameter at 'resourceArn' failed to satisfy constraint: '")
        assert reason in message


def test_unknown_repositories_and_other_registries(ecr, ecr_server, repo):
    missing = repo_name("missing")
    for call in (lambda: ecr.list_tags_for_resource(resourceArn=arn(missing)),
                 lambda: ecr.tag_resource(resourceArn=arn(missing), tags=[{"Key": "k", "Value": "v"}]),
                 lambda: ecr.untag_resource(resourceArn=arn(missing), tagKeys=["k"])):
        with pytest.raises(ClientError) as e:
            call()
        assert error(e) == ("RepositoryNotFoundException",
                            f"The repository with name '{missing}' does not exist in the registry with id "
                            f"'{REGISTRY_A}'")
    other = ecr_server.client(KEY_OTHER_REGISTRY)
    with pytest.raises(ClientError) as e:  # B cannot name A's repository, even by its ARN
        other.list_tags_for_resource(resourceArn=arn(repo))
    assert error(e)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as e:  # B's own registry has no repository of that name
        other.list_tags_for_resource(resourceArn=arn(repo, REGISTRY_B))
    assert error(e)[0] == "RepositoryNotFoundException"


def test_missing_members_are_refused(ecr, repo):
    from botocore.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        ecr.tag_resource(resourceArn=arn(repo))
    raw = ecr_raw(ecr, "TagResource", {"resourceArn": arn(repo)})
    assert raw == (400, "InvalidParameterException",
                   "Invalid parameter at 'tags' failed to satisfy constraint: 'Member must not be null'")
    raw = ecr_raw(ecr, "ListTagsForResource", {"resourceArn": ["not", "a", "string"]})
    assert raw[:2] == (400, "InvalidParameterException")


def ecr_raw(ecr, operation: str, body: dict) -> tuple[int, str, str]:
    """Send a body boto3 would refuse to build, signed like boto3 signs (status, code, message)."""
    import http.client
    from urllib.parse import urlsplit

    from server_fixtures import TARGET, sign_request

    url = ecr.meta.endpoint_url + "/"
    data = json.dumps(body).encode()
    headers = sign_request("POST", url, data, {"Content-Type": "application/x-amz-json-1.1",
                                               "X-Amz-Target": TARGET + operation}, KEY_A)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", "/", body=data, headers=headers)
        reply = conn.getresponse()
        answer = json.loads(reply.read())
        return reply.status, answer.get("__type", ""), answer.get("message", "")
    finally:
        conn.close()


# --- tag mutability and scan on push -----------------------------------------------------------


class Image:
    """An OCI image (config and one layer) pushed with boto3; its manifest text."""

    def __init__(self, ecr, repo: str) -> None:
        config = json.dumps({"os": "linux", "n": unique_bytes(8).hex()}).encode()
        layer = unique_bytes(1500)
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": push_layer(ecr, repo, config)},
            "layers": [{"mediaType": OCI_LAYER, "size": len(layer), "digest": push_layer(ecr, repo, layer)}],
        })
        self.digest = sha(self.manifest)


def test_put_image_tag_mutability(ecr, repo):
    a, b = Image(ecr, repo), Image(ecr, repo)
    ecr.put_image(repositoryName=repo, imageManifest=a.manifest, imageTag="v1")
    reply = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    assert {k: v for k, v in reply.items() if k != "ResponseMetadata"} == {
        "registryId": REGISTRY_A, "repositoryName": repo, "imageTagMutability": "IMMUTABLE"}
    with pytest.raises(ClientError) as e:
        ecr.put_image(repositoryName=repo, imageManifest=b.manifest, imageTag="v1")
    assert error(e)[0] == "ImageTagAlreadyExistsException"
    filters = [{"filterType": "WILDCARD", "filter": "dev-*"}]
    reply = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                                         imageTagMutabilityExclusionFilters=filters)
    assert reply["imageTagMutabilityExclusionFilters"] == filters
    ecr.put_image(repositoryName=repo, imageManifest=a.manifest, imageTag="dev-1")
    ecr.put_image(repositoryName=repo, imageManifest=b.manifest, imageTag="dev-1")  # excluded: it moves
    (described,) = ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    assert described["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert described["imageTagMutabilityExclusionFilters"] == filters
    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE")
    ecr.put_image(repositoryName=repo, imageManifest=b.manifest, imageTag="v1")
    (described,) = ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    assert described["imageTagMutability"] == "MUTABLE" and "imageTagMutabilityExclusionFilters" not in described


def test_put_image_tag_mutability_errors(ecr, repo):
    cases = [
        (dict(imageTagMutability="SOMETIMES"),
         "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value "
         "set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]'"),
        (dict(imageTagMutability="MUTABLE", imageTagMutabilityExclusionFilters=[
            {"filterType": "WILDCARD", "filter": "x"}]), "Exclusion filters need a *_WITH_EXCLUSION tag mutability"),
        (dict(imageTagMutability="MUTABLE_WITH_EXCLUSION"),
         "The tag mutability MUTABLE_WITH_EXCLUSION needs at least one exclusion filter"),
        (dict(imageTagMutability="MUTABLE_WITH_EXCLUSION", imageTagMutabilityExclusionFilters=[
            {"filterType": "REGEX", "filter": "x"}]),
         "Invalid parameter at 'imageTagMutabilityExclusionFilters.filterType' failed to satisfy constraint: "
         "'Member must satisfy enum value set: [WILDCARD]'"),
        (dict(imageTagMutability="MUTABLE_WITH_EXCLUSION", imageTagMutabilityExclusionFilters=[
            {"filterType": "WILDCARD", "filter": "a b"}]),
         "Invalid parameter at 'imageTagMutabilityExclusionFilters.filter' failed to satisfy constraint: "
         "'Member must satisfy regular expression pattern: ^[0-9a-zA-Z._*-]{1,128}'"),
    ]
    for kw, message in cases:
        with pytest.raises(ClientError) as e:
            ecr.put_image_tag_mutability(repositoryName=repo, **kw)
        assert error(e) == ("InvalidParameterException", message)
    missing = repo_name("missing")
    with pytest.raises(ClientError) as e:
        ecr.put_image_tag_mutability(repositoryName=missing, imageTagMutability="IMMUTABLE")
    assert error(e) == ("RepositoryNotFoundException",
                        f"The repository with name '{missing}' does not exist in the registry with id '{REGISTRY_A}'")
    (described,) = ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    assert described["imageTagMutability"] == "MUTABLE"


def test_put_image_scanning_configuration(ecr, repo):
    reply = ecr.put_image_scanning_configuration(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
    assert {k: v for k, v in reply.items() if k != "ResponseMetadata"} == {
        "registryId": REGISTRY_A, "repositoryName": repo, "imageScanningConfiguration": {"scanOnPush": True}}
    (described,) = ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    assert described["imageScanningConfiguration"] == {"scanOnPush": True}
    reply = ecr.put_image_scanning_configuration(repositoryName=repo, imageScanningConfiguration={})
    assert reply["imageScanningConfiguration"] == {"scanOnPush": False}
    missing = repo_name("missing")
    with pytest.raises(ClientError) as e:
        ecr.put_image_scanning_configuration(repositoryName=missing, imageScanningConfiguration={"scanOnPush": True})
    assert error(e)[0] == "RepositoryNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.put_image_scanning_configuration(repositoryName="UPPER", imageScanningConfiguration={"scanOnPush": True})
    assert error(e)[0] == "InvalidParameterException" and "at 'repositoryName'" in error(e)[1]
    raw = ecr_raw(ecr, "PutImageScanningConfiguration", {"repositoryName": repo,
                                                         "imageScanningConfiguration": {"scanOnPush": "yes"}})
    assert raw == (400, "InvalidParameterException", "Invalid parameter at 'imageScanningConfiguration.scanOnPush' "
                                                      "failed to satisfy constraint: 'Member must be a boolean'")


# --- the Repository shape ----------------------------------------------------------------------


def test_repository_shape_of_create_describe_delete(ecr, ecr_server):
    name = repo_name("shape")
    filters = [{"filterType": "WILDCARD", "filter": "release-*"}]
    created = ecr.create_repository(repositoryName=name, imageTagMutability="MUTABLE_WITH_EXCLUSION",
                                    imageTagMutabilityExclusionFilters=filters,
                                    encryptionConfiguration={"encryptionType": "KMS"},
                                    imageScanningConfiguration={"scanOnPush": True})["repository"]
    expected = {
        "repositoryArn": arn(name), "registryId": REGISTRY_A, "repositoryName": name,
        "repositoryUri": f"127.0.0.1:{ecr_server.port}/{name}",  # where the server's registry answers
        "imageTagMutability": "MUTABLE_WITH_EXCLUSION", "imageTagMutabilityExclusionFilters": filters,
        "imageScanningConfiguration": {"scanOnPush": True},
        "encryptionConfiguration": {"encryptionType": "KMS",
                                    "kmsKey": f"arn:aws:kms:{REGION}:{REGISTRY_A}:alias/aws/ecr"},
    }
    assert {k: v for k, v in created.items() if k != "createdAt"} == expected
    (described,) = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert described == created
    assert ecr.delete_repository(repositoryName=name)["repository"] == created
    plain_name = repo_name("shape")
    plain = ecr.create_repository(repositoryName=plain_name)["repository"]
    assert plain["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert "imageTagMutabilityExclusionFilters" not in plain
    ecr.delete_repository(repositoryName=plain_name)


# --- ListImageReferrers ------------------------------------------------------------------------


def referrer(ecr, repo: str, subject: Image, artifact_type: str, n: int) -> str:
    layer = unique_bytes(300)
    try:
        empty = push_layer(ecr, repo, b"{}")
    except ClientError as e:  # the empty config is pushed once per repository
        assert e.response["Error"]["Code"] == "LayerAlreadyExistsException"
        empty = sha("{}")
    text = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG, "size": 2, "digest": empty},
        "layers": [{"mediaType": "application/octet-stream", "size": len(layer),
                    "digest": push_layer(ecr, repo, layer)}],
        "subject": {"mediaType": OCI_MANIFEST, "size": len(subject.manifest), "digest": subject.digest},
        "annotations": {"org.example.n": str(n)},
    })
    ecr.put_image(repositoryName=repo, imageManifest=text)
    return text


def test_list_image_referrers(ecr, repo):
    subject = Image(ecr, repo)
    ecr.put_image(repositoryName=repo, imageManifest=subject.manifest, imageTag="app")
    made = [referrer(ecr, repo, subject, SIGNATURE if n % 2 else SBOM, n) for n in range(5)]
    expected = sorted(({"digest": sha(t), "mediaType": OCI_MANIFEST, "size": len(t.encode()),
                        "artifactType": SIGNATURE if n % 2 else SBOM, "annotations": {"org.example.n": str(n)},
                        "artifactStatus": "ACTIVE"} for n, t in enumerate(made)), key=lambda r: r["digest"])
    reply = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest})
    assert reply["referrers"] == expected and "nextToken" not in reply
    seen, token, pages = [], None, 0
    while True:
        kw = {"nextToken": token} if token else {}
        page = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                        maxResults=2, **kw)
        seen += page["referrers"]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert seen == expected and pages == 3
    only = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                    filter={"artifactTypes": [SIGNATURE]})["referrers"]
    assert only == [r for r in expected if r["artifactType"] == SIGNATURE]
    archived = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                        filter={"artifactStatus": "ARCHIVED"})["referrers"]
    assert archived == []


def test_list_image_referrers_errors(ecr, repo):
    subject = {"imageDigest": sha("nothing")}
    cases = [
        (dict(subjectId={"imageDigest": "sha256:xyz"}), "Invalid parameter at 'subjectId.imageDigest'"),
        (dict(subjectId=subject, maxResults=51),
         "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 50'"),
        (dict(subjectId=subject, nextToken="bogus"),
         "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'"),
        (dict(subjectId=subject, filter={"artifactStatus": "GONE"}), "Invalid parameter at 'filter.artifactStatus'"),
        (dict(subjectId=subject, filter={"artifactTypes": [f"t{i}" for i in range(6)]}),
         "Invalid parameter at 'filter.artifactTypes'"),
    ]
    for kw, message in cases:
        with pytest.raises(ClientError) as e:
            ecr.list_image_referrers(repositoryName=repo, **kw)
        code, text = error(e)
        assert code == "InvalidParameterException" and text.startswith(message), text
    missing = repo_name("missing")
    with pytest.raises(ClientError) as e:
        ecr.list_image_referrers(repositoryName=missing, subjectId=subject)
    assert error(e) == ("RepositoryNotFoundException",
                        f"The repository with name '{missing}' does not exist in the registry with id '{REGISTRY_A}'")
    assert ecr.list_image_referrers(repositoryName=repo, subjectId=subject)["referrers"] == []
    raw = ecr_raw(ecr, "ListImageReferrers", {"repositoryName": repo, "subjectId": {}})
    assert raw == (400, "InvalidParameterException",
                   "Invalid parameter at 'subjectId.imageDigest' failed to satisfy constraint: "
                   "'Member must not be null'")
