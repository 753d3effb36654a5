"""Public results: frozen dataclasses whose snake_case fields are named after ECR's members.

:func:`to_wire` turns any of them into ECR's JSON shape (camelCase members, ``None`` left out),
so a front end never spells a field twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EncryptionConfiguration",
    "ImageScanningConfiguration",
    "Tag",
    "Repository",
    "DescribeRepositoriesResult",
    "InitiateLayerUploadResult",
    "UploadLayerPartResult",
    "CompleteLayerUploadResult",
    "Layer",
    "LayerFailure",
    "BatchCheckLayerAvailabilityResult",
    "ImageIdentifier",
    "Image",
    "PutImageResult",
    "ImageFailure",
    "BatchGetImageResult",
    "BatchDeleteImageResult",
    "ListImagesResult",
    "ImageDetail",
    "DescribeImagesResult",
    "GetDownloadUrlForLayerResult",
    "to_wire",
]


@dataclass(frozen=True, slots=True)
class EncryptionConfiguration:
    encryption_type: str = "AES256"
    kms_key: str | None = None


@dataclass(frozen=True, slots=True)
class ImageScanningConfiguration:
    scan_on_push: bool = False


@dataclass(frozen=True, slots=True)
class Tag:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Repository:
    repository_arn: str
    registry_id: str
    repository_name: str
    repository_uri: str
    created_at: float
    image_tag_mutability: str
    image_scanning_configuration: ImageScanningConfiguration
    encryption_configuration: EncryptionConfiguration


@dataclass(frozen=True, slots=True)
class DescribeRepositoriesResult:
    repositories: tuple[Repository, ...]
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class InitiateLayerUploadResult:
    upload_id: str
    part_size: int


@dataclass(frozen=True, slots=True)
class UploadLayerPartResult:
    registry_id: str
    repository_name: str
    upload_id: str
    last_byte_received: int


@dataclass(frozen=True, slots=True)
class CompleteLayerUploadResult:
    registry_id: str
    repository_name: str
    upload_id: str
    layer_digest: str


@dataclass(frozen=True, slots=True)
class Layer:
    layer_digest: str
    layer_availability: str
    layer_size: int | None = None
    media_type: str | None = None


@dataclass(frozen=True, slots=True)
class LayerFailure:
    layer_digest: str | None
    failure_code: str
    failure_reason: str


@dataclass(frozen=True, slots=True)
class BatchCheckLayerAvailabilityResult:
    layers: tuple[Layer, ...]
    failures: tuple[LayerFailure, ...]


@dataclass(frozen=True, slots=True)
class ImageIdentifier:
    image_digest: str | None = None
    image_tag: str | None = None


@dataclass(frozen=True, slots=True)
class Image:
    registry_id: str
    repository_name: str
    image_id: ImageIdentifier
    image_manifest: str
    image_manifest_media_type: str


@dataclass(frozen=True, slots=True)
class PutImageResult:
    image: Image


@dataclass(frozen=True, slots=True)
class ImageFailure:
    image_id: ImageIdentifier
    failure_code: str
    failure_reason: str


@dataclass(frozen=True, slots=True)
class BatchGetImageResult:
    images: tuple[Image, ...]
    failures: tuple[ImageFailure, ...]


@dataclass(frozen=True, slots=True)
class BatchDeleteImageResult:
    image_ids: tuple[ImageIdentifier, ...]
    failures: tuple[ImageFailure, ...]


@dataclass(frozen=True, slots=True)
class ListImagesResult:
    image_ids: tuple[ImageIdentifier, ...]
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class ImageDetail:
    registry_id: str
    repository_name: str
    image_digest: str
    image_tags: tuple[str, ...] | None
    image_size_in_bytes: int
    image_pushed_at: float
    image_manifest_media_type: str
    artifact_media_type: str | None = None
    image_status: str = "ACTIVE"


@dataclass(frozen=True, slots=True)
class DescribeImagesResult:
    image_details: tuple[ImageDetail, ...]
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class GetDownloadUrlForLayerResult:
    download_url: str
    layer_digest: str


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_CAMEL: dict[str, str] = {}


def to_wire(value: Any) -> Any:
    """ECR's JSON shape of a result: camelCase members, ``None`` members omitted."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is not None:
                key = _CAMEL.get(f.name) or _CAMEL.setdefault(f.name, _camel(f.name))
                out[key] = to_wire(v)
        return out
    if isinstance(value, (tuple, list)):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value
