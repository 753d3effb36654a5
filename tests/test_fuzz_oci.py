"""Property-based fuzzing of the ``/v2/`` API against a real server on loopback.

Requests are built from the spec's endpoints with every part open to mutation: the method,
the repository name and reference (tags, digests, upload ids, odd text), the query (``digest``,
``mount``/``from``, ``n``/``last``, ``artifactType``), the headers a client controls
(``Content-Range``, ``Content-Type``, ``Accept``, ``Authorization``) and the body. The
property: no answer is a 5xx, every error answer of a GET/PUT/POST/PATCH/DELETE carries the
spec's error JSON with a known code, the images pushed before the run are untouched (the
fuzzed names never reach them), and the server logs no traceback. The budget is bounded
(``FUZZ_EXAMPLES``) and the count run is printed.
"""

from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_fixtures import KEY_A, digest_of, start_server

FUZZ_EXAMPLES = 1500
_RUN: dict[str, object] = {"cases": 0, "statuses": {}}
#: The spec's error codes, and the ones this server adds where the spec has none.
CODES = {"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN",
         "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED",
         "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS", "TAG_INVALID", "PAGINATION_NUMBER_INVALID"}
KEPT = "fuzz/kept"
CONFIG = b"{}"
LAYER = b"layer bytes that the fuzzer must never lose"
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(CONFIG), "size": 2},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(LAYER),
                "size": len(LAYER)}],
}).encode()

_odd = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
#: Header values a client can send at all (HTTP refuses control characters before any app
#: sees the request: uvicorn answers those with its own plain 400).
_field = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
names = st.one_of(st.just("fuzz/app"), st.just("fuzz/app"),
                  st.sampled_from(["fuzz/missing", "a", "UPPER/case", "x" * 300, "../../etc", "fuzz//app", "-bad-"]),
                  _odd)
digests = st.one_of(st.just(digest_of(LAYER)), st.just("sha256:" + "0" * 64), st.just("sha512:" + "a" * 128),
                    st.just("sha256:zz"), st.just("md5:abc"), _odd)
refs = st.one_of(digests, digests, st.sampled_from(["latest", "v1", "sha256-abc", "x" * 400, "00000000-0000-4000-8000-"
                                           "000000000000", "not-a-uuid"]), _odd)
query_values = st.one_of(st.just(""), st.integers(-5, 10**20).map(str), digests, names, _odd)
ranges = st.one_of(st.none(), st.sampled_from(["0-0", "0-9", "bytes 0-9/10", "bytes=5-4", "-", "a-b", "9-0",
                                               "0-18446744073709551616", "bytes */*"]), _field)
content_types = st.one_of(st.none(), st.sampled_from([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json", "application/json; charset=utf-8", "text/plain"]), _field)
bodies = st.one_of(st.just(b""), st.binary(max_size=256), st.just(MANIFEST), st.just(MANIFEST[:-3]),
                   st.just(b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'
                           b'"manifests":[{"digest":"sha256:' + b"1" * 64 + b'","size":1}]}'),
                   st.just(json.dumps({"a": [[[[[[[[[[[]]]]]]]]]]]}).encode()), st.just(b"\xff\xfe" * 50))
ENDPOINTS = ["/v2/", "/v2/_catalog", "/v2/{name}/blobs/uploads/", "/v2/{name}/blobs/uploads/{ref}",
             "/v2/{name}/blobs/{ref}", "/v2/{name}/manifests/{ref}", "/v2/{name}/tags/list",
             "/v2/{name}/referrers/{ref}", "/v2/{name}/{ref}", "/v2{name}"]


@st.composite
def requests(draw):
    template = draw(st.sampled_from(ENDPOINTS))
    path = template.format(name=quote(draw(names), safe="/"), ref=quote(draw(refs), safe=":"))
    query = draw(st.dictionaries(st.sampled_from(["digest", "mount", "from", "n", "last", "artifactType"]),
                                 query_values, max_size=3))
    if query:
        path += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    method = draw(st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]))
    headers = {}
    if (r := draw(ranges)) is not None:
        headers["Content-Range"] = r
    if (c := draw(content_types)) is not None:
        headers["Content-Type"] = c
    if draw(st.booleans()):
        headers["Accept"] = draw(st.sampled_from(["*/*", "application/json", "application/vnd.oci.image.manifest.v1"
                                                  "+json, text/plain;q=0.5", ""]))
    return method, path, headers, draw(bodies), draw(st.sampled_from(["good"] * 6 + ["none", "garbage", "other-user"]))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("fuzz-oci"), keys=[KEY_A])
    client = srv.client()
    for repo in (KEPT, "fuzz/app"):
        client.create_repository(repositoryName=repo)
    password = base64.b64decode(client.get_authorization_token()["authorizationData"][0]["authorizationToken"])
    srv.basic = "Basic " + base64.b64encode(password).decode()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    for blob in (CONFIG, LAYER):
        conn.request("POST", f"/v2/{KEPT}/blobs/uploads/?digest={digest_of(blob)}", body=blob,
                     headers={"Authorization": srv.basic})
        assert conn.getresponse().read() is not None
    conn.request("PUT", f"/v2/{KEPT}/manifests/v1", body=MANIFEST, headers={
        "Authorization": srv.basic, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert conn.getresponse().status == 201
    conn.close()
    yield srv
    srv.stop()
    print(f"\n/v2/ fuzz cases run against the server: {_RUN['cases']}, answers by status: "
          f"{dict(sorted(_RUN['statuses'].items()))}")  # type: ignore[union-attr]


def test_no_request_reaches_a_5xx_and_errors_are_oci_json(server):
    conn = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)]

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(request=requests())
    def check(request) -> None:
        method, path, headers, body, auth = request
        _RUN["cases"] += 1  # type: ignore[operator]
        headers = dict(headers)
        headers["Authorization"] = {"good": server.basic, "none": None, "garbage": "Basic " + "@" * 30,
                                    "other-user": "Basic " + base64.b64encode(b"root:x").decode()}[auth]
        if headers["Authorization"] is None:
            del headers["Authorization"]
        try:
            conn[0].request(method, path, body=body, headers=headers)
            response = conn[0].getresponse()
            data = response.read()
        except (http.client.HTTPException, ConnectionError):
            conn[0].close()  # the server closed a connection it answered early: a fresh one
            conn[0] = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            return
        if response.getheader("connection", "").lower() == "close":
            conn[0].close()
            conn[0] = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        statuses = _RUN["statuses"]
        assert isinstance(statuses, dict)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        assert response.status < 500, (method, path, headers, body[:100], response.status, data[:300])
        if response.status >= 400 and method != "HEAD":
            doc = json.loads(data)
            assert doc["errors"] and doc["errors"][0]["code"] in CODES, (method, path, response.status, doc)
        if response.status == 401:
            assert response.getheader("www-authenticate", "").startswith("Basic realm=")

    check()
    conn[0].close()
    kept = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    kept.request("GET", f"/v2/{KEPT}/manifests/v1", headers={"Authorization": server.basic})
    response = kept.getresponse()
    assert (response.status, response.read()) == (200, MANIFEST)
    kept.request("GET", f"/v2/{KEPT}/blobs/{digest_of(LAYER)}", headers={"Authorization": server.basic})
    response = kept.getresponse()
    assert (response.status, response.read()) == (200, LAYER)
    kept.close()
    assert "Traceback" not in server.log()
