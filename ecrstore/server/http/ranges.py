"""Single byte ranges of a representation (RFC 9110 §14): what to send for a ``Range`` header.

- one range, ``bytes=a-b``, ``bytes=a-`` or the suffix ``bytes=-n``: that range (an end past
  the representation is clamped to it);
- a range starting at or past the end, or ``bytes=-0``: :data:`UNSATISFIABLE` (answer 416 with
  ``Content-Range: bytes */size``);
- several ranges, a malformed header, another unit, or an ``If-Range`` that is not the
  current ETag: :data:`FULL` (the whole representation with 200, which the RFC allows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FULL", "UNSATISFIABLE", "ByteRange", "plan_range"]

_RANGE_RE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range (``first <= last < size``)."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value of this range of ``size`` bytes."""
        return f"bytes {self.first}-{self.last}/{size}"


#: plan_range's answer for "send the whole representation".
FULL = None
#: plan_range's answer for "416 Range Not Satisfiable".
UNSATISFIABLE = ByteRange(-1, -2)


def plan_range(range_header: str | None, if_range: str | None, etag: str, size: int) -> ByteRange | None:
    """What to send for a ``Range`` header over ``size`` bytes whose ETag is ``etag`` (quoted):
    :data:`FULL` (None), :data:`UNSATISFIABLE`, or the single :class:`ByteRange` (see the
    module doc for the rules). Never raises."""
    if range_header is None:
        return FULL
    if if_range is not None and if_range.strip() != etag:
        return FULL  # the client's copy is not this representation (or it sent a date)
    if "," in range_header:
        return FULL  # several ranges: the whole body is a valid answer
    m = _RANGE_RE.fullmatch(range_header)
    if m is None or not (m.group(1) or m.group(2)):
        return FULL
    first_text, last_text = m.group(1), m.group(2)
    if not first_text:  # suffix: the last n bytes
        n = int(last_text)
        if n == 0 or size == 0:
            return UNSATISFIABLE
        return ByteRange(max(0, size - n), size - 1)
    first = int(first_text)
    if last_text and int(last_text) < first:
        return FULL  # syntactically invalid: ignored
    if first >= size:
        return UNSATISFIABLE
    return ByteRange(first, min(int(last_text), size - 1) if last_text else size - 1)
