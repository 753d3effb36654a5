"""The operation table: member types, required members, blobs, kwargs mapping (no store)."""

from __future__ import annotations

import base64

import pytest

from ecrstore import models
from ecrstore.errors import InvalidParameterException, SerializationException
from ecrstore.server.awsjson.operations import MAX_LAYER_PART_BYTES, OPERATIONS, TARGET_PREFIX, Blob, lookup

UPLOAD_ID = "0b5e7a62-1a2b-4c3d-8e9f-0123456789ab"


def part(**over):
    body = {"repositoryName": "team/app", "uploadId": UPLOAD_ID, "partFirstByte": 0, "partLastByte": 2,
            "layerPartBlob": base64.b64encode(b"abc").decode()}
    body.update(over)
    return {k: v for k, v in body.items() if v is not ...}


def test_every_engine_operation_is_in_the_table():
    assert set(OPERATIONS) >= {
        "CreateRepository", "DescribeRepositories", "DeleteRepository", "InitiateLayerUpload",
        "UploadLayerPart", "CompleteLayerUpload", "BatchCheckLayerAvailability", "GetDownloadUrlForLayer",
        "PutImage", "BatchGetImage", "BatchDeleteImage", "ListImages", "DescribeImages",
    }


def test_every_operation_names_a_method_of_its_target(tmp_path):
    from ecrstore import Store
    from ecrstore.server.awsjson.login import Logins

    with Store(tmp_path / "store") as store:  # the store's areas are attributes of an instance
        for op in OPERATIONS.values():
            target = {"store": store, "server": Logins}.get(op.target) or getattr(store, op.target)
            assert callable(getattr(target, op.method)), op.name


def test_lookup_needs_the_service_prefix():
    assert lookup(TARGET_PREFIX + "InitiateLayerUpload").name == "InitiateLayerUpload"
    assert lookup("InitiateLayerUpload") is None
    assert lookup(TARGET_PREFIX + "NoSuchOperation") is None
    assert lookup(None) is None


def test_members_map_to_snake_case_kwargs():
    kwargs = OPERATIONS["UploadLayerPart"].bind(part(registryId="123456789012"))
    assert kwargs == {"registry_id": "123456789012", "repository_name": "team/app", "upload_id": UPLOAD_ID,
                      "part_first_byte": 0, "part_last_byte": 2, "layer_part_blob": b"abc"}


def test_nested_members_become_engine_types():
    kwargs = OPERATIONS["CreateRepository"].bind({
        "repositoryName": "r1", "tags": [{"Key": "team", "Value": "x"}],
        "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": "arn:k"},
        "imageScanningConfiguration": {"scanOnPush": True}, "unknownMember": 1,
    })
    assert kwargs == {"repository_name": "r1", "tags": [models.Tag("team", "x")],
                      "encryption_configuration": models.EncryptionConfiguration("KMS", "arn:k"),
                      "image_scanning_configuration": models.ImageScanningConfiguration(True)}


def test_null_members_count_as_absent():
    assert OPERATIONS["DescribeRepositories"].bind({"maxResults": None, "nextToken": None}) == {}


@pytest.mark.parametrize("body, member, reason", [
    (part(repositoryName=...), "repositoryName", "Member must not be null"),
    (part(layerPartBlob=...), "layerPartBlob", "Member must not be null"),
    (part(partFirstByte="0"), "partFirstByte", "Member must be an integer"),
    (part(partLastByte=True), "partLastByte", "Member must be an integer"),
    (part(partLastByte=1.5), "partLastByte", "Member must be an integer"),
    (part(uploadId=5), "uploadId", "Member must be a string"),
    (part(layerPartBlob=123), "layerPartBlob", "Member must be a base64-encoded string"),
])
def test_type_errors_are_invalid_parameter(body, member, reason):
    with pytest.raises(InvalidParameterException) as e:
        OPERATIONS["UploadLayerPart"].bind(body)
    assert e.value.message == f"Invalid parameter at '{member}' failed to satisfy constraint: '{reason}'"


def test_nested_type_errors_name_the_path():
    with pytest.raises(InvalidParameterException, match=r"'tags.Value'.*must not be null"):
        OPERATIONS["CreateRepository"].bind({"repositoryName": "r", "tags": [{"Key": "k"}]})
    with pytest.raises(InvalidParameterException, match=r"'layerDigests'.*must be a list"):
        OPERATIONS["CompleteLayerUpload"].bind({"repositoryName": "r", "uploadId": UPLOAD_ID,
                                                "layerDigests": "sha256:00"})
    with pytest.raises(InvalidParameterException, match=r"'force'.*must be a boolean"):
        OPERATIONS["DeleteRepository"].bind({"repositoryName": "r", "force": "yes"})


@pytest.mark.parametrize("text", ["QQ", "QQ=A", "Q Q=", "QUJD\n", "****", "QQ==QQ==", "QUJ\u00e9"])
def test_invalid_base64_is_a_serialization_error(text):
    with pytest.raises(SerializationException, match="layerPartBlob"):
        OPERATIONS["UploadLayerPart"].bind(part(layerPartBlob=text))


def test_blob_size_limit_is_checked_on_decoded_bytes():
    blob = Blob(MAX_LAYER_PART_BYTES)
    exact = base64.b64encode(b"\0" * MAX_LAYER_PART_BYTES).decode()
    assert len(blob.decode(exact, "layerPartBlob")) == MAX_LAYER_PART_BYTES
    over = base64.b64encode(b"\0" * (MAX_LAYER_PART_BYTES + 1)).decode()
    with pytest.raises(InvalidParameterException) as e:
        blob.decode(over, "layerPartBlob")
    assert e.value.message == ("Invalid parameter at 'layerPartBlob' failed to satisfy constraint: "
                               f"'Member must have length less than or equal to {MAX_LAYER_PART_BYTES}'")
    small = Blob(4)
    assert small.decode("QUJDRA==", "b") == b"ABCD"
    with pytest.raises(InvalidParameterException):
        small.decode("QUJDREU=", "b")


def test_empty_blob_decodes_to_empty_bytes():
    assert OPERATIONS["UploadLayerPart"].bind(part(layerPartBlob=""))["layer_part_blob"] == b""


def test_results_are_encoded_with_to_wire():
    repo = models.Repository(
        repository_arn="arn:aws:ecr:us-east-1:000000000000:repository/r", registry_id="000000000000",
        repository_name="r", repository_uri="000000000000.dkr.ecr.us-east-1.amazonaws.com/r",
        created_at=1700000000.5, image_tag_mutability="MUTABLE",
        image_scanning_configuration=models.ImageScanningConfiguration(),
        encryption_configuration=models.EncryptionConfiguration(),
    )
    wire = OPERATIONS["CreateRepository"].encode(repo)
    assert wire["repository"]["createdAt"] == 1700000000.5
    assert wire["repository"]["encryptionConfiguration"] == {"encryptionType": "AES256"}
    result = models.UploadLayerPartResult("000000000000", "r", UPLOAD_ID, 1023)
    assert OPERATIONS["UploadLayerPart"].encode(result) == {
        "registryId": "000000000000", "repositoryName": "r", "uploadId": UPLOAD_ID, "lastByteReceived": 1023}
