"""What every ``ecrstore`` command shares: exit codes, the global options, the one way to open a
store, argument types, output helpers and the failure reporter.

Exit codes: 0 success; 1 failure (an ECR error, an I/O error, a verify mismatch, a missing
store, a port in use); 2 usage error (argparse and the commands' own argument checks); 130
interrupted. Expected failures are one line on stderr (``error: <message>``, ECR errors as
``error: <Code>: <message>``), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .. import limits, settings
from ..errors import EcrError, ServerException
from ..store import Store

__all__ = [
    "DEFAULT_STORE", "DEFAULT_DEMO_STORE", "EXIT_CODES_EPILOG", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "ENGINE_DEFAULTS", "SERVE_DEFAULTS", "CliError", "hinted", "add_global_options", "add_command", "resolve_globals",
    "open_store", "store_options", "parse_size", "positive_int", "non_negative_int", "port_number",
    "seconds_arg", "duration", "registry_id_arg", "human_bytes", "human_time", "plural", "print_json",
    "progress_bar", "add_progress_options", "run_reporting",
]

DEFAULT_STORE = "./ecrstore-data"
DEFAULT_DEMO_STORE = "./demo-store"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CODES_EPILOG = "Exit codes: 0 success, 1 failure or verify mismatch, 2 usage error, 130 interrupted."

#: The engine's defaults, for help texts only: the commands pass a setting to the engine only
#: when it is given, so the engine's own values apply otherwise.
ENGINE_DEFAULTS: dict[str, Any] = {
    "registry_id": limits.DEFAULT_REGISTRY_ID,
    "region": limits.DEFAULT_REGION,
    "part_size": limits.DEFAULT_PART_BYTES,
    "min_part_size": limits.MIN_PART_BYTES,
    "max_part_size": limits.MAX_PART_BYTES,
    "upload_ttl": int(limits.DEFAULT_UPLOAD_TTL),
    "gc_grace": int(limits.DEFAULT_GC_GRACE),
    "purge_grace": int(limits.DEFAULT_PURGE_GRACE),
    "max_repositories": limits.MAX_REPOSITORIES_PER_REGISTRY,
    "max_uploads": limits.MAX_UPLOADS_PER_REGISTRY,
}
#: Where ``ecrstore serve`` listens unless told otherwise.
SERVE_DEFAULTS: dict[str, Any] = {"host": "127.0.0.1", "port": 5000}


# --- failures --------------------------------------------------------------------------------


class CliError(Exception):
    """A failure to report as ``error: <message>`` (plus ``; <hint>``) with exit code 1."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


@contextlib.contextmanager
def hinted(error: type[EcrError], hint: str) -> Iterator[None]:
    """Report an ``error`` raised inside the block with ``hint`` after its message."""
    try:
        yield
    except error as e:
        raise CliError(f"{e.code}: {e.message}", hint=hint) from e


def run_reporting(call: Callable[[], int]) -> int:
    """Run a command; turn every expected failure into one line on stderr and an exit code
    (``error: <Code>: <message>`` for ECR errors, 130 when interrupted, 1 otherwise)."""
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


# --- global options and the store ------------------------------------------------------------


def add_global_options(parser: argparse.ArgumentParser, *, json_output: bool, top: bool = False) -> None:
    """The options accepted before the command as well as after it. Their defaults are
    suppressed so that a value given before the command is not overwritten by the command's
    own parser; :func:`resolve_globals` fills them in once parsing is done. Every command's
    parser gets them, and with them the exit codes in its help; ``json_output`` says whether
    the command prints a result ``--json`` applies to (``top``: the main parser, which offers
    ``--json`` to the commands that take it)."""
    parser.epilog = parser.epilog or EXIT_CODES_EPILOG
    group = parser.add_argument_group("global options (also accepted before the command)")
    group.add_argument("--store", metavar="PATH", default=argparse.SUPPRESS,
                       help=f"store directory (default: $ECRSTORE_STORE, else {DEFAULT_STORE})")
    group.add_argument("--index", metavar="URL", default=argparse.SUPPRESS,
                       help="the index in PostgreSQL, shared by many nodes: postgresql://user@host/db "
                            "(default: $ECRSTORE_INDEX, else LMDB in the store directory)")
    group.add_argument("--blobs", metavar="URL", default=argparse.SUPPRESS,
                       help="layer bytes in an S3-compatible store: s3://bucket/prefix, with --index "
                            "(default: $ECRSTORE_BLOBS, else files in the store directory)")
    group.add_argument("--registry-id", metavar="ID", type=registry_id_arg, default=argparse.SUPPRESS,
                       help=f"the store's default registry id, 12 digits (default: {ENGINE_DEFAULTS['registry_id']})")
    group.add_argument("--region", metavar="NAME", default=argparse.SUPPRESS,
                       help=f"region named in repository ARNs and URIs (default: {ENGINE_DEFAULTS['region']})")
    group.add_argument("--log-level", default=argparse.SUPPRESS,
                       choices=["debug", "info", "warning", "error", "critical"],
                       help="log verbosity on stderr (default: info)")
    if json_output:
        group.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                           help="print the result as JSON" + (" (for the commands that print one)" if top else ""))
        if not top:
            parser.set_defaults(json_output=True)


def add_command(commands: Any, name: str, func: Callable[[argparse.Namespace], int], *,
                json_output: bool = False, **kwargs: Any) -> argparse.ArgumentParser:
    """A command's parser with the global options, running ``func(args)`` (its exit status)."""
    p: argparse.ArgumentParser = commands.add_parser(name, **kwargs)
    add_global_options(p, json_output=json_output)
    p.set_defaults(func=func)
    return p


def resolve_globals(args: argparse.Namespace) -> None:
    """Give every global option its value: the one given (after the command wins over before),
    else ``ECRSTORE_STORE`` for the store (the demo keeps its own directory), else the default."""
    store = getattr(args, "store", None)
    if not store:
        store = getattr(args, "store_fallback", None) or settings.store_path_default() or DEFAULT_STORE
    args.store = store
    args.index = getattr(args, "index", None) or settings.backend_url_default("index")
    args.blobs = getattr(args, "blobs", None) or settings.backend_url_default("blobs")
    args.registry_id = getattr(args, "registry_id", None)
    args.region = getattr(args, "region", None)
    args.log_level = getattr(args, "log_level", "info")
    args.json = getattr(args, "json", False)


def store_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for :class:`ecrstore.Store` from the options given (only those)."""
    options: dict[str, Any] = {}
    for name in ("index", "blobs", "registry_id", "region", "part_size", "min_part_size", "max_part_size", "upload_ttl",
                 "max_repositories_per_registry", "max_uploads_per_registry"):
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    if getattr(args, "no_durable", False):
        options["durable"] = False
    return options


def open_store(args: argparse.Namespace, *, mode: str, **options: Any) -> Store:
    """The one way the commands open a store. ``mode``: ``"read"`` (read-only: works on a
    read-only store and writes nothing), ``"write"`` (the store must exist) or ``"create"``
    (created when missing). A missing store is a CliError naming the path and ``ecrstore init``."""
    if mode not in ("read", "write", "create"):
        raise ValueError(f"unknown mode {mode!r}")
    try:
        return Store(args.store, create=mode == "create", read_only=mode == "read",
                     **{**store_options(args), **options})
    except ServerException as e:
        if mode != "create" and "no store at" in e.message:
            raise CliError(f"no store at {args.store}",
                           hint=f"create one with: ecrstore init --store {args.store}") from e
        raise


# --- argument types --------------------------------------------------------------------------

_SIZE_RE = re.compile(r"(\d+)\s*([kmg]i?b?|b)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
               "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
               "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """``1048576``, ``64KiB``, ``5MiB``, ``10MB`` -> bytes (argparse type)."""
    m = _SIZE_RE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (examples: 65536, 64KiB, 5MiB)")
    return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]


def duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``12h``, ``7d``, ``1w`` -> seconds (argparse type)."""
    m = _DURATION_RE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (examples: 3600, 90s, 30m, 12h, 7d)")
    return float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "").lower()]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def port_number(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0 to 65535, got {value}")
    return value


def seconds_arg(*, zero_ok: bool) -> Callable[[str], float]:
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


# --- output ----------------------------------------------------------------------------------


def human_bytes(n: int | float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_time(epoch: float) -> str:
    """An epoch time as ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def print_json(value: Any) -> None:
    """Print a result (the engine's dataclasses in ECR's camelCase shape, or plain values)."""
    try:
        from ..server.awsjson.codec import to_wire
    except ImportError as e:  # the codec lives in the server package, which needs its extra
        raise CliError(f"--json needs the server extra ({e.name} is not installed)",
                       hint="install it with: pip install 'ecrstore[server]'") from e
    print(json.dumps(to_wire(value), indent=2, sort_keys=True, default=str))


def add_progress_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="always show the progress bar (default: only on a terminal)")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="never show it")


def progress_bar(total: int | None, desc: str, args: argparse.Namespace) -> Any:
    """A tqdm bar on stderr (shown only on a terminal unless --progress)."""
    from tqdm import tqdm

    disable = False if args.progress is True else (True if args.progress is False else None)
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, disable=disable, leave=False)
