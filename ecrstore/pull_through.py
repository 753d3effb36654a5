"""Pull-through cache rules: which repositories of a registry mirror an upstream registry.

A rule maps an ECR repository prefix (``docker``, ``team/mirror``, or ``ROOT`` for every
repository) to an upstream registry; a ``/v2/`` pull of ``<prefix>/<name>`` that misses
locally is fetched from ``<upstreamRepositoryPrefix>/<name>`` upstream and stored (see
:mod:`ecrstore.server.oci.pull_through`). This module owns the rules' validation and their
documents (kind ``PULL_THROUGH_RULE``, key ``registry_key(registry, prefix)``); fetching is the
front end's, which connects its upstream client here (:meth:`PullThrough.connect`) so that
rules naming a secret are checked against the secrets it holds and ValidatePullThroughCacheRule
can reach the upstream.

Upstreams: any OCI distribution registry. ``upstreamRegistryUrl`` is ``host[:port]`` (HTTPS),
as ECR takes it; ``https://host[:port]`` and, as an ecrstore extension for plain-HTTP
upstreams on a trusted network, ``http://host[:port]`` are accepted too and kept as given.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from . import documents
from . import validate as v
from .errors import (
    InvalidParameterException,
    LimitExceededException,
    PullThroughCacheRuleAlreadyExistsException,
    PullThroughCacheRuleNotFoundException,
    SecretNotFoundException,
    UnsupportedUpstreamRegistryException,
    invalid_parameter,
)
from .index.base import ReadTxn, WriteTxn
from .limits import DEFAULT_PAGE
from .models import (
    DescribePullThroughCacheRulesResult,
    PullThroughCacheRule,
    UpdatePullThroughCacheRuleResult,
    ValidatePullThroughCacheRuleResult,
)

__all__ = ["MAX_RULES_PER_REGISTRY", "PREFIX_PATTERN", "ROOT", "UPSTREAM_REGISTRIES", "PullThrough", "Upstreams",
           "checked_prefix", "covering_prefixes", "upstream_name"]

#: ECR's quota of pull-through cache rules per registry.
MAX_RULES_PER_REGISTRY = 50
#: The prefix that stands for every repository (ecrRepositoryPrefix) or for none (upstream).
ROOT = "ROOT"
#: The model's UpstreamRegistry enum (a label here: every upstream speaks the same protocol).
UPSTREAM_REGISTRIES = ("ecr", "ecr-public", "quay", "k8s", "docker-hub", "github-container-registry",
                       "azure-container-registry", "gitlab-container-registry", "chainguard")

PREFIX_PATTERN = (r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$")
_PREFIX_RE = re.compile(PREFIX_PATTERN)
CREDENTIAL_ARN_PATTERN = (r"^arn:aws(-\w+)*:secretsmanager:[a-zA-Z0-9-:]+:secret:ecr\-pullthroughcache\/"
                          r"[a-zA-Z0-9\/_+=.@-]+$")
_ARN_RE = re.compile(CREDENTIAL_ARN_PATTERN)
_HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                      r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?")
_MAX_URL_CHARS = 2048


class Upstreams(Protocol):
    """What the front end that fetches from upstreams tells the rules (see :meth:`PullThrough.connect`)."""

    def has_secret(self, credential_arn: str) -> bool:
        """Whether a secret of that ARN is known (its credentials can be used)."""

    def probe(self, rule: PullThroughCacheRule) -> str | None:
        """Reach the rule's upstream ``/v2/`` with its credentials: None when it answered and
        accepted them, else why not (ValidatePullThroughCacheRule's ``failure``)."""


class _Unconnected:
    """No front end fetches in this process: no secret is known, nothing can be reached."""

    def has_secret(self, credential_arn: str) -> bool:
        return False

    def probe(self, rule: PullThroughCacheRule) -> str | None:
        return "No upstream client runs in this process (validate through ecrstore serve)"


class PullThrough:
    """The pull-through cache rules of a store's registries (``store.pull_through``).

    Every call validates its inputs before it reads or changes anything and raises only
    :mod:`ecrstore.errors` exceptions; a write is one index transaction, durable on return
    (durable mode). Safe to share between threads; several processes may change the rules of
    one store at once (the index serialises the writes, each re-checking under its lock).
    """

    def __init__(self, index: Any, *, registry_id: str, max_rules: int = MAX_RULES_PER_REGISTRY,
                 clock: Callable[[], float] = time.time) -> None:
        self._index = index
        self._registry_id = registry_id
        self._max = max_rules
        self._clock = clock
        self._upstreams: Upstreams = _Unconnected()
        self._lock = threading.Lock()

    def connect(self, upstreams: Upstreams) -> None:
        """Let rules use the secrets and the upstream client of a front end (ecrstore serve
        does this in each worker). Until then no credentialArn is known (SecretNotFound) and
        validation answers isValid false."""
        with self._lock:
            self._upstreams = upstreams

    # --- the operations ------------------------------------------------------------------

    def create_pull_through_cache_rule(
        self, ecr_repository_prefix: str, upstream_registry_url: str, *, registry_id: str | None = None,
        upstream_registry: str | None = None, credential_arn: str | None = None,
        custom_role_arn: str | None = None, upstream_repository_prefix: str | None = None,
    ) -> PullThroughCacheRule:
        """CreatePullThroughCacheRule (``upstream_repository_prefix`` defaults to ``ROOT``, as in
        ECR). Errors: InvalidParameter (a member outside the model's constraints, or an upstream
        prefix other than ROOT with the ROOT rule), UnsupportedUpstreamRegistry (an upstreamRegistryUrl that is not
        ``[http[s]://]host[:port]``), SecretNotFound (a credentialArn no secret of the server
        has), LimitExceeded (the registry holds MAX_RULES_PER_REGISTRY rules),
        PullThroughCacheRuleAlreadyExists (a rule of that prefix)."""
        registry = v.registry_id(registry_id, self._registry_id)
        prefix = checked_prefix(ecr_repository_prefix, "ecrRepositoryPrefix")
        url = _upstream_url(upstream_registry_url)
        label = (v.enum(upstream_registry, "upstreamRegistry", UPSTREAM_REGISTRIES)
                 if upstream_registry is not None else None)
        upstream_prefix = (checked_prefix(upstream_repository_prefix, "upstreamRepositoryPrefix")
                           if upstream_repository_prefix is not None else ROOT)
        if prefix == ROOT and upstream_prefix != ROOT:
            raise InvalidParameterException(
                "An upstreamRepositoryPrefix other than ROOT needs an ecrRepositoryPrefix other than ROOT")
        role = v.string(custom_role_arn, "customRoleArn", max_len=2048) if custom_role_arn is not None else None
        arn = self._credential(credential_arn) if credential_arn is not None else None
        now = self._clock()
        doc = {"prefix": prefix, "url": url, "registry": label, "credentialArn": arn, "customRoleArn": role,
               "upstreamPrefix": upstream_prefix, "createdAt": now, "updatedAt": now}

        def commit(t: WriteTxn) -> None:
            key = documents.registry_key(registry, prefix)
            if documents.get(t, documents.PULL_THROUGH_RULE, key) is not None:
                raise PullThroughCacheRuleAlreadyExistsException(
                    f"A pull through cache rule with the prefix '{prefix}' already exists in the registry "
                    f"with id '{registry}'")
            if sum(1 for _ in _rule_docs(t, registry)) >= self._max:
                raise LimitExceededException(
                    f"The registry with id '{registry}' holds its maximum of {self._max} pull through cache rules")
            documents.put(t, documents.PULL_THROUGH_RULE, key, doc)

        self._index.write(commit)
        return dataclasses.replace(_rule(registry, doc), updated_at=None)

    def describe_pull_through_cache_rules(
        self, *, registry_id: str | None = None, ecr_repository_prefixes: Sequence[str] | None = None,
        next_token: str | None = None, max_results: int | None = None,
    ) -> DescribePullThroughCacheRulesResult:
        """DescribePullThroughCacheRules: the named rules in the order asked (any prefix without
        a rule: PullThroughCacheRuleNotFound; paging does not apply to them, as with
        DescribeRepositories' names), or a page of all of them in prefix order (100 unless
        ``max_results``; ``next_token`` continues). Errors: InvalidParameter (also a bent
        nextToken, or maxResults/nextToken with prefixes), PullThroughCacheRuleNotFound. Reads
        one consistent snapshot."""
        registry = v.registry_id(registry_id, self._registry_id)
        page = v.max_results(max_results)
        if ecr_repository_prefixes is not None:
            raw = v.str_list(ecr_repository_prefixes, "ecrRepositoryPrefixes", max_items=100)
            wanted = [checked_prefix(p, "ecrRepositoryPrefixes") for p in raw]
            if page is not None or next_token is not None:
                raise InvalidParameterException("maxResults and nextToken cannot be used with ecrRepositoryPrefixes")
            with self._index.read() as t:
                found = documents.named(t, documents.PULL_THROUGH_RULE, registry, wanted,
                                        lambda p: _not_found(registry, p))
            return DescribePullThroughCacheRulesResult(tuple(_rule(registry, d) for d in found))
        with self._index.read() as t:
            docs, token = documents.page(t, documents.PULL_THROUGH_RULE, registry, next_token, page or DEFAULT_PAGE)
        return DescribePullThroughCacheRulesResult(tuple(_rule(registry, d) for d in docs), token)

    def update_pull_through_cache_rule(
        self, ecr_repository_prefix: str, *, registry_id: str | None = None, credential_arn: str | None = None,
        custom_role_arn: str | None = None,
    ) -> UpdatePullThroughCacheRuleResult:
        """UpdatePullThroughCacheRule: a new credentialArn and/or customRoleArn (a member not
        sent stays as it was). Errors: InvalidParameter, SecretNotFound,
        PullThroughCacheRuleNotFound."""
        registry = v.registry_id(registry_id, self._registry_id)
        prefix = checked_prefix(ecr_repository_prefix, "ecrRepositoryPrefix")
        role = v.string(custom_role_arn, "customRoleArn", max_len=2048) if custom_role_arn is not None else None
        arn = self._credential(credential_arn) if credential_arn is not None else None
        now = self._clock()

        def commit(t: WriteTxn) -> dict[str, Any]:
            key = documents.registry_key(registry, prefix)
            doc = documents.get(t, documents.PULL_THROUGH_RULE, key)
            if doc is None:
                raise _not_found(registry, prefix)
            doc.update({k: val for k, val in (("credentialArn", arn), ("customRoleArn", role)) if val is not None})
            doc["updatedAt"] = now
            documents.put(t, documents.PULL_THROUGH_RULE, key, doc)
            return dict(doc)

        doc = self._index.write(commit)
        return UpdatePullThroughCacheRuleResult(
            ecr_repository_prefix=prefix, registry_id=registry, updated_at=doc["updatedAt"],
            credential_arn=doc.get("credentialArn"), custom_role_arn=doc.get("customRoleArn"),
            upstream_repository_prefix=doc.get("upstreamPrefix"))

    def delete_pull_through_cache_rule(self, ecr_repository_prefix: str, *,
                                       registry_id: str | None = None) -> PullThroughCacheRule:
        """DeletePullThroughCacheRule: the rule as it was. The repositories it created stay
        (as in ECR). Errors: InvalidParameter, PullThroughCacheRuleNotFound."""
        registry = v.registry_id(registry_id, self._registry_id)
        prefix = checked_prefix(ecr_repository_prefix, "ecrRepositoryPrefix")

        def commit(t: WriteTxn) -> dict[str, Any]:
            key = documents.registry_key(registry, prefix)
            doc = documents.get(t, documents.PULL_THROUGH_RULE, key)
            if doc is None:
                raise _not_found(registry, prefix)
            documents.delete(t, documents.PULL_THROUGH_RULE, key)
            return dict(doc)

        return dataclasses.replace(_rule(registry, self._index.write(commit)), updated_at=None)

    def validate_pull_through_cache_rule(self, ecr_repository_prefix: str, *,
                                         registry_id: str | None = None) -> ValidatePullThroughCacheRuleResult:
        """ValidatePullThroughCacheRule: whether the upstream's ``/v2/`` answers and accepts the
        rule's credentials (``is_valid``; ``failure`` says why not). Makes network requests
        (bounded by the upstream client's timeouts); changes nothing. Errors: InvalidParameter,
        PullThroughCacheRuleNotFound."""
        rule = self.get_rule(ecr_repository_prefix, registry_id=registry_id)
        with self._lock:
            upstreams = self._upstreams
        if rule.credential_arn is not None and not upstreams.has_secret(rule.credential_arn):
            failure: str | None = f"The secret '{rule.credential_arn}' of the rule is not known to this server"
        else:
            failure = upstreams.probe(rule)
        return ValidatePullThroughCacheRuleResult(
            ecr_repository_prefix=rule.ecr_repository_prefix, registry_id=rule.registry_id,
            upstream_registry_url=rule.upstream_registry_url, credential_arn=rule.credential_arn,
            custom_role_arn=rule.custom_role_arn, upstream_repository_prefix=rule.upstream_repository_prefix,
            is_valid=failure is None, failure=failure)

    # --- for the front end ---------------------------------------------------------------

    def get_rule(self, ecr_repository_prefix: str, *, registry_id: str | None = None) -> PullThroughCacheRule:
        """The rule of that prefix. Errors: InvalidParameter, PullThroughCacheRuleNotFound."""
        registry = v.registry_id(registry_id, self._registry_id)
        prefix = checked_prefix(ecr_repository_prefix, "ecrRepositoryPrefix")
        with self._index.read() as t:
            doc = documents.get(t, documents.PULL_THROUGH_RULE, documents.registry_key(registry, prefix))
        if doc is None:
            raise _not_found(registry, prefix)
        return _rule(registry, doc)

    def match(self, repository_name: str, *, registry_id: str | None = None) -> tuple[PullThroughCacheRule, str] | None:
        """The rule a repository falls under and the repository's upstream name, or None: the
        longest prefix ``p`` with ``repository_name == p + "/" + rest``, else a ``ROOT`` rule.
        The upstream name is ``<upstreamRepositoryPrefix>/<rest>`` (just ``rest`` without an
        upstream prefix or with ``ROOT``). Errors: InvalidParameter (registry id or name)."""
        registry = v.registry_id(registry_id, self._registry_id)
        name = v.repository_name(repository_name)
        with self._index.read() as t:
            for prefix in covering_prefixes(name):
                doc = documents.get(t, documents.PULL_THROUGH_RULE, documents.registry_key(registry, prefix))
                if doc is not None:
                    rest = name if prefix == ROOT else name[len(prefix) + 1:]
                    return _rule(registry, doc), upstream_name(doc.get("upstreamPrefix"), rest)
        return None

    # --- tag checks (the front end's refreshes) -------------------------------------------

    def last_check(self, repository_name: str, tag: str, *, registry_id: str | None = None) -> float | None:
        """When the cached ``tag`` was last compared with its upstream (epoch seconds); None
        when never — a tag the cache did not fetch, which it never replaces — or when the
        repository is gone. One snapshot."""
        registry = v.registry_id(registry_id, self._registry_id)
        with self._index.read() as t:
            rec = t.get_repo(registry, v.repository_name(repository_name))
            key = None if rec is None else documents.tag_key(rec.id, tag)
            doc = None if key is None else documents.get(t, documents.PULL_THROUGH_CHECK, key)
        return None if doc is None else float(doc["at"])

    def record_check(self, repository_name: str, tag: str, at: float, *, registry_id: str | None = None) -> None:
        """Record that ``tag`` was compared with its upstream at ``at`` (nothing when the
        repository is gone). One write transaction, durable on return."""
        registry = v.registry_id(registry_id, self._registry_id)
        name = v.repository_name(repository_name)

        def commit(t: WriteTxn) -> None:
            rec = t.get_repo(registry, name)
            if rec is not None:
                documents.put(t, documents.PULL_THROUGH_CHECK, documents.tag_key(rec.id, tag), {"at": at})

        self._index.write(commit)

    def _credential(self, arn: str) -> str:
        v.string(arn, "credentialArn", min_len=50, max_len=612)
        if not _ARN_RE.fullmatch(arn):
            raise invalid_parameter("credentialArn", f"Member must satisfy regular expression pattern: "
                                                     f"{CREDENTIAL_ARN_PATTERN}")
        with self._lock:
            upstreams = self._upstreams
        if not upstreams.has_secret(arn):
            raise SecretNotFoundException(f"The secret with the ARN '{arn}' was not found")
        return arn


def covering_prefixes(name: str) -> list[str]:
    """The prefixes that cover a repository name, longest first, then ``ROOT``: ``a/b/c`` is
    covered by ``a/b``, ``a`` and ``ROOT`` (cache rules and creation templates match so)."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)] + [ROOT]


def upstream_name(upstream_prefix: str | None, rest: str) -> str:
    """``rest`` under the upstream repository prefix (none, or ``ROOT``: ``rest`` itself)."""
    if upstream_prefix is None or upstream_prefix == ROOT:
        return rest
    return f"{upstream_prefix}/{rest}"


def checked_prefix(value: Any, member: str, *, min_len: int = 2, max_len: int = 30) -> str:
    """A repository prefix as stored: the model's pattern, without the trailing ``/`` ECR
    assumes anyway (``team/`` and ``team`` are one prefix); the lengths are the rules' unless
    given."""
    text = v.string(value, member, min_len=min_len, max_len=max_len)
    if not _PREFIX_RE.fullmatch(text):
        raise invalid_parameter(member, f"Member must satisfy regular expression pattern: {PREFIX_PATTERN}")
    return text.rstrip("/")


def _upstream_url(value: Any) -> str:
    text = v.string(value, "upstreamRegistryUrl", min_len=1, max_len=_MAX_URL_CHARS)
    scheme, sep, rest = text.partition("://")
    host = rest if sep else text
    match = _HOST_RE.fullmatch(host)
    port = match.group(1) if match else None
    if (sep and scheme not in ("http", "https")) or match is None or (port is not None and not 0 < int(port) < 65536):
        raise UnsupportedUpstreamRegistryException(
            f"The upstream registry URL '{text}' is not supported: it must be host[:port] "
            "(or http://host[:port] for a plain-HTTP upstream)")
    return text


def _rule_docs(t: ReadTxn, registry: str) -> Iterator[tuple[str, Any]]:
    return documents.items(t, documents.PULL_THROUGH_RULE, documents.registry_key(registry, ""))


def _rule(registry: str, doc: dict[str, Any]) -> PullThroughCacheRule:
    return PullThroughCacheRule(
        ecr_repository_prefix=doc["prefix"], upstream_registry_url=doc["url"], created_at=doc["createdAt"],
        registry_id=registry, credential_arn=doc.get("credentialArn"), custom_role_arn=doc.get("customRoleArn"),
        upstream_repository_prefix=doc.get("upstreamPrefix"), upstream_registry=doc.get("registry"),
        updated_at=doc.get("updatedAt"))


def _not_found(registry: str, prefix: str) -> PullThroughCacheRuleNotFoundException:
    return PullThroughCacheRuleNotFoundException(
        f"The pull through cache rule with the prefix '{prefix}' does not exist in the registry with id "
        f"'{registry}'")
