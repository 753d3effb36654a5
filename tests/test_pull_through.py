"""Pull-through cache rules and pulls through the cache, against real components.

The upstream is Debian's docker-registry on loopback (anonymous, or with htpasswd Basic auth),
images are pushed to it with skopeo from OCI layouts the tests build, rules are made with boto3
against a real ``ecrstore serve``, and pulls go through ecrstore's /v2/ with skopeo or plain
HTTP. Where a test must count or shape the upstream's answers (one fetch for concurrent pulls,
the Bearer token protocol, a lying upstream) a forwarding HTTP proxy stands in front of
docker-registry (both in tests/pull_through_upstreams.py).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError
from oci_tools import MANIFEST_ACCEPT, ContainersEnv, free_port, oci_layout_blobs, read_log
from pull_through_upstreams import PASSWORD, USER, Proxy, push_upstream, start_upstream
from server_fixtures import KEY_A, KEY_OTHER_REGISTRY, REGISTRY_A, REGISTRY_B, repo_name, start_server
from transfer_util import make_image, oci_layout

from ecrstore import Store
from ecrstore.errors import (
    InvalidParameterException,
    LimitExceededException,
    PullThroughCacheRuleNotFoundException,
    SecretNotFoundException,
)
from ecrstore.pull_through import MAX_RULES_PER_REGISTRY
from ecrstore.server.oci.errors import OciError
from ecrstore.server.oci.pull_through import PullThroughCache

pytestmark = pytest.mark.timeout(300)

ARN = "arn:aws:secretsmanager:us-east-1:111111111111:secret:ecr-pullthroughcache/upstream-a"
WRONG_ARN = "arn:aws:secretsmanager:us-east-1:111111111111:secret:ecr-pullthroughcache/wrong"
UNKNOWN_ARN = "arn:aws:secretsmanager:us-east-1:111111111111:secret:ecr-pullthroughcache/nobody"


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def containers(tmp_path_factory):
    return ContainersEnv.create(tmp_path_factory.mktemp("containers"))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    registry = start_upstream(tmp_path_factory.mktemp("upstream"))
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def locked_upstream(tmp_path_factory):
    registry = start_upstream(tmp_path_factory.mktemp("locked-upstream"), htpasswd=True)
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ptc-server")
    secrets = tmp / "upstream-secrets.json"
    secrets.write_text(json.dumps({ARN: {"username": USER, "accessToken": PASSWORD},
                                   WRONG_ARN: {"username": USER, "accessToken": "not-the-password"}}))
    secrets.chmod(0o600)
    process = start_server(tmp, keys=[KEY_A, KEY_OTHER_REGISTRY], extra=["--upstream-secrets", str(secrets)])
    yield process
    process.stop()


_PASSWORDS: dict[tuple[int, str], str] = {}


def password(server, key=KEY_A) -> str:
    """The /v2/ password of ``key`` on ``server`` (GetAuthorizationToken, once per server and key)."""
    if (server.port, key[0]) not in _PASSWORDS:
        token = server.client(key).get_authorization_token()["authorizationData"][0]["authorizationToken"]
        _PASSWORDS[server.port, key[0]] = base64.b64decode(token).decode().partition(":")[2]
    return _PASSWORDS[server.port, key[0]]


def v2_get(server, path: str, key=KEY_A, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    auth = "Basic " + base64.b64encode(f"AWS:{password(server, key)}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        conn.request(method, path, headers={"Authorization": auth, "Accept": MANIFEST_ACCEPT})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def client_error(call, *args, **kwargs) -> dict[str, str]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value.response["Error"]


# --- rules through boto3 --------------------------------------------------------------------


def test_rule_operations_and_their_errors_through_boto3(server, upstream):
    ecr = server.client(KEY_A, parameter_validation=False)  # the server's own checks are under test
    prefix = f"ops{os.getpid() % 1000}"
    made = ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix + "/", upstreamRegistryUrl=upstream.endpoint,
                                              upstreamRegistry="quay", upstreamRepositoryPrefix="library")
    assert made["ecrRepositoryPrefix"] == prefix and made["registryId"] == REGISTRY_A
    assert made["upstreamRegistryUrl"] == upstream.endpoint and made["upstreamRegistry"] == "quay"
    assert made["upstreamRepositoryPrefix"] == "library" and "createdAt" in made and "credentialArn" not in made
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix + "-two", upstreamRegistryUrl=upstream.host,
                                       credentialArn=ARN)

    error = client_error(ecr.create_pull_through_cache_rule, ecrRepositoryPrefix=prefix,
                         upstreamRegistryUrl=upstream.host)
    assert error["Code"] == "PullThroughCacheRuleAlreadyExistsException"
    assert error["Message"] == (f"A pull through cache rule with the prefix '{prefix}' already exists in the "
                                f"registry with id '{REGISTRY_A}'")
    for member, value, code, text in [
        ("ecrRepositoryPrefix", "Bad_Prefix", "InvalidParameterException", "regular expression pattern"),
        ("ecrRepositoryPrefix", "x", "InvalidParameterException", "length greater than or equal to 2"),
        ("ecrRepositoryPrefix", "a" * 31, "InvalidParameterException", "length less than or equal to 30"),
        ("upstreamRegistryUrl", "ftp://host", "UnsupportedUpstreamRegistryException", "is not supported"),
        ("upstreamRegistryUrl", "host/path", "UnsupportedUpstreamRegistryException", "is not supported"),
        ("upstreamRegistry", "nowhere", "InvalidParameterException", "enum value set"),
        ("credentialArn", "arn:aws:secretsmanager:us-east-1:1:secret:other/" + "x" * 20,
         "InvalidParameterException", "regular expression pattern"),
        ("credentialArn", UNKNOWN_ARN, "SecretNotFoundException", f"The secret with the ARN '{UNKNOWN_ARN}'"),
    ]:
        request = {"ecrRepositoryPrefix": "fresh", "upstreamRegistryUrl": upstream.host, member: value}
        error = client_error(ecr.create_pull_through_cache_rule, **request)
        assert error["Code"] == code and text in error["Message"], (member, value, error)
        if code == "InvalidParameterException":
            assert error["Message"].startswith(f"Invalid parameter at '{member}' failed to satisfy constraint")

    described = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix + "-two", prefix])
    assert [r["ecrRepositoryPrefix"] for r in described["pullThroughCacheRules"]] == [prefix + "-two", prefix]
    assert described["pullThroughCacheRules"][0]["credentialArn"] == ARN
    assert described["pullThroughCacheRules"][0]["upstreamRepositoryPrefix"] == "ROOT"  # ECR's default
    assert "updatedAt" in described["pullThroughCacheRules"][0]
    pages = ecr.get_paginator("describe_pull_through_cache_rules").paginate(PaginationConfig={"PageSize": 1})
    listed = [r["ecrRepositoryPrefix"] for page in pages for r in page["pullThroughCacheRules"]]
    assert listed == sorted(listed) and {prefix, prefix + "-two"} <= set(listed)
    error = client_error(ecr.describe_pull_through_cache_rules, ecrRepositoryPrefixes=["missing"])
    assert error["Code"] == "PullThroughCacheRuleNotFoundException"
    assert error["Message"] == (f"The pull through cache rule with the prefix 'missing' does not exist in the "
                                f"registry with id '{REGISTRY_A}'")
    assert client_error(ecr.describe_pull_through_cache_rules, maxResults=0)["Code"] == "InvalidParameterException"
    assert client_error(ecr.describe_pull_through_cache_rules, ecrRepositoryPrefixes=[prefix], maxResults=1)[
        "Message"] == "maxResults and nextToken cannot be used with ecrRepositoryPrefixes"
    assert client_error(ecr.describe_pull_through_cache_rules, nextToken="bent")["Message"] == (
        "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'")
    other = server.client(KEY_OTHER_REGISTRY).describe_pull_through_cache_rules()
    assert all(r["registryId"] == REGISTRY_B for r in other["pullThroughCacheRules"])
    assert prefix not in {r["ecrRepositoryPrefix"] for r in other["pullThroughCacheRules"]}

    updated = ecr.update_pull_through_cache_rule(ecrRepositoryPrefix=prefix, credentialArn=ARN, customRoleArn="role")
    assert updated["credentialArn"] == ARN and updated["customRoleArn"] == "role"
    assert updated["upstreamRepositoryPrefix"] == "library" and "updatedAt" in updated
    assert client_error(ecr.update_pull_through_cache_rule, ecrRepositoryPrefix=prefix,
                        credentialArn=UNKNOWN_ARN)["Code"] == "SecretNotFoundException"
    assert client_error(ecr.update_pull_through_cache_rule, ecrRepositoryPrefix="missing",
                        credentialArn=ARN)["Code"] == "PullThroughCacheRuleNotFoundException"

    valid = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=prefix)  # anonymous upstream: a login is moot
    assert valid["isValid"] is True and "failure" not in valid and valid["upstreamRegistryUrl"] == upstream.endpoint
    dead = f"127.0.0.1:{free_port()}"
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix + "-dead", upstreamRegistryUrl=f"http://{dead}")
    invalid = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=prefix + "-dead")
    assert invalid["isValid"] is False and "cannot be reached" in invalid["failure"]
    assert client_error(ecr.validate_pull_through_cache_rule,
                        ecrRepositoryPrefix="missing")["Code"] == "PullThroughCacheRuleNotFoundException"

    deleted = ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
    assert deleted["ecrRepositoryPrefix"] == prefix and deleted["credentialArn"] == ARN
    assert deleted["createdAt"] == made["createdAt"] and "updatedAt" not in deleted
    error = client_error(ecr.delete_pull_through_cache_rule, ecrRepositoryPrefix=prefix)
    assert error["Code"] == "PullThroughCacheRuleNotFoundException"
    for extra in ("-two", "-dead"):
        ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix + extra)


def test_a_registry_holds_at_most_the_quota_of_rules(tmp_path):
    with Store(tmp_path / "store") as store:
        for n in range(MAX_RULES_PER_REGISTRY):
            store.pull_through.create_pull_through_cache_rule(f"p{n:02d}", "127.0.0.1:5000")
        with pytest.raises(LimitExceededException, match="maximum of 50 pull through cache rules"):
            store.pull_through.create_pull_through_cache_rule("one-more", "127.0.0.1:5000")
        store.pull_through.create_pull_through_cache_rule("other", "127.0.0.1:5000", registry_id=REGISTRY_B)
        page = store.pull_through.describe_pull_through_cache_rules()
        assert len(page.pull_through_cache_rules) == MAX_RULES_PER_REGISTRY and page.next_token is None


def test_a_repository_falls_under_its_longest_prefix_else_root(tmp_path):
    with Store(tmp_path / "store") as store:
        rules = store.pull_through
        rules.create_pull_through_cache_rule("team", "a.example:5000")
        rules.create_pull_through_cache_rule("team/deep", "b.example", upstream_repository_prefix="lib/")
        assert rules.match("team/app")[1] == "app"
        assert rules.match("team/deep/app")[0].upstream_registry_url == "b.example"
        assert rules.match("team/deep/app")[1] == "lib/app"
        assert rules.match("team") is None and rules.match("teams/app") is None
        with pytest.raises(InvalidParameterException, match="needs an ecrRepositoryPrefix other than ROOT"):
            rules.create_pull_through_cache_rule("ROOT", "c.example", upstream_repository_prefix="lib")
        rules.create_pull_through_cache_rule("ROOT", "c.example", upstream_repository_prefix="ROOT")
        assert rules.match("anything/else")[1] == "anything/else"
        with pytest.raises(PullThroughCacheRuleNotFoundException):
            rules.get_rule("team", registry_id=REGISTRY_B)
        with pytest.raises(InvalidParameterException):
            rules.match("Not A Name")


def test_secrets_file_readable_by_others_is_refused_at_start(tmp_path):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({ARN: {"username": USER, "accessToken": PASSWORD}}))
    secrets.chmod(0o644)
    done = subprocess.run([sys.executable, "-m", "ecrstore.cli", "serve", "--store", str(tmp_path / "store"),
                           "--no-auth", "--port", str(free_port()), "--upstream-secrets", str(secrets)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "may be read or written by other users" in done.stderr


# --- pulls through the cache ----------------------------------------------------------------


def test_skopeo_pulls_through_the_cache_exactly_then_locally_with_the_upstream_gone(server, containers, tmp_path):
    upstream = start_upstream(tmp_path / "upstream")
    try:
        name = repo_name("library/app")
        digest, blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7301)
        prefix = f"pt{os.getpid() % 1000}"
        ecr = server.client(KEY_A)
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=upstream.endpoint,
                                           upstreamRepositoryPrefix="library")
        cached = f"{prefix}/{name.split('/', 1)[1]}"
        source = f"docker://127.0.0.1:{server.port}/{cached}:v1"
        creds = ["--src-tls-verify=false", "--src-creds", f"AWS:{password(server)}"]
        out = tmp_path / "pulled"
        containers.skopeo("copy", "--preserve-digests", *creds, source, f"oci:{out}:v1")
        [entry] = json.loads((out / "index.json").read_text())["manifests"]
        assert entry["digest"] == digest
        assert oci_layout_blobs(out) == blobs
        repo = ecr.describe_repositories(repositoryNames=[cached])["repositories"][0]
        assert repo["imageTagMutability"] == "MUTABLE"
        assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
        images = ecr.describe_images(repositoryName=cached)["imageDetails"]
        assert [(i["imageDigest"], i["imageTags"]) for i in images] == [(digest, ["v1"])]
    finally:
        upstream.stop()
    again = tmp_path / "again"
    containers.skopeo("copy", "--preserve-digests", *creds, source, f"oci:{again}:v1")
    assert oci_layout_blobs(again) == blobs
    status, headers, body = v2_get(server, f"/v2/{cached}/manifests/{digest}")
    assert status == 200 and body == blobs[digest]
    # A tag the cache never fetched needs the upstream, which is gone: a gateway error.
    status, _, body = v2_get(server, f"/v2/{cached}/manifests/v2")
    assert status == 502 and json.loads(body)["errors"][0]["code"] == "UNKNOWN"
    assert "cannot be reached" in json.loads(body)["errors"][0]["message"]


def test_concurrent_first_pulls_fetch_from_the_upstream_once(server, upstream, containers, tmp_path):
    name = repo_name("burst")
    digest, blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7401)
    proxy = Proxy(upstream.port)
    try:
        prefix = f"burst{os.getpid() % 1000}"
        server.client(KEY_A).create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=proxy.url)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: v2_get(server, f"/v2/{prefix}/{name}/manifests/v1"), range(8)))
        assert {(status, body) for status, _, body in answers} == {(200, blobs[digest])}
        assert proxy.manifest_gets() == 1, proxy.counts
        blob_gets = {p: n for p, n in proxy.counts.items() if "/blobs/" in p}
        assert len(blob_gets) == 3 and set(blob_gets.values()) == {1}, proxy.counts
        for blob in json.loads(blobs[digest])["layers"]:
            status, _, data = v2_get(server, f"/v2/{prefix}/{name}/blobs/{blob['digest']}")
            assert status == 200 and data == blobs[blob["digest"]]
    finally:
        proxy.stop()


def test_concurrent_first_pulls_in_several_workers_store_one_image(upstream, containers, tmp_path):
    """Workers do not coordinate: each may fetch, and what they store is one image."""
    name = repo_name("workers")
    digest, blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7451)
    proxy = Proxy(upstream.port)
    process = start_server(tmp_path / "server", keys=[KEY_A], workers=2)
    try:
        process.client().create_pull_through_cache_rule(ecrRepositoryPrefix="workers", upstreamRegistryUrl=proxy.url)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: v2_get(process, f"/v2/workers/{name}/manifests/v1"), range(8)))
        assert {(status, body) for status, _, body in answers} == {(200, blobs[digest])}, answers
        assert 1 <= proxy.manifest_gets() <= 2, proxy.counts
        [image] = process.client().describe_images(repositoryName=f"workers/{name}")["imageDetails"]
        assert image["imageDigest"] == digest and image["imageTags"] == ["v1"]
    finally:
        process.stop()
        proxy.stop()


def test_an_index_pulls_through_with_every_platform(server, upstream, containers, tmp_path):
    name = repo_name("multi")
    digest, blobs = push_upstream(containers, upstream, tmp_path, name, "all", seed=7501, index=True)
    prefix = f"multi{os.getpid() % 1000}"
    server.client(KEY_A).create_pull_through_cache_rule(ecrRepositoryPrefix=prefix,
                                                        upstreamRegistryUrl=upstream.endpoint)
    status, headers, body = v2_get(server, f"/v2/{prefix}/{name}/manifests/all", method="HEAD")
    assert status == 200 and headers["docker-content-digest"] == digest and body == b""
    for child in json.loads(blobs[digest])["manifests"]:
        status, _, body = v2_get(server, f"/v2/{prefix}/{name}/manifests/{child['digest']}")
        assert status == 200 and body == blobs[child["digest"]]


def test_a_pull_by_digest_is_stored_untagged(server, upstream, containers, tmp_path):
    name = repo_name("bydigest")
    digest, blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7551)
    prefix = f"dg{os.getpid() % 1000}"
    ecr = server.client(KEY_A)
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=upstream.endpoint)
    status, _, body = v2_get(server, f"/v2/{prefix}/{name}/manifests/{digest}")
    assert status == 200 and body == blobs[digest]
    [image] = ecr.describe_images(repositoryName=f"{prefix}/{name}")["imageDetails"]
    assert image["imageDigest"] == digest and "imageTags" not in image


def test_misses_the_upstream_cannot_answer_and_misses_no_rule_covers(server, upstream, tmp_path):
    prefix = f"miss{os.getpid() % 1000}"
    ecr = server.client(KEY_A)
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=upstream.endpoint)
    status, _, body = v2_get(server, f"/v2/{prefix}/absent/manifests/v1")
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert client_error(ecr.describe_repositories, repositoryNames=[f"{prefix}/absent"])["Code"] == \
        "RepositoryNotFoundException"  # nothing upstream: no repository made for it
    status, _, body = v2_get(server, f"/v2/{repo_name('uncovered')}/manifests/v1")
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"
    # Registry B has no rule of that prefix: its callers do not pull through A's rules.
    status, _, body = v2_get(server, f"/v2/{prefix}/absent/manifests/v1", key=KEY_OTHER_REGISTRY)
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"


def test_a_blob_that_does_not_match_its_digest_is_refused_and_nothing_is_kept(server, upstream, containers,
                                                                              tmp_path):
    name = repo_name("liar")
    push_upstream(containers, upstream, tmp_path, name, "v1", seed=7601)
    proxy = Proxy(upstream.port, corrupt=True)
    try:
        prefix = f"liar{os.getpid() % 1000}"
        ecr = server.client(KEY_A)
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=proxy.url)
        status, _, body = v2_get(server, f"/v2/{prefix}/{name}/manifests/v1")
        assert status == 502, body
        assert "does not match its digest" in json.loads(body)["errors"][0]["message"]
        assert ecr.list_images(repositoryName=f"{prefix}/{name}")["imageIds"] == []
    finally:
        proxy.stop()


# --- upstream credentials -------------------------------------------------------------------


def test_a_basic_auth_upstream_pulls_with_the_rules_secret(server, locked_upstream, containers, tmp_path):
    name = repo_name("locked")
    digest, blobs = push_upstream(containers, locked_upstream, tmp_path, name, "v1", seed=7701,
                                  creds=f"{USER}:{PASSWORD}")
    ecr = server.client(KEY_A)
    anonymous, good, wrong = (f"{p}{os.getpid() % 1000}" for p in ("anon", "good", "wrong"))
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=anonymous, upstreamRegistryUrl=locked_upstream.endpoint)
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=good, upstreamRegistryUrl=locked_upstream.endpoint,
                                       credentialArn=ARN)
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=wrong, upstreamRegistryUrl=locked_upstream.endpoint,
                                       credentialArn=WRONG_ARN)
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=good)["isValid"] is True
    for prefix, reason in [(anonymous, "requires credentials"), (wrong, "refused the rule's credentials")]:
        result = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
        assert result["isValid"] is False and reason in result["failure"], result
        status, _, body = v2_get(server, f"/v2/{prefix}/{name}/manifests/v1")
        assert status == 502 and reason in json.loads(body)["errors"][0]["message"]
    status, _, body = v2_get(server, f"/v2/{good}/{name}/manifests/v1")
    assert status == 200 and body == blobs[digest]
    assert "401" in read_log(locked_upstream.log_path)  # the first, anonymous, request was challenged


def test_a_bearer_token_upstream_pulls_with_the_docker_token_protocol(server, upstream, containers, tmp_path):
    name = repo_name("tokened")
    digest, blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7801)
    proxy = Proxy(upstream.port, bearer=True)
    try:
        ecr = server.client(KEY_A)
        good, anonymous = (f"{p}{os.getpid() % 1000}" for p in ("bearer", "nobearer"))
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=good, upstreamRegistryUrl=proxy.url,
                                           credentialArn=ARN)
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=anonymous, upstreamRegistryUrl=proxy.url)
        assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=good)["isValid"] is True
        status, _, body = v2_get(server, f"/v2/{good}/{name}/manifests/v1")
        assert status == 200 and body == blobs[digest], body
        scoped = [r for r in proxy.token_requests if r.get("scope")]
        assert scoped and scoped[0]["scope"] == f"repository:{name}:pull" and scoped[0]["service"] == "proxy"
        assert scoped[0]["authorization"].startswith("Basic ")
        # One token per scope, reused: the manifest and its three blobs asked for one.
        assert len([r for r in scoped if r["scope"] == f"repository:{name}:pull"]) == 1
        status, _, body = v2_get(server, f"/v2/{anonymous}/{name}/manifests/v1")
        assert status == 502 and "token service" in json.loads(body)["errors"][0]["message"]
    finally:
        proxy.stop()
    public = Proxy(upstream.port, bearer=True, anonymous_tokens=True)  # as public registries hand out tokens
    try:
        prefix = f"public{os.getpid() % 1000}"
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=public.url)
        status, _, body = v2_get(server, f"/v2/{prefix}/{name}/manifests/v1")
        assert status == 200 and body == blobs[digest], body
        assert public.token_requests and all(r["authorization"] == "" for r in public.token_requests)
    finally:
        public.stop()


def test_an_embedded_store_knows_no_secret_and_reaches_no_upstream(tmp_path):
    with Store(tmp_path / "store") as store:
        with pytest.raises(SecretNotFoundException, match=f"The secret with the ARN '{ARN}' was not found"):
            store.pull_through.create_pull_through_cache_rule("embedded", "127.0.0.1:5000", credential_arn=ARN)
        store.pull_through.create_pull_through_cache_rule("embedded", "127.0.0.1:5000")
        result = store.pull_through.validate_pull_through_cache_rule("embedded")
        assert result.is_valid is False and "No upstream client" in result.failure


@pytest.mark.parametrize("upstream_status, status, code", [
    (500, 502, "UNKNOWN"), (503, 502, "UNKNOWN"), (429, 429, "TOOMANYREQUESTS"), (404, 404, "MANIFEST_UNKNOWN"),
])
def test_upstream_failures_answer_their_oci_errors(server, upstream, upstream_status, status, code):
    proxy = Proxy(upstream.port, status=upstream_status)
    try:
        prefix = f"fail{upstream_status}x{os.getpid() % 1000}"
        server.client(KEY_A).create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=proxy.url)
        answer, _, body = v2_get(server, f"/v2/{prefix}/any/manifests/v1")
        assert answer == status and json.loads(body)["errors"][0]["code"] == code, body
        assert str(upstream_status) in json.loads(body)["errors"][0]["message"] or upstream_status == 404
    finally:
        proxy.stop()


def test_blob_reads_the_upstream_redirects_are_followed(server, upstream, containers, tmp_path):
    name = repo_name("moved")
    digest, blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7901)
    proxy = Proxy(upstream.port, redirect=True)
    try:
        prefix = f"moved{os.getpid() % 1000}"
        server.client(KEY_A).create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=proxy.url)
        status, _, body = v2_get(server, f"/v2/{prefix}/{name}/manifests/v1")
        assert status == 200 and body == blobs[digest]
        assert sum(1 for p in proxy.counts if p.startswith("/moved/")) == 3, proxy.counts
    finally:
        proxy.stop()


def test_a_large_blob_streams_through_in_bounded_memory(upstream, containers, tmp_path):
    """In process, with tracemalloc: a 24 MiB layer never lies whole in Python memory."""
    name = repo_name("large")
    layout = tmp_path / "layout"
    img = make_image(8001, layers=1, size=24 * 2**20)
    digest = oci_layout(layout, [(img, "v1")])["v1"]
    containers.skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:v1",
                      f"docker://{upstream.host}/{name}:v1")
    with Store(tmp_path / "store") as store, ThreadPoolExecutor(2) as executor:
        store.pull_through.create_pull_through_cache_rule("big", upstream.endpoint)
        cache = PullThroughCache(store, executor, {})
        miss = OciError(404, "NAME_UNKNOWN", "absent")
        tracemalloc.start()
        try:
            found = asyncio.run(cache.pull(store.registry_id, f"big/{name}", "v1", miss))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert found.digest == digest
        assert peak < 8 * 2**20, f"peak {peak} bytes for a {len(img.layers[0])}-byte layer"
        with store.open_layer(f"big/{name}", img.layer_digests[0]) as reader:
            assert reader.size == len(img.layers[0])


def test_a_cached_tag_is_checked_upstream_once_due_and_follows_a_moved_tag(containers, tmp_path):
    """``--pull-through-refresh 2``: within the interval a tag is served with no upstream request;
    once due, a HEAD asks for its digest; a moved tag is fetched and moved here; an upstream
    that is gone leaves the cached image served."""
    server = start_server(tmp_path / "srv", keys=[KEY_A], extra=["--pull-through-refresh", "2"])
    upstream = start_upstream(tmp_path / "upstream")
    proxy = Proxy(upstream.port)
    try:
        name = repo_name("fresh")
        first, blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7701)
        server.client(KEY_A).create_pull_through_cache_rule(ecrRepositoryPrefix="fresh", upstreamRegistryUrl=proxy.url)
        path = f"/v2/fresh/{name}/manifests/v1"
        assert v2_get(server, path)[::2] == (200, blobs[first])
        fetched = dict(proxy.methods)
        assert v2_get(server, path)[::2] == (200, blobs[first])
        assert proxy.methods == fetched  # not due: served with no upstream request
        moved, moved_blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7702)
        assert moved != first
        time.sleep(2.5)
        assert v2_get(server, path)[::2] == (200, moved_blobs[moved])
        assert proxy.methods["HEAD"] == 1, proxy.methods
        images = server.client(KEY_A).describe_images(repositoryName=f"fresh/{name}")["imageDetails"]
        assert sorted((i["imageDigest"], i.get("imageTags", [])) for i in images) == sorted(
            [(first, []), (moved, ["v1"])])
        time.sleep(2.5)  # due again, unchanged: pulls by digest never check; concurrent ones share a HEAD
        gets = proxy.manifest_gets() - proxy.methods["HEAD"]
        assert v2_get(server, f"/v2/fresh/{name}/manifests/{moved}")[::2] == (200, moved_blobs[moved])
        assert proxy.methods["HEAD"] == 1
        with ThreadPoolExecutor(4) as pool:
            assert {r[::2] for r in pool.map(lambda _: v2_get(server, path), range(4))} == {(200, moved_blobs[moved])}
        assert proxy.methods["HEAD"] == 2 and proxy.manifest_gets() - proxy.methods["HEAD"] == gets
        upstream.stop()
        time.sleep(2.5)  # due, and the upstream is gone: the cached image is still served
        assert v2_get(server, path)[::2] == (200, moved_blobs[moved])
        assert "serving the cached image; checking the upstream failed" in server.log()
    finally:
        proxy.stop()
        upstream.stop()
        server.stop()


def test_a_tag_is_not_rechecked_within_the_interval(server, upstream, containers, tmp_path):
    """The default interval (24 h): a tag moved upstream stays as cached, no upstream request."""
    name = repo_name("steady")
    first, blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7801)
    proxy = Proxy(upstream.port)
    try:
        server.client(KEY_A).create_pull_through_cache_rule(ecrRepositoryPrefix=f"steady{os.getpid() % 1000}",
                                                            upstreamRegistryUrl=proxy.url)
        path = f"/v2/steady{os.getpid() % 1000}/{name}/manifests/v1"
        assert v2_get(server, path)[::2] == (200, blobs[first])
        seen = dict(proxy.methods)
        push_upstream(containers, upstream, tmp_path, name, "v1", seed=7802)
        assert v2_get(server, path)[::2] == (200, blobs[first]) and proxy.methods == seen
    finally:
        proxy.stop()


@pytest.mark.parametrize("refresh", [0, 1])
def test_refresh_0_never_rechecks_and_an_upstream_naming_no_digest_is_checked_by_get(refresh, upstream, containers,
                                                                                      tmp_path):
    server = start_server(tmp_path / "srv", keys=[KEY_A], extra=["--pull-through-refresh", str(refresh)])
    proxy = Proxy(upstream.port, no_digest=True)
    try:
        name = repo_name(f"every{refresh}")
        first, blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7810 + refresh)
        server.client(KEY_A).create_pull_through_cache_rule(ecrRepositoryPrefix="every", upstreamRegistryUrl=proxy.url)
        path = f"/v2/every/{name}/manifests/v1"
        assert v2_get(server, path)[::2] == (200, blobs[first])
        seen, manifests = dict(proxy.counts), proxy.manifest_gets()
        moved, moved_blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7820 + refresh)
        time.sleep(1.5)
        if refresh == 0:  # never re-checked, however long ago the tag was fetched
            assert v2_get(server, path)[::2] == (200, blobs[first]) and proxy.counts == seen
        else:  # the HEAD named no digest: one GET of the manifest tells, and is the moved image's
            assert v2_get(server, path)[::2] == (200, moved_blobs[moved])
            assert proxy.methods["HEAD"] == 1 and proxy.manifest_gets() - manifests == 2
    finally:
        proxy.stop()
        server.stop()


def test_tag_checks_are_kept_per_tag_and_go_with_their_repository(tmp_path):
    with Store(tmp_path / "store") as store:
        checks = store.pull_through
        store.create_repository("cache/app")
        assert checks.last_check("cache/app", "v1") is None  # never checked: a tag the cache did not fetch
        checks.record_check("cache/app", "v1", 1000.5)
        assert (checks.last_check("cache/app", "v1"), checks.last_check("cache/app", "v2")) == (1000.5, None)
        store.delete_repository("cache/app")
        store.create_repository("cache/app")  # a new repository of the name: none of the old one's checks
        assert checks.last_check("cache/app", "v1") is None
        checks.record_check("gone/app", "v1", 1.0)  # no such repository: nothing is kept
        assert checks.last_check("gone/app", "v1") is None


def test_a_cached_repository_takes_the_pull_through_cache_template(server, upstream, containers, tmp_path):
    name = repo_name("tmpl")
    digest, blobs = push_upstream(containers, upstream, tmp_path, name, "v1", seed=7901)
    prefix = f"tmpl{os.getpid() % 1000}"
    ecr = server.client(KEY_A)
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=upstream.endpoint)
    ecr.create_repository_creation_template(prefix=prefix, appliedFor=["PULL_THROUGH_CACHE"],
                                            imageTagMutability="IMMUTABLE",
                                            resourceTags=[{"Key": "cache", "Value": "upstream"}])
    assert v2_get(server, f"/v2/{prefix}/{name}/manifests/v1")[::2] == (200, blobs[digest])
    repo = ecr.describe_repositories(repositoryNames=[f"{prefix}/{name}"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [
        {"Key": "cache", "Value": "upstream"}]
