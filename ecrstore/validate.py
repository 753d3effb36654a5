"""Request-member validation per the service model (ECR leaves these checks to the server).

Every function raises InvalidParameterException worded as the service words it
(``Invalid parameter at '<member>' failed to satisfy constraint: '<reason>'``) and returns the
normalised value. No function here has effects.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Sequence
from typing import Any

from .errors import InvalidParameterException, InvalidTagParameterException, TooManyTagsException, invalid_parameter
from .limits import (
    MAX_REPOSITORY_TAGS,
    MAX_RESULTS,
    MAX_TAG_CHARS,
    MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
)
from .models import EncryptionConfiguration, ExclusionFilter, ImageScanningConfiguration, Tag

#: The service model's pattern for repositoryName, the one enforced.
REPOSITORY_NAME_PATTERN = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*"
_REPO_RE = re.compile(REPOSITORY_NAME_PATTERN)
_REGISTRY_RE = re.compile(r"[0-9]{12}")
_UPLOAD_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

TAG_MUTABILITY = ("MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
ENCRYPTION_TYPES = ("AES256", "KMS", "KMS_DSSE")


def string(value: Any, member: str, *, min_len: int = 0, max_len: int | None = None) -> str:
    if not isinstance(value, str):
        raise invalid_parameter(member, "Member must be a string")
    if len(value) < min_len:
        raise invalid_parameter(member, f"Member must have length greater than or equal to {min_len}")
    if max_len is not None and len(value) > max_len:
        raise invalid_parameter(member, f"Member must have length less than or equal to {max_len}")
    return value


#: What ECR accepts as an image tag (its own message quotes this pattern); ASCII only, so a
#: tag's bytes are its characters and always fit the index's keys.
IMAGE_TAG_PATTERN = "[a-zA-Z0-9-_.]+"
_TAG_RE = re.compile(r"[a-zA-Z0-9_.-]{1,300}")


def is_image_tag(value: object) -> bool:
    return isinstance(value, str) and _TAG_RE.fullmatch(value) is not None


def image_tag(value: Any, member: str = "imageTag") -> str:
    """An image tag: 1..300 characters of ``[a-zA-Z0-9-_.]``."""
    string(value, member, min_len=1, max_len=MAX_TAG_CHARS)
    if not is_image_tag(value):
        raise invalid_parameter(member, f"must satisfy regular expression '{IMAGE_TAG_PATTERN}'")
    return str(value)


def repository_name(value: Any, member: str = "repositoryName") -> str:
    name = string(value, member, min_len=2, max_len=256)
    if not _REPO_RE.fullmatch(name):
        raise invalid_parameter(member, f"Member must satisfy regular expression pattern: {REPOSITORY_NAME_PATTERN}")
    return name


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
    chosen: str = value  # equal to one of ``allowed``
    return chosen


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


def max_results(value: Any, member: str = "maxResults", upper: int = MAX_RESULTS) -> int | None:
    """A page size of 1..``upper`` (the service model's bound for this member), or None."""
    if value is None:
        return None
    n = non_negative(value, member)
    if not 1 <= n <= upper:
        raise invalid_parameter(member, f"Member must have value between 1 and {upper}")
    return n


#: ECR's pattern for a repository tag's key and value: letters, separators and numbers of any
#: script, and the symbols ``_.:/=+-@`` (checked by Unicode category: ``re`` has no ``\p{}``).
TAG_CHARACTERS = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*"
_TAG_SYMBOLS = frozenset("_.:/=+-@")
#: Keys starting with this (in any letter case) are reserved for the service.
RESERVED_TAG_PREFIX = "aws:"


def _tag_text_ok(text: str) -> bool:
    return all(c in _TAG_SYMBOLS or unicodedata.category(c)[0] in "LZN" for c in text)


def tag_key(key: Any, member: str = "tags") -> str:
    """A repository tag's key: 1..128 allowed characters, not starting with ``aws:``.
    Raises InvalidTagParameterException."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_TAG_KEY_CHARS:
        raise InvalidTagParameterException(
            f"Tag keys must be strings of 1 to {MAX_TAG_KEY_CHARS} characters (at '{member}')")
    if not _tag_text_ok(key):
        raise InvalidTagParameterException(
            f"The tag key '{key}' at '{member}' must satisfy regular expression pattern: {TAG_CHARACTERS}")
    if key[:len(RESERVED_TAG_PREFIX)].lower() == RESERVED_TAG_PREFIX:
        raise InvalidTagParameterException(
            f"The tag key '{key}' at '{member}' uses the prefix '{RESERVED_TAG_PREFIX}', which is reserved")
    return key


def tag_keys(keys: Any, member: str = "tagKeys") -> list[str]:
    """UntagResource's keys: a list of valid tag keys (possibly empty)."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence):
        raise invalid_parameter(member, "Member must be a list")
    return [tag_key(k, member) for k in keys]


def tags(tags: Sequence[Tag] | None, existing: Sequence[dict[str, str]] = ()) -> list[dict[str, str]]:
    """Repository tags as stored (``{"Key", "Value"}`` dicts): ``tags`` merged over
    ``existing`` (a given key replaces the value it had, the last of a repeated key wins).

    Raises InvalidTagParameterException for a key or value outside ECR's rules (see
    :func:`tag_key`; values hold 0..256 of the same characters) and TooManyTagsException when
    the request, or the merged set, holds more than :data:`MAX_REPOSITORY_TAGS` keys."""
    if tags is None:
        tags = ()
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Sequence):
        raise InvalidTagParameterException("tags must be a list of Tag")
    if len(tags) > MAX_REPOSITORY_TAGS:
        raise TooManyTagsException(f"A repository may have at most {MAX_REPOSITORY_TAGS} tags; "
                                   f"{len(tags)} were given")
    merged = {t["Key"]: t["Value"] for t in existing}
    for tag in tags:
        if not isinstance(tag, Tag):
            raise InvalidTagParameterException("tags must be a list of Tag")
        tag_key(tag.key)
        value = tag.value
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE_CHARS:
            raise InvalidTagParameterException(
                f"Tag values must be strings of at most {MAX_TAG_VALUE_CHARS} characters")
        if not _tag_text_ok(value):
            raise InvalidTagParameterException(
                f"The value of the tag '{tag.key}' must satisfy regular expression pattern: {TAG_CHARACTERS}")
        merged[tag.key] = value
    if len(merged) > MAX_REPOSITORY_TAGS:
        raise TooManyTagsException(f"A repository may have at most {MAX_REPOSITORY_TAGS} tags; "
                                   f"it would have {len(merged)}")
    return [{"Key": k, "Value": val} for k, val in merged.items()]


def encryption(conf: EncryptionConfiguration | None) -> EncryptionConfiguration:
    if conf is None:
        return EncryptionConfiguration()
    if not isinstance(conf, EncryptionConfiguration):
        raise invalid_parameter("encryptionConfiguration", "Member must be an EncryptionConfiguration")
    etype, key = conf.encryption_type, conf.kms_key
    enum(etype, "encryptionConfiguration.encryptionType", ENCRYPTION_TYPES)
    if key is not None:
        string(key, "encryptionConfiguration.kmsKey", min_len=1, max_len=2048)
        if etype == "AES256":
            raise InvalidParameterException("A KMS key can only be given with the KMS or KMS_DSSE encryption type")
    return conf


def scanning(conf: ImageScanningConfiguration | None) -> ImageScanningConfiguration:
    if conf is None:
        return ImageScanningConfiguration()
    if isinstance(conf, ImageScanningConfiguration) and isinstance(conf.scan_on_push, bool):
        return conf
    raise invalid_parameter("imageScanningConfiguration", "Member must be a structure with a boolean scanOnPush")


def exclusion_filters(filters: Sequence[ExclusionFilter] | None, mutability: str) -> list[dict[str, str]]:
    if filters is None:
        filters = ()
    if isinstance(filters, (str, bytes)) or not isinstance(filters, Sequence) or len(filters) > 5:
        raise invalid_parameter("imageTagMutabilityExclusionFilters", "Member must be a list of at most 5 filters")
    if filters and not mutability.endswith("_WITH_EXCLUSION"):
        raise InvalidParameterException("Exclusion filters need a *_WITH_EXCLUSION tag mutability")
    if not filters and mutability.endswith("_WITH_EXCLUSION"):
        raise InvalidParameterException(f"The tag mutability {mutability} needs at least one exclusion filter")
    out = []
    for f in filters:
        if not isinstance(f, ExclusionFilter) or f.filter_type != "WILDCARD":
            raise invalid_parameter("imageTagMutabilityExclusionFilters.filterType",
                                    "Member must satisfy enum value set: [WILDCARD]")
        pattern = f.filter
        string(pattern, "imageTagMutabilityExclusionFilters.filter", min_len=1, max_len=128)
        if not all(c.isalnum() or c in "._*-" for c in pattern):
            raise invalid_parameter("imageTagMutabilityExclusionFilters.filter",
                                    "Member must satisfy regular expression pattern: ^[0-9a-zA-Z._*-]{1,128}")
        out.append({"filterType": "WILDCARD", "filter": pattern})
    return out


#: What a repository's ARN looks like: ``arn:aws:ecr:<region>:<registry>:repository/<name>``.
REPOSITORY_ARN_FORMAT = "arn:aws:ecr:{region}:{registry}:repository/{name}"
MAX_ARN_CHARS = 2048


def repository_arn(value: Any, region: str, member: str = "resourceArn") -> tuple[str, str]:
    """(registry, repository name) of a repository ARN of ``region``. Raises
    InvalidParameterException for anything else (another region, service or resource type, a
    malformed registry id or name, not an ARN at all)."""
    arn = string(value, member, min_len=1, max_len=MAX_ARN_CHARS)
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[:3] != ["arn", "aws", "ecr"] or not parts[5].startswith("repository/"):
        shape = REPOSITORY_ARN_FORMAT.format(region="<region>", registry="<registry>", name="<name>")
        raise invalid_parameter(member, f"'{arn}' is not a valid repository ARN ({shape})")
    if parts[3] != region:
        raise invalid_parameter(member, f"The ARN's region '{parts[3]}' is not this registry's region '{region}'")
    registry = registry_id(parts[4], "", member)
    name = repository_name(parts[5][len("repository/"):], member)
    return registry, name
