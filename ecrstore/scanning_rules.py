"""A registry's scanning configuration (PutRegistryScanningConfiguration's rules), as ECR
validates it, stores it (:data:`ecrstore.documents.REGISTRY_SCANNING`) and applies it to a
repository. Used by :mod:`ecrstore.scanning`; no function here has effects.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Any

from . import documents
from . import validate as v
from .errors import InvalidParameterException, invalid_parameter
from .index.base import ReadTxn
from .index.records import RepoRecord
from .scan_models import RegistryScanningConfiguration, RegistryScanningRule, ScanningRepositoryFilter

__all__ = ["FILTER_PATTERN", "FILTER_RE", "SCAN_FREQUENCIES", "SCAN_TYPES", "applied", "check_configuration",
           "config_doc", "registry_config"]

SCAN_TYPES = ("BASIC", "ENHANCED")
SCAN_FREQUENCIES = ("SCAN_ON_PUSH", "CONTINUOUS_SCAN", "MANUAL")
#: The frequencies each scan type supports (the service model's documentation).
_FREQUENCIES = {"BASIC": ("SCAN_ON_PUSH", "MANUAL"), "ENHANCED": ("SCAN_ON_PUSH", "CONTINUOUS_SCAN")}
#: The service model's pattern for a filter, quoted in messages. It is matched as the
#: equivalent FILTER_RE: the model's nested quantifiers take exponential time on a long
#: near-miss ("a" * 30 + "A"), which a client must not be able to send.
FILTER_PATTERN = r"^[a-z0-9*](?:[._\-/a-z0-9*]?[a-z0-9*]+)*$"
FILTER_RE = re.compile(r"[a-z0-9*]+(?:[._\-/][a-z0-9*]+)*")


def check_configuration(scan_type: Any, rules: Any) -> RegistryScanningConfiguration:
    """The configuration PutRegistryScanningConfiguration was given, checked. Errors:
    InvalidParameter (model constraints; a frequency the scan type does not support; two rules
    of one frequency)."""
    kind = "BASIC" if scan_type is None else v.enum(scan_type, "scanType", SCAN_TYPES)
    if rules is None:
        rules = ()
    if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
        raise invalid_parameter("rules", "Member must be a list")
    if len(rules) > 2:
        raise invalid_parameter("rules", "Member must have length less than or equal to 2")
    checked: list[RegistryScanningRule] = []
    for rule in rules:
        if not isinstance(rule, RegistryScanningRule):
            raise invalid_parameter("rules", "Member must be a list of RegistryScanningRule")
        frequency = v.enum(rule.scan_frequency, "rules.member.scanFrequency", SCAN_FREQUENCIES)
        if frequency not in _FREQUENCIES[kind]:
            raise InvalidParameterException(
                f"Invalid parameter at 'rules.member.scanFrequency' failed to satisfy constraint: 'the {kind} scan "
                f"type supports the scan frequencies {', '.join(_FREQUENCIES[kind])}, not {frequency}'")
        if any(r.scan_frequency == frequency for r in checked):
            raise InvalidParameterException(
                f"Invalid parameter at 'rules' failed to satisfy constraint: 'only one rule may have the scan "
                f"frequency {frequency}'")
        filters = rule.repository_filters
        if isinstance(filters, (str, bytes)) or not isinstance(filters, Sequence):
            raise invalid_parameter("rules.member.repositoryFilters", "Member must be a list")
        if len(filters) > 100:
            raise invalid_parameter("rules.member.repositoryFilters",
                                    "Member must have length less than or equal to 100")
        for f in filters:
            if not isinstance(f, ScanningRepositoryFilter):
                raise invalid_parameter("rules.member.repositoryFilters", "Member must be a list of filters")
            v.enum(f.filter_type, "rules.member.repositoryFilters.member.filterType", ("WILDCARD",))
            v.string(f.filter, "rules.member.repositoryFilters.member.filter", min_len=1, max_len=255)
            if not FILTER_RE.fullmatch(f.filter):
                raise invalid_parameter("rules.member.repositoryFilters.member.filter",
                                        f"Member must satisfy regular expression pattern: {FILTER_PATTERN}")
        checked.append(RegistryScanningRule(frequency, tuple(ScanningRepositoryFilter(f.filter, "WILDCARD")
                                                             for f in filters)))
    return RegistryScanningConfiguration(kind, tuple(checked))


def config_doc(config: RegistryScanningConfiguration) -> dict[str, Any]:
    """The stored form of a checked configuration."""
    return {"scanType": config.scan_type, "rules": [
        {"scanFrequency": r.scan_frequency, "filters": [f.filter for f in r.repository_filters]} for r in config.rules]}


def registry_config(t: ReadTxn, registry: str) -> RegistryScanningConfiguration:
    """The registry's configuration: BASIC with no rules until one is put."""
    doc = documents.get(t, documents.REGISTRY_SCANNING, documents.registry_key(registry))
    if doc is None:
        return RegistryScanningConfiguration()
    return RegistryScanningConfiguration(doc["scanType"], tuple(
        RegistryScanningRule(r["scanFrequency"], tuple(ScanningRepositoryFilter(f) for f in r["filters"]))
        for r in doc["rules"]))


def applied(config: RegistryScanningConfiguration,
             repo: RepoRecord) -> tuple[str, tuple[ScanningRepositoryFilter, ...]]:
    """The scan frequency a repository gets and the filters that gave it: a matching rule's
    (CONTINUOUS_SCAN before SCAN_ON_PUSH), else its own scanOnPush, else MANUAL."""
    for frequency in ("CONTINUOUS_SCAN", "SCAN_ON_PUSH", "MANUAL"):
        for rule in config.rules:
            if rule.scan_frequency != frequency:
                continue
            matched = tuple(f for f in rule.repository_filters if fnmatch.fnmatchcase(repo.name, f.filter))
            if matched:
                return frequency, matched
    return ("SCAN_ON_PUSH" if repo.scan_on_push else "MANUAL"), ()
