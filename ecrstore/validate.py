"""Request-member validation per the service model (ECR leaves these checks to the server).

Every function raises InvalidParameterException worded as the service words it
(``Invalid parameter at '<member>' failed to satisfy constraint: '<reason>'``) and returns the
normalised value. No function here has effects.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from .errors import invalid_parameter

#: The service model's pattern for repositoryName, the one enforced.
REPOSITORY_NAME_PATTERN = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*"
_REPO_RE = re.compile(REPOSITORY_NAME_PATTERN)
_REGISTRY_RE = re.compile(r"[0-9]{12}")
_UPLOAD_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

TAG_MUTABILITY = ("MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
ENCRYPTION_TYPES = ("AES256", "KMS", "KMS_DSSE")
MAX_PART_BYTES = 20_971_520


def string(value: Any, member: str, *, min_len: int = 0, max_len: int | None = None) -> str:
    if not isinstance(value, str):
        raise invalid_parameter(member, "Member must be a string")
    if len(value) < min_len:
        raise invalid_parameter(member, f"Member must have length greater than or equal to {min_len}")
    if max_len is not None and len(value) > max_len:
        raise invalid_parameter(member, f"Member must have length less than or equal to {max_len}")
    return value


def repository_name(value: Any, member: str = "repositoryName") -> str:
    string(value, member, min_len=2, max_len=256)
    if not _REPO_RE.fullmatch(value):
        raise invalid_parameter(member, f"Member must satisfy regular expression pattern: {REPOSITORY_NAME_PATTERN}")
    return value


def registry_id(value: Any, default: str, member: str = "registryId") -> str:
    if value is None:
        return default
    if not isinstance(value, str) or not _REGISTRY_RE.fullmatch(value):
        raise invalid_parameter(member, "Member must satisfy regular expression pattern: [0-9]{12}")
    return value


def upload_id(value: Any, member: str = "uploadId") -> bytes:
    """An uploadId string → its 16 raw bytes (the index key)."""
    if not isinstance(value, str) or not _UPLOAD_RE.fullmatch(value):
        raise invalid_parameter(
            member,
            "Member must satisfy regular expression pattern: "
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        )
    return uuid.UUID(value).bytes


def non_negative(value: Any, member: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_parameter(member, "Member must be an integer")
    if value < 0:
        raise invalid_parameter(member, "Member must have value greater than or equal to 0")
    return value


def enum(value: Any, member: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise invalid_parameter(member, f"Member must satisfy enum value set: [{', '.join(allowed)}]")
    return value


def str_list(value: Any, member: str, *, min_items: int = 1, max_items: int = 100,
             max_len: int | None = None, min_len: int = 0) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise invalid_parameter(member, "Member must be a list")
    if len(value) < min_items:
        raise invalid_parameter(member, f"Member must have length greater than or equal to {min_items}")
    if len(value) > max_items:
        raise invalid_parameter(member, f"Member must have length less than or equal to {max_items}")
    limit = max_len if max_len is not None else float("inf")
    if not all(type(item) is str and min_len <= len(item) <= limit for item in value):
        for item in value:  # find the offender, for the message
            string(item, member, min_len=min_len, max_len=max_len)
    return list(value)


def max_results(value: Any, member: str = "maxResults") -> int | None:
    if value is None:
        return None
    non_negative(value, member)
    if not 1 <= value <= 1000:
        raise invalid_parameter(member, "Member must have value between 1 and 1000")
    return value
