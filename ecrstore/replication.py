"""Registry replication: PutReplicationConfiguration, DescribeRegistry,
DescribeImageReplicationStatus, and the replication of each push.

A registry's configuration is one document (``REPLICATION_CONFIG``, keyed by the registry id).
After each PutImage commit (a push hook, so /v2/ manifest PUTs too) an image pushed to a
repository a rule's filters match (no filters: every repository) is replicated to each of the
rule's destinations:

- a destination in another region is not served by this store: FAILED, ``REGION_NOT_SERVED``;
- another registry must permit the source account ``ecr:ReplicateImage`` in its registry
  policy (``REPLICATION_NOT_PERMITTED``), and ``ecr:CreateRepository`` when the repository
  has to be created (``REPOSITORY_CREATION_NOT_PERMITTED``);
- the destination repository, when absent, is created with the source repository's name, by
  the destination registry's creation template for ``REPLICATION`` when one covers the name
  (its settings, tags and policies: :mod:`.creation_templates`), else with the source's
  settings (tag mutability and its exclusions, scan on push, encryption);
- the image's config and layers become layers of the destination repository without a byte
  moving (the store holds each blob once: :meth:`.Layers.link_replica`), then the same
  manifest is put there (same digest, same tag); a manifest list or index has its children
  replicated first. A tag the destination holds immutably stays: ``IMAGE_TAG_IMMUTABLE``.

Replication runs synchronously after the source commit, in the pushing thread: it moves no
bytes, only index writes (a few per destination), so the push's acknowledgement waits a
bounded time, and a replication failure is recorded in the status, never raised to the push.
Statuses (``REPLICATION_STATUS``, one document per source image) are written IN_PROGRESS
inside the push's own transaction (:meth:`Replication.mark_pending`, an
:attr:`.Images.commit_hooks` entry), then COMPLETE or FAILED per destination after it. So a
crash at any moment after the push commits leaves IN_PROGRESS entries, and
:meth:`Replication.resume` (run when ``ecrstore serve`` starts) carries them out; every step
is idempotent.

Replicated images are put without the push hooks: replication is not transitive (an image
replicated into a registry is not replicated onward by that registry's own rules). Deletions
are not replicated: a rule with ``deleteReplication`` enabled is refused.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any, Protocol

from . import documents
from . import validate as v
from .creation_templates import CreationTemplates, RepositorySettings
from .digest import Digest, try_parse_digest
from .errors import (
    EcrError,
    ImageAlreadyExistsException,
    ImageNotFoundException,
    InvalidParameterException,
    RepositoryAlreadyExistsException,
    RepositoryNotFoundException,
    invalid_parameter,
)
from .images import Images
from .index.base import Index, ReadTxn, WriteTxn
from .index.records import RepoRecord
from .layers import Layers
from .manifest import parse_manifest
from .models import (
    DeleteReplication,
    DescribeImageReplicationStatusResult,
    DescribeRegistryResult,
    EncryptionConfiguration,
    ExclusionFilter,
    ImageIdentifier,
    ImageReplicationStatus,
    ImageScanningConfiguration,
    PutImageResult,
    PutReplicationConfigurationResult,
    ReplicationConfiguration,
    ReplicationDestination,
    ReplicationRule,
    RepositoryFilter,
)
from .repositories import Repositories

__all__ = ["FAILURE_CODES", "Permits", "Replication"]

log = logging.getLogger("ecrstore.replication")

class Permits(Protocol):
    """Who decides whether a registry accepts replication from another account (the store's
    :class:`~ecrstore.policies.Policies`)."""

    def registry_permits(self, registry_id: str, principal_account: str, action: str) -> bool:
        """Whether the registry's registry policy allows ``principal_account`` ``action``
        (``"ecr:ReplicateImage"``, ``"ecr:CreateRepository"``)."""
        ...

# The service model's bounds (botocore's ECR model: ReplicationRuleList, ReplicationDestinationList,
# RepositoryFilterList, Region, RepositoryFilterValue).
MAX_RULES = 25
MAX_DESTINATIONS = 100
MAX_FILTERS = 100
_REGION_RE = re.compile(r"[0-9a-z-]{2,25}")
_REGION_PATTERN = "[0-9a-z-]{2,25}"
_FILTER_PATTERN = r"^(?:[a-z0-9]+(?:[._-][a-z0-9]*)*/)*[a-z0-9]*(?:[._-][a-z0-9]*)*$"
_FILTER_RE = re.compile(_FILTER_PATTERN)
_FILTER_TYPES = ("PREFIX_MATCH",)

IN_PROGRESS, COMPLETE, FAILED = "IN_PROGRESS", "COMPLETE", "FAILED"
#: failureCode of a FAILED destination -> what it means.
FAILURE_CODES = {
    "REGION_NOT_SERVED": "the destination region is not served by this store",
    "REPLICATION_NOT_PERMITTED": "the destination registry's policy does not allow ecr:ReplicateImage",
    "REPOSITORY_CREATION_NOT_PERMITTED": "the destination repository does not exist and the destination "
                                         "registry's policy does not allow ecr:CreateRepository",
    "IMAGE_TAG_IMMUTABLE": "the destination repository holds the tag immutably for another image",
    "LIMIT_EXCEEDED": "a quota of the destination registry or repository is reached",
    "SOURCE_IMAGE_NOT_FOUND": "the source image or its content was deleted before it was replicated",
    "REPLICATION_FAILED": "the destination refused the image (the reason is logged)",
}
#: Errors that leave a destination IN_PROGRESS for :meth:`Replication.resume`: the store's own
#: failures, and a destination repository deleted while the image was being replicated into it.
_RETRIED = ("ServerException", "RepositoryNotFoundException")
_CODE_OF_ERROR = {
    "ImageTagAlreadyExistsException": "IMAGE_TAG_IMMUTABLE",
    "LimitExceededException": "LIMIT_EXCEEDED",
    "LayersNotFoundException": "SOURCE_IMAGE_NOT_FOUND",
    "ImageNotFoundException": "SOURCE_IMAGE_NOT_FOUND",
    "ReferencedImagesNotFoundException": "SOURCE_IMAGE_NOT_FOUND",
}


class _Failed(Exception):
    def __init__(self, code: str, reason: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.reason = reason or FAILURE_CODES[code]


class Replication:
    """The replication area of a store (``store.replication``). Thread-safe: every read is
    one index snapshot and every write one transaction; several processes may share the store."""

    def __init__(self, index: Index, repos: Repositories, images: Images, layers: Layers, policies: Permits,
                 templates: CreationTemplates) -> None:
        self._templates = templates
        self._index = index
        self._repos = repos
        self._images = images
        self._layers = layers
        #: The store's default registry and its region (the one region it serves).
        self.registry_id = repos.registry_id
        self.region = repos.region
        self._policies = policies

    # --- configuration ---------------------------------------------------------------------

    def put_replication_configuration(self, replication_configuration: ReplicationConfiguration, *,
                                      registry_id: str | None = None) -> PutReplicationConfigurationResult:
        """PutReplicationConfiguration: replace the registry's configuration (no rules: none).
        Only images pushed afterwards are replicated. Errors: InvalidParameter (the model's
        bounds and patterns; a destination that is the source itself; a destination or
        filter given twice in a rule; ``deleteReplication`` enabled, which this store does
        not carry out). One transaction, durable on return (durable mode)."""
        registry = v.registry_id(registry_id, self.registry_id)
        conf = self._check_configuration(replication_configuration, registry)
        doc = {"rules": [_rule_doc(r) for r in conf.rules], "updatedAt": time.time()}

        def commit(t: WriteTxn) -> None:
            documents.put(t, documents.REPLICATION_CONFIG, documents.registry_key(registry), doc)

        self._index.write(commit)
        return PutReplicationConfigurationResult(conf)

    def describe_registry(self, *, registry_id: str | None = None) -> DescribeRegistryResult:
        """DescribeRegistry: the registry id and its replication configuration (no rules when
        none was put). Errors: InvalidParameter. One snapshot; changes nothing."""
        registry = v.registry_id(registry_id, self.registry_id)
        return DescribeRegistryResult(registry, self.configuration(registry))

    def configuration(self, registry_id: str) -> ReplicationConfiguration:
        """The registry's replication configuration (empty when none). One snapshot."""
        with self._index.read() as t:
            return self._configuration_in(t, registry_id)

    @staticmethod
    def _configuration_in(t: ReadTxn, registry_id: str) -> ReplicationConfiguration:
        doc = documents.get(t, documents.REPLICATION_CONFIG, documents.registry_key(registry_id))
        return ReplicationConfiguration(tuple(_rule_of(r) for r in (doc or {}).get("rules", ())))

    def _check_configuration(self, conf: Any, registry: str) -> ReplicationConfiguration:
        member = "replicationConfiguration"
        if not isinstance(conf, ReplicationConfiguration):
            raise invalid_parameter(member, "Member must be a ReplicationConfiguration")
        rules = _items(conf.rules, f"{member}.rules", 0, MAX_RULES)
        checked = []
        for i, rule in enumerate(rules, 1):
            path = f"{member}.rules.{i}"
            if not isinstance(rule, ReplicationRule):
                raise invalid_parameter(path, "Member must be a ReplicationRule")
            dests = _items(rule.destinations, f"{path}.destinations", 0, MAX_DESTINATIONS)
            seen: set[tuple[str, str]] = set()
            for j, d in enumerate(dests, 1):
                dpath = f"{path}.destinations.{j}"
                if not isinstance(d, ReplicationDestination):
                    raise invalid_parameter(dpath, "Member must be a ReplicationDestination")
                if not isinstance(d.region, str) or not _REGION_RE.fullmatch(d.region):
                    raise invalid_parameter(f"{dpath}.region",
                                            f"Member must satisfy regular expression pattern: {_REGION_PATTERN}")
                if d.registry_id is None:
                    raise invalid_parameter(f"{dpath}.registryId", "Member must not be null")
                v.registry_id(d.registry_id, registry, f"{dpath}.registryId")
                if (d.region, d.registry_id) == (self.region, registry):
                    raise InvalidParameterException(
                        f"Invalid parameter at '{dpath}' failed to satisfy constraint: 'A replication "
                        f"destination cannot be the source registry itself (region {d.region}, registry "
                        f"{registry})'"
                    )
                if (d.region, d.registry_id) in seen:
                    raise InvalidParameterException(
                        f"Invalid parameter at '{dpath}' failed to satisfy constraint: 'Duplicate replication "
                        f"destination (region {d.region}, registry {d.registry_id}) in the rule'"
                    )
                seen.add((d.region, d.registry_id))
            filters = None
            if rule.repository_filters is not None:
                filters = tuple(_check_filters(rule.repository_filters, f"{path}.repositoryFilters"))
            if rule.delete_replication is not None:
                if not isinstance(rule.delete_replication, DeleteReplication) \
                        or not isinstance(rule.delete_replication.enabled, bool):
                    raise invalid_parameter(f"{path}.deleteReplication", "Member must be a structure with a "
                                            "boolean enabled")
                if rule.delete_replication.enabled:
                    raise InvalidParameterException(
                        f"Invalid parameter at '{path}.deleteReplication.enabled' failed to satisfy "
                        "constraint: 'Delete replication is not supported by this registry'"
                    )
            checked.append(ReplicationRule(tuple(dests), filters, rule.delete_replication))
        return ReplicationConfiguration(tuple(checked))

    # --- status ----------------------------------------------------------------------------

    def describe_image_replication_status(self, repository_name: str, image_id: ImageIdentifier, *,
                                          registry_id: str | None = None) -> DescribeImageReplicationStatusResult:
        """DescribeImageReplicationStatus: the status of each destination the image was
        replicated to (none when no rule matched its pushes). ``image_id`` by digest, tag or
        both. Errors: InvalidParameter, RepositoryNotFound, ImageNotFound. One snapshot."""
        if not isinstance(image_id, ImageIdentifier):
            raise invalid_parameter("imageId", "Member must be an ImageIdentifier")
        digest = tag = None
        if image_id.image_digest is not None:
            digest = try_parse_digest(image_id.image_digest) if isinstance(image_id.image_digest, str) else None
            if digest is None or not digest.is_sha256:
                raise invalid_parameter("imageId.imageDigest",
                                        "Member must satisfy regular expression pattern: [a-zA-Z0-9-_+.]+:[a-fA-F0-9]+")
        if image_id.image_tag is not None:
            tag = v.image_tag(image_id.image_tag, "imageId.imageTag")
        if digest is None and tag is None:
            raise invalid_parameter("imageId", "Member must name an imageDigest or an imageTag")
        repo = self._repos.lookup(registry_id, repository_name)
        with self._index.read() as t:
            dg = t.get_tag(repo.id, tag) if tag is not None else None
            if digest is not None and (tag is None or dg == digest.raw):
                dg = digest.raw
            elif digest is not None:
                dg = None
            doc = None
            if dg is not None and t.get_image(repo.id, dg, with_manifest=False) is not None:
                doc = documents.get(t, documents.REPLICATION_STATUS, documents.image_key(repo.id, dg)) or {}
        if doc is None or dg is None:
            given = ", ".join(p for p in (f"imageDigest={image_id.image_digest}" if digest else "",
                                          f"imageTag={tag}" if tag else "") if p)
            raise ImageNotFoundException(
                f"The image with imageId {{{given}}} does not exist within the repository with name "
                f"'{repo.name}' in the registry with id '{repo.registry_id}'"
            )
        statuses = tuple(ImageReplicationStatus(e["region"], e["registryId"], e["status"], e.get("failureCode"))
                         for e in doc.get("destinations", ()))
        return DescribeImageReplicationStatusResult(repo.name, ImageIdentifier(str(Digest.from_raw(dg)), tag),
                                                    statuses)

    # --- carrying it out -------------------------------------------------------------------

    def after_push(self, result: PutImageResult) -> None:
        """The push hook: replicate a just-committed image to the destinations of every rule
        matching its repository. Never raises for a destination's failure (it is recorded in
        the image's status); returns once every destination is COMPLETE or FAILED."""
        image = result.image
        digest = try_parse_digest(image.image_id.image_digest or "")
        if digest is None:
            return
        dests = self._destinations(image.registry_id, image.repository_name)
        if not dests:
            return
        try:
            src = self._repos.lookup(image.registry_id, image.repository_name)
        except RepositoryNotFoundException:
            return  # deleted since the push: nothing left to replicate
        tag = image.image_id.image_tag
        key = documents.image_key(src.id, digest.raw)

        with self._index.read() as t:
            doc = documents.get(t, documents.REPLICATION_STATUS, key)
        if doc is None:
            return  # pushed through the engine without the commit hook: nothing pending
        pending = [d for d in dests if _entry_status(doc, d) == IN_PROGRESS]
        for d in pending:
            self._replicate(src, digest.raw, tag, d)

    def mark_pending(self, t: WriteTxn, repo: RepoRecord, dg: bytes, tag: str | None) -> None:
        """The commit hook: inside the push's own transaction, record IN_PROGRESS for each
        destination a rule sends the image to, so the push and the promise to replicate it
        commit together (a crash right after the commit leaves work :meth:`resume` finds)."""
        dests = self._destinations(repo.registry_id, repo.name, t)
        if not dests:
            return
        key = documents.image_key(repo.id, dg)
        doc = documents.get(t, documents.REPLICATION_STATUS, key) or {
            "registryId": repo.registry_id, "repositoryName": repo.name, "destinations": []}
        for d in dests:
            _set_entry(doc, d, {"status": IN_PROGRESS, "tag": tag})
        documents.put(t, documents.REPLICATION_STATUS, key, doc)

    def resume(self) -> int:
        """Carry out again every destination left IN_PROGRESS (by a crash, or a failure of
        the store itself); answer how many were run. Idempotent, safe while the store serves
        (``ecrstore serve`` runs it at start)."""
        with self._index.read() as t:
            pending = [(key, doc) for key, doc in documents.items(t, documents.REPLICATION_STATUS)
                       if any(e.get("status") == IN_PROGRESS for e in doc.get("destinations", ()))]
        count = 0
        for key, doc in pending:
            repo_hex, _, digest_hex = key.partition("/")
            try:
                src = self._repos.lookup(doc["registryId"], doc["repositoryName"])
            except RepositoryNotFoundException:
                continue
            if src.id != int(repo_hex, 16):
                continue  # the repository was deleted and re-created: its documents went with it
            for e in doc["destinations"]:
                if e.get("status") == IN_PROGRESS:
                    self._replicate(src, bytes.fromhex(digest_hex), e.get("tag"),
                                    ReplicationDestination(e["region"], e["registryId"]))
                    count += 1
        return count

    def _destinations(self, registry: str, repository_name: str,
                      t: ReadTxn | None = None) -> list[ReplicationDestination]:
        out: list[ReplicationDestination] = []
        conf = self.configuration(registry) if t is None else self._configuration_in(t, registry)
        for rule in conf.rules:
            filters = rule.repository_filters
            if filters and not any(repository_name.startswith(f.filter) for f in filters):
                continue
            out.extend(d for d in rule.destinations if d not in out)
        return out

    def _replicate(self, src: RepoRecord, dg: bytes, tag: str | None, dest: ReplicationDestination) -> None:
        """One destination: carry it out and record COMPLETE or FAILED."""
        entry: dict[str, Any]
        try:
            self._carry_out(src, dg, tag, dest)
            entry = {"status": COMPLETE}
        except _Failed as f:
            entry = {"status": FAILED, "failureCode": f.code, "reason": f.reason}
        except EcrError as e:
            if e.code in _RETRIED:
                log.error("replicating %s@sha256:%s to %s/%s: %s; left IN_PROGRESS", src.name, dg.hex(),
                          dest.region, dest.registry_id, e)
                return
            entry = {"status": FAILED, "failureCode": _CODE_OF_ERROR.get(e.code, "REPLICATION_FAILED"),
                     "reason": e.message}
        if entry["status"] == FAILED:
            log.warning("replication of %s@sha256:%s to %s/%s failed: %s (%s)", src.name, dg.hex(),
                        dest.region, dest.registry_id, entry["failureCode"], entry["reason"])
        entry["tag"] = tag
        key = documents.image_key(src.id, dg)

        def record(t: WriteTxn) -> None:
            doc = documents.get(t, documents.REPLICATION_STATUS, key)
            if doc is None:
                return  # the image (and its repository's documents) went meanwhile
            _set_entry(doc, dest, entry)
            documents.put(t, documents.REPLICATION_STATUS, key, doc)

        self._index.write(record)

    def _carry_out(self, src: RepoRecord, dg: bytes, tag: str | None, dest: ReplicationDestination) -> None:
        if dest.region != self.region:
            raise _Failed("REGION_NOT_SERVED", f"the region {dest.region} is not served by this store "
                                               f"(it serves {self.region})")
        cross = dest.registry_id != src.registry_id
        if cross and not self._policies.registry_permits(dest.registry_id, src.registry_id, "ecr:ReplicateImage"):
            raise _Failed("REPLICATION_NOT_PERMITTED")
        target = self._destination_repository(src, dest.registry_id, cross)
        self._copy(src, target, dg, tag)

    def _destination_repository(self, src: RepoRecord, registry: str, cross: bool) -> RepoRecord:
        try:
            return self._repos.lookup(registry, src.name)
        except RepositoryNotFoundException:
            pass
        if cross and not self._policies.registry_permits(registry, src.registry_id, "ecr:CreateRepository"):
            raise _Failed("REPOSITORY_CREATION_NOT_PERMITTED")
        try:
            self._templates.create_for("REPLICATION", registry, src.name, RepositorySettings(
                src.image_tag_mutability,
                [ExclusionFilter(f["filter"], f["filterType"]) for f in src.image_tag_mutability_exclusion_filters]
                or None,
                ImageScanningConfiguration(src.scan_on_push),
                EncryptionConfiguration(src.encryption_type, src.kms_key)))
        except RepositoryAlreadyExistsException:
            pass  # created meanwhile (another push replicating): use it
        return self._repos.lookup(registry, src.name)

    def _copy(self, src: RepoRecord, target: RepoRecord, dg: bytes, tag: str | None) -> None:
        """Put the source image (its children first) in the target repository."""
        with self._index.read() as t:
            rec = t.get_image(src.id, dg)
        if rec is None:
            raise _Failed("SOURCE_IMAGE_NOT_FOUND")
        text = rec.manifest.decode("utf-8")
        parsed = parse_manifest(text, rec.media_type, max_layers=10**9)  # it was valid when put
        if parsed.is_index:
            for child in parsed.manifests:
                self._copy(src, target, child.digest.raw, None)
        else:
            blobs = [d.digest.raw for d in ((parsed.config,) if parsed.config else ()) + parsed.layers]
            self._layers.link_replica(src, target, blobs)
        try:
            self._images.put_image(target.registry_id, target.name, text, rec.media_type, tag, None,
                                   commit_hooks=False)
        except ImageAlreadyExistsException:
            pass  # already there (with this tag): replicated before, or a resumed run


def _items(value: Any, member: str, low: int, high: int) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise invalid_parameter(member, "Member must be a list")
    if not low <= len(value) <= high:
        raise invalid_parameter(member, f"Member must have length between {low} and {high}")
    return value


def _check_filters(value: Any, member: str) -> list[RepositoryFilter]:
    filters = _items(value, member, 1, MAX_FILTERS)
    out: list[RepositoryFilter] = []
    for k, f in enumerate(filters, 1):
        path = f"{member}.{k}"
        if not isinstance(f, RepositoryFilter):
            raise invalid_parameter(path, "Member must be a RepositoryFilter")
        v.enum(f.filter_type, f"{path}.filterType", _FILTER_TYPES)
        v.string(f.filter, f"{path}.filter", min_len=2, max_len=256)
        if not _FILTER_RE.fullmatch(f.filter):
            raise invalid_parameter(f"{path}.filter", f"Member must satisfy regular expression pattern: "
                                                      f"{_FILTER_PATTERN}")
        if f in out:
            raise InvalidParameterException(
                f"Invalid parameter at '{path}' failed to satisfy constraint: 'Duplicate repository filter "
                f"{f.filter!r} in the rule'"
            )
        out.append(RepositoryFilter(f.filter, f.filter_type))
    return out


def _entry_of(doc: dict[str, Any], dest: ReplicationDestination) -> int | None:
    """Where a status document holds the entry of ``dest`` (None: it holds none)."""
    return next((i for i, e in enumerate(doc["destinations"])
                 if (e["region"], e["registryId"]) == (dest.region, dest.registry_id)), None)


def _entry_status(doc: dict[str, Any], dest: ReplicationDestination) -> str | None:
    """The status a status document records for ``dest`` (None: none)."""
    i = _entry_of(doc, dest)
    return None if i is None else str(doc["destinations"][i]["status"])


def _set_entry(doc: dict[str, Any], dest: ReplicationDestination, values: dict[str, Any]) -> None:
    """Replace the status entry of ``dest`` in a status document (appending it when new)."""
    entry = {"region": dest.region, "registryId": dest.registry_id, **values}
    i = _entry_of(doc, dest)
    if i is None:
        doc["destinations"].append(entry)
    else:
        doc["destinations"][i] = entry


def _rule_doc(rule: ReplicationRule) -> dict[str, Any]:
    doc: dict[str, Any] = {"destinations": [{"region": d.region, "registryId": d.registry_id}
                                            for d in rule.destinations]}
    if rule.repository_filters is not None:
        doc["repositoryFilters"] = [{"filter": f.filter, "filterType": f.filter_type}
                                    for f in rule.repository_filters]
    if rule.delete_replication is not None:
        doc["deleteReplication"] = {"enabled": rule.delete_replication.enabled}
    return doc


def _rule_of(doc: dict[str, Any]) -> ReplicationRule:
    filters = doc.get("repositoryFilters")
    delete = doc.get("deleteReplication")
    return ReplicationRule(
        tuple(ReplicationDestination(d["region"], d["registryId"]) for d in doc["destinations"]),
        tuple(RepositoryFilter(f["filter"], f["filterType"]) for f in filters) if filters is not None else None,
        DeleteReplication(delete["enabled"]) if delete is not None else None,
    )
