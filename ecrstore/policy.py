"""Repository and registry policy documents: validation as ECR validates them, and IAM evaluation.

Pure functions over JSON text and decoded documents; nothing here reads the index.

Validation (:func:`parse`): the text is at most 10240 characters of one JSON object with
``Version`` ``2012-10-17`` or ``2008-10-17`` (required), an optional ``Id`` and a ``Statement``
(one object or a non-empty list). Each statement has ``Effect`` ``Allow``/``Deny``; exactly one
of ``Principal``/``NotPrincipal`` (``"*"``, or an object with ``AWS`` — ``"*"``, an account id
or an IAM ARN — and/or ``Service``, each a string or a non-empty list); exactly one of
``Action``/``NotAction`` (``"*"``, or ``ecr:`` actions, wildcards allowed, each naming or
matching at least one action ECR has); optionally ``Resource``/``NotResource`` (``"*"`` or
ARNs), a ``Sid`` unique in the document, and a ``Condition`` (operator -> key -> value(s),
with IAM's operator names and ``ForAllValues:``/``ForAnyValue:``/``IfExists`` qualifiers).
Registry policies may only grant what ECR enforces at the registry level (its first registry
policy scope): ``ecr:ReplicateImage``, ``ecr:CreateRepository`` and
``ecr:BatchImportUpstreamImage`` — each ``Action`` must match one of them (``ecr:*`` does).
Anything else is InvalidParameterException with ECR's message ("Invalid repository policy
provided" / "Invalid registry policy provided"); the precise reason is the exception's cause.

Evaluation (:func:`evaluate`), as IAM evaluates one resource-based policy: an explicit
``Deny`` among the matching statements wins, else an ``Allow`` among them allows, else the
policy is ``NotApplicable``. A statement matches when its principal, action, resource and
condition all match. Principals: ``"*"``, the caller's account id, ``arn:aws:iam::<acct>:root``
(any principal of that account), or the caller's exact ARN; ``NotPrincipal`` matches callers
none of its entries names; ``Service`` principals never match a caller (callers are accounts).
Actions match case-insensitively with ``*`` and ``?``; resources (absent: the statement's
resource is the policy's own) case-sensitively.

Conditions: the supported subset is the keys ``aws:PrincipalAccount``, ``aws:SourceAccount``
(both the caller's account) and ``aws:PrincipalArn``, under ``StringEquals``,
``StringNotEquals``, ``StringEqualsIgnoreCase``, ``StringNotEqualsIgnoreCase``,
``StringLike``, ``StringNotLike``, ``ArnEquals``, ``ArnLike``, ``ArnNotEquals`` and
``ArnNotLike`` (values ORed, keys and operators ANDed; keys case-insensitive). A statement
whose condition uses anything else (another key, operator or qualifier) fails closed: an
``Allow`` so conditioned never matches, a ``Deny`` so conditioned always applies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from .errors import invalid_parameter

__all__ = [
    "ECR_ACTIONS", "MAX_POLICY_CHARS", "REGISTRY_ACTIONS", "VERSIONS", "Decision", "PolicyError",
    "evaluate", "matches_action", "parse", "root_arn",
]

Decision = Literal["Allow", "Deny", "NotApplicable"]

#: The model's maximum for ``policyText`` (repository and registry policies alike).
MAX_POLICY_CHARS = 10240
VERSIONS = ("2012-10-17", "2008-10-17")

#: Every action a policy may name: the API's operations and ECR's permission-only actions.
ECR_ACTIONS: tuple[str, ...] = (
    "BatchCheckLayerAvailability", "BatchDeleteImage", "BatchGetImage", "BatchGetRepositoryScanningConfiguration",
    "BatchImportUpstreamImage", "CompleteLayerUpload", "CreatePullThroughCacheRule", "CreateRepository",
    "CreateRepositoryCreationTemplate", "DeleteLifecyclePolicy", "DeletePullThroughCacheRule",
    "DeleteRegistryPolicy", "DeleteRepository", "DeleteRepositoryCreationTemplate", "DeleteRepositoryPolicy",
    "DeleteSigningConfiguration", "DeregisterPullTimeUpdateExclusion", "DescribeImageReplicationStatus",
    "DescribeImageScanFindings", "DescribeImageSigningStatus", "DescribeImages", "DescribePullThroughCacheRules",
    "DescribeRegistry", "DescribeReplicationBackfillResults", "DescribeRepositories",
    "DescribeRepositoryCreationTemplates", "GetAccountSetting", "GetAuthorizationToken", "GetDownloadUrlForLayer",
    "GetLifecyclePolicy", "GetLifecyclePolicyPreview", "GetRegistryPolicy", "GetRegistryScanningConfiguration",
    "GetRepositoryPolicy", "GetSigningConfiguration", "InitiateLayerUpload", "ListImageReferrers", "ListImages",
    "ListPullTimeUpdateExclusions", "ListReplicationBackfills", "ListTagsForResource", "PutAccountSetting",
    "PutImage", "PutImageScanningConfiguration", "PutImageTagMutability", "PutLifecyclePolicy",
    "PutRegistryPolicy", "PutRegistryScanningConfiguration", "PutReplicationConfiguration",
    "PutSigningConfiguration", "RegisterPullTimeUpdateExclusion", "ReplicateImage", "SetRepositoryPolicy",
    "StartImageScan", "StartLifecyclePolicyPreview", "StartReplicationBackfill", "StopReplicationBackfill",
    "TagResource", "UntagResource", "UpdateImageStorageClass", "UpdatePullThroughCacheRule",
    "UpdateRepositoryCreationTemplate", "UploadLayerPart", "ValidatePullThroughCacheRule",
)
#: What a registry policy may grant (ECR enforces only these at the registry level).
REGISTRY_ACTIONS: tuple[str, ...] = ("ReplicateImage", "CreateRepository", "BatchImportUpstreamImage")

_STATEMENT_KEYS = frozenset({"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
                             "NotResource", "Condition"})
_ACCOUNT = re.compile(r"[0-9]{12}")
_IAM_ARN = re.compile(r"arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[!-~]+")
_ARN = re.compile(r"arn:[!-~]*")
_SERVICE = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")
_OPERATORS = frozenset(
    [f"String{s}" for s in ("Equals", "NotEquals", "EqualsIgnoreCase", "NotEqualsIgnoreCase", "Like", "NotLike")]
    + [f"Numeric{s}" for s in ("Equals", "NotEquals", "LessThan", "LessThanEquals", "GreaterThan",
                               "GreaterThanEquals")]
    + [f"Date{s}" for s in ("Equals", "NotEquals", "LessThan", "LessThanEquals", "GreaterThan",
                            "GreaterThanEquals")]
    + ["Bool", "BinaryEquals", "IpAddress", "NotIpAddress", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike",
       "Null"]
)
_SUPPORTED_KEYS = {"aws:principalaccount": "account", "aws:sourceaccount": "account", "aws:principalarn": "arn"}


class PolicyError(ValueError):
    """Why a policy document is invalid (the cause of the InvalidParameterException)."""


def root_arn(account: str) -> str:
    """The ARN naming every principal of an account (``arn:aws:iam::<acct>:root``)."""
    return f"arn:aws:iam::{account}:root"


def parse(text: Any, *, registry: bool = False) -> dict[str, Any]:
    """Validate a policy's text; the decoded document. Errors: InvalidParameterException
    (over the size limit: the model's constraint message; otherwise ECR's "Invalid repository
    policy provided" or "Invalid registry policy provided", caused by a :class:`PolicyError`)."""
    if not isinstance(text, str):
        raise invalid_parameter("policyText", "Member must be a string")
    if len(text) > MAX_POLICY_CHARS:
        raise invalid_parameter("policyText", f"Member must have length less than or equal to {MAX_POLICY_CHARS}")
    try:
        return _check_document(text, registry)
    except PolicyError as e:
        kind = "registry" if registry else "repository"
        raise invalid_parameter("PolicyText", f"Invalid {kind} policy provided") from e


def _check_document(text: str, registry: bool) -> dict[str, Any]:
    try:
        doc = json.loads(text)  # the policy size limit bounds its nesting well below recursion's
    except (ValueError, RecursionError) as e:
        raise PolicyError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise PolicyError("the policy must be a JSON object")
    unknown = set(doc) - {"Version", "Id", "Statement"}
    if unknown:
        raise PolicyError(f"unknown policy element(s) {sorted(unknown)}")
    if doc.get("Version") not in VERSIONS:
        raise PolicyError(f"Version must be one of {list(VERSIONS)}")
    if "Id" in doc and not isinstance(doc["Id"], str):
        raise PolicyError("Id must be a string")
    statements = doc.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise PolicyError("Statement must be an object or a non-empty list of objects")
    sids: set[str] = set()
    for i, st in enumerate(statements):
        _check_statement(st, f"Statement[{i}]", registry)
        sid = st.get("Sid")
        if sid:
            if sid in sids:
                raise PolicyError(f"duplicate Sid {sid!r}")
            sids.add(sid)
    return doc


def _check_statement(st: Any, where: str, registry: bool) -> None:
    if not isinstance(st, dict):
        raise PolicyError(f"{where} must be an object")
    unknown = set(st) - _STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown element(s) {sorted(unknown)}")
    if "Sid" in st and not isinstance(st["Sid"], str):
        raise PolicyError(f"{where}: Sid must be a string")
    if st.get("Effect") not in ("Allow", "Deny"):
        raise PolicyError(f"{where}: Effect must be Allow or Deny")
    principal = _one_of(st, "Principal", "NotPrincipal", where, required=True)
    _check_principal(st[principal], f"{where}.{principal}")
    action = _one_of(st, "Action", "NotAction", where, required=True)
    for item in _strings(st[action], f"{where}.{action}"):
        _check_action(item, f"{where}.{action}", registry and action == "Action")
    resource = _one_of(st, "Resource", "NotResource", where, required=False)
    if resource is not None:
        for item in _strings(st[resource], f"{where}.{resource}"):
            if item != "*" and not _ARN.fullmatch(item):
                raise PolicyError(f"{where}.{resource}: {item!r} is not '*' or an ARN")
    if "Condition" in st:
        _check_condition(st["Condition"], f"{where}.Condition")


def _one_of(st: Mapping[str, Any], a: str, b: str, where: str, *, required: bool) -> str | None:
    if a in st and b in st:
        raise PolicyError(f"{where}: {a} and {b} cannot both be given")
    if a in st:
        return a
    if b in st:
        return b
    if required:
        raise PolicyError(f"{where}: {a} or {b} is required")
    return None


def _strings(value: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise PolicyError(f"{where} must be a non-empty string or a non-empty list of them")
    return items


def _check_principal(value: Any, where: str) -> None:
    if value == "*":
        return
    if not isinstance(value, dict) or not value:
        raise PolicyError(f"{where} must be '*' or an object of AWS and/or Service principals")
    for kind, names in value.items():
        if kind == "AWS":
            for name in _strings(names, f"{where}.AWS"):
                if name != "*" and not _ACCOUNT.fullmatch(name) and not _IAM_ARN.fullmatch(name):
                    raise PolicyError(f"{where}.AWS: {name!r} is not '*', an account id or an IAM ARN")
        elif kind == "Service":
            for name in _strings(names, f"{where}.Service"):
                if not _SERVICE.fullmatch(name):
                    raise PolicyError(f"{where}.Service: {name!r} is not a service principal")
        else:
            raise PolicyError(f"{where}: unsupported principal type {kind!r}")


def _check_action(item: str, where: str, registry: bool) -> None:
    if item == "*":
        return
    service, sep, name = item.partition(":")
    if not sep or service.lower() != "ecr" or not name:
        raise PolicyError(f"{where}: {item!r} is not an ecr: action")
    known = REGISTRY_ACTIONS if registry else ECR_ACTIONS
    if not any(_glob(name, a, True) for a in known):
        what = "an action a registry policy may grant" if registry else "an ECR action"
        raise PolicyError(f"{where}: {item!r} is not {what}")


def _check_condition(value: Any, where: str) -> None:
    if not isinstance(value, dict) or not value:
        raise PolicyError(f"{where} must be a non-empty object of operators")
    for operator, block in value.items():
        if not isinstance(operator, str) or _base_operator(operator) not in _OPERATORS:
            raise PolicyError(f"{where}: unknown condition operator {operator!r}")
        if not isinstance(block, dict) or not block:
            raise PolicyError(f"{where}.{operator} must be a non-empty object of condition keys")
        for key, values in block.items():
            if not key:
                raise PolicyError(f"{where}.{operator}: an empty condition key")
            items = values if isinstance(values, list) else [values]
            if not items or not all(isinstance(x, (str, bool, int, float)) for x in items):
                raise PolicyError(f"{where}.{operator}.{key}: values must be strings, numbers or booleans")


def _base_operator(operator: str) -> str:
    for prefix in ("ForAllValues:", "ForAnyValue:"):
        if operator.startswith(prefix):
            operator = operator[len(prefix):]
    return operator.removesuffix("IfExists")


# --- evaluation ------------------------------------------------------------------------------


def evaluate(doc: Mapping[str, Any], principal_account: str, principal_arn: str | None, action: str,
             resource_arn: str) -> Decision:
    """The policy's decision on ``principal_arn`` (a principal of ``principal_account``; None:
    the account itself) performing ``action`` (``ecr:<Name>``) on ``resource_arn``. ``doc``
    is a document :func:`parse` accepted. Pure; safe from any thread."""
    arn = principal_arn or root_arn(principal_account)
    allowed = False
    for st in _statements(doc):
        if not (_principal_matches(st, principal_account, arn) and _action_matches(st, action)
                and _resource_matches(st, resource_arn)):
            continue
        deny = st.get("Effect") == "Deny"
        condition = _condition_holds(st.get("Condition"), principal_account, arn)
        if condition is None:  # unsupported: fail closed
            condition = deny
        if not condition:
            continue
        if deny:
            return "Deny"
        allowed = True
    return "Allow" if allowed else "NotApplicable"


def matches_action(pattern: str, action: str) -> bool:
    """Whether an Action entry (``ecr:Batch*``, ``*``) covers ``action``, as IAM compares them."""
    return _glob(pattern, action, True)


def _statements(doc: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    statements = doc.get("Statement")
    yield from [statements] if isinstance(statements, dict) else (statements or [])


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, (str, dict)) else list(value or [])


def _principal_matches(st: Mapping[str, Any], account: str, arn: str) -> bool:
    if "Principal" in st:
        return _names_caller(st["Principal"], account, arn)
    return not _names_caller(st.get("NotPrincipal"), account, arn)


def _names_caller(principal: Any, account: str, arn: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for name in _listed(principal.get("AWS")):
        if name == "*" or name == account or name == root_arn(account) or name == arn:
            return True
    return False


def _action_matches(st: Mapping[str, Any], action: str) -> bool:
    if "Action" in st:
        return any(matches_action(p, action) for p in _listed(st["Action"]))
    return not any(matches_action(p, action) for p in _listed(st.get("NotAction")))


def _resource_matches(st: Mapping[str, Any], resource: str) -> bool:
    if "Resource" in st:
        return any(_glob(p, resource, False) for p in _listed(st["Resource"]))
    if "NotResource" in st:
        return not any(_glob(p, resource, False) for p in _listed(st["NotResource"]))
    return True


def _condition_holds(condition: Any, account: str, arn: str) -> bool | None:
    """Whether the condition holds; None when it uses what this evaluator does not support."""
    if condition is None:
        return True
    context = {"account": account, "arn": arn}
    for operator, block in condition.items():
        for key, values in block.items():
            source = _SUPPORTED_KEYS.get(key.lower())
            if source is None:
                return None
            held = _compare(operator, context[source], values if isinstance(values, list) else [values])
            if held is None:
                return None
            if not held:
                return False
    return True


def _compare(operator: str, actual: str, values: Iterable[Any]) -> bool | None:
    wanted = [str(x) for x in values]
    negated = "Not" in operator
    base = operator.replace("Not", "", 1) if negated else operator
    if base in ("StringEquals", "ArnEquals"):
        hit = actual in wanted
    elif base == "StringEqualsIgnoreCase":
        hit = actual.lower() in (w.lower() for w in wanted)
    elif base in ("StringLike", "ArnLike"):
        hit = any(_glob(w, actual, False) for w in wanted)
    else:
        return None
    return not hit if negated else hit


def _glob(pattern: str, text: str, ignore_case: bool) -> bool:
    """IAM's ``*`` (any run) and ``?`` (one character) over the whole of ``text``, in
    O(len(pattern) * len(text)) at worst: a policy's patterns cannot make a check slow (a
    backtracking regular expression of many stars could)."""
    if ignore_case:
        pattern, text = pattern.lower(), text.lower()
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] in ("?", text[t]):
            p, t = p + 1, t + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, t, p + 1
        elif star >= 0:
            mark += 1
            p, t = star + 1, mark
        else:
            return False
    return all(c == "*" for c in pattern[p:])
