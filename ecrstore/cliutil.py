"""Argument types, exit codes and output helpers shared by the ``ecrstore`` commands."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any

DEFAULT_STORE = "./ecrstore-data"
DEFAULT_DEMO_STORE = "./demo-store"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


_SIZE_RE = re.compile(r"(\d+)\s*([kmg]i?b?|b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
               "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
               "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3}


class CliError(Exception):
    """A failure to report as ``error: <message>`` with exit code 1."""


def parse_size(text: str) -> int:
    """``1048576``, ``64KiB``, ``5MiB``, ``10MB`` -> bytes (argparse type)."""
    m = _SIZE_RE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (examples: 65536, 64KiB, 5MiB)")
    return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def seconds_arg(*, zero_ok: bool):
    """An argparse type: a finite number of seconds, positive (or, with ``zero_ok``, >= 0)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
        if not (value >= 0 if zero_ok else value > 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(
                f"must be a {'non-negative' if zero_ok else 'positive'} number of seconds, got {text}")
        return value

    return parse


def registry_id_arg(text: str) -> str:
    if not re.fullmatch(r"[0-9]{12}", text):
        raise argparse.ArgumentTypeError(f"registry id must be 12 digits, got {text!r}")
    return text


def human_bytes(n: int | float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def print_json(value: Any) -> None:
    from .server.awsjson.codec import to_wire

    print(json.dumps(to_wire(value), indent=2, sort_keys=True, default=str))


def run_reporting(call: Callable[[], int]) -> int:
    """Run a command; turn every expected failure into a message on stderr and an exit code
    (``error: <Code>: <message>`` for ECR errors, 130 when interrupted, 1 otherwise)."""
    import sys

    from .errors import EcrError

    try:
        return call()
    except EcrError as e:
        print(f"error: {e.code}: {e.message}", file=sys.stderr)
    except (CliError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILURE

