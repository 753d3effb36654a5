"""The ``ecrstore`` command: the parser and :func:`main`.

Exit codes: 0 success; 1 failure (an ECR error, an I/O error, a verify mismatch, a missing
store, a port in use); 2 usage error (bad arguments); 130 interrupted. Errors are printed to
stderr as one line, ``error: <code>: <message>`` for ECR errors; logs and progress bars go to
stderr, results to stdout.

The global options (``--store``, ``--registry-id``, ``--region``, ``--log-level`` and, for the
commands that print a result, ``--json``) are accepted before the command as well as after it.
The store is ``--store``, else ``$ECRSTORE_STORE``, else ``./ecrstore-data`` (the demo's own
default is ``./demo-store``). Only ``init``, ``serve``, ``demo`` and ``import --create-repo``
create a store; the other commands refuse a path where none exists, and the read-only ones
(listings, ``stats``, ``verify``, ``export``, ``gc --dry-run``) work on a read-only store.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import demo, lifecycle_cmds, maint_cmds, serve, store_cmds, transfer
from .common import (
    EXIT_CODES_EPILOG,
    add_global_options,
    resolve_globals,
    run_reporting,
)

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecrstore",
        description="Content-addressed storage of container image layers with Amazon ECR's semantics. "
                    "The store is --store, else $ECRSTORE_STORE, else ./ecrstore-data.",
        epilog=EXIT_CODES_EPILOG,
    )
    add_global_options(parser, json_output=True, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.add_commands(commands)
    store_cmds.add_commands(commands)
    maint_cmds.add_commands(commands)
    lifecycle_cmds.add_commands(commands)
    demo.add_commands(commands)
    transfer.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's arguments), run the command, answer its exit
    status. Usage errors exit 2 through argparse."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "json", False) and not getattr(args, "json_output", False):
        parser.error(f"--json does not apply to {args.command}")
    resolve_globals(args)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_reporting(lambda: args.func(args))
