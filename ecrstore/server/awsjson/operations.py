"""The operation table: X-Amz-Target operation name -> Store call.

Each :class:`Operation` names the Store method it calls and declares its request members with
their JSON types. :meth:`Operation.bind` type-checks a decoded request body, decodes blobs
(strict base64, decoded size limit) and maps the camelCase members to the method's snake_case
keyword arguments. The constraints the Store already enforces (lengths, patterns, enums, list
sizes) are left to it, so each rule lives in one place; this module only guarantees that the
Store receives the Python types it expects. :meth:`Operation.encode` turns the Store's result
into the response object with :func:`.codec.to_wire`.

Adding an operation is one :class:`Operation` entry in :data:`OPERATIONS`.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pybase64

from ... import models as m
from ... import scan_models as sm
from ...errors import SerializationException, invalid_parameter
from ...limits import MAX_PART_BYTES
from .codec import to_wire
from .decode import Base64Span

__all__ = [
    "MAX_LAYER_PART_BYTES",
    "OPERATIONS",
    "TARGET_PREFIX",
    "Blob",
    "Boolean",
    "Integer",
    "ListOf",
    "Member",
    "Operation",
    "String",
    "Structure",
    "lookup",
]

#: ``X-Amz-Target`` is ``<TARGET_PREFIX><Operation>``.
TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
#: The service model's maximum for ``layerPartBlob``, in decoded bytes.
MAX_LAYER_PART_BYTES = MAX_PART_BYTES


class Shape:
    """A JSON member type. :meth:`decode` returns the Python value or raises."""

    def decode(self, value: Any, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


def _expected(path: str, what: str) -> Exception:
    return invalid_parameter(path, f"Member must be {what}")


class String(Shape):
    def decode(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise _expected(path, "a string")
        return value


class Integer(Shape):
    def decode(self, value: Any, path: str) -> int:
        # JSON true/false are Python bools, which are ints: refuse them explicitly.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _expected(path, "an integer")
        if isinstance(value, float):
            if not value.is_integer():
                raise _expected(path, "an integer")
            return int(value)
        return int(value)


class Boolean(Shape):
    def decode(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise _expected(path, "a boolean")
        return value


@dataclass(frozen=True)
class Blob(Shape):
    """Base64 text in the JSON, bytes for the Store. ``max_bytes`` bounds the decoded size.

    The value is the JSON string, or a :class:`~.decode.Base64Span` (the same text as a view of
    the raw request body, from :func:`~.decode.decode_request`'s fast path): both are decoded
    with the same checks and errors.
    """

    max_bytes: int | None = None

    def decode(self, value: Any, path: str) -> bytes:
        if isinstance(value, Base64Span):
            text: Any = value.view
            tail = text[-2:].tobytes()
            padding = tail.endswith(b"=") + tail.endswith(b"==")
        elif isinstance(value, str):
            text = value
            padding = value.endswith("=") + value.endswith("==")
        else:
            raise _expected(path, "a base64-encoded string")
        if len(text) % 4:
            raise SerializationException(f"Invalid base64 value at '{path}': length is not a multiple of 4")
        # Checked before decoding, from the text length: an oversized blob costs no decode.
        if self.max_bytes is not None:
            size = len(text) // 4 * 3 - padding
            if size > self.max_bytes:
                raise invalid_parameter(path, f"Member must have length less than or equal to {self.max_bytes}")
        try:
            # validate=True refuses characters outside the alphabet and misplaced padding.
            return pybase64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise SerializationException(f"Invalid base64 value at '{path}': {e}") from None


@dataclass(frozen=True)
class ListOf(Shape):
    item: Shape

    def decode(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise _expected(path, "a list")
        return [self.item.decode(v, path) for v in value]


@dataclass(frozen=True)
class Member:
    """A request member. ``kwarg`` is the Store keyword (default: snake_case of the wire name);
    ``kwarg=""`` accepts and type-checks the member but does not pass it on."""

    shape: Shape
    required: bool = False
    kwarg: str | None = None


@dataclass(frozen=True)
class Structure(Shape):
    """A JSON object with known members; unknown members are ignored, as AWS services do.

    ``into`` is the engine's type the object becomes (its snake_case fields named after the
    members, ``Key`` -> ``key``); without it the value stays a dict of the members sent.
    """

    members: Mapping[str, Member]
    into: Any = None

    def decode(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _expected(path, "a structure")
        out: dict[str, Any] = {}
        for name, member in self.members.items():
            v = value.get(name)
            if v is None:
                if member.required:
                    raise invalid_parameter(f"{path}.{name}", "Member must not be null")
                continue
            out[name] = member.shape.decode(v, f"{path}.{name}")
        if self.into is not None:
            built: Any = self.into(**{_snake(k): v for k, v in out.items()})
            return built  # the engine's type, where the wire has an object
        return out


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class Operation:
    """One JSON 1.1 operation.

    ``method`` is the Store method called with the bound members as keyword arguments;
    ``result_member`` wraps the encoded result (``{"repository": {...}}``) when the response
    holds it under one member. Every operation takes ``registryId``: the front end resolves it
    against the caller's credentials before the call (``registry_id`` keyword).
    """

    name: str
    method: str
    members: Mapping[str, Member]
    result_member: str | None = None
    #: Store keywords taken from the request or the server's settings rather than the body
    #: (``base_url``, where the client reached this server; ``expires_in``, the download URL
    #: lifetime); the front end supplies them.
    request_kwargs: tuple[str, ...] = ()
    _kwargs: dict[str, str] = field(init=False, repr=False, compare=False)
    #: What the method is called on: ``"store"`` (the engine's facade), an area of it (the
    #: Store attribute of that name: ``"policies"`` calls ``store.policies.<method>``), or
    #: ``"server"`` for the few operations the front end answers itself
    #: (GetAuthorizationToken needs the credentials).
    target: str = "store"
    #: The top-level Blob member, if any: its value may arrive as a Base64Span.
    blob_member: str | None = field(init=False, default=None, compare=False)

    def __post_init__(self) -> None:
        members = {"registryId": Member(String()), **self.members}
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "blob_member", next(
            (name for name, m in members.items() if isinstance(m.shape, Blob)), None))
        object.__setattr__(self, "_kwargs", {
            name: (m.kwarg if m.kwarg is not None else _snake(name)) for name, m in members.items()
        })

    def bind(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Type-check ``body`` (a decoded JSON object) and return the Store keyword arguments.

        A member sent as JSON null counts as absent. Raises InvalidParameterException for a
        missing required member or a wrong type, SerializationException for invalid base64.
        """
        kwargs: dict[str, Any] = {}
        for name, member in self.members.items():
            value = body.get(name)
            if value is None:
                if member.required:
                    raise invalid_parameter(name, "Member must not be null")
                continue
            decoded = member.shape.decode(value, name)
            kwarg = self._kwargs[name]
            if kwarg:
                kwargs[kwarg] = decoded
        return kwargs

    def call(self, targets: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Any:
        """Call the method on ``targets[self.target]`` with ``kwargs``."""
        return getattr(targets[self.target], self.method)(**kwargs)

    def encode(self, result: Any) -> dict[str, Any]:
        wire = to_wire(result)
        return {self.result_member: wire} if self.result_member else wire


_TAG = Structure({"Key": Member(String(), required=True), "Value": Member(String(), required=True)}, into=m.Tag)
_EXCLUSION_FILTER = Structure({"filterType": Member(String(), required=True),
                               "filter": Member(String(), required=True)}, into=m.ExclusionFilter)
_IMAGE_ID = Structure({"imageDigest": Member(String()), "imageTag": Member(String())}, into=m.ImageIdentifier)
_ENCRYPTION = Structure({"encryptionType": Member(String(), required=True), "kmsKey": Member(String())},
                        into=m.EncryptionConfiguration)


def _template_members(*, applied_for_required: bool) -> dict[str, Member]:
    """A repository creation template's members (Create requires appliedFor, Update does not)."""
    return {
        "prefix": Member(String(), required=True), "description": Member(String()),
        "encryptionConfiguration": Member(_ENCRYPTION), "resourceTags": Member(ListOf(_TAG)),
        "imageTagMutability": Member(String()),
        "imageTagMutabilityExclusionFilters": Member(ListOf(_EXCLUSION_FILTER)),
        "repositoryPolicy": Member(String()), "lifecyclePolicy": Member(String()),
        "appliedFor": Member(ListOf(String()), required=applied_for_required), "customRoleArn": Member(String()),
    }


_OPERATIONS = [
    Operation("CreateRepository", "create_repository", {
        "repositoryName": Member(String(), required=True),
        "tags": Member(ListOf(_TAG)),
        "imageTagMutability": Member(String()),
        "encryptionConfiguration": Member(_ENCRYPTION),
        "imageScanningConfiguration": Member(Structure({"scanOnPush": Member(Boolean())},
                                                       into=m.ImageScanningConfiguration)),
        "imageTagMutabilityExclusionFilters": Member(ListOf(_EXCLUSION_FILTER)),
    }, result_member="repository"),
    Operation("DescribeRepositories", "describe_repositories", {
        "repositoryNames": Member(ListOf(String())),
        "nextToken": Member(String()),
        "maxResults": Member(Integer()),
    }),
    Operation("DeleteRepository", "delete_repository", {
        "repositoryName": Member(String(), required=True),
        "force": Member(Boolean()),
    }, result_member="repository"),
    Operation("InitiateLayerUpload", "initiate_layer_upload", {
        "repositoryName": Member(String(), required=True),
    }),
    Operation("UploadLayerPart", "upload_layer_part", {
        "repositoryName": Member(String(), required=True),
        "uploadId": Member(String(), required=True),
        "partFirstByte": Member(Integer(), required=True),
        "partLastByte": Member(Integer(), required=True),
        "layerPartBlob": Member(Blob(MAX_LAYER_PART_BYTES), required=True),
    }),
    Operation("CompleteLayerUpload", "complete_layer_upload", {
        "repositoryName": Member(String(), required=True),
        "uploadId": Member(String(), required=True),
        "layerDigests": Member(ListOf(String()), required=True),
    }),
    Operation("BatchCheckLayerAvailability", "batch_check_layer_availability", {
        "repositoryName": Member(String(), required=True),
        "layerDigests": Member(ListOf(String()), required=True),
    }),
    Operation("GetDownloadUrlForLayer", "get_download_url_for_layer", {
        "repositoryName": Member(String(), required=True),
        "layerDigest": Member(String(), required=True),
    }, request_kwargs=("base_url", "expires_in")),
    Operation("PutImage", "put_image", {
        "repositoryName": Member(String(), required=True),
        "imageManifest": Member(String(), required=True),
        "imageManifestMediaType": Member(String()),
        "imageTag": Member(String()),
        "imageDigest": Member(String()),
    }),
    Operation("BatchGetImage", "batch_get_image", {
        "repositoryName": Member(String(), required=True),
        "imageIds": Member(ListOf(_IMAGE_ID), required=True),
        "acceptedMediaTypes": Member(ListOf(String())),
    }),
    Operation("BatchDeleteImage", "batch_delete_image", {
        "repositoryName": Member(String(), required=True),
        "imageIds": Member(ListOf(_IMAGE_ID), required=True),
    }),
    Operation("ListImages", "list_images", {
        "repositoryName": Member(String(), required=True),
        "filter": Member(Structure({"tagStatus": Member(String())}, into=m.ListImagesFilter)),
        "maxResults": Member(Integer()),
        "nextToken": Member(String()),
    }),
    Operation("GetAuthorizationToken", "get_authorization_token", {
        "registryIds": Member(ListOf(String())),
    }, request_kwargs=("credential", "proxy_endpoint"), target="server"),
    Operation("DescribeImages", "describe_images", {
        "repositoryName": Member(String(), required=True),
        "imageIds": Member(ListOf(_IMAGE_ID)),
        "filter": Member(Structure({"tagStatus": Member(String()), "imageStatus": Member(String())},
                                   into=m.DescribeImagesFilter)),
        "maxResults": Member(Integer()),
        "nextToken": Member(String()),
    }),
    # --- repository settings: resource tags, tag mutability, scan on push, referrers ---
    Operation("TagResource", "tag_resource", {
        "resourceArn": Member(String(), required=True),
        "tags": Member(ListOf(_TAG), required=True),
    }, target="settings"),
    Operation("UntagResource", "untag_resource", {
        "resourceArn": Member(String(), required=True),
        "tagKeys": Member(ListOf(String()), required=True),
    }, target="settings"),
    Operation("ListTagsForResource", "list_tags_for_resource", {
        "resourceArn": Member(String(), required=True),
    }, target="settings"),
    Operation("PutImageTagMutability", "put_image_tag_mutability", {
        "repositoryName": Member(String(), required=True),
        "imageTagMutability": Member(String(), required=True),
        "imageTagMutabilityExclusionFilters": Member(ListOf(_EXCLUSION_FILTER)),
    }, target="settings"),
    Operation("PutImageScanningConfiguration", "put_image_scanning_configuration", {
        "repositoryName": Member(String(), required=True),
        "imageScanningConfiguration": Member(Structure({"scanOnPush": Member(Boolean())},
                                                       into=m.ImageScanningConfiguration), required=True),
    }, target="settings"),
    Operation("ListImageReferrers", "list_image_referrers", {
        "repositoryName": Member(String(), required=True),
        "subjectId": Member(Structure({"imageDigest": Member(String(), required=True)},
                                      into=m.SubjectIdentifier), required=True),
        "filter": Member(Structure({"artifactTypes": Member(ListOf(String())),
                                    "artifactStatus": Member(String())}, into=m.ListImageReferrersFilter)),
        "maxResults": Member(Integer()),
        "nextToken": Member(String()),
    }, target="settings"),
    # --- policies: repository and registry policies ---
    Operation("SetRepositoryPolicy", "set_repository_policy", {
        "repositoryName": Member(String(), required=True),
        "policyText": Member(String(), required=True),
        "force": Member(Boolean()),
    }, target="policies"),
    Operation("GetRepositoryPolicy", "get_repository_policy", {
        "repositoryName": Member(String(), required=True),
    }, target="policies"),
    Operation("DeleteRepositoryPolicy", "delete_repository_policy", {
        "repositoryName": Member(String(), required=True),
    }, target="policies"),
    Operation("PutRegistryPolicy", "put_registry_policy", {
        "policyText": Member(String(), required=True),
    }, target="policies"),
    Operation("GetRegistryPolicy", "get_registry_policy", {}, target="policies"),
    Operation("DeleteRegistryPolicy", "delete_registry_policy", {}, target="policies"),
    # --- lifecycle policies ---
    Operation("PutLifecyclePolicy", "put_lifecycle_policy", {
        "repositoryName": Member(String(), required=True),
        "lifecyclePolicyText": Member(String(), required=True),
    }, target="lifecycle"),
    Operation("GetLifecyclePolicy", "get_lifecycle_policy", {
        "repositoryName": Member(String(), required=True),
    }, target="lifecycle"),
    Operation("DeleteLifecyclePolicy", "delete_lifecycle_policy", {
        "repositoryName": Member(String(), required=True),
    }, target="lifecycle"),
    Operation("StartLifecyclePolicyPreview", "start_lifecycle_policy_preview", {
        "repositoryName": Member(String(), required=True),
        "lifecyclePolicyText": Member(String()),
    }, target="lifecycle"),
    Operation("GetLifecyclePolicyPreview", "get_lifecycle_policy_preview", {
        "repositoryName": Member(String(), required=True),
        "imageIds": Member(ListOf(_IMAGE_ID)),
        "nextToken": Member(String()),
        "maxResults": Member(Integer()),
        "filter": Member(Structure({"tagStatus": Member(String())}, into=m.LifecyclePolicyPreviewFilter)),
    }, target="lifecycle"),
    # replication
    Operation("PutReplicationConfiguration", "put_replication_configuration", {
        "replicationConfiguration": Member(Structure({
            "rules": Member(ListOf(Structure({
                "destinations": Member(ListOf(Structure({
                    "region": Member(String(), required=True),
                    "registryId": Member(String(), required=True),
                }, into=m.ReplicationDestination)), required=True),
                "repositoryFilters": Member(ListOf(Structure({
                    "filter": Member(String(), required=True),
                    "filterType": Member(String(), required=True),
                }, into=m.RepositoryFilter))),
                "deleteReplication": Member(Structure({"enabled": Member(Boolean(), required=True)},
                                                      into=m.DeleteReplication)),
            }, into=m.ReplicationRule)), required=True),
        }, into=m.ReplicationConfiguration), required=True),
    }, target="replication"),
    Operation("DescribeRegistry", "describe_registry", {}, target="replication"),
    Operation("DescribeImageReplicationStatus", "describe_image_replication_status", {
        "repositoryName": Member(String(), required=True),
        "imageId": Member(_IMAGE_ID, required=True),
    }, target="replication"),
    # --- pull-through cache rules (store.pull_through) ---
    Operation("CreatePullThroughCacheRule", "create_pull_through_cache_rule", {
        "ecrRepositoryPrefix": Member(String(), required=True),
        "upstreamRegistryUrl": Member(String(), required=True),
        "upstreamRegistry": Member(String()),
        "credentialArn": Member(String()),
        "customRoleArn": Member(String()),
        "upstreamRepositoryPrefix": Member(String()),
    }, target="pull_through"),
    Operation("DescribePullThroughCacheRules", "describe_pull_through_cache_rules", {
        "ecrRepositoryPrefixes": Member(ListOf(String())),
        "nextToken": Member(String()),
        "maxResults": Member(Integer()),
    }, target="pull_through"),
    Operation("UpdatePullThroughCacheRule", "update_pull_through_cache_rule", {
        "ecrRepositoryPrefix": Member(String(), required=True),
        "credentialArn": Member(String()),
        "customRoleArn": Member(String()),
    }, target="pull_through"),
    Operation("DeletePullThroughCacheRule", "delete_pull_through_cache_rule", {
        "ecrRepositoryPrefix": Member(String(), required=True),
    }, target="pull_through"),
    Operation("ValidatePullThroughCacheRule", "validate_pull_through_cache_rule", {
        "ecrRepositoryPrefix": Member(String(), required=True),
    }, target="pull_through"),
    # --- image scanning (store.scanning) ---
    Operation("StartImageScan", "start_image_scan", {
        "repositoryName": Member(String(), required=True),
        "imageId": Member(_IMAGE_ID, required=True),
    }, target="scanning"),
    Operation("DescribeImageScanFindings", "describe_image_scan_findings", {
        "repositoryName": Member(String(), required=True),
        "imageId": Member(_IMAGE_ID, required=True),
        "nextToken": Member(String()),
        "maxResults": Member(Integer()),
    }, target="scanning"),
    Operation("PutRegistryScanningConfiguration", "put_registry_scanning_configuration", {
        "scanType": Member(String()),
        "rules": Member(ListOf(Structure({
            "scanFrequency": Member(String(), required=True),
            "repositoryFilters": Member(ListOf(Structure({
                "filter": Member(String(), required=True), "filterType": Member(String(), required=True),
            }, into=sm.ScanningRepositoryFilter)), required=True),
        }, into=sm.RegistryScanningRule))),
    }, target="scanning"),
    Operation("GetRegistryScanningConfiguration", "get_registry_scanning_configuration", {}, target="scanning"),
    Operation("BatchGetRepositoryScanningConfiguration", "batch_get_repository_scanning_configuration", {
        "repositoryNames": Member(ListOf(String()), required=True),
    }, target="scanning"),
    # --- repository creation templates (store.templates) ---
    Operation("CreateRepositoryCreationTemplate", "create_repository_creation_template", {
        **_template_members(applied_for_required=True),
    }, target="templates"),
    Operation("DescribeRepositoryCreationTemplates", "describe_repository_creation_templates", {
        "prefixes": Member(ListOf(String())),
        "nextToken": Member(String()),
        "maxResults": Member(Integer()),
    }, target="templates"),
    Operation("UpdateRepositoryCreationTemplate", "update_repository_creation_template", {
        **_template_members(applied_for_required=False),
    }, target="templates"),
    Operation("DeleteRepositoryCreationTemplate", "delete_repository_creation_template", {
        "prefix": Member(String(), required=True),
    }, target="templates"),
]

#: Operation name -> Operation.
OPERATIONS: dict[str, Operation] = {op.name: op for op in _OPERATIONS}


def lookup(target: str | None, operations: Mapping[str, Operation] = OPERATIONS) -> Operation | None:
    """The operation an ``X-Amz-Target`` value names, or None."""
    if not target or not target.startswith(TARGET_PREFIX):
        return None
    return operations.get(target[len(TARGET_PREFIX):])

