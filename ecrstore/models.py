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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scan_models import ImageScanFindingsSummary, ImageScanStatus

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
    "TagResourceResult",
    "UntagResourceResult",
    "ListTagsForResourceResult",
    "PutImageTagMutabilityResult",
    "PutImageScanningConfigurationResult",
    "SubjectIdentifier",
    "ListImageReferrersFilter",
    "ImageReferrer",
    "ListImageReferrersResult",
    "RegistryPolicy",
    "RepositoryPolicy",
    "LifecyclePolicy",
    "LifecyclePolicyPreviewFilter",
    "LifecyclePolicyRuleAction",
    "LifecyclePolicyPreviewResult",
    "LifecyclePolicyPreviewSummary",
    "StartLifecyclePolicyPreviewResult",
    "GetLifecyclePolicyPreviewResult",
    "LifecycleRepositoryRun",
    "LifecycleRunReport",
    "ReplicationDestination",
    "RepositoryFilter",
    "DeleteReplication",
    "ReplicationRule",
    "ReplicationConfiguration",
    "PutReplicationConfigurationResult",
    "DescribeRegistryResult",
    "ImageReplicationStatus",
    "DescribeImageReplicationStatusResult",
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
    """A repository's resource tag (ECR's ``{Key, Value}``: ``wire`` names the members the
    JSON codec answers, capitalised as ECR spells them)."""

    key: str = field(metadata={"wire": "Key"})
    value: str = field(metadata={"wire": "Value"})


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
    #: The tag patterns excepted from ``image_tag_mutability`` (None when there are none).
    image_tag_mutability_exclusion_filters: tuple[ExclusionFilter, ...] | None = None


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
    image_scan_status: ImageScanStatus | None = None
    image_scan_findings_summary: ImageScanFindingsSummary | None = None


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


# --- resource tags, repository settings, image referrers ---------------------------------


@dataclass(frozen=True, slots=True)
class TagResourceResult:
    """TagResource answers an empty object."""


@dataclass(frozen=True, slots=True)
class UntagResourceResult:
    """UntagResource answers an empty object."""


@dataclass(frozen=True, slots=True)
class ListTagsForResourceResult:
    tags: tuple[Tag, ...]


@dataclass(frozen=True, slots=True)
class PutImageTagMutabilityResult:
    registry_id: str
    repository_name: str
    image_tag_mutability: str
    image_tag_mutability_exclusion_filters: tuple[ExclusionFilter, ...] | None = None


@dataclass(frozen=True, slots=True)
class PutImageScanningConfigurationResult:
    registry_id: str
    repository_name: str
    image_scanning_configuration: ImageScanningConfiguration


@dataclass(frozen=True, slots=True)
class SubjectIdentifier:
    """ListImageReferrers' subject: the digest of the manifest the referrers point at."""

    image_digest: str


@dataclass(frozen=True, slots=True)
class ListImageReferrersFilter:
    """ListImageReferrers' filter: artifact types (any of them; None or empty: all) and an
    artifact status (``ACTIVE``, ``ARCHIVED``, ``ACTIVATING`` or ``ANY``)."""

    artifact_types: tuple[str, ...] | list[str] | None = None
    artifact_status: str | None = None


@dataclass(frozen=True, slots=True)
class ImageReferrer:
    """A referrer as ListImageReferrers answers it (an OCI descriptor and its status)."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    artifact_status: str = "ACTIVE"


@dataclass(frozen=True, slots=True)
class ListImageReferrersResult:
    referrers: tuple[ImageReferrer, ...]
    next_token: str | None = None
@dataclass(frozen=True, slots=True)
class RepositoryPolicy:
    """A repository's policy (Set/Get/DeleteRepositoryPolicy): its text exactly as it was set."""

    registry_id: str
    repository_name: str
    policy_text: str


@dataclass(frozen=True, slots=True)
class RegistryPolicy:
    """A registry's policy (Put/Get/DeleteRegistryPolicy): its text exactly as it was put."""

    registry_id: str
    policy_text: str
@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """A repository's lifecycle policy (Put/Get/DeleteLifecyclePolicy); ``last_evaluated_at``
    (epoch seconds) is when an expiry run last applied it (None: never)."""

    registry_id: str
    repository_name: str
    lifecycle_policy_text: str
    last_evaluated_at: float | None = None


@dataclass(frozen=True, slots=True)
class LifecyclePolicyPreviewFilter:
    """GetLifecyclePolicyPreview's filter: TAGGED, UNTAGGED or ANY."""

    tag_status: str | None = None


@dataclass(frozen=True, slots=True)
class LifecyclePolicyRuleAction:
    type: str = "EXPIRE"


@dataclass(frozen=True, slots=True)
class LifecyclePolicyPreviewResult:
    """An image the policy expires: its tags and digest, when it was pushed, the action and the
    priority of the rule that applies it."""

    image_tags: tuple[str, ...]
    image_digest: str
    image_pushed_at: float
    action: LifecyclePolicyRuleAction
    applied_rule_priority: int


@dataclass(frozen=True, slots=True)
class LifecyclePolicyPreviewSummary:
    expiring_image_total_count: int


@dataclass(frozen=True, slots=True)
class StartLifecyclePolicyPreviewResult:
    registry_id: str
    repository_name: str
    lifecycle_policy_text: str
    status: str


@dataclass(frozen=True, slots=True)
class GetLifecyclePolicyPreviewResult:
    registry_id: str
    repository_name: str
    lifecycle_policy_text: str
    status: str
    preview_results: tuple[LifecyclePolicyPreviewResult, ...]
    summary: LifecyclePolicyPreviewSummary
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class LifecycleRepositoryRun:
    """What an expiry run did to one repository: the images it expired (``expired``), and the
    digests of images it left because they changed (pushed again, re-tagged, newly referenced
    by a manifest list) between evaluation and deletion."""

    registry_id: str
    repository_name: str
    expired: tuple[LifecyclePolicyPreviewResult, ...]
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LifecycleRunReport:
    """An expiry run (``Store.lifecycle.run``): one entry per repository with a policy, in
    (registry, name) order; with ``dry_run`` nothing was deleted and ``expired`` is what
    would have been."""

    repositories: tuple[LifecycleRepositoryRun, ...]
    dry_run: bool = False

    @property
    def expired_count(self) -> int:
        return sum(len(r.expired) for r in self.repositories)
# --- replication -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicationDestination:
    """Where a rule replicates to: a region and a registry (account id)."""

    region: str
    registry_id: str


@dataclass(frozen=True, slots=True)
class RepositoryFilter:
    """Which repositories a rule replicates: ``PREFIX_MATCH`` on the repository name."""

    filter: str
    filter_type: str = "PREFIX_MATCH"


@dataclass(frozen=True, slots=True)
class DeleteReplication:
    enabled: bool = False


@dataclass(frozen=True, slots=True)
class ReplicationRule:
    destinations: tuple[ReplicationDestination, ...]
    repository_filters: tuple[RepositoryFilter, ...] | None = None
    delete_replication: DeleteReplication | None = None


@dataclass(frozen=True, slots=True)
class ReplicationConfiguration:
    rules: tuple[ReplicationRule, ...] = ()


@dataclass(frozen=True, slots=True)
class PutReplicationConfigurationResult:
    replication_configuration: ReplicationConfiguration


@dataclass(frozen=True, slots=True)
class DescribeRegistryResult:
    registry_id: str
    replication_configuration: ReplicationConfiguration


@dataclass(frozen=True, slots=True)
class ImageReplicationStatus:
    """One destination of an image: IN_PROGRESS, COMPLETE or FAILED (with ``failure_code``)."""

    region: str
    registry_id: str
    status: str
    failure_code: str | None = None


@dataclass(frozen=True, slots=True)
class DescribeImageReplicationStatusResult:
    repository_name: str
    image_id: ImageIdentifier
    replication_statuses: tuple[ImageReplicationStatus, ...]


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
