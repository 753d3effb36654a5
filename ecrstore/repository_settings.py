"""A repository's settings after creation: resource tags (TagResource, UntagResource,
ListTagsForResource), tag mutability (PutImageTagMutability), scan on push
(PutImageScanningConfiguration), and ECR's paged view of its OCI referrers (ListImageReferrers).

Settings live on the repository's own record (``RepoRecord``): each change is one index write
transaction that re-reads the record, checks it, and puts it back changed, so concurrent
changes never lose one another's effect and a push sees a new tag mutability at once (PutImage
reads the record in its own transaction). Tags are resources of the repository ARN
``arn:aws:ecr:<region>:<registry>:repository/<name>`` of the store's region and the caller's
registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from . import validate as v
from .digest import parse_digest
from .errors import invalid_parameter, repository_not_found
from .index.base import Index, WriteTxn
from .index.records import RepoRecord
from .limits import MAX_REFERRER_RESULTS
from .models import (
    ExclusionFilter,
    ImageReferrer,
    ImageScanningConfiguration,
    ListImageReferrersFilter,
    ListImageReferrersResult,
    ListTagsForResourceResult,
    PutImageScanningConfigurationResult,
    PutImageTagMutabilityResult,
    Referrer,
    SubjectIdentifier,
    Tag,
    TagResourceResult,
    UntagResourceResult,
)
from .repositories import Repositories
from .tokens import decode_token, encode_token

__all__ = ["RepositorySettings"]

_ARTIFACT_STATUS = ("ACTIVE", "ARCHIVED", "ACTIVATING", "ANY")
#: The most artifact types one filter may name, and the longest one.
_MAX_ARTIFACT_TYPES = 5
_MAX_ARTIFACT_TYPE_CHARS = 255

ListReferrers = Callable[[str | None, str, str, str | None], tuple[Referrer, ...]]


class RepositorySettings:
    """The embedding API for a repository's tags and settings (``store.settings``).

    Every call validates all its inputs before it reads or changes anything and changes
    nothing when it raises. Writes are one index transaction each, durable on return in
    durable mode; reads use one snapshot. Safe to share between threads and processes (the
    index serialises the writes).
    """

    def __init__(self, index: Index, repos: Repositories, list_referrers: ListReferrers) -> None:
        self._index = index
        self._repos = repos
        self._list_referrers = list_referrers

    # --- resource tags -------------------------------------------------------------------

    def tag_resource(self, resource_arn: str, tags: Sequence[Tag], *,
                     registry_id: str | None = None) -> TagResourceResult:
        """TagResource: add ``tags`` to the repository the ARN names; a key it already has
        takes the new value. Errors: InvalidParameter (an ARN of another region or registry,
        or not a repository ARN), InvalidTagParameter (a key or value outside ECR's rules, an
        ``aws:`` key), TooManyTags (more than 50 keys once merged), RepositoryNotFound."""
        registry, name = self._resource(resource_arn, registry_id)
        if tags is None:
            raise invalid_parameter("tags", "Member must not be null")
        v.tags(tags)

        def change(rec: RepoRecord) -> RepoRecord:
            return dataclasses.replace(rec, tags=v.tags(tags, rec.tags))

        self._update(registry, name, change)
        return TagResourceResult()

    def untag_resource(self, resource_arn: str, tag_keys: Sequence[str], *,
                       registry_id: str | None = None) -> UntagResourceResult:
        """UntagResource: remove the tags with these keys (keys the repository lacks are
        ignored). Errors: InvalidParameter, InvalidTagParameter, RepositoryNotFound."""
        registry, name = self._resource(resource_arn, registry_id)
        if tag_keys is None:
            raise invalid_parameter("tagKeys", "Member must not be null")
        gone = set(v.tag_keys(tag_keys))

        def change(rec: RepoRecord) -> RepoRecord:
            return dataclasses.replace(rec, tags=[t for t in rec.tags if t["Key"] not in gone])

        self._update(registry, name, change)
        return UntagResourceResult()

    def list_tags_for_resource(self, resource_arn: str, *,
                               registry_id: str | None = None) -> ListTagsForResourceResult:
        """ListTagsForResource: the repository's tags, in the order their keys were first
        set. Errors: InvalidParameter, RepositoryNotFound. One snapshot."""
        registry, name = self._resource(resource_arn, registry_id)
        rec = self._repos.lookup(registry, name)
        return ListTagsForResourceResult(tuple(Tag(t["Key"], t["Value"]) for t in rec.tags))

    # --- settings --------------------------------------------------------------------------

    def put_image_tag_mutability(
        self, repository_name: str, image_tag_mutability: str, *,
        image_tag_mutability_exclusion_filters: Sequence[ExclusionFilter] | None = None,
        registry_id: str | None = None,
    ) -> PutImageTagMutabilityResult:
        """PutImageTagMutability: the repository's tag mutability and its exclusion filters
        (needed by, and only allowed with, the ``*_WITH_EXCLUSION`` modes; a mode without
        them clears the old ones). PutImage applies the new rule from the next push on.
        Errors: InvalidParameter, RepositoryNotFound."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        name = v.repository_name(repository_name)
        mode = v.enum(image_tag_mutability, "imageTagMutability", v.TAG_MUTABILITY)
        filters = v.exclusion_filters(image_tag_mutability_exclusion_filters, mode)

        def change(rec: RepoRecord) -> RepoRecord:
            return dataclasses.replace(rec, image_tag_mutability=mode, image_tag_mutability_exclusion_filters=filters)

        rec = self._update(registry, name, change)
        shown = self._repos.result(rec)
        return PutImageTagMutabilityResult(rec.registry_id, rec.name, rec.image_tag_mutability,
                                           shown.image_tag_mutability_exclusion_filters)

    def put_image_scanning_configuration(
        self, repository_name: str, image_scanning_configuration: ImageScanningConfiguration, *,
        registry_id: str | None = None,
    ) -> PutImageScanningConfigurationResult:
        """PutImageScanningConfiguration: whether images are scanned when pushed. Errors:
        InvalidParameter, RepositoryNotFound."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        name = v.repository_name(repository_name)
        if image_scanning_configuration is None:
            raise invalid_parameter("imageScanningConfiguration", "Member must not be null")
        scan = v.scanning(image_scanning_configuration)

        def change(rec: RepoRecord) -> RepoRecord:
            return dataclasses.replace(rec, scan_on_push=scan.scan_on_push)

        rec = self._update(registry, name, change)
        return PutImageScanningConfigurationResult(rec.registry_id, rec.name,
                                                   ImageScanningConfiguration(rec.scan_on_push))

    # --- referrers -------------------------------------------------------------------------

    def list_image_referrers(
        self, repository_name: str, subject_id: SubjectIdentifier, *,
        filter: ListImageReferrersFilter | None = None, max_results: int | None = None,
        next_token: str | None = None, registry_id: str | None = None,
    ) -> ListImageReferrersResult:
        """ListImageReferrers: the repository's manifests whose ``subject`` is the given
        digest (the referrers ``/v2/<name>/referrers/<digest>`` lists), in digest order, of
        any of ``filter.artifact_types`` when given; pages of ``max_results`` (1..50, default
        50) with ``next_token``. Every stored referrer is ACTIVE: a filter on another status
        answers none. Errors: InvalidParameter (a malformed digest, filter, page size or
        token), RepositoryNotFound. One snapshot per page."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        name = v.repository_name(repository_name)
        if not isinstance(subject_id, SubjectIdentifier):
            raise invalid_parameter("subjectId", "Member must be a structure with an imageDigest")
        subject = str(parse_digest(subject_id.image_digest, "subjectId.imageDigest"))
        types, status = _referrer_filter(filter)
        page = v.max_results(max_results, upper=MAX_REFERRER_RESULTS) or MAX_REFERRER_RESULTS
        after = _read_token(next_token, registry, name, subject) if next_token is not None else None
        found = [r for r in self._list_referrers(registry, name, subject, None)
                 if (not types or r.artifact_type in types) and status in ("ACTIVE", "ANY")
                 and (after is None or r.digest > after)]
        listed = found[:page]
        token = encode_token(registry, name, subject, listed[-1].digest) if len(found) > page else None
        return ListImageReferrersResult(
            tuple(ImageReferrer(r.digest, r.media_type, r.size, r.artifact_type, r.annotations) for r in listed),
            token,
        )

    # --- helpers ---------------------------------------------------------------------------

    def _resource(self, resource_arn: Any, registry_id: str | None) -> tuple[str, str]:
        """(registry, name) of a repository ARN, which must name the caller's registry."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        owner, name = v.repository_arn(resource_arn, self._repos.region)
        if owner != registry:
            raise invalid_parameter(
                "resourceArn", f"The ARN's registry '{owner}' is not the caller's registry '{registry}'")
        return registry, name

    def _update(self, registry: str, name: str, change: Callable[[RepoRecord], RepoRecord]) -> RepoRecord:
        """Re-read the repository's record, change it and put it back, in one transaction."""

        def commit(t: WriteTxn) -> RepoRecord:
            rec = t.get_repo(registry, name)
            if rec is None:
                raise repository_not_found(registry, name)
            new = change(rec)
            if new != rec:
                t.put_repo(new)
            return new

        return self._index.write(commit)


def _referrer_filter(f: ListImageReferrersFilter | None) -> tuple[frozenset[str], str]:
    """(artifact types, status) of ListImageReferrers' filter (status ACTIVE when unset)."""
    if f is None:
        return frozenset(), "ACTIVE"
    if not isinstance(f, ListImageReferrersFilter):
        raise invalid_parameter("filter", "Member must be a ListImageReferrersFilter")
    types: list[str] = []
    if f.artifact_types is not None:
        types = v.str_list(f.artifact_types, "filter.artifactTypes", min_items=0, max_items=_MAX_ARTIFACT_TYPES,
                           min_len=1, max_len=_MAX_ARTIFACT_TYPE_CHARS)
    status = "ACTIVE" if f.artifact_status is None else v.enum(f.artifact_status, "filter.artifactStatus",
                                                               _ARTIFACT_STATUS)
    return frozenset(types), status


def _read_token(token: object, registry: str, name: str, subject: str) -> str:
    """The last digest of the page a token ends; only a token of this very listing."""

    def read(fields: list[object]) -> str:
        reg, repo, subj, after = fields
        if (reg, repo, subj) != (registry, name, subject) or not isinstance(after, str):
            raise ValueError
        return after

    return decode_token(token, read)
