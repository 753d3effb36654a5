"""boto3 against a real server: repositories, the layer upload flow and its errors."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError
from server_fixtures import (
    KEY_A,
    digest_of,
    push_layer,
    repo_name,
    start_server,
    unique_bytes,
)


@pytest.fixture(scope="module")
def ecr_server(ecr_server_per_backend):
    """This module runs on both backend pairs."""
    return ecr_server_per_backend


pytestmark = pytest.mark.timeout(120)


def error_of(excinfo) -> tuple[str, dict]:
    response = excinfo.value.response
    return response["Error"]["Code"], response


@pytest.fixture
def ecr(ecr_server):
    return ecr_server.client()


@pytest.fixture
def repo(ecr):
    name = repo_name()
    ecr.create_repository(repositoryName=name)
    yield name
    try:
        ecr.delete_repository(repositoryName=name, force=True)
    except ClientError:
        pass


# --- repositories -----------------------------------------------------------------------------


def test_create_describe_delete_repository(ecr, ecr_server):
    name = repo_name("team/app")
    created = ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE",
                                    tags=[{"Key": "team", "Value": "storage"}])["repository"]
    assert created["repositoryName"] == name
    assert created["registryId"] == KEY_A[2]
    assert created["repositoryArn"].endswith(f":{KEY_A[2]}:repository/{name}")
    assert created["repositoryUri"] == f"127.0.0.1:{ecr_server.port}/{name}"  # the address docker pushes to
    assert created["imageTagMutability"] == "IMMUTABLE"
    assert created["encryptionConfiguration"]["encryptionType"] == "AES256"
    # botocore parsed createdAt from epoch seconds into a datetime
    assert created["createdAt"].year >= 2024

    described = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    assert [r["repositoryName"] for r in described] == [name]
    assert described[0]["createdAt"] == created["createdAt"]

    with pytest.raises(ClientError) as e:
        ecr.create_repository(repositoryName=name)
    code, response = error_of(e)
    assert code == "RepositoryAlreadyExistsException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert f"'{name}' already exists" in response["Error"]["Message"]

    deleted = ecr.delete_repository(repositoryName=name)["repository"]
    assert deleted["repositoryName"] == name
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=[name])
    assert error_of(e)[0] == "RepositoryNotFoundException"


def test_describe_pages_with_max_results(ecr):
    names = {repo_name("page") for _ in range(5)}
    for name in names:
        ecr.create_repository(repositoryName=name)
    seen = []
    for page in ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 2}):
        assert len(page["repositories"]) <= 2
        seen += [r["repositoryName"] for r in page["repositories"]]
    assert names <= set(seen)
    assert len(seen) == len(set(seen))
    for name in names:
        ecr.delete_repository(repositoryName=name)


@pytest.mark.parametrize("kwargs, member", [
    ({"repositoryName": "UpperCase"}, "repositoryName"),
    ({"repositoryName": "x" * 257}, "repositoryName"),
    ({"repositoryName": "ok-name", "imageTagMutability": "SOMETIMES"}, "imageTagMutability"),
])
def test_invalid_parameters_are_refused_by_the_server(ecr, kwargs, member):
    with pytest.raises(ClientError) as e:
        ecr.create_repository(**kwargs)
    code, response = error_of(e)
    assert code == "InvalidParameterException"
    assert response["Error"]["Message"].startswith(f"Invalid parameter at '{member}' failed to satisfy constraint: '")


def test_request_id_header_on_success_and_error(ecr):
    ok = ecr.describe_repositories()
    assert uuid.UUID(ok["ResponseMetadata"]["RequestId"]).version == 4
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=[repo_name("missing")])
    assert uuid.UUID(e.value.response["ResponseMetadata"]["RequestId"]).version == 4


# --- the layer flow ---------------------------------------------------------------------------


def test_whole_layer_flow(ecr, repo):
    data = unique_bytes(5000)
    digest = digest_of(data)
    upload = ecr.initiate_layer_upload(repositoryName=repo)
    assert upload["partSize"] == 1024
    upload_id = upload["uploadId"]
    assert uuid.UUID(upload_id)

    missing = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest])
    assert missing["layers"] == []
    assert missing["failures"][0]["failureCode"] == "MissingLayerDigest"

    for offset in range(0, len(data), 1024):
        chunk = data[offset:offset + 1024]
        result = ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=offset,
                                       partLastByte=offset + len(chunk) - 1, layerPartBlob=chunk)
        assert result["lastByteReceived"] == offset + len(chunk) - 1
        assert result["uploadId"] == upload_id and result["repositoryName"] == repo
        assert result["registryId"] == KEY_A[2]

    # hex digits compare case-insensitively; the answer is lower case
    done = ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id,
                                     layerDigests=["sha256:" + digest[7:].upper()])
    assert done["layerDigest"] == digest
    assert done["uploadId"] == upload_id

    available = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest, "not-a-digest"])
    assert available["layers"] == [{"layerDigest": digest, "layerAvailability": "AVAILABLE", "layerSize": 5000}]
    assert [f["failureCode"] for f in available["failures"]] == ["InvalidLayerDigest"]


def test_same_layer_in_two_repositories(ecr, repo):
    other = repo_name()
    ecr.create_repository(repositoryName=other)
    data = unique_bytes(3000)
    assert push_layer(ecr, repo, data) == push_layer(ecr, other, data) == digest_of(data)
    check = ecr.batch_check_layer_availability(repositoryName=other, layerDigests=[digest_of(data)])
    assert check["layers"][0]["layerAvailability"] == "AVAILABLE"
    ecr.delete_repository(repositoryName=other, force=True)


def test_large_part_round_trips(ecr, repo):
    # A few MiB in one part: the base64 body is well above the buffer sizes of the HTTP stack.
    data = unique_bytes(3 * 2**20 + 7)
    assert push_layer(ecr, repo, data, part=len(data)) == digest_of(data)


def test_blob_over_20_mib_is_invalid_parameter(ecr, repo):
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    blob = b"\0" * (20 * 2**20 + 1)
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=0,
                              partLastByte=len(blob) - 1, layerPartBlob=blob)
    code, response = error_of(e)
    assert code == "InvalidParameterException"
    assert "'layerPartBlob'" in response["Error"]["Message"]


# --- CompleteLayerUpload errors, in the spec's check order -------------------------------------


def _upload(ecr, repo, parts: list[bytes]) -> str:
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    offset = 0
    for chunk in parts:
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=offset,
                              partLastByte=offset + len(chunk) - 1, layerPartBlob=chunk)
        offset += len(chunk)
    return upload_id


def _complete_error(ecr, repo, upload_id, digests) -> tuple[str, dict]:
    with pytest.raises(ClientError) as e:
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=digests)
    return error_of(e)


def test_complete_repository_not_found(ecr):
    code, _ = _complete_error(ecr, repo_name("absent"), str(uuid.uuid4()), [digest_of(b"x")])
    assert code == "RepositoryNotFoundException"


def test_complete_upload_not_found(ecr, repo):
    code, _ = _complete_error(ecr, repo, str(uuid.uuid4()), [digest_of(b"x")])
    assert code == "UploadNotFoundException"


def test_complete_upload_of_another_repository(ecr, repo):
    other = repo_name()
    ecr.create_repository(repositoryName=other)
    upload_id = _upload(ecr, other, [unique_bytes(100)])
    code, _ = _complete_error(ecr, repo, upload_id, [digest_of(b"x")])
    assert code == "UploadNotFoundException"
    ecr.delete_repository(repositoryName=other, force=True)


def test_complete_empty_upload(ecr, repo):
    upload_id = _upload(ecr, repo, [])
    code, response = _complete_error(ecr, repo, upload_id, [digest_of(b"")])
    assert code == "EmptyUploadException"
    assert "cannot be completed because it does not have any parts" in response["Error"]["Message"]


def test_complete_layer_part_too_small(ecr, repo):
    parts = [unique_bytes(100), unique_bytes(100)]
    upload_id = _upload(ecr, repo, parts)
    code, response = _complete_error(ecr, repo, upload_id, [digest_of(b"".join(parts))])
    assert code == "LayerPartTooSmallException"


def test_complete_invalid_layer(ecr, repo):
    data = unique_bytes(2000)
    upload_id = _upload(ecr, repo, [data[:1024], data[1024:]])
    code, response = _complete_error(ecr, repo, upload_id, [digest_of(b"something else")])
    assert code == "InvalidLayerException"
    assert response["Error"]["Message"] == "None of the provided layer digests match the calculated layer digest"
    # The upload survives a validation error: completing with the right digest works.
    assert ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id,
                                     layerDigests=[digest_of(b"x"), digest_of(data)])["layerDigest"] == digest_of(data)


def test_complete_layer_already_exists(ecr, repo):
    data = unique_bytes(1500)
    push_layer(ecr, repo, data)
    upload_id = _upload(ecr, repo, [data[:1024], data[1024:]])
    code, _ = _complete_error(ecr, repo, upload_id, [digest_of(data)])
    assert code == "LayerAlreadyExistsException"


@pytest.mark.parametrize("upload_id, digests, member", [
    ("not-an-upload-id", ["sha256:" + "0" * 64], "uploadId"),
    (None, ["sha256:not-hex"], "layerDigests"),
    (None, ["sha256:" + "0" * 64] * 101, "layerDigests"),
])
def test_complete_invalid_parameter(ecr, repo, upload_id, digests, member):
    code, response = _complete_error(ecr, repo, upload_id or str(uuid.uuid4()), digests)
    assert code == "InvalidParameterException"
    assert f"'{member}'" in response["Error"]["Message"]


# --- byte-range mistakes -----------------------------------------------------------------------


def _part_error(ecr, repo, upload_id, first, last, blob) -> tuple[str, dict]:
    with pytest.raises(ClientError) as e:
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=first,
                              partLastByte=last, layerPartBlob=blob)
    return error_of(e)


def test_first_part_must_start_at_zero(ecr, repo):
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    code, response = _part_error(ecr, repo, upload_id, 10, 19, b"x" * 10)
    assert code == "InvalidLayerPartException"
    assert "lastValidByteReceived" not in response  # nothing received yet
    assert response["uploadId"] == upload_id and response["repositoryName"] == repo
    assert response["registryId"] == KEY_A[2]


@pytest.mark.parametrize("first, last, size", [
    (2048, 3071, 1024),   # a gap
    (512, 1535, 1024),    # an overlap that is not an exact re-send
    (1024, 2047, 1000),   # blob length differs from the range
    (1500, 1400, 1),      # last before first
])
def test_range_mistakes_report_last_valid_byte(ecr, repo, first, last, size):
    upload_id = _upload(ecr, repo, [unique_bytes(1024)])
    code, response = _part_error(ecr, repo, upload_id, first, last, b"y" * size)
    assert code == "InvalidLayerPartException"
    assert response["lastValidByteReceived"] == 1023
    # the upload is intact: the right next part is still accepted
    ok = ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=1024,
                               partLastByte=2047, layerPartBlob=b"z" * 1024)
    assert ok["lastByteReceived"] == 2047


def test_empty_part_is_invalid(ecr, repo):
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    code, _ = _part_error(ecr, repo, upload_id, 0, 0, b"")
    assert code == "InvalidLayerPartException"


def test_exact_resend_of_last_part_is_idempotent(ecr, repo):
    data = unique_bytes(2048)
    upload_id = _upload(ecr, repo, [data[:1024], data[1024:]])
    again = ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=1024,
                                  partLastByte=2047, layerPartBlob=data[1024:])
    assert again["lastByteReceived"] == 2047
    code, response = _part_error(ecr, repo, upload_id, 1024, 2047, unique_bytes(1024))  # same range, other bytes
    assert code == "InvalidLayerPartException" and response["lastValidByteReceived"] == 2047
    done = ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[digest_of(data)])
    assert done["layerDigest"] == digest_of(data)


def test_upload_part_to_unknown_upload(ecr, repo):
    code, _ = _part_error(ecr, repo, str(uuid.uuid4()), 0, 0, b"x")
    assert code == "UploadNotFoundException"


# --- a part retried after a 5xx -----------------------------------------------------------------


@pytest.fixture(scope="module")
def flaky_server(tmp_path_factory):
    """A server whose first two UploadLayerPart calls are stored but answered with a 500."""
    server = start_server(tmp_path_factory.mktemp("flaky"), keys=[KEY_A], extra=["--fail-next-upload-parts", "2"])
    yield server
    server.stop()


def test_part_retried_after_server_error_is_applied_once(flaky_server):
    ecr = flaky_server.client(retries=5)
    repo = repo_name()
    ecr.create_repository(repositoryName=repo)
    data = unique_bytes(3000)
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    attempts = []
    for offset in range(0, len(data), 1024):
        chunk = data[offset:offset + 1024]
        result = ecr.upload_layer_part(repositoryName=repo, uploadId=upload_id, partFirstByte=offset,
                                       partLastByte=offset + len(chunk) - 1, layerPartBlob=chunk)
        assert result["lastByteReceived"] == offset + len(chunk) - 1
        attempts.append(result["ResponseMetadata"]["RetryAttempts"])
    assert attempts == [2, 0, 0]  # the first part was answered 500 twice, then re-sent and accepted
    done = ecr.complete_layer_upload(repositoryName=repo, uploadId=upload_id, layerDigests=[digest_of(data)])
    assert done["layerDigest"] == digest_of(data)
    layers = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[digest_of(data)])["layers"]
    assert layers[0]["layerSize"] == 3000
    assert "ServerException" in flaky_server.log()
