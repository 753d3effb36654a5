"""The engine's values: typed inputs and results, frozen dataclasses whose snake_case fields
are named after ECR's members.

Inputs (:class:`Tag`, :class:`ExclusionFilter`, :class:`EncryptionConfiguration`,
:class:`ImageScanningConfiguration`, :class:`ImageIdentifier`, :class:`ListImagesFilter`,
:class:`DescribeImagesFilter`) are what :class:`ecrstore.Store` takes; results are what it
answers. Nothing here knows a wire format: the JSON front end maps these to ECR's camelCase
shapes (``ecrstore.server.awsjson.codec``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AuthorizationData",
    "GetAuthorizationTokenResult",
    "Referrer",
    "StoredManifest",
    "TagPage",
    "EncryptionConfiguration",
    "ImageScanningConfiguration",
    "Tag",
    "ExclusionFilter",
    "ListImagesFilter",
    "DescribeImagesFilter",
    "UploadInfo",
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
    "PullThroughCacheRule",
    "DescribePullThroughCacheRulesResult",
    "UpdatePullThroughCacheRuleResult",
    "ValidatePullThroughCacheRuleResult",
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
    """A repository's resource tag (ECR's ``{Key, Value}``)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class ExclusionFilter:
    """A tag pattern excepted from the repository's tag mutability (``*`` wildcards)."""

    filter: str
    filter_type: str = "WILDCARD"


@dataclass(frozen=True, slots=True)
class ListImagesFilter:
    """ListImages' filter: ``TAGGED``, ``UNTAGGED`` or ``ANY``."""

    tag_status: str = "ANY"


@dataclass(frozen=True, slots=True)
class DescribeImagesFilter:
    """DescribeImages' filter: a tag status and an image status (``ACTIVE`` … ``ANY``)."""

    tag_status: str = "ANY"
    image_status: str = "ANY"


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


@dataclass(frozen=True, slots=True)
class UploadInfo:
    """An upload in progress (``Store.list_uploads``): bytes acknowledged so far, parts, and
    when it was started and last written (epoch seconds)."""

    upload_id: str
    registry_id: str
    repository_name: str
    received: int
    parts: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """A manifest as stored (``Store.get_manifest``): its exact bytes, digest and media type."""

    digest: str
    media_type: str
    manifest: bytes


@dataclass(frozen=True, slots=True)
class Referrer:
    """A manifest whose ``subject`` is another (``Store.list_referrers``), as an OCI descriptor."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class TagPage:
    """A page of a repository's tags in order (``Store.list_tags``); ``more`` when tags follow."""

    tags: tuple[str, ...]
    more: bool = False


@dataclass(frozen=True, slots=True)
class AuthorizationData:
    """One registry's docker login: base64 of ``AWS:<password>``, when it expires (epoch
    seconds) and the registry's URL."""

    authorization_token: str = field(repr=False)
    expires_at: float
    proxy_endpoint: str


@dataclass(frozen=True, slots=True)
class GetAuthorizationTokenResult:
    authorization_data: tuple[AuthorizationData, ...]


@dataclass(frozen=True, slots=True)
class PullThroughCacheRule:
    """A pull-through cache rule (times in epoch seconds); Create and Delete answer it
    without ``updated_at``, as ECR's responses have no such member."""

    ecr_repository_prefix: str
    upstream_registry_url: str
    created_at: float
    registry_id: str
    credential_arn: str | None = None
    custom_role_arn: str | None = None
    upstream_repository_prefix: str | None = None
    upstream_registry: str | None = None
    updated_at: float | None = None


@dataclass(frozen=True, slots=True)
class DescribePullThroughCacheRulesResult:
    pull_through_cache_rules: tuple[PullThroughCacheRule, ...]
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class UpdatePullThroughCacheRuleResult:
    ecr_repository_prefix: str
    registry_id: str
    updated_at: float
    credential_arn: str | None = None
    custom_role_arn: str | None = None
    upstream_repository_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class ValidatePullThroughCacheRuleResult:
    ecr_repository_prefix: str
    registry_id: str
    upstream_registry_url: str
    is_valid: bool
    credential_arn: str | None = None
    custom_role_arn: str | None = None
    upstream_repository_prefix: str | None = None
    failure: str | None = None
