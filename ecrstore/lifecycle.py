"""Lifecycle policies: ECR's Put/Get/DeleteLifecyclePolicy, Start/GetLifecyclePolicyPreview,
and the expiry runs that apply the policies (``Store.lifecycle``).

A repository's policy is a ``LIFECYCLE_POLICY`` document (its text, the repository's registry
and name, and when a run last applied it); its latest preview a ``LIFECYCLE_PREVIEW`` document
(the text previewed and the images it expires). Both are keyed by the repository's id and go
with the repository.

The preview and the runs evaluate with one function (:func:`.lifecycle_rules.evaluate`) over
the same snapshot of a repository's images (:func:`_image_states`), so a preview answers
exactly what a run over the same images removes. A run evaluates in one read snapshot and
deletes in one write transaction that re-checks each image: one pushed again, re-tagged or
newly referenced by a manifest list since the evaluation is left (reported as skipped), and a
repository whose policy changed meanwhile is left whole until the next run.

A preview completes within StartLifecyclePolicyPreview (its status is COMPLETE when the call
returns), so LifecyclePolicyPreviewInProgressException is never raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from . import documents
from . import validate as v
from .digest import sha256_text
from .errors import (
    InvalidParameterException,
    LifecyclePolicyNotFoundException,
    LifecyclePolicyPreviewNotFoundException,
    invalid_parameter,
    repository_not_found,
)
from .images import Images
from .index.base import Index, ReadTxn, WriteTxn
from .index.records import RepoRecord
from .lifecycle_rules import Expiry, ImageState, evaluate, parse_policy
from .manifest import INDEXES, parse_manifest
from .models import (
    GetLifecyclePolicyPreviewResult,
    ImageIdentifier,
    LifecyclePolicy,
    LifecyclePolicyPreviewFilter,
    LifecyclePolicyPreviewResult,
    LifecyclePolicyPreviewSummary,
    LifecyclePolicyRuleAction,
    LifecycleRepositoryRun,
    LifecycleRunReport,
    StartLifecyclePolicyPreviewResult,
)
from .repositories import Repositories
from .tokens import decode_token, encode_token

__all__ = ["Lifecycle"]

#: GetLifecyclePolicyPreview's page bound (LifecyclePreviewMaxResults) and default.
MAX_PREVIEW_RESULTS = 100
_PREVIEW_TAG_STATUS = ("TAGGED", "UNTAGGED", "ANY")
_EXPIRE = LifecyclePolicyRuleAction("EXPIRE")


class Lifecycle:
    """The lifecycle area of a store. Every method validates all its inputs first and changes
    nothing when it raises; writes are one index write transaction each, durable on return
    (in durable mode). Safe to share between threads and processes: concurrent writers are
    serialised by the index, and a run re-checks what it deletes inside its transaction."""

    def __init__(self, index: Index, repos: Repositories, images: Images, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._index = index
        self._repos = repos
        self._images = images
        self._clock = clock

    # --- policies ------------------------------------------------------------------------

    def put_lifecycle_policy(self, repository_name: str, lifecycle_policy_text: str, *,
                             registry_id: str | None = None) -> LifecyclePolicy:
        """PutLifecyclePolicy: validate the policy and set it (replacing any; the new one has
        not been evaluated yet). Errors: InvalidParameter (ECR's "Lifecycle policy validation
        failure" for the text), RepositoryNotFound."""
        parse_policy(lifecycle_policy_text)
        repo = self._repos.lookup(registry_id, repository_name)

        def commit(t: WriteTxn) -> None:
            _same_repo(t, repo)
            self.put_in(t, repo, lifecycle_policy_text)

        self._index.write(commit)
        return LifecyclePolicy(repo.registry_id, repo.name, lifecycle_policy_text)

    @staticmethod
    def put_in(t: WriteTxn, repo: RepoRecord, lifecycle_policy_text: str) -> None:
        """Set a validated policy inside a write transaction (a repository created with it)."""
        documents.put(t, documents.LIFECYCLE_POLICY, documents.repo_key(repo.id), {
            "text": lifecycle_policy_text, "registryId": repo.registry_id, "repositoryName": repo.name,
            "lastEvaluatedAt": None})

    def get_lifecycle_policy(self, repository_name: str, *, registry_id: str | None = None) -> LifecyclePolicy:
        """GetLifecyclePolicy. Errors: InvalidParameter, RepositoryNotFound,
        LifecyclePolicyNotFound. One snapshot."""
        repo = self._repos.lookup(registry_id, repository_name)
        with self._index.read() as t:
            doc = documents.get(t, documents.LIFECYCLE_POLICY, documents.repo_key(repo.id))
        if doc is None:
            raise _policy_not_found(repo)
        return _policy(repo, doc)

    def delete_lifecycle_policy(self, repository_name: str, *, registry_id: str | None = None) -> LifecyclePolicy:
        """DeleteLifecyclePolicy: remove the policy and answer what it was. Errors:
        InvalidParameter, RepositoryNotFound, LifecyclePolicyNotFound."""
        repo = self._repos.lookup(registry_id, repository_name)
        key = documents.repo_key(repo.id)

        def commit(t: WriteTxn) -> Any:
            _same_repo(t, repo)
            doc = documents.get(t, documents.LIFECYCLE_POLICY, key)
            if doc is None:
                raise _policy_not_found(repo)
            documents.delete(t, documents.LIFECYCLE_POLICY, key)
            return doc

        return _policy(repo, self._index.write(commit))

    # --- previews ------------------------------------------------------------------------

    def start_lifecycle_policy_preview(self, repository_name: str, *, lifecycle_policy_text: str | None = None,
                                       registry_id: str | None = None) -> StartLifecyclePolicyPreviewResult:
        """StartLifecyclePolicyPreview: evaluate ``lifecycle_policy_text`` (else the
        repository's policy) over the repository's images now and keep the result as the
        repository's preview, replacing the previous one. Errors: InvalidParameter,
        RepositoryNotFound, LifecyclePolicyNotFound (no text and no policy)."""
        if lifecycle_policy_text is not None:
            parse_policy(lifecycle_policy_text)
        repo = self._repos.lookup(registry_id, repository_name)
        key = documents.repo_key(repo.id)
        now = self._clock()

        def commit(t: WriteTxn) -> str:
            _same_repo(t, repo)
            text = lifecycle_policy_text
            if text is None:
                doc = documents.get(t, documents.LIFECYCLE_POLICY, key)
                if doc is None:
                    raise _policy_not_found(repo)
                text = str(doc["text"])
            expiries = evaluate(parse_policy(text), _image_states(t, repo.id), now)
            documents.put(t, documents.LIFECYCLE_PREVIEW, key, {
                "text": text, "status": "COMPLETE", "startedAt": now,
                "results": [[e.image.digest, list(e.image.tags), e.image.pushed_at, e.rule_priority]
                            for e in expiries],
            })
            return text

        text = self._index.write(commit)
        return StartLifecyclePolicyPreviewResult(repo.registry_id, repo.name, text, "COMPLETE")

    def get_lifecycle_policy_preview(
        self, repository_name: str, *, image_ids: Sequence[ImageIdentifier] | None = None,
        next_token: str | None = None, max_results: int | None = None,
        filter: LifecyclePolicyPreviewFilter | None = None, registry_id: str | None = None,
    ) -> GetLifecyclePolicyPreviewResult:
        """GetLifecyclePolicyPreview: a page of the latest preview's images (of those named by
        ``image_ids``, by digest or tag; of ``filter``'s tag status), in the order a run
        deletes them; the summary counts every image the preview expires. Errors:
        InvalidParameter, RepositoryNotFound, LifecyclePolicyPreviewNotFound. One snapshot."""
        limit = _preview_max_results(max_results)
        status = _preview_filter(filter)
        wanted = _wanted_ids(image_ids)
        repo = self._repos.lookup(registry_id, repository_name)
        with self._index.read() as t:
            doc = documents.get(t, documents.LIFECYCLE_PREVIEW, documents.repo_key(repo.id))
        if doc is None:
            raise LifecyclePolicyPreviewNotFoundException(
                f"Lifecycle policy preview for the repository with name '{repo.name}' does not exist in the "
                f"registry with id '{repo.registry_id}'"
            )
        all_results = [_preview_result(r) for r in doc["results"]]
        results = [r for r in all_results if _keep(r, status, wanted)]
        start = 0
        if next_token is not None:
            start = _decode_preview_token(next_token, repo, doc["startedAt"])
        page = results[start:start + limit]
        more = start + limit < len(results)
        token = encode_token("lifecycle-preview", repo.id, doc["startedAt"], start + limit) if more else None
        return GetLifecyclePolicyPreviewResult(
            repo.registry_id, repo.name, doc["text"], doc["status"], tuple(page),
            LifecyclePolicyPreviewSummary(len(all_results)), token)

    # --- expiry runs ---------------------------------------------------------------------

    def run(self, *, registry_id: str | None = None, repository_name: str | None = None,
            dry_run: bool = False, all_registries: bool = False, now: float | None = None) -> LifecycleRunReport:
        """Apply lifecycle policies: expire (delete, with their tags) the images each policy
        selects, in every repository of the registry that has a policy (of every registry
        with ``all_registries``), or in ``repository_name`` only. ``now`` (epoch seconds)
        replaces the clock for sinceImagePushed rules. Each repository is evaluated in one
        snapshot and changed in one write transaction that re-checks every deletion and
        records lastEvaluatedAt; with ``dry_run`` nothing is changed. The blobs of expired
        images are reclaimed by ``Store.gc``. Errors: InvalidParameter, RepositoryNotFound,
        LifecyclePolicyNotFound (a named repository without a policy)."""
        if not isinstance(dry_run, bool) or not isinstance(all_registries, bool):
            raise InvalidParameterException("dry_run and all_registries must be booleans")
        if now is not None and (isinstance(now, bool) or not isinstance(now, (int, float))):
            raise InvalidParameterException("now must be a number of epoch seconds")
        if repository_name is not None:
            repo = self._repos.lookup(registry_id, repository_name)
            with self._index.read() as t:
                if documents.get(t, documents.LIFECYCLE_POLICY, documents.repo_key(repo.id)) is None:
                    raise _policy_not_found(repo)
            targets = [repo]
        else:
            registry = v.registry_id(registry_id, self._repos.registry_id)
            targets = self._repos_with_policies(None if all_registries else registry)
        runs = [found for repo in targets if (found := self._run_one(repo, dry_run, now)) is not None]
        return LifecycleRunReport(tuple(runs), dry_run)

    def _repos_with_policies(self, registry: str | None) -> list[RepoRecord]:
        found = []
        with self._index.read() as t:
            for key, doc in documents.items(t, documents.LIFECYCLE_POLICY):
                if registry is not None and doc["registryId"] != registry:
                    continue
                rec = t.get_repo(doc["registryId"], doc["repositoryName"])
                if rec is not None and documents.repo_key(rec.id) == key:
                    found.append(rec)
        return sorted(found, key=lambda r: (r.registry_id, r.name))

    def _run_one(self, repo: RepoRecord, dry_run: bool, now: float | None) -> LifecycleRepositoryRun | None:
        key = documents.repo_key(repo.id)
        when = self._clock() if now is None else float(now)
        with self._index.read() as t:
            doc = documents.get(t, documents.LIFECYCLE_POLICY, key)
            states = _image_states(t, repo.id) if doc is not None else []
        if doc is None:  # deleted since it was listed
            return None
        expiries = evaluate(parse_policy(doc["text"]), states, when)
        if dry_run:
            return LifecycleRepositoryRun(repo.registry_id, repo.name, tuple(_result(e) for e in expiries))

        def commit(t: WriteTxn) -> tuple[list[Expiry], list[str]] | None:
            cur = t.get_repo(repo.registry_id, repo.name)
            cur_doc = documents.get(t, documents.LIFECYCLE_POLICY, key)
            if cur is None or cur.id != repo.id or cur_doc is None or cur_doc["text"] != doc["text"]:
                return None  # the repository or its policy changed: the next run applies the new one
            expired: list[Expiry] = []
            skipped: list[str] = []
            for e in expiries:  # manifest lists come before the images they reference
                dg = bytes.fromhex(e.image.digest.partition(":")[2])
                rec = t.get_image(repo.id, dg, with_manifest=False)
                if rec is None:
                    continue  # already deleted
                if (rec.pushed_at != e.image.pushed_at or tuple(sorted(t.image_tags(repo.id, dg))) != e.image.tags
                        or t.image_is_referenced(repo.id, dg)):
                    skipped.append(e.image.digest)
                    continue
                self._images.delete_image_in(t, repo.id, dg)
                expired.append(e)
            documents.put(t, documents.LIFECYCLE_POLICY, key, {**cur_doc, "lastEvaluatedAt": when})
            return expired, skipped

        done = self._index.write(commit)
        if done is None:
            return None
        return LifecycleRepositoryRun(repo.registry_id, repo.name, tuple(_result(e) for e in done[0]),
                                      tuple(done[1]))


# --- helpers -----------------------------------------------------------------------------------


def _image_states(t: ReadTxn, repo_id: int) -> list[ImageState]:
    """Every image of the repository as evaluation sees it (tags sorted; the manifest lists of
    the repository that reference it), from one snapshot."""
    found: list[tuple[bytes, float, tuple[str, ...]]] = []
    parents: dict[bytes, list[str]] = {}
    for dg in t.iter_image_digests(repo_id):
        rec = t.get_image(repo_id, dg, with_manifest=False)
        if rec is None:
            continue
        found.append((dg, rec.pushed_at, tuple(sorted(t.image_tags(repo_id, dg)))))
        if rec.media_type in INDEXES:
            full = t.get_image(repo_id, dg)
            if full is None:
                continue
            try:
                parsed = parse_manifest(full.manifest.decode("utf-8"), full.media_type, max_layers=10**9)
            except InvalidParameterException:  # stored manifests were valid when put
                continue
            for m in parsed.manifests:
                parents.setdefault(m.digest.raw, []).append(sha256_text(dg))
    return [ImageState(sha256_text(dg), tags, pushed, tuple(parents.get(dg, ())))
            for dg, pushed, tags in found]


def _same_repo(t: ReadTxn, repo: RepoRecord) -> None:
    cur = t.get_repo(repo.registry_id, repo.name)
    if cur is None or cur.id != repo.id:
        raise repository_not_found(repo.registry_id, repo.name)


def _policy_not_found(repo: RepoRecord) -> LifecyclePolicyNotFoundException:
    return LifecyclePolicyNotFoundException(
        f"Lifecycle policy does not exist for the repository with name '{repo.name}' in the registry "
        f"with id '{repo.registry_id}'"
    )


def _policy(repo: RepoRecord, doc: Any) -> LifecyclePolicy:
    return LifecyclePolicy(repo.registry_id, repo.name, doc["text"], doc.get("lastEvaluatedAt"))


def _result(e: Expiry) -> LifecyclePolicyPreviewResult:
    return LifecyclePolicyPreviewResult(e.image.tags, e.image.digest, e.image.pushed_at, _EXPIRE, e.rule_priority)


def _preview_result(row: list[Any]) -> LifecyclePolicyPreviewResult:
    digest, tags, pushed_at, priority = row
    return LifecyclePolicyPreviewResult(tuple(tags), digest, pushed_at, _EXPIRE, priority)


def _preview_max_results(value: Any) -> int:
    if value is None:
        return MAX_PREVIEW_RESULTS
    n = v.non_negative(value, "maxResults")
    if not 1 <= n <= MAX_PREVIEW_RESULTS:
        raise invalid_parameter("maxResults", f"Member must have value between 1 and {MAX_PREVIEW_RESULTS}")
    return n


def _preview_filter(value: Any) -> str:
    if value is None:
        return "ANY"
    if not isinstance(value, LifecyclePolicyPreviewFilter):
        raise invalid_parameter("filter", "Member must be a LifecyclePolicyPreviewFilter")
    if value.tag_status is None:
        return "ANY"
    return v.enum(value.tag_status, "filter.tagStatus", _PREVIEW_TAG_STATUS)


def _wanted_ids(image_ids: Any) -> list[ImageIdentifier] | None:
    if image_ids is None:
        return None
    if isinstance(image_ids, (str, bytes)) or not isinstance(image_ids, Sequence):
        raise invalid_parameter("imageIds", "Member must be a list")
    if not 1 <= len(image_ids) <= 100:
        raise invalid_parameter("imageIds", "Member must have length between 1 and 100")
    for ident in image_ids:
        if not isinstance(ident, ImageIdentifier) or all(x is None for x in (ident.image_digest, ident.image_tag)):
            raise invalid_parameter("imageIds", "Member must be a list of ImageIdentifier with a digest or a tag")
        if any(x is not None and not isinstance(x, str) for x in (ident.image_digest, ident.image_tag)):
            raise invalid_parameter("imageIds", "imageDigest and imageTag must be strings")
    return list(image_ids)


def _keep(r: LifecyclePolicyPreviewResult, status: str, wanted: list[ImageIdentifier] | None) -> bool:
    if status == "TAGGED" and not r.image_tags or status == "UNTAGGED" and r.image_tags:
        return False
    if wanted is None:
        return True
    return any((i.image_digest is None or i.image_digest == r.image_digest)
               and (i.image_tag is None or i.image_tag in r.image_tags) for i in wanted)


def _decode_preview_token(token: object, repo: RepoRecord, started_at: float) -> int:
    def read(fields: list[object]) -> int:
        kind, rid, started, offset = fields
        if kind != "lifecycle-preview" or rid != repo.id or started != started_at:
            raise ValueError
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError
        return offset

    return decode_token(token, read)
