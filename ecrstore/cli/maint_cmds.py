"""The maintenance commands: ``verify``, ``purge``, ``gc`` and ``stats``.

``verify``, ``stats`` and ``gc --dry-run`` open the store read-only (they write nothing and work
on a read-only store); ``purge`` and ``gc`` change it and are safe while it is in use.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .common import (
    ENGINE_DEFAULTS,
    EXIT_FAILURE,
    EXIT_OK,
    add_command,
    add_progress_options,
    duration,
    human_bytes,
    open_store,
    print_json,
    progress_bar,
    seconds_arg,
)

__all__ = ["add_commands"]


# --- maintenance -----------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-hash every blob and check every link (read-only); exit 1 and a report on a mismatch."""
    with open_store(args, mode="read") as store:
        total = store.stats().blob_bytes
        with progress_bar(total, "verify", args) as bar:
            report = store.verify(progress=bar.update)
    if args.json:
        print_json({"checked": report.checked, "bytes": report.bytes, "ok": report.ok,
                    "mismatches": [{"digest": d, "problem": p} for d, p in report.mismatches]})
        return EXIT_OK if report.ok else EXIT_FAILURE
    print(f"checked {report.checked} blobs, {human_bytes(report.bytes)} ({report.bytes} bytes)")
    if report.mismatches:
        print(f"{len(report.mismatches)} problem(s):")
        for digest, problem in report.mismatches:
            print(f"  {digest}: {problem}")
        return EXIT_FAILURE
    print("all blobs match their digests")
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    """Remove idle uploads, unlinked blobs and crash leftovers; report the space freed."""
    options: dict[str, Any] = {}
    if args.grace is not None:
        options["grace"] = args.grace
    if args.older_than is not None:
        options["uploads_idle"] = args.older_than
    with open_store(args, mode="write") as store:
        report = store.purge(**options)
    if args.json:
        print_json(dataclasses.asdict(report))
        return EXIT_OK
    expired = "idle" if args.older_than is not None else "expired"
    print(f"removed {report.uploads_removed} {expired} upload(s), {report.blobs_removed} unreferenced blob(s) "
          f"and {report.orphans_removed} orphan file(s), freed {human_bytes(report.bytes_freed)} "
          f"({report.bytes_freed} bytes)")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    """Unlink layers no image uses and delete the blobs left unlinked; --dry-run only reads."""
    options: dict[str, Any] = {"dry_run": args.dry_run}
    if args.grace is not None:
        options["grace"] = args.grace
    with open_store(args, mode="read" if args.dry_run else "write") as store:
        report = store.gc(**options)
    if args.json:
        print_json(dataclasses.asdict(report))
        return EXIT_OK
    freed = f"{human_bytes(report.bytes_freed)} ({report.bytes_freed} bytes)"
    if report.dry_run:
        print(f"dry run: would unlink {report.layers_unlinked} unreferenced layer(s), delete "
              f"{report.blobs_deleted} blob(s) and free {freed}; nothing was changed")
    else:
        print(f"unlinked {report.layers_unlinked} unreferenced layer(s), deleted {report.blobs_deleted} "
              f"blob(s), freed {freed}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    """Counts and bytes (read-only): dedupe savings (never negative) and, apart, the bytes of
    unlinked blobs that gc / purge would reclaim."""
    with open_store(args, mode="read") as store:
        s = store.stats()
    fields = ("repositories", "layers", "blobs", "blob_bytes", "linked_bytes", "uploads_in_progress",
              "reclaimable_bytes")
    if args.json:
        print_json({**{k: getattr(s, k) for k in fields}, "dedupe_saved_bytes": s.dedupe_saved_bytes})
        return EXIT_OK
    saved = s.dedupe_saved_bytes
    ratio = f" ({saved / s.linked_bytes:.1%} of linked bytes)" if s.linked_bytes else ""
    rows = [
        ("repositories", str(s.repositories)),
        ("layers (repository links)", str(s.layers)),
        ("blobs (distinct digests)", str(s.blobs)),
        ("stored bytes", f"{human_bytes(s.blob_bytes)} ({s.blob_bytes})"),
        ("linked bytes", f"{human_bytes(s.linked_bytes)} ({s.linked_bytes})"),
        ("dedupe savings", f"{human_bytes(saved)}{ratio}"),
        ("reclaimable by gc/purge", f"{human_bytes(s.reclaimable_bytes)} ({s.reclaimable_bytes}) "
                                    "in blobs no repository links"),
        ("uploads in progress", str(s.uploads_in_progress)),
    ]
    for name, value in rows:
        print(f"{name:<27} {value}")
    return EXIT_OK


# --- parser ----------------------------------------------------------------------------------


def add_commands(commands: Any) -> None:
    """Register ``verify``, ``purge``, ``gc`` and ``stats`` on the main parser's subparsers."""
    p = add_command(commands, "verify", cmd_verify, json_output=True, help="re-hash every stored blob",
                    description="Re-hash every stored blob and compare it with its digest. Exit code 1 and "
                                "a report when any blob does not match. Works on a read-only store.")
    add_progress_options(p)

    p = add_command(commands, "purge", cmd_purge, json_output=True,
                    help="reclaim space of idle uploads and unreferenced files",
                    description="Remove uploads idle past the upload TTL (or --older-than), blobs no "
                                "repository links and files left by crashes, and report the space freed. "
                                "Safe while the store is in use.")
    p.add_argument("--older-than", type=duration, metavar="DURATION",
                   help="remove uploads idle longer than this (e.g. 90s, 30m, 12h, 7d) instead of "
                        f"the store's upload TTL ({ENGINE_DEFAULTS['upload_ttl']} s)")
    p.add_argument("--grace", type=seconds_arg(zero_ok=True), metavar="SECONDS",
                   help=f"leave unreferenced blobs and stray files younger than this "
                        f"(default: {ENGINE_DEFAULTS['purge_grace']})")

    p = add_command(commands, "gc", cmd_gc, json_output=True, help="unlink layers no image uses and delete their blobs",
                    description="Garbage-collect: unlink every layer that no image of its repository "
                                "references and that was linked more than --grace seconds ago, then "
                                "delete the blobs no repository links any more, and report the layers "
                                "unlinked, blobs deleted and bytes freed. Safe while the store is in use "
                                "(pushes, completions and PutImage go on). --dry-run works on a read-only store.")
    p.add_argument("--grace", type=seconds_arg(zero_ok=True), metavar="SECONDS",
                   help="keep layers linked less than this long ago, so that a push can finish "
                        f"uploading an image's layers before its PutImage (default: {ENGINE_DEFAULTS['gc_grace']})")
    p.add_argument("--dry-run", action="store_true", help="report what would go, change nothing")

    add_command(commands, "stats", cmd_stats, json_output=True, help="counts, bytes, dedupe savings, reclaimable space",
                description="Print repository, layer and blob counts, stored bytes, the space saved by "
                            "storing each digest once, and the space gc / purge would reclaim.")
