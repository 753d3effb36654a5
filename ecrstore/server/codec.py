"""ECR's JSON shapes of the engine's values: camelCase members, ``None`` members left out."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["to_wire"]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_CAMEL: dict[str, str] = {}


def to_wire(value: Any) -> Any:
    """ECR's JSON shape of a result: camelCase members, ``None`` members omitted."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if v is not None:
                key = _CAMEL.get(f.name) or _CAMEL.setdefault(f.name, _camel(f.name))
                out[key] = to_wire(v)
        return out
    if isinstance(value, (tuple, list)):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value
