"""What an S3 blob backend may rely on, checked against the SeaweedFS of seaweed_server.py.

Where SeaweedFS departs from Amazon S3 the test pins what SeaweedFS does and its name says so:
a backend must not count on the S3 behaviour there.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import botocore.config
import botocore.exceptions
import botocore.session
import netns
import pytest
from seaweed_server import SeaweedServer, start

MiB = 1 << 20
PART = 5 * MiB

#: A child process that finds the server through the environment alone (SeaweedServer.env()).
LIST_BUCKETS = """
import botocore.session
client = botocore.session.get_session().create_client("s3")
print(client.meta.endpoint_url, len(client.list_buckets()["Buckets"]))
"""


@pytest.fixture(scope="module")
def seaweed() -> Iterator[SeaweedServer]:
    server = start()
    yield server
    server.stop()


@pytest.fixture
def s3(seaweed):
    return seaweed.client()


@pytest.fixture
def bucket(seaweed) -> str:
    return seaweed.new_bucket()


def _error(excinfo: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _listening_addresses(pid: int) -> set[str]:
    table = subprocess.run(["ss", "-Hltunp"], capture_output=True, text=True, check=True).stdout
    return {line.split()[4].rsplit(":", 1)[0] for line in table.splitlines() if f"pid={pid}," in line}


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def _upload(s3, bucket: str, key: str, parts: dict[int, bytes]) -> tuple[str, dict[int, str]]:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = {n: s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=data)["ETag"]
             for n, data in parts.items()}
    return upload, etags


def _complete(s3, bucket: str, key: str, upload: str, etags: list[tuple[int, str]], **kwargs):
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, **kwargs,
                                        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in etags]})


def test_a_multipart_upload_lists_its_parts_in_pages_completes_and_serves_ranges(s3, bucket):
    parts = {1: os.urandom(PART), 2: os.urandom(PART), 3: os.urandom(PART), 4: b"the short last part"}
    upload, etags = _upload(s3, bucket, "m/blob", parts)
    assert etags == {n: _etag(data) for n, data in parts.items()}

    listed = s3.list_parts(Bucket=bucket, Key="m/blob", UploadId=upload)
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed["Parts"]] == \
           [(n, len(data), etags[n]) for n, data in parts.items()]
    assert not listed["IsTruncated"]
    pages, marker = [], 0
    while True:
        page = s3.list_parts(Bucket=bucket, Key="m/blob", UploadId=upload, MaxParts=3, PartNumberMarker=marker)
        pages.append([p["PartNumber"] for p in page["Parts"]])
        if not page["IsTruncated"]:
            break
        marker = page["NextPartNumberMarker"]
    assert pages == [[1, 2, 3], [4]]
    assert s3.list_objects_v2(Bucket=bucket).get("Contents") is None  # an upload is no object yet
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix="m/")["Uploads"]] == [upload]

    done = _complete(s3, bucket, "m/blob", upload, sorted(etags.items()))
    whole = b"".join(parts.values())
    md5s = b"".join(bytes.fromhex(etags[n].strip('"')) for n in sorted(parts))
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-4"'
    assert s3.get_object(Bucket=bucket, Key="m/blob")["Body"].read() == whole

    ranged = s3.get_object(Bucket=bucket, Key="m/blob", Range=f"bytes={PART - 10}-{2 * PART + 9}")
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert ranged["ContentRange"] == f"bytes {PART - 10}-{2 * PART + 9}/{len(whole)}"
    assert ranged["Body"].read() == whole[PART - 10:2 * PART + 10]
    assert s3.get_object(Bucket=bucket, Key="m/blob", Range="bytes=-5")["Body"].read() == whole[-5:]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="m/blob", Range=f"bytes={len(whole)}-")
    assert _error(e) == ("InvalidRange", 416)
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix="m/").get("Uploads") is None
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="m/blob", UploadId=upload)
    assert _error(e) == ("NoSuchUpload", 404)


def test_unlike_s3_a_part_uploaded_again_is_listed_twice_and_completion_takes_the_etag_named(s3, bucket):
    """Amazon S3 keeps only the last upload of a part number. SeaweedFS keeps each one: ListParts
    lists them all (in no reliable order) and CompleteMultipartUpload takes the one whose ETag it
    is given, so "replaced" holds only for a completer that names the last ETag it was answered."""
    for key, named in (("newest", "second"), ("older", "first")):
        upload, first = _upload(s3, bucket, key, {1: b"first"})
        second = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"second")["ETag"]
        listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload)["Parts"]
        assert sorted((p["PartNumber"], p["ETag"]) for p in listed) == sorted([(1, first[1]), (1, second)])
        _complete(s3, bucket, key, upload, [(1, second if named == "second" else first[1])])
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == named.encode()


def test_completion_takes_any_ascending_subset_of_the_uploaded_parts(s3, bucket):
    parts = {1: os.urandom(PART), 2: b"left out", 3: b"last"}
    upload, etags = _upload(s3, bucket, "subset", parts)
    _complete(s3, bucket, "subset", upload, [(1, etags[1]), (3, etags[3])])
    assert s3.get_object(Bucket=bucket, Key="subset")["Body"].read() == parts[1] + parts[3]


def test_completion_refuses_small_inner_parts_unknown_parts_and_disorder_and_leaves_the_upload(s3, bucket):
    upload, etags = _upload(s3, bucket, "small", {1: b"a" * 1024, 2: b"b" * 1024})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        _complete(s3, bucket, "small", upload, sorted(etags.items()))
    assert _error(e) == ("EntityTooSmall", 400)

    upload, etags = _upload(s3, bucket, "refused", {1: os.urandom(PART), 2: b"end"})
    for wrong, code in (([(2, etags[2]), (1, etags[1])], "InvalidPartOrder"),
                        ([(1, etags[1]), (7, etags[2])], "InvalidPart"),
                        ([(1, _etag(b"other")), (2, etags[2])], "InvalidPart")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            _complete(s3, bucket, "refused", upload, wrong)
        assert _error(e) == (code, 400)
    _complete(s3, bucket, "refused", upload, sorted(etags.items()))
    assert s3.head_object(Bucket=bucket, Key="refused")["ContentLength"] == PART + 3


def test_a_multipart_object_was_last_modified_when_it_was_completed(s3, bucket):
    upload, etags = _upload(s3, bucket, "late", {1: b"x"})
    initiated = s3.list_multipart_uploads(Bucket=bucket, Prefix="late")["Uploads"][0]["Initiated"]
    time.sleep(2.1)
    _complete(s3, bucket, "late", upload, sorted(etags.items()))
    modified = s3.head_object(Bucket=bucket, Key="late")["LastModified"]
    assert modified - initiated >= datetime.timedelta(seconds=2)
    assert s3.list_objects_v2(Bucket=bucket, Prefix="late")["Contents"][0]["LastModified"] == modified


def test_an_aborted_upload_is_gone_and_unlike_s3_aborting_it_again_succeeds(s3, bucket):
    upload, _ = _upload(s3, bucket, "gone/blob", {1: b"x"})
    kept, _ = _upload(s3, bucket, "kept/blob", {1: b"y"})
    s3.abort_multipart_upload(Bucket=bucket, Key="gone/blob", UploadId=upload)
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix="gone/").get("Uploads") is None
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix="kept/")["Uploads"]] == [kept]
    for call in (lambda: s3.list_parts(Bucket=bucket, Key="gone/blob", UploadId=upload),
                 lambda: s3.upload_part(Bucket=bucket, Key="gone/blob", UploadId=upload, PartNumber=2, Body=b"z")):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert _error(e) == ("NoSuchUpload", 404)
    s3.abort_multipart_upload(Bucket=bucket, Key="gone/blob", UploadId=upload)  # S3: NoSuchUpload


def test_list_objects_v2_by_prefix_in_pages(s3, bucket):
    keys = [f"p/{i}" for i in range(5)]
    for key in keys + ["q/0", "pp"]:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    seen, token = [], None
    while True:
        page = s3.list_objects_v2(Bucket=bucket, Prefix="p/", MaxKeys=2,
                                  **({"ContinuationToken": token} if token else {}))
        assert page["KeyCount"] == len(page["Contents"]) <= 2
        seen += [(o["Key"], o["Size"]) for o in page["Contents"]]
        assert all(isinstance(o["LastModified"], datetime.datetime) for o in page["Contents"])
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == [(key, len(key)) for key in keys]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="p/", StartAfter="p/2")["Contents"]] == \
           ["p/3", "p/4"]


def test_deleted_and_missing_keys(s3, bucket):
    for key in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.delete_object(Bucket=bucket, Key="a")
    s3.delete_object(Bucket=bucket, Key="never")  # S3 answers 204 for a missing key too
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b"}, {"Key": "never"}]})
    assert sorted(d["Key"] for d in answer["Deleted"]) == ["b", "never"] and not answer.get("Errors")
    for key in ("a", "b", "never"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.head_object(Bucket=bucket, Key=key)
        assert _error(e) == ("404", 404)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bucket, Key="a")
    assert _error(e) == ("NoSuchKey", 404)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["c"]


def test_if_none_match_star_refuses_to_replace_an_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert _error(e) == ("PreconditionFailed", 412)
    upload, etags = _upload(s3, bucket, "once", {1: b"third"})
    with pytest.raises(botocore.exceptions.ClientError) as e:
        _complete(s3, bucket, "once", upload, sorted(etags.items()), IfNoneMatch="*")
    assert _error(e) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def test_a_presigned_get_serves_the_object_until_it_expires(s3, bucket):
    s3.put_object(Bucket=bucket, Key="shared", Body=b"presigned bytes")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=60)
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"presigned bytes"
    at = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    tampered = url[:at] + ("1" if url[at] == "0" else "0") + url[at + 1:]
    short = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=1)
    time.sleep(2.1)
    for refused, code in ((short, b"<Code>AccessDenied</Code>"), (tampered, b"<Code>SignatureDoesNotMatch</Code>")):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(refused, timeout=10)
        assert e.value.code == 403
        assert code in e.value.read()


def test_requests_need_the_identity_s_signature(seaweed, bucket):
    wrong = botocore.session.get_session().create_client(
        "s3", endpoint_url=seaweed.endpoint, region_name=seaweed.region, aws_access_key_id=seaweed.access_key,
        aws_secret_access_key="not-the-secret", config=botocore.config.Config(s3={"addressing_style": "path"}))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        wrong.list_objects_v2(Bucket=bucket)
    assert _error(e) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(f"{seaweed.endpoint}/{bucket}", timeout=10)
    assert unsigned.value.code == 403


def test_the_server_listens_on_its_address_only(seaweed):
    assert _listening_addresses(seaweed.process.pid) == {"127.0.0.1"}


def test_env_points_a_child_process_at_the_server(seaweed):
    child = subprocess.run([sys.executable, "-c", LIST_BUCKETS], env={**os.environ, **seaweed.env()},
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split()[0] == seaweed.endpoint


def test_a_server_on_a_private_link_answers_signed_requests_inside_a_namespace():
    reason = netns.unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces are unavailable: {reason}")
    with netns.private_link(1) as link:
        server = start(ip=link.host_ip)
        try:
            server.new_bucket()
            (ns, _), = link.nodes
            child = subprocess.run([*link.exec_prefix(ns), sys.executable, "-c", LIST_BUCKETS],
                                   env={**os.environ, **server.env()}, capture_output=True, text=True, timeout=60)
            assert child.returncode == 0, child.stderr
            assert child.stdout.split() == [server.endpoint, "1"]
            assert _listening_addresses(server.process.pid) == {link.host_ip, "127.0.0.1"}
        finally:
            server.stop()
