"""ECR's lifecycle policy language: parsing and validating a policy text, and evaluating it over
a repository's images (pure: no index, no clock of its own).

A policy is ``{"rules": [...]}``; each rule has a unique positive ``rulePriority``, an optional
``description``, a ``selection`` (``tagStatus`` tagged|untagged|any; for tagged exactly one of
``tagPrefixList`` / ``tagPatternList``; ``countType`` imageCountMoreThan|sinceImagePushed;
``countUnit`` "days", required with sinceImagePushed and refused otherwise; a positive
``countNumber``) and an ``action`` (``{"type": "expire"}``). A rule selecting ``any`` must have
the highest priority; one rule at most selects untagged images.

Evaluation (:func:`evaluate`) follows ECR's documented rules:

- rules apply in priority order, lowest number first;
- a rule's selection is every image its tag status and lists match, including images earlier
  rules matched ("identified as if they had not been expired"); imageCountMoreThan marks all
  but the N most recently pushed of them, sinceImagePushed those pushed more than N days ago;
- an image is expired by at most one rule: a rule expires only the marked images no earlier
  rule matched, so an image an earlier rule kept can never be expired by a later one;
- a prefix (pattern) list selects an image when every prefix (pattern) in it matches one of
  the image's tags (AND over the list; a pattern's ``*`` matches any run of characters);
- an image a manifest list references is expired only with every manifest list referencing
  it (and after them); otherwise it stays, still counted as matched by its rule.

The preview and the expiry runs both call :func:`evaluate`, so a preview answers exactly what
a run over the same images removes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidParameterException

__all__ = ["IMAGE_COUNT_MORE_THAN", "SINCE_IMAGE_PUSHED", "Expiry", "ImageState", "Policy", "Rule",
           "evaluate", "parse_policy", "tag_pattern_matches"]

IMAGE_COUNT_MORE_THAN = "imageCountMoreThan"
SINCE_IMAGE_PUSHED = "sinceImagePushed"
_TAG_STATUS = ("tagged", "untagged", "any")
_COUNT_TYPES = (IMAGE_COUNT_MORE_THAN, SINCE_IMAGE_PUSHED)
_COUNT_UNITS = ("days",)
_ACTIONS = ("expire",)
#: The service model's bounds on lifecyclePolicyText (characters).
MIN_LIFECYCLE_POLICY_CHARS = 100
MAX_LIFECYCLE_POLICY_CHARS = 30720
#: ECR's bound on wildcards in one tagPatternList entry.
MAX_PATTERN_WILDCARDS = 4
_DAY = 86400.0
_MEMBER = "lifecyclePolicyText"

_RULE_KEYS = {"rulePriority", "description", "selection", "action"}
_SELECTION_KEYS = {"tagStatus", "tagPrefixList", "tagPatternList", "countType", "countUnit", "countNumber"}
_ACTION_KEYS = {"type"}


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule (names as in the policy language)."""

    priority: int
    tag_status: str
    count_type: str
    count_number: int
    count_unit: str | None = None
    tag_prefixes: tuple[str, ...] = ()
    tag_patterns: tuple[str, ...] = ()
    description: str | None = None

    def selects(self, tags: Sequence[str]) -> bool:
        """Whether an image with ``tags`` is in this rule's selection."""
        if self.tag_status == "untagged":
            return not tags
        if self.tag_status == "any":
            return True
        if not tags:
            return False
        if self.tag_prefixes:
            return all(any(t.startswith(p) for t in tags) for p in self.tag_prefixes)
        return all(any(tag_pattern_matches(p, t) for t in tags) for p in self.tag_patterns)


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy: its rules in priority order."""

    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class ImageState:
    """An image as evaluation sees it: digest, tags, when it was pushed (epoch seconds) and
    the digests of the manifest lists of its repository that reference it."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: float
    referenced_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Expiry:
    """An image to expire and the priority of the rule that expires it."""

    image: ImageState
    rule_priority: int


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _fail(reason: str) -> InvalidParameterException:
    return InvalidParameterException(
        f"Invalid parameter at '{_MEMBER}' failed to satisfy constraint: 'Lifecycle policy validation failure: "
        f"{reason}'"
    )


def tag_pattern_matches(pattern: str, tag: str) -> bool:
    """Whether ``tag`` matches a tagPatternList entry (``*``: any run of characters, possibly
    empty; every other character stands for itself; the whole tag must match)."""
    return _pattern_re(pattern).fullmatch(tag) is not None


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _pattern_re(pattern: str) -> re.Pattern[str]:
    found = _PATTERNS.get(pattern)
    if found is None:
        found = re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)
        if len(_PATTERNS) < 4096:  # a bounded cache: patterns come from stored policies
            _PATTERNS[pattern] = found
    return found


# --- parsing -------------------------------------------------------------------------------


def parse_policy(text: Any) -> Policy:
    """Validate a lifecycle policy text as PutLifecyclePolicy does. Raises
    InvalidParameterException (ECR's "Lifecycle policy validation failure" wording, or the
    model's length constraint) naming the first problem found."""
    if not isinstance(text, str):
        raise InvalidParameterException(
            f"Invalid parameter at '{_MEMBER}' failed to satisfy constraint: 'Member must be a string'")
    if len(text) < MIN_LIFECYCLE_POLICY_CHARS:
        raise InvalidParameterException(
            f"Invalid parameter at '{_MEMBER}' failed to satisfy constraint: "
            f"'Member must have length greater than or equal to {MIN_LIFECYCLE_POLICY_CHARS}'")
    if len(text) > MAX_LIFECYCLE_POLICY_CHARS:
        raise InvalidParameterException(
            f"Invalid parameter at '{_MEMBER}' failed to satisfy constraint: "
            f"'Member must have length less than or equal to {MAX_LIFECYCLE_POLICY_CHARS}'")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise _fail("the policy is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _fail("the policy must be a JSON object")
    _no_unknown(doc, {"rules"}, "")
    rules_doc = doc.get("rules")
    if not isinstance(rules_doc, list) or not rules_doc:
        raise _fail('object has missing required properties (["rules"]) or "rules" is not a non-empty array')
    rules = [_rule(r, f"/rules/{i}") for i, r in enumerate(rules_doc)]
    priorities = [r.priority for r in rules]
    if len(set(priorities)) != len(priorities):
        dup = sorted({p for p in priorities if priorities.count(p) > 1})[0]
        raise _fail(f"rulePriority must be unique, {dup} is used by more than one rule")
    rules.sort(key=lambda r: r.priority)
    anys = [r for r in rules if r.tag_status == "any"]
    if anys and rules[-1] is not anys[0] or len(anys) > 1:
        raise _fail("a rule with tagStatus 'any' must have the highest rulePriority")
    if sum(r.tag_status == "untagged" for r in rules) > 1:
        raise _fail("only one rule may select untagged images")
    return Policy(tuple(rules))


def _no_unknown(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise _fail(f"object instance{(' at ' + where) if where else ''} has properties which are not allowed "
                    f"by the schema: {_json(extra)}")


def _int(value: Any, where: str) -> int:
    # JSON true/false decode as bools, which are ints: refuse them; 2.0 is refused too.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"instance type at {where} does not match any allowed primitive type (allowed: [\"integer\"])")
    if value < 1:
        raise _fail(f"numeric instance at {where} is lower than the required minimum (minimum: 1, found: {value})")
    if value > 2**31 - 1:
        raise _fail(f"numeric instance at {where} is greater than the allowed maximum (maximum: {2**31 - 1})")
    return value


def _enum(value: Any, where: str, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _fail(f"instance value ({_json(value)}) at {where} not found in enum "
                    f"(possible values: {_json(list(allowed))})")
    return value


def _tag_list(value: Any, where: str, *, pattern: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(f"{where} must be a non-empty array of strings")
    for item in value:
        if not isinstance(item, str) or not item:
            raise _fail(f"{where} must be a non-empty array of non-empty strings")
        if pattern and item.count("*") > MAX_PATTERN_WILDCARDS:
            raise _fail(f"{where} entry {_json(item)} has more than {MAX_PATTERN_WILDCARDS} wildcards")
    return tuple(value)


def _rule(doc: Any, where: str) -> Rule:
    if not isinstance(doc, dict):
        raise _fail(f"instance at {where} must be an object")
    _no_unknown(doc, _RULE_KEYS, where)
    missing = [k for k in ("rulePriority", "selection", "action") if k not in doc]
    if missing:
        raise _fail(f"object at {where} has missing required properties ({_json(missing)})")
    priority = _int(doc["rulePriority"], f"{where}/rulePriority")
    description = doc.get("description")
    if description is not None and not isinstance(description, str):
        raise _fail(f"{where}/description must be a string")
    action = doc["action"]
    if not isinstance(action, dict):
        raise _fail(f"instance at {where}/action must be an object")
    _no_unknown(action, _ACTION_KEYS, f"{where}/action")
    if "type" not in action:
        raise _fail(f'object at {where}/action has missing required properties (["type"])')
    _enum(action["type"], f"{where}/action/type", _ACTIONS)
    sel = doc["selection"]
    s = f"{where}/selection"
    if not isinstance(sel, dict):
        raise _fail(f"instance at {s} must be an object")
    _no_unknown(sel, _SELECTION_KEYS, s)
    missing = [k for k in ("tagStatus", "countType", "countNumber") if k not in sel]
    if missing:
        raise _fail(f"object at {s} has missing required properties ({_json(missing)})")
    status = _enum(sel["tagStatus"], f"{s}/tagStatus", _TAG_STATUS)
    count_type = _enum(sel["countType"], f"{s}/countType", _COUNT_TYPES)
    number = _int(sel["countNumber"], f"{s}/countNumber")
    unit = None
    if count_type == SINCE_IMAGE_PUSHED:
        if "countUnit" not in sel:
            raise _fail(f"countUnit is required at {s} when countType is {SINCE_IMAGE_PUSHED}")
        unit = _enum(sel["countUnit"], f"{s}/countUnit", _COUNT_UNITS)
    elif "countUnit" in sel:
        raise _fail(f"countUnit is not allowed at {s} when countType is {IMAGE_COUNT_MORE_THAN}")
    has_prefixes, has_patterns = "tagPrefixList" in sel, "tagPatternList" in sel
    prefixes: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    if status == "tagged":
        if has_prefixes == has_patterns:
            raise _fail(f"a rule at {s} with tagStatus 'tagged' needs exactly one of tagPrefixList and "
                        "tagPatternList")
        if has_prefixes:
            prefixes = _tag_list(sel["tagPrefixList"], f"{s}/tagPrefixList", pattern=False)
        else:
            patterns = _tag_list(sel["tagPatternList"], f"{s}/tagPatternList", pattern=True)
    elif has_prefixes or has_patterns:
        raise _fail(f"tagPrefixList and tagPatternList are not allowed at {s} with tagStatus '{status}'")
    return Rule(priority, status, count_type, number, unit, prefixes, patterns, description)


# --- evaluation ----------------------------------------------------------------------------


def evaluate(policy: Policy, images: Iterable[ImageState], now: float) -> list[Expiry]:
    """The images ``policy`` expires among ``images`` at time ``now`` (epoch seconds), each
    with the rule that expires it; in deletion order: every manifest list before the images
    it references, otherwise oldest push first."""
    by_digest = {i.digest: i for i in images}
    newest_first = sorted(by_digest.values(), key=lambda i: (-i.pushed_at, i.digest))
    matched: set[str] = set()
    chosen: dict[str, int] = {}
    for rule in policy.rules:
        selection = [i for i in newest_first if rule.selects(i.tags)]
        if rule.count_type == IMAGE_COUNT_MORE_THAN:
            marked = selection[rule.count_number:]
        else:
            cutoff = now - rule.count_number * _DAY
            marked = [i for i in selection if i.pushed_at < cutoff]
        for image in marked:
            if image.digest not in matched:
                chosen[image.digest] = rule.priority
        matched.update(i.digest for i in selection)
    # An image stays while a manifest list that stays references it (to a fixed point: a
    # kept list keeps its children, which may be lists themselves).
    changed = True
    while changed:
        changed = False
        for digest in list(chosen):
            if any(p not in chosen for p in by_digest[digest].referenced_by):
                del chosen[digest]
                changed = True
    depth: dict[str, int] = {}

    def level(digest: str, seen: frozenset[str] = frozenset()) -> int:
        """How many expiring manifest lists stand above an image (they go first)."""
        if digest not in depth:
            parents = [p for p in by_digest[digest].referenced_by if p in chosen and p not in seen]
            depth[digest] = 1 + max((level(p, seen | {digest}) for p in parents), default=-1)
        return depth[digest]

    order = sorted(chosen, key=lambda d: (level(d), by_digest[d].pushed_at, d))
    return [Expiry(by_digest[d], chosen[d]) for d in order]
