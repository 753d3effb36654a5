"""Property-based fuzzing of the JSON API against a real server on loopback.

Every request here is signed with a valid key but carries at least one member that breaks the
service model: a wrong JSON type, an extreme number, deep nesting, a lone surrogate, bad UTF-8,
an oversized or malformed string, a forged pagination token. The property: the answer is a
4xx whose ``__type`` is a known ECR code, and the store is exactly as it was (compared with a
snapshot read through a read-only Store). The budget is bounded (``FUZZ_EXAMPLES`` examples
per operation), and the count actually run is printed at the end.
"""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_fixtures import KEY_A, REGISTRY_A, TARGET, digest_of, push_layer, sign_request, start_server

from ecrstore import Store, errors
from ecrstore.validate import is_image_tag

FUZZ_EXAMPLES = 200
_RUN = {"cases": 0}

#: Operation -> {member: kind}; kinds choose what a *valid* value looks like, so a mutation of
#: that member is sure to break it.
OPERATIONS: dict[str, dict[str, str]] = {
    "CreateRepository": {"repositoryName": "name", "imageTagMutability": "enum", "tags": "tags",
                         "encryptionConfiguration": "encryption", "imageScanningConfiguration": "scanning"},
    "DescribeRepositories": {"repositoryNames": "names", "maxResults": "int", "nextToken": "token"},
    "DeleteRepository": {"repositoryName": "name", "force": "bool"},
    "InitiateLayerUpload": {"repositoryName": "name"},
    "UploadLayerPart": {"repositoryName": "name", "uploadId": "uuid", "partFirstByte": "int",
                        "partLastByte": "int", "layerPartBlob": "blob"},
    "CompleteLayerUpload": {"repositoryName": "name", "uploadId": "uuid", "layerDigests": "digests"},
    "BatchCheckLayerAvailability": {"repositoryName": "name", "layerDigests": "digests"},
    "GetDownloadUrlForLayer": {"repositoryName": "name", "layerDigest": "digest"},
    "PutImage": {"repositoryName": "name", "imageManifest": "manifest", "imageTag": "tag",
                 "imageDigest": "digest", "imageManifestMediaType": "str"},
    "BatchGetImage": {"repositoryName": "name", "imageIds": "ids", "acceptedMediaTypes": "names"},
    "BatchDeleteImage": {"repositoryName": "name", "imageIds": "ids"},
    "ListImages": {"repositoryName": "name", "filter": "filter", "maxResults": "int", "nextToken": "token"},
    "DescribeImages": {"repositoryName": "name", "imageIds": "ids", "filter": "filter", "maxResults": "int",
                       "nextToken": "token"},
    "GetAuthorizationToken": {"registryIds": "names"},
}


def deep(depth: int, leaf: Any = 1) -> Any:
    """A value nested ``depth`` levels (kept under the encoder's own recursion limit)."""
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def deep_text(depth: int) -> str:
    """JSON text nested ``depth`` levels, deeper than any encoder would write."""
    return '{"a":[' * (depth // 2) + "1" + "]}" * (depth // 2)


WRONG_TYPES = st.sampled_from([123, -1, 1.5, True, [], {}, ["x"], {"k": "v"}, "", "x"])
EXTREME_INTS = st.sampled_from([-1, -(2**31), 2**53 + 1, 2**63 - 1, 10**30, 1e308, -0.5])
NASTY_STRINGS = st.one_of(
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "é" * 290, "💥" * 300, "A" * 5000, "../../etc/passwd",
                     "sha256:" + "g" * 64, "UPPER/Case", "-leading", "a" * 257]),
    st.text(min_size=301, max_size=400),
)


def token_of(fields: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode()


FORGED_TOKENS = st.one_of(
    st.sampled_from([base64.urlsafe_b64encode(deep_text(3000).encode()).decode(), token_of(["l", 1, "zz", None]),
                     token_of({"a": 1}),
                     token_of([REGISTRY_A, 5]), "not base64!", "\ud800", "é" * 10, "A" * 3000]),
    st.binary(max_size=64).map(lambda b: base64.urlsafe_b64encode(b).decode()),
)


def mutation(kind: str) -> st.SearchStrategy[Any]:
    """Values that break a member of this kind."""
    bad = {
        "name": st.one_of(WRONG_TYPES.filter(lambda v: not (isinstance(v, str) and len(v) >= 2)), NASTY_STRINGS),
        "uuid": st.one_of(WRONG_TYPES, NASTY_STRINGS, st.just(str(uuid.uuid4()).upper() + "0")),
        "int": st.one_of(WRONG_TYPES.filter(lambda v: isinstance(v, (list, dict, str, float, bool))),
                         EXTREME_INTS.filter(lambda v: v < 0 or v > 2**62 or isinstance(v, float))),
        "bool": WRONG_TYPES.filter(lambda v: not isinstance(v, bool)),
        "blob": st.one_of(WRONG_TYPES.filter(lambda v: not (isinstance(v, str) and v == "")),
                          st.sampled_from(["not base64", "QQ=", "Q===", "=" * 8, "🙂🙂🙂🙂"]),
                          st.just("A" * 28_000_004)),
        "digests": st.one_of(WRONG_TYPES.filter(lambda v: not (isinstance(v, list) and v)),
                             st.just([]), st.just(["sha256:" + "a" * 64] * 101), st.just([deep(50)])),
        "digest": st.one_of(WRONG_TYPES, NASTY_STRINGS),
        "tag": st.one_of(WRONG_TYPES.filter(lambda v: not (isinstance(v, str) and v)),
                         NASTY_STRINGS.filter(lambda v: not is_image_tag(v))),  # "-leading" is a valid tag
        "manifest": st.one_of(WRONG_TYPES.filter(lambda v: not isinstance(v, str) or v in ("", "x")),
                              st.just(deep_text(5000)), st.just("{" * 100_000),
                              st.just(json.dumps({"schemaVersion": 2, "mediaType": deep(200)}))),
        "str": st.one_of(WRONG_TYPES.filter(lambda v: not isinstance(v, str)), st.just("")),
        "enum": st.one_of(WRONG_TYPES, st.just("mutable"), st.just("IMMUTABLE_")),
        "tags": st.one_of(WRONG_TYPES.filter(lambda v: not isinstance(v, list)),
                          st.just([{"Key": "k"}]), st.just([{"Key": "", "Value": "v"}]),
                          st.just([{"Key": f"k{i}", "Value": "v"} for i in range(51)]),
                          st.just([deep(100)])),
        "names": st.one_of(WRONG_TYPES.filter(lambda v: not isinstance(v, list)), st.just([]),
                           st.just(["x"] * 101), st.just([123])),
        "token": st.one_of(WRONG_TYPES.filter(lambda v: not isinstance(v, str)), FORGED_TOKENS),
        "ids": st.one_of(WRONG_TYPES.filter(lambda v: not isinstance(v, list)), st.just([]),
                         st.just([{"imageTag": "v"}] * 101), st.just([{"imageDigest": 5}]),
                         st.just([{"imageTag": deep(100)}]), st.just(["v1"]),
                         NASTY_STRINGS.map(lambda v: [{"imageTag": v}]),
                         NASTY_STRINGS.map(lambda v: [{"imageDigest": v}])),
        "filter": st.one_of(WRONG_TYPES.filter(lambda v: not isinstance(v, dict)),
                            st.just({"tagStatus": "SOME"}), st.just({"tagStatus": deep(100)}),
                            st.just({"tagStatus": 5})),
        "encryption": st.one_of(WRONG_TYPES.filter(lambda v: not isinstance(v, dict)),
                                st.just({"encryptionType": "ROT13"}), st.just({}),
                                st.just({"encryptionType": "AES256", "kmsKey": "k"})),
        "scanning": st.one_of(WRONG_TYPES.filter(lambda v: not isinstance(v, dict)),
                              st.just({"scanOnPush": "yes"}), st.just({"scanOnPush": deep(100)})),
    }
    return bad[kind]


GOOD = {
    "name": "fuzz/app", "uuid": str(uuid.UUID(int=7)), "int": 1, "bool": True, "blob": "QUJD",
    "digests": ["sha256:" + "a" * 64], "digest": "sha256:" + "a" * 64, "tag": "v1", "str": "application/json",
    "enum": "MUTABLE", "tags": [{"Key": "k", "Value": "v"}], "names": ["fuzz/app"], "token": None,
    "ids": [{"imageTag": "v1"}], "filter": None, "encryption": None, "scanning": None,
}
LAYER = b"fuzz layer bytes"
#: An image whose layers the repository holds, so a poisoned tag or digest is what PutImage meets.
GOOD["manifest"] = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(LAYER), "digest": digest_of(LAYER)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(LAYER), "digest": digest_of(LAYER)}],
})
#: Batch calls answer a bad item as a per-item failure (200), never by changing anything.
BATCH = {"BatchGetImage": "images", "BatchDeleteImage": "imageIds", "BatchCheckLayerAvailability": "layers"}


def request_bodies(operation: str) -> st.SearchStrategy[bytes]:
    members = OPERATIONS[operation]

    @st.composite
    def body(draw: st.DrawFn) -> bytes:
        target = draw(st.sampled_from(sorted(members)))
        doc: dict[str, Any] = {}
        for name, kind in members.items():
            if name == target:
                doc[name] = draw(mutation(kind))
            elif GOOD[kind] is not None and draw(st.booleans()):
                doc[name] = GOOD[kind]
        if draw(st.integers(0, 9)) == 0:  # now and then, raw bytes that are not UTF-8 JSON
            return draw(st.sampled_from([b'{"repositoryName": "\xff\xfe"}', b"\xef\xbb\xbf{}", b'{"a":' * 5000,
                                         b"[1, 2]", b'"just a string"', b"{\"x\": 1e99999}"]))
        return json.dumps(doc, ensure_ascii=True).encode()

    return body()


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, operation: str, body: bytes) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/"
        headers = sign_request("POST", url, body, {
            "X-Amz-Target": TARGET + operation, "Content-Type": "application/x-amz-json-1.1"}, KEY_A)
        try:
            self.conn.request("POST", "/", body=body, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            raise
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {"unparsable": raw[:200].decode(errors="replace")}
        return response.status, doc


def snapshot(path) -> dict[str, Any]:
    """Everything a client could observe, read through a read-only handle."""
    with Store(path, read_only=True, registry_id=REGISTRY_A) as s:
        repos = [r.repository_name for r in s.describe_repositories(max_results=1000).repositories]
        return {
            "repos": repos,
            "layers": {r: sorted(s.list_layers(r)) for r in repos},
            "images": {r: [(d.image_digest, d.image_tags) for d in s.describe_images(r, max_results=1000).image_details]
                       for r in repos},
            "uploads": [(u.upload_id, u.received) for u in s.list_uploads()],
            "stats": s.stats(),
        }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("fuzz"), keys=[KEY_A])
    client = srv.client()
    client.create_repository(repositoryName="fuzz/app")
    push_layer(client, "fuzz/app", LAYER)
    client.initiate_layer_upload(repositoryName="fuzz/app")  # one upload left open
    client.put_image(repositoryName="fuzz/app", imageManifest=GOOD["manifest"], imageTag="v1")
    yield srv
    srv.stop()
    print(f"\nfuzz cases run against the server: {_RUN['cases']}")


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_bad_input_gets_a_known_4xx_and_changes_nothing(server, operation):
    client = Client(server.port)
    before = snapshot(server.store)

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=request_bodies(operation))
    def check(body: bytes) -> None:
        _RUN["cases"] += 1
        status, doc = client.call(operation, body)
        if status == 200 and operation in BATCH:
            assert doc["failures"] and not doc.get(BATCH[operation]), (doc, body[:300])
            return
        assert 400 <= status < 500, (status, doc, body[:300])
        assert doc.get("__type") in errors.BY_CODE, (status, doc, body[:300])

    check()
    assert snapshot(server.store) == before
    assert "Traceback" not in server.log()
