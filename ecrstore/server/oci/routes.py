"""The ``/v2/`` URL space of the OCI distribution-spec: which endpoint a path names.

Repository names contain slashes, so each endpoint is recognised by its suffix and the name
is what precedes it. The spec's endpoint ids (end-1 … end-13) are given with each kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Endpoint", "match"]

_NAME = r"(?P<name>[^?#]+?)"
#: (kind, pattern, methods the endpoint serves), tried in order.
_ROUTES: tuple[tuple[str, re.Pattern[str], frozenset[str]], ...] = tuple(
    (kind, re.compile(pattern), frozenset(methods))
    for kind, pattern, methods in (
        ("base", r"/v2/?", ("GET", "HEAD")),                                              # end-1
        ("catalog", r"/v2/_catalog", ("GET",)),
        ("uploads", rf"/v2/{_NAME}/blobs/uploads/?", ("POST",)),                          # end-4, end-11
        ("upload", rf"/v2/{_NAME}/blobs/uploads/(?P<ref>[^/]+)", ("GET", "PATCH", "PUT", "DELETE")),  # 5, 6, 13
        ("blob", rf"/v2/{_NAME}/blobs/(?P<ref>[^/]+)", ("GET", "HEAD", "DELETE")),        # end-2, end-10
        ("manifest", rf"/v2/{_NAME}/manifests/(?P<ref>[^/]+)", ("GET", "HEAD", "PUT", "DELETE")),  # 3, 7, 9
        ("tags", rf"/v2/{_NAME}/tags/list", ("GET",)),                                    # end-8
        ("referrers", rf"/v2/{_NAME}/referrers/(?P<ref>[^/]+)", ("GET",)),                # end-12
    )
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a path names: the endpoint ``kind``, the repository ``name`` and the ``ref``
    (digest, tag or upload id) where the endpoint has one; ``methods`` it serves."""

    kind: str
    name: str
    ref: str
    methods: frozenset[str]


def match(path: str) -> Endpoint | None:
    """The endpoint ``path`` names, or None for a path outside the spec."""
    for kind, pattern, methods in _ROUTES:
        m = pattern.fullmatch(path)
        if m is not None:
            groups = m.groupdict()
            return Endpoint(kind, groups.get("name") or "", groups.get("ref") or "", methods)
    return None
