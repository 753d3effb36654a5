"""Property-based fuzzing of the control plane's JSON operations against a real server.

Every operation of the operation table that tests/test_fuzz_api.py does not cover is sent
signed requests built from its own member shapes (:mod:`ecrstore.server.awsjson.operations`):
each member is absent, plausible (a real repository, ARN, policy or rule), of a wrong JSON
type, an extreme number, deeply nested or a nasty string. Plausible requests may succeed, so the
property is the one that holds for every client input: the answer is a 200 or a 4xx whose
``__type`` is a known ECR code — never a 5xx — and the server logs no traceback. The budget is
bounded (``FUZZ_EXAMPLES`` per operation).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_fixtures import KEY_A, REGISTRY_A, push_layer, start_server
from test_fuzz_api import EXTREME_INTS, FORGED_TOKENS, GOOD, LAYER, NASTY_STRINGS, WRONG_TYPES, Client, deep
from test_fuzz_api import OPERATIONS as COVERED

from ecrstore import errors
from ecrstore.server.awsjson.operations import OPERATIONS, Blob, Boolean, Integer, ListOf, String, Structure

FUZZ_EXAMPLES = 80
REPO = "fuzz/control"
ARN = f"arn:aws:ecr:us-east-1:{REGISTRY_A}:repository/{REPO}"
POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "222222222222"}, "Action": "ecr:BatchGetImage"}]})
LIFECYCLE = json.dumps({"rules": [{"rulePriority": 1, "selection": {
    "tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 5}, "action": {"type": "expire"}}]})
#: Plausible values of string members, by member name (others: the repository's name).
PLAUSIBLE = {
    "resourceArn": ARN, "policyText": POLICY, "lifecyclePolicyText": LIFECYCLE, "imageDigest": GOOD["digest"],
    "imageTag": "v1", "nextToken": None, "imageTagMutability": "IMMUTABLE", "scanType": "BASIC",
    "scanFrequency": "SCAN_ON_PUSH", "filterType": "WILDCARD", "filter": "fuzz*", "region": "us-east-1",
    "registryId": REGISTRY_A, "Key": "team", "Value": "fuzz", "ecrRepositoryPrefix": "cache",
    "upstreamRegistryUrl": "http://127.0.0.1:9", "encryptionType": "AES256", "tagStatus": "TAGGED",
}


def plausible(shape: Any, name: str) -> Any:
    if isinstance(shape, String):
        return PLAUSIBLE.get(name, REPO)
    if isinstance(shape, Integer):
        return 10
    if isinstance(shape, Boolean):
        return True
    if isinstance(shape, Blob):
        return "QUJD"
    if isinstance(shape, ListOf):
        return [plausible(shape.item, name)]
    assert isinstance(shape, Structure)
    return {k: plausible(m.shape, k) for k, m in shape.members.items()}


BAD = st.one_of(WRONG_TYPES, NASTY_STRINGS, EXTREME_INTS, FORGED_TOKENS, st.just(deep(60)), st.just(None))


def value(shape: Any, name: str, depth: int = 0) -> st.SearchStrategy[Any]:
    """A member value: plausible, broken, or (in lists and structures) plausible around a broken part."""
    options = [st.just(plausible(shape, name)), BAD]
    if depth < 3 and isinstance(shape, ListOf):
        options.append(st.lists(value(shape.item, name, depth + 1), max_size=3))
    if depth < 3 and isinstance(shape, Structure):
        options.append(st.fixed_dictionaries({}, optional={k: value(m.shape, k, depth + 1)
                                                            for k, m in shape.members.items()}))
    return st.one_of(options)


def bodies(operation: str) -> st.SearchStrategy[bytes]:
    members = {k: m for k, m in OPERATIONS[operation].members.items() if k != "registryId"}
    doc = st.fixed_dictionaries({}, optional={k: value(m.shape, k) for k, m in members.items()})
    return doc.map(lambda d: json.dumps({k: v for k, v in d.items() if v is not None}, ensure_ascii=True).encode())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("fuzz-control"), keys=[KEY_A])
    client = srv.client()
    client.create_repository(repositoryName=REPO)
    push_layer(client, REPO, LAYER)
    client.put_image(repositoryName=REPO, imageManifest=GOOD["manifest"], imageTag="v1")
    yield srv
    srv.stop()


@pytest.mark.parametrize("operation", sorted(set(OPERATIONS) - set(COVERED)))
def test_no_input_to_the_control_plane_gets_a_5xx(server, operation):
    client = Client(server.port)

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies(operation))
    def check(body: bytes) -> None:
        status, doc = client.call(operation, body)
        assert status == 200 or (400 <= status < 500 and doc.get("__type") in errors.BY_CODE), (status, doc, body)

    check()
    assert "Traceback" not in server.log()
