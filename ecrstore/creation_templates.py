"""Repository creation templates: the settings ECR gives a repository it creates for you.

Create/Describe/Update/DeleteRepositoryCreationTemplate keep a registry's templates as
documents (``CREATION_TEMPLATE``, keyed by registry and prefix). A template names what it is
``appliedFor`` — ``REPLICATION``, ``PULL_THROUGH_CACHE``, ``CREATE_ON_PUSH`` — and the settings a
new repository gets: tag mutability (and its exclusion filters), encryption, resource tags, a
repository policy and a lifecycle policy.

:meth:`CreationTemplates.create_for` is how the store creates a repository for a reason: the
template whose prefix covers the name most closely (``a/b`` before ``a``, then ``ROOT``:
:func:`~ecrstore.pull_through.covering_prefixes`) and is applied for that reason gives its
settings; the repository, its policy and its lifecycle policy are written in one index
transaction (all of them or none). Without such a template the caller's settings apply (a
replica: its source's; otherwise ECR's defaults). The policy texts are validated when the
template is written, as SetRepositoryPolicy and PutLifecyclePolicy validate them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import documents
from . import validate as v
from .errors import (
    InvalidParameterException,
    InvalidTagParameterException,
    LimitExceededException,
    TemplateAlreadyExistsException,
    TemplateNotFoundException,
    TooManyTagsException,
    invalid_parameter,
)
from .index.base import Index, WriteTxn
from .index.records import RepoRecord
from .lifecycle import Lifecycle
from .lifecycle_rules import parse_policy
from .limits import DEFAULT_PAGE
from .models import EncryptionConfiguration, ExclusionFilter, ImageScanningConfiguration, Repository, Tag
from .policies import Policies
from .policy import MAX_POLICY_CHARS
from .policy import parse as parse_repository_policy
from .pull_through import ROOT, checked_prefix, covering_prefixes
from .repositories import Repositories

__all__ = ["APPLIED_FOR", "MAX_TEMPLATES_PER_REGISTRY", "CreationTemplates",
           "DescribeRepositoryCreationTemplatesResult", "RepositoryCreationTemplate",
           "RepositoryCreationTemplateResult", "RepositorySettings"]

#: The model's RCTAppliedFor enum.
APPLIED_FOR = ("REPLICATION", "PULL_THROUGH_CACHE", "CREATE_ON_PUSH")
#: ECR's quota of creation templates per registry.
MAX_TEMPLATES_PER_REGISTRY = 50
_MAX_DESCRIPTION = 256
_MAX_LIFECYCLE_CHARS = 30720
_MAX_ROLE_CHARS = 2048


@dataclass(frozen=True, slots=True)
class RepositoryCreationTemplate:
    """A creation template (times in epoch seconds)."""

    prefix: str
    applied_for: tuple[str, ...]
    created_at: float
    updated_at: float
    description: str | None = None
    encryption_configuration: EncryptionConfiguration | None = None
    resource_tags: tuple[Tag, ...] = ()
    image_tag_mutability: str | None = None
    image_tag_mutability_exclusion_filters: tuple[ExclusionFilter, ...] | None = None
    repository_policy: str | None = None
    lifecycle_policy: str | None = None
    custom_role_arn: str | None = None


@dataclass(frozen=True, slots=True)
class RepositoryCreationTemplateResult:
    """What Create, Update and DeleteRepositoryCreationTemplate answer."""

    registry_id: str
    repository_creation_template: RepositoryCreationTemplate


@dataclass(frozen=True, slots=True)
class DescribeRepositoryCreationTemplatesResult:
    registry_id: str
    repository_creation_templates: tuple[RepositoryCreationTemplate, ...]
    next_token: str | None = None


@dataclass(frozen=True, slots=True)
class RepositorySettings:
    """What a repository is created with when no template applies."""

    image_tag_mutability: str = "MUTABLE"
    image_tag_mutability_exclusion_filters: Sequence[ExclusionFilter] | None = None
    image_scanning_configuration: ImageScanningConfiguration | None = None
    encryption_configuration: EncryptionConfiguration | None = None


class CreationTemplates:
    """The registry's creation templates (``store.templates``). Safe to share between threads;
    every write is one index transaction, durable on return (durable mode)."""

    def __init__(self, index: Index, repos: Repositories, policies: Policies, lifecycle: Lifecycle) -> None:
        self._index = index
        self._repos = repos
        self._policies = policies
        self._lifecycle = lifecycle

    # --- the operations ------------------------------------------------------------------

    def create_repository_creation_template(
        self, prefix: str, applied_for: Sequence[str], *, registry_id: str | None = None,
        description: str | None = None, encryption_configuration: EncryptionConfiguration | None = None,
        resource_tags: Sequence[Tag] | None = None, image_tag_mutability: str | None = None,
        image_tag_mutability_exclusion_filters: Sequence[ExclusionFilter] | None = None,
        repository_policy: str | None = None, lifecycle_policy: str | None = None,
        custom_role_arn: str | None = None,
    ) -> RepositoryCreationTemplateResult:
        """CreateRepositoryCreationTemplate. Errors: InvalidParameter (members, and policy texts
        as SetRepositoryPolicy / PutLifecyclePolicy validate them), TemplateAlreadyExists,
        LimitExceeded (50 per registry)."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        key = _prefix(prefix)
        now = time.time()
        doc = {"prefix": key, "createdAt": now, "updatedAt": now, **_settings(_members(locals()), required=True)}

        def commit(t: WriteTxn) -> None:
            docs_key = documents.registry_key(registry, key)
            if documents.get(t, documents.CREATION_TEMPLATE, docs_key) is not None:
                raise TemplateAlreadyExistsException(
                    f"A repository creation template with the prefix '{key}' already exists in the registry "
                    f"with id '{registry}'")
            if sum(1 for _ in _template_docs(t, registry)) >= MAX_TEMPLATES_PER_REGISTRY:
                raise LimitExceededException(
                    f"The registry with id '{registry}' holds its maximum of {MAX_TEMPLATES_PER_REGISTRY} "
                    "repository creation templates")
            documents.put(t, documents.CREATION_TEMPLATE, docs_key, doc)

        self._index.write(commit)
        return RepositoryCreationTemplateResult(registry, _template(doc))

    def describe_repository_creation_templates(
        self, *, registry_id: str | None = None, prefixes: Sequence[str] | None = None,
        next_token: str | None = None, max_results: int | None = None,
    ) -> DescribeRepositoryCreationTemplatesResult:
        """DescribeRepositoryCreationTemplates: the named templates in the order asked (a prefix
        without one is left out), or a page of all of them in prefix order. Errors:
        InvalidParameter (also maxResults/nextToken with prefixes). One snapshot."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        page = v.max_results(max_results, upper=1000)
        if prefixes is not None:
            wanted = [_prefix(p, "prefixes") for p in v.str_list(prefixes, "prefixes", max_items=100)]
            if page is not None or next_token is not None:
                raise InvalidParameterException("maxResults and nextToken cannot be used with prefixes")
            with self._index.read() as t:  # a prefix without a template is left out (no error in ECR's model)
                found = [d for d in (documents.get(t, documents.CREATION_TEMPLATE, documents.registry_key(registry, p))
                                     for p in dict.fromkeys(wanted)) if d is not None]
            return DescribeRepositoryCreationTemplatesResult(registry, tuple(_template(d) for d in found))
        with self._index.read() as t:
            docs, token = documents.page(t, documents.CREATION_TEMPLATE, registry, next_token, page or DEFAULT_PAGE)
        return DescribeRepositoryCreationTemplatesResult(registry, tuple(_template(d) for d in docs), token)

    def update_repository_creation_template(
        self, prefix: str, *, registry_id: str | None = None, applied_for: Sequence[str] | None = None,
        description: str | None = None, encryption_configuration: EncryptionConfiguration | None = None,
        resource_tags: Sequence[Tag] | None = None, image_tag_mutability: str | None = None,
        image_tag_mutability_exclusion_filters: Sequence[ExclusionFilter] | None = None,
        repository_policy: str | None = None, lifecycle_policy: str | None = None,
        custom_role_arn: str | None = None,
    ) -> RepositoryCreationTemplateResult:
        """UpdateRepositoryCreationTemplate: the members given replace the template's. Errors:
        InvalidParameter, TemplateNotFound."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        key = _prefix(prefix)
        given = _settings(_members(locals()), required=False)
        now = time.time()

        def commit(t: WriteTxn) -> dict[str, Any]:
            docs_key = documents.registry_key(registry, key)
            doc = documents.get(t, documents.CREATION_TEMPLATE, docs_key)
            if doc is None:
                raise _not_found(registry, key)
            doc = {**doc, **given, "updatedAt": now}
            _check_mutability(doc)
            documents.put(t, documents.CREATION_TEMPLATE, docs_key, doc)
            return doc

        return RepositoryCreationTemplateResult(registry, _template(self._index.write(commit)))

    def delete_repository_creation_template(self, prefix: str, *,
                                            registry_id: str | None = None) -> RepositoryCreationTemplateResult:
        """DeleteRepositoryCreationTemplate: the template as it was. Errors: InvalidParameter,
        TemplateNotFound."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        key = _prefix(prefix)

        def commit(t: WriteTxn) -> dict[str, Any]:
            docs_key = documents.registry_key(registry, key)
            doc = documents.get(t, documents.CREATION_TEMPLATE, docs_key)
            if doc is None:
                raise _not_found(registry, key)
            documents.delete(t, documents.CREATION_TEMPLATE, docs_key)
            return dict(doc)

        return RepositoryCreationTemplateResult(registry, _template(self._index.write(commit)))

    # --- creating repositories for a reason ----------------------------------------------

    def applies(self, registry_id: str, repository_name: str, reason: str) -> bool:
        """Whether a template of the registry applies to a repository created for ``reason``."""
        with self._index.read() as t:
            return _matching(t, registry_id, repository_name, reason) is not None

    def create_for(self, reason: str, registry_id: str, repository_name: str,
                   fallback: RepositorySettings | None = None) -> Repository:
        """Create a repository for ``reason`` (one of :data:`APPLIED_FOR`): with the settings,
        tags and policies of the template that applies, else with ``fallback`` (ECR's defaults
        when None). One transaction. Errors: RepositoryAlreadyExists, LimitExceeded,
        InvalidParameter."""
        if reason not in APPLIED_FOR:
            raise ValueError(f"unknown reason {reason!r}")
        with self._index.read() as t:
            template = _matching(t, registry_id, repository_name, reason)
        base = fallback or RepositorySettings()
        if template is None:
            return self._repos.create(registry_id, repository_name, base.image_tag_mutability,
                                      base.image_tag_mutability_exclusion_filters,
                                      base.image_scanning_configuration, base.encryption_configuration, None)
        enc = template.get("encryptionConfiguration")
        filters = template.get("imageTagMutabilityExclusionFilters")

        def then(t: WriteTxn, rec: RepoRecord) -> None:
            if template.get("repositoryPolicy"):
                self._policies.put_in(t, rec, template["repositoryPolicy"])
            if template.get("lifecyclePolicy"):
                self._lifecycle.put_in(t, rec, template["lifecyclePolicy"])

        return self._repos.create(
            registry_id, repository_name, template.get("imageTagMutability") or "MUTABLE",
            [ExclusionFilter(f["filter"], f["filterType"]) for f in filters] if filters else None,
            base.image_scanning_configuration,
            EncryptionConfiguration(enc["encryptionType"], enc.get("kmsKey")) if enc else None,
            [Tag(x["Key"], x["Value"]) for x in template.get("resourceTags", ())] or None, then=then)


def _matching(t: Any, registry: str, name: str, reason: str) -> dict[str, Any] | None:
    for candidate in covering_prefixes(name):
        doc = documents.get(t, documents.CREATION_TEMPLATE, documents.registry_key(registry, candidate))
        if doc is not None and reason in doc["appliedFor"]:
            return dict(doc)
    return None


def _template_docs(t: Any, registry: str) -> Any:
    return (doc for _, doc in documents.items(t, documents.CREATION_TEMPLATE, documents.registry_key(registry, "")))


def _prefix(value: Any, member: str = "prefix") -> str:
    text = checked_prefix(value, member, min_len=1, max_len=256)
    return text if text == ROOT else text.rstrip("/")


#: The template members (wire name -> the operations' keyword argument).
_MEMBERS = {
    "appliedFor": "applied_for", "description": "description", "encryptionConfiguration": "encryption_configuration",
    "resourceTags": "resource_tags", "imageTagMutability": "image_tag_mutability",
    "imageTagMutabilityExclusionFilters": "image_tag_mutability_exclusion_filters",
    "repositoryPolicy": "repository_policy", "lifecyclePolicy": "lifecycle_policy", "customRoleArn": "custom_role_arn",
}


def _members(arguments: dict[str, Any]) -> dict[str, Any]:
    """The template members among an operation's arguments, by wire name."""
    return {member: arguments[kwarg] for member, kwarg in _MEMBERS.items()}


def _settings(given: dict[str, Any], *, required: bool) -> dict[str, Any]:
    """The members given, validated and as stored (absent ones left out)."""
    out: dict[str, Any] = {}
    checks: dict[str, Callable[[Any], Any]] = {
        "appliedFor": _applied_for,
        "description": lambda x: v.string(x, "description", max_len=_MAX_DESCRIPTION),
        "encryptionConfiguration": lambda x: _encryption(v.encryption(x)),
        "resourceTags": _resource_tags,
        "imageTagMutability": lambda x: v.enum(x, "imageTagMutability", v.TAG_MUTABILITY),
        "imageTagMutabilityExclusionFilters": lambda x: x,  # checked with the mutability below
        "repositoryPolicy": _repository_policy,
        "lifecyclePolicy": _lifecycle_policy,
        "customRoleArn": lambda x: v.string(x, "customRoleArn", max_len=_MAX_ROLE_CHARS),
    }
    for member, check in checks.items():
        if given.get(member) is not None:
            out[member] = check(given[member])
    if required and "appliedFor" not in out:
        raise invalid_parameter("appliedFor", "Member must not be null")
    if "imageTagMutabilityExclusionFilters" in out or "imageTagMutability" in out:
        out["imageTagMutabilityExclusionFilters"] = v.exclusion_filters(
            out.get("imageTagMutabilityExclusionFilters"), out.get("imageTagMutability", "MUTABLE"))
    return out


def _resource_tags(tags: Any) -> list[dict[str, str]]:
    """Tags as CreateRepository checks them; refused as InvalidParameter, the one client error
    the template operations have."""
    try:
        return v.tags(tags)
    except (InvalidTagParameterException, TooManyTagsException) as e:
        raise invalid_parameter("resourceTags", e.message) from None


def _check_mutability(doc: dict[str, Any]) -> None:
    filters = [ExclusionFilter(f["filter"], f["filterType"]) for f in doc.get("imageTagMutabilityExclusionFilters", ())]
    v.exclusion_filters(filters or None, doc.get("imageTagMutability", "MUTABLE"))


def _applied_for(value: Any) -> list[str]:
    items = v.str_list(value, "appliedFor", min_items=1, max_items=len(APPLIED_FOR))
    for item in items:
        v.enum(item, "appliedFor", APPLIED_FOR)
    return sorted(set(items), key=APPLIED_FOR.index)


def _encryption(conf: EncryptionConfiguration) -> dict[str, Any]:
    out: dict[str, Any] = {"encryptionType": conf.encryption_type}
    if conf.kms_key is not None:
        out["kmsKey"] = conf.kms_key
    return out


def _repository_policy(text: Any) -> str:
    v.string(text, "repositoryPolicy", max_len=MAX_POLICY_CHARS)
    if text:
        parse_repository_policy(text)
    return str(text)


def _lifecycle_policy(text: Any) -> str:
    v.string(text, "lifecyclePolicy", max_len=_MAX_LIFECYCLE_CHARS)
    if text:
        parse_policy(text)
    return str(text)


def _template(doc: dict[str, Any]) -> RepositoryCreationTemplate:
    enc = doc.get("encryptionConfiguration")
    return RepositoryCreationTemplate(
        prefix=doc["prefix"], description=doc.get("description"),
        encryption_configuration=EncryptionConfiguration(enc["encryptionType"], enc.get("kmsKey")) if enc else None,
        resource_tags=tuple(Tag(x["Key"], x["Value"]) for x in doc.get("resourceTags", ())),
        image_tag_mutability=doc.get("imageTagMutability"),
        image_tag_mutability_exclusion_filters=tuple(
            ExclusionFilter(f["filter"], f["filterType"]) for f in doc.get("imageTagMutabilityExclusionFilters", ())
        ) or None,
        repository_policy=doc.get("repositoryPolicy"), lifecycle_policy=doc.get("lifecyclePolicy"),
        applied_for=tuple(doc["appliedFor"]), custom_role_arn=doc.get("customRoleArn"),
        created_at=doc["createdAt"], updated_at=doc["updatedAt"])


def _not_found(registry: str, prefix: str) -> TemplateNotFoundException:
    return TemplateNotFoundException(
        f"The repository creation template with the prefix '{prefix}' does not exist in the registry with id "
        f"'{registry}'")
