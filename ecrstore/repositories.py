"""ECR's repository operations: CreateRepository, DescribeRepositories, DeleteRepository.

Each write is one index write transaction that re-checks what it depends on; reads use one
snapshot each. The Repository shapes answered carry the store's region in ARNs and URIs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from . import documents
from . import validate as v
from .errors import (
    InvalidParameterException,
    LimitExceededException,
    RepositoryAlreadyExistsException,
    RepositoryNotEmptyException,
    invalid_parameter,
    repository_not_found,
)
from .index.base import Index, ReadTxn, WriteTxn
from .index.records import RepoRecord
from .limits import DEFAULT_PAGE
from .models import (
    DescribeRepositoriesResult,
    EncryptionConfiguration,
    ExclusionFilter,
    ImageScanningConfiguration,
    Repository,
    Tag,
)
from .tokens import decode_name_token, encode_name_token

__all__ = ["Repositories"]


class Repositories:
    def __init__(self, index: Index, *, registry_id: str, region: str, max_per_registry: int,
                 registry_host: str | None = None) -> None:
        self._index = index
        self._max = max_per_registry
        self.registry_id = registry_id
        self.region = region
        self.registry_host = registry_host

    def names(self, registry_id: str | None, limit: int | None, after: str | None) -> tuple[tuple[str, ...], bool]:
        """Repository names of a registry in order after ``after``, at most ``limit`` (None:
        all), and whether more follow (OCI's catalog). One snapshot."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise invalid_parameter("n", "Member must be a non-negative integer")
        if after is not None and not isinstance(after, str):
            raise invalid_parameter("last", "Member must be a string")
        registry = v.registry_id(registry_id, self.registry_id)
        found: list[str] = []
        with self._index.read() as t:
            for rec in t.iter_repos(registry, after):
                if limit is not None and len(found) == limit:
                    return tuple(found), True
                found.append(rec.name)
        return tuple(found), False

    def create(self, registry_id: str | None, repository_name: str, image_tag_mutability: str,
               image_tag_mutability_exclusion_filters: Sequence[ExclusionFilter] | None,
               image_scanning_configuration: ImageScanningConfiguration | None,
               encryption_configuration: EncryptionConfiguration | None,
               tags: Sequence[Tag] | None, *,
               then: Callable[[WriteTxn, RepoRecord], None] | None = None) -> Repository:
        """CreateRepository; ``then(txn, record)`` writes what must be created with it (a
        creation template's policies) in the same transaction."""
        registry = v.registry_id(registry_id, self.registry_id)
        name = v.repository_name(repository_name)
        mutability = v.enum(image_tag_mutability, "imageTagMutability", v.TAG_MUTABILITY)
        filters = v.exclusion_filters(image_tag_mutability_exclusion_filters, mutability)
        scan = v.scanning(image_scanning_configuration)
        enc = v.encryption(encryption_configuration)
        tag_list = v.tags(tags)
        now = time.time()

        def commit(t: WriteTxn) -> RepoRecord:
            if t.get_repo(registry, name) is not None:
                raise RepositoryAlreadyExistsException(
                    f"The repository with name '{name}' already exists in the registry with id '{registry}'"
                )
            if t.count_repos(registry) >= self._max:
                raise LimitExceededException(
                    f"The registry with id '{registry}' holds its maximum of {self._max} repositories"
                )
            rec = RepoRecord(
                id=t.next_repo_id(), registry_id=registry, name=name, created_at=now,
                image_tag_mutability=mutability, image_tag_mutability_exclusion_filters=filters,
                scan_on_push=scan.scan_on_push, encryption_type=enc.encryption_type,
                kms_key=enc.kms_key, tags=tag_list,
            )
            t.put_repo(rec)
            if then is not None:
                then(t, rec)
            return rec

        return self.result(self._index.write(commit))

    def describe(self, registry_id: str | None, repository_names: Sequence[str] | None,
                 max_results: int | None, next_token: str | None) -> DescribeRepositoriesResult:
        registry = v.registry_id(registry_id, self.registry_id)
        page = v.max_results(max_results)
        if repository_names is not None:
            names = v.str_list(repository_names, "repositoryNames", max_items=100)
            for n in names:
                v.repository_name(n, "repositoryNames")
            if page is not None or next_token is not None:
                raise InvalidParameterException(
                    "maxResults and nextToken cannot be used with repositoryNames"
                )
            with self._index.read() as t:
                recs = [t.get_repo(registry, n) for n in names]
            found: list[RepoRecord] = []
            for n, rec in zip(names, recs, strict=True):
                if rec is None:
                    raise repository_not_found(registry, n)
                found.append(rec)
            return DescribeRepositoriesResult(tuple(self.result(r) for r in found))
        after = decode_name_token(next_token, registry) if next_token is not None else None
        limit = page or DEFAULT_PAGE
        listed: list[RepoRecord] = []
        with self._index.read() as t:
            for repo in t.iter_repos(registry, after):
                listed.append(repo)
                if len(listed) > limit:
                    break
        more = len(listed) > limit
        listed = listed[:limit]
        token = encode_name_token(registry, listed[-1].name) if more else None
        return DescribeRepositoriesResult(tuple(self.result(r) for r in listed), token)

    def delete(self, registry_id: str | None, repository_name: str, force: bool,
               delete_images: Callable[[WriteTxn, int], None]) -> tuple[RepoRecord, list[bytes]]:
        """Remove the repository (and with ``force`` its images) in one transaction; answer
        its record and the ids of the uploads it had (their data is the caller's to drop)."""
        registry = v.registry_id(registry_id, self.registry_id)
        name = v.repository_name(repository_name)
        if not isinstance(force, bool):
            raise invalid_parameter("force", "Member must be a boolean")

        def commit(t: WriteTxn) -> tuple[RepoRecord, list[bytes]]:
            rec = t.get_repo(registry, name)
            if rec is None:
                raise repository_not_found(registry, name)
            if t.image_count(rec.id):
                if not force:
                    raise RepositoryNotEmptyException(
                        f"The repository with name '{name}' in registry with id '{registry}' cannot be "
                        "deleted because it still contains images"
                    )
                delete_images(t, rec.id)
            uids = t.repo_upload_ids(rec.id)
            for uid in uids:
                up = t.get_upload(uid)
                if up is not None:
                    t.delete_upload(uid, up)
            for dg, _ in list(t.iter_links(rec.id)):
                t.delete_link(rec.id, dg)
            documents.drop_repository(t, rec.id)
            t.delete_repo(rec)
            return rec, uids

        return self._index.write(commit)

    def lookup(self, registry_id: str | None, repository_name: str) -> RepoRecord:
        """The repository's record. Errors: InvalidParameter, RepositoryNotFound."""
        registry = v.registry_id(registry_id, self.registry_id)
        name = v.repository_name(repository_name)
        with self._index.read() as t:
            rec = t.get_repo(registry, name)
        if rec is None:
            raise repository_not_found(registry, name)
        return rec

    @staticmethod
    def by_id(t: ReadTxn, registry: str, repo_id: int) -> RepoRecord | None:
        for rec in t.iter_repos(registry):
            if rec.id == repo_id:
                return rec
        return None

    def result(self, rec: RepoRecord) -> Repository:
        """ECR's Repository shape of a record: the exclusion filters when there are any, and
        for KMS encryption without a named key the ARN of the AWS-managed key ECR uses."""
        kms_key = rec.kms_key
        if kms_key is None and rec.encryption_type != "AES256":
            kms_key = f"arn:aws:kms:{self.region}:{rec.registry_id}:alias/aws/ecr"
        filters = tuple(ExclusionFilter(f["filter"], f["filterType"])
                        for f in rec.image_tag_mutability_exclusion_filters)
        return Repository(
            repository_arn=v.REPOSITORY_ARN_FORMAT.format(region=self.region, registry=rec.registry_id,
                                                          name=rec.name),
            registry_id=rec.registry_id,
            repository_name=rec.name,
            repository_uri=(f"{self.registry_host}/{rec.name}" if self.registry_host
                            else f"{rec.registry_id}.dkr.ecr.{self.region}.amazonaws.com/{rec.name}"),
            created_at=rec.created_at,
            image_tag_mutability=rec.image_tag_mutability,
            image_scanning_configuration=ImageScanningConfiguration(rec.scan_on_push),
            encryption_configuration=EncryptionConfiguration(rec.encryption_type, kms_key),
            image_tag_mutability_exclusion_filters=filters or None,
        )
