"""Repository and registry policies: ECR's Set/Get/DeleteRepositoryPolicy and
Put/Get/DeleteRegistryPolicy, and the authorization decisions the front ends enforce.

A policy is kept as the exact text that was set (Get answers it byte for byte), in the
index's documents: a repository's under :data:`~ecrstore.documents.REPOSITORY_POLICY` keyed by
the repository's id (so it goes with the repository), a registry's under
:data:`~ecrstore.documents.REGISTRY_POLICY` keyed by the registry id. Each write is one index
write transaction that re-checks the repository; each read is one snapshot.

Authorization (:meth:`Policies.authorize`), IAM's rules for one account's resource policy:
a principal of another account may act on a repository only when the repository's policy
allows it and denies it nothing; a principal of the registry's own account is allowed unless
the policy explicitly denies it (its own identity policies, which this store does not model,
count as allowing everything). Calls made through this embedding API itself are not
authorized: the front ends call :meth:`~Policies.authorize` for their callers.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from . import documents
from . import policy as p
from . import validate as v
from .errors import (
    InvalidParameterException,
    RegistryPolicyNotFoundException,
    RepositoryPolicyNotFoundException,
    invalid_parameter,
    repository_not_found,
)
from .index.base import Index, ReadTxn, WriteTxn
from .index.records import RepoRecord
from .models import RegistryPolicy, RepositoryPolicy
from .repositories import Repositories

__all__ = ["Access", "Policies"]

#: An authorization decision: allowed, refused by an explicit Deny, or refused because no
#: policy allows a principal of another account.
Access = Literal["Allow", "ExplicitDeny", "ImplicitDeny"]

_TEXT = "policyText"


class Policies:
    """The policies of a store's registries (``store.policies``). Safe to share between
    threads and processes (every change is one index transaction); durable on return in
    durable mode."""

    def __init__(self, index: Index, repos: Repositories) -> None:
        self._index = index
        self._repos = repos

    # --- repository policies -----------------------------------------------------------------

    def set_repository_policy(self, repository_name: str, policy_text: str, *, registry_id: str | None = None,
                              force: bool = False) -> RepositoryPolicy:
        """SetRepositoryPolicy: replace the repository's policy with ``policy_text``.

        A policy that explicitly denies the registry's own account ecr:SetRepositoryPolicy
        would keep its owner from ever changing it again through the API: it is refused
        (InvalidParameterException) unless ``force`` is true. Errors: InvalidParameter (the
        policy is invalid, see :func:`ecrstore.policy.parse`), RepositoryNotFound."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        name = v.repository_name(repository_name)
        doc = p.parse(policy_text)
        if not isinstance(force, bool):
            raise invalid_parameter("force", "Member must be a boolean")

        def commit(t: WriteTxn) -> RepositoryPolicy:
            rec = self._repo(t, registry, name)
            if not force and p.evaluate(doc, registry, None, "ecr:SetRepositoryPolicy", self._arn(rec)) == "Deny":
                raise InvalidParameterException(
                    "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'The policy would prevent "
                    "you from setting a policy in the future (it denies the registry's own account "
                    "ecr:SetRepositoryPolicy); set force to apply it anyway'"
                )
            self.put_in(t, rec, policy_text)
            return RepositoryPolicy(registry, name, policy_text)

        return self._index.write(commit)

    @staticmethod
    def put_in(t: WriteTxn, rec: RepoRecord, policy_text: str) -> None:
        """Set a validated policy inside a write transaction (a repository created with it)."""
        documents.put(t, documents.REPOSITORY_POLICY, documents.repo_key(rec.id), {_TEXT: policy_text})

    def get_repository_policy(self, repository_name: str, *, registry_id: str | None = None) -> RepositoryPolicy:
        """GetRepositoryPolicy: the policy text exactly as set. Errors: InvalidParameter,
        RepositoryNotFound, RepositoryPolicyNotFound. One snapshot."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        name = v.repository_name(repository_name)
        with self._index.read() as t:
            rec = self._repo(t, registry, name)
            doc = documents.get(t, documents.REPOSITORY_POLICY, documents.repo_key(rec.id))
        if doc is None:
            raise _no_repository_policy(registry, name)
        return RepositoryPolicy(registry, name, doc[_TEXT])

    def delete_repository_policy(self, repository_name: str, *,
                                 registry_id: str | None = None) -> RepositoryPolicy:
        """DeleteRepositoryPolicy: remove the policy; answer what it was. Errors:
        InvalidParameter, RepositoryNotFound, RepositoryPolicyNotFound."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        name = v.repository_name(repository_name)

        def commit(t: WriteTxn) -> RepositoryPolicy:
            rec = self._repo(t, registry, name)
            key = documents.repo_key(rec.id)
            doc = documents.get(t, documents.REPOSITORY_POLICY, key)
            if doc is None:
                raise _no_repository_policy(registry, name)
            documents.delete(t, documents.REPOSITORY_POLICY, key)
            return RepositoryPolicy(registry, name, doc[_TEXT])

        return self._index.write(commit)

    # --- registry policies -------------------------------------------------------------------

    def put_registry_policy(self, policy_text: str, *, registry_id: str | None = None) -> RegistryPolicy:
        """PutRegistryPolicy: replace the registry's policy. Only ecr:ReplicateImage,
        ecr:CreateRepository and ecr:BatchImportUpstreamImage may be granted (what ECR
        enforces at the registry level). Errors: InvalidParameter."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        p.parse(policy_text, registry=True)

        def commit(t: WriteTxn) -> RegistryPolicy:
            documents.put(t, documents.REGISTRY_POLICY, documents.registry_key(registry), {_TEXT: policy_text})
            return RegistryPolicy(registry, policy_text)

        return self._index.write(commit)

    def get_registry_policy(self, *, registry_id: str | None = None) -> RegistryPolicy:
        """GetRegistryPolicy. Errors: InvalidParameter, RegistryPolicyNotFound. One snapshot."""
        registry = v.registry_id(registry_id, self._repos.registry_id)
        with self._index.read() as t:
            doc = documents.get(t, documents.REGISTRY_POLICY, documents.registry_key(registry))
        if doc is None:
            raise _no_registry_policy(registry)
        return RegistryPolicy(registry, doc[_TEXT])

    def delete_registry_policy(self, *, registry_id: str | None = None) -> RegistryPolicy:
        """DeleteRegistryPolicy: remove the policy; answer what it was. Errors:
        InvalidParameter, RegistryPolicyNotFound."""
        registry = v.registry_id(registry_id, self._repos.registry_id)

        def commit(t: WriteTxn) -> RegistryPolicy:
            key = documents.registry_key(registry)
            doc = documents.get(t, documents.REGISTRY_POLICY, key)
            if doc is None:
                raise _no_registry_policy(registry)
            documents.delete(t, documents.REGISTRY_POLICY, key)
            return RegistryPolicy(registry, doc[_TEXT])

        return self._index.write(commit)

    # --- decisions ---------------------------------------------------------------------------

    def authorize(self, registry_id: str, repository_name: str | None, action: str, *, principal_account: str,
                  principal_arn: str | None = None) -> Access:
        """May ``principal_arn`` (of ``principal_account``; None: the account itself) perform
        ``action`` (``ecr:<Name>``) on the repository of ``registry_id``? See the module's
        rules. A principal of another account is refused (``ImplicitDeny``) where there is no
        repository (``repository_name`` None, malformed or unknown: nothing is revealed about
        it), no policy, or no statement allowing it; ecr:CreateRepository on another registry
        is always refused (the repository does not exist yet). Never raises for malformed
        input. One snapshot; safe from any thread."""
        own = principal_account == registry_id
        if repository_name is None or (not own and action.lower() == "ecr:createrepository"):
            return "Allow" if own else "ImplicitDeny"
        try:
            name = v.repository_name(repository_name)
        except InvalidParameterException:
            return "Allow" if own else "ImplicitDeny"
        with self._index.read() as t:
            rec = t.get_repo(registry_id, name)
            doc = documents.get(t, documents.REPOSITORY_POLICY, documents.repo_key(rec.id)) if rec else None
        if rec is None or doc is None:
            return "Allow" if own else "ImplicitDeny"
        decision = p.evaluate(_decoded(doc[_TEXT]), principal_account, principal_arn, action, self._arn(rec))
        if decision == "Deny":
            return "ExplicitDeny"
        return "Allow" if own or decision == "Allow" else "ImplicitDeny"

    def registry_permits(self, registry_id: str, principal_account: str, action: str, *,
                         repository_name: str | None = None) -> bool:
        """Whether the registry's policy allows ``principal_account`` ``action`` (e.g.
        ``ecr:ReplicateImage``, ``ecr:CreateRepository`` for replication into it; the
        registry's own account always may), on ``repository_name`` when given (a statement's
        Resource is matched against that repository's ARN, else against
        ``…:repository/*``). False without a policy. Never raises for malformed input. One
        snapshot; safe from any thread."""
        if principal_account == registry_id:
            return True
        with self._index.read() as t:
            doc = documents.get(t, documents.REGISTRY_POLICY, documents.registry_key(registry_id))
        if doc is None:
            return False
        resource = f"arn:aws:ecr:{self._repos.region}:{registry_id}:repository/{repository_name or '*'}"
        return p.evaluate(_decoded(doc[_TEXT]), principal_account, None, action, resource) == "Allow"

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _repo(t: ReadTxn, registry: str, name: str) -> RepoRecord:
        rec = t.get_repo(registry, name)
        if rec is None:
            raise repository_not_found(registry, name)
        return rec

    def _arn(self, rec: RepoRecord) -> str:
        return self._repos.result(rec).repository_arn


def _decoded(text: str) -> dict[str, Any]:
    """A stored policy's document (it was validated when set)."""
    doc: dict[str, Any] = json.loads(text)
    return doc


def _no_repository_policy(registry: str, name: str) -> RepositoryPolicyNotFoundException:
    return RepositoryPolicyNotFoundException(
        f"Repository policy does not exist for the repository with name '{name}' in the registry with id "
        f"'{registry}'"
    )


def _no_registry_policy(registry: str) -> RegistryPolicyNotFoundException:
    return RegistryPolicyNotFoundException(f"Registry policy does not exist in the registry with id '{registry}'")
