"""The lifecycle commands: ``lifecycle run`` and ``lifecycle preview``.

``lifecycle run`` applies the stored lifecycle policies now (every repository with one, of every
registry unless ``--registry-id`` names one; or ``--repository`` only) and, with ``--gc``,
reclaims the expired images' blobs at once; ``--dry-run`` opens the store read-only and
reports what would be expired. ``lifecycle preview`` is StartLifecyclePolicyPreview followed by
GetLifecyclePolicyPreview for one repository (its stored policy, or ``--policy FILE``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InvalidParameterException
from ..models import LifecyclePolicyPreviewResult
from .common import EXIT_OK, CliError, add_command, human_bytes, human_time, open_store, print_json

__all__ = ["add_commands"]


def _line(r: LifecyclePolicyPreviewResult) -> str:
    tags = ",".join(r.image_tags) if r.image_tags else "<untagged>"
    return f"  {r.image_digest}  {tags}  pushed {human_time(r.image_pushed_at)}  rule {r.applied_rule_priority}"


def cmd_run(args: argparse.Namespace) -> int:
    """Expire the images the policies select; report them per repository (and gc's work)."""
    if args.dry_run and args.gc:
        raise CliError("--gc does not apply to --dry-run")
    with open_store(args, mode="read" if args.dry_run else "write") as store:
        report = store.lifecycle.run(repository_name=args.repository, dry_run=args.dry_run,
                                     all_registries=args.repository is None and args.registry_id is None)
        gc = store.gc(grace=0) if args.gc else None
    if args.json:
        out: dict[str, Any] = {"dryRun": report.dry_run, "repositories": report.repositories}
        if gc is not None:
            out["gc"] = {"layersUnlinked": gc.layers_unlinked, "blobsDeleted": gc.blobs_deleted,
                         "bytesFreed": gc.bytes_freed}
        print_json(out)
        return EXIT_OK
    verb = "would expire" if report.dry_run else "expired"
    if not report.repositories:
        print("no repository has a lifecycle policy")
    for run in report.repositories:
        print(f"{run.registry_id}/{run.repository_name}: {verb} {len(run.expired)} image(s)")
        for r in run.expired:
            print(_line(r))
        for digest in run.skipped:
            print(f"  {digest}  left: changed since it was evaluated")
    if gc is not None:
        print(f"gc: unlinked {gc.layers_unlinked} layer(s), deleted {gc.blobs_deleted} blob(s), "
              f"freed {human_bytes(gc.bytes_freed)} ({gc.bytes_freed} bytes)")
    return EXIT_OK


def _policy_text(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read the policy {path}: {e}") from e


def cmd_preview(args: argparse.Namespace) -> int:
    """Preview a policy (the stored one, or --policy) over one repository's images now."""
    text = _policy_text(args.policy)
    with open_store(args, mode="write") as store:
        store.lifecycle.start_lifecycle_policy_preview(args.repository, lifecycle_policy_text=text)
        page = store.lifecycle.get_lifecycle_policy_preview(args.repository)
        results = list(page.preview_results)
        while page.next_token is not None:
            page = store.lifecycle.get_lifecycle_policy_preview(args.repository, next_token=page.next_token)
            results.extend(page.preview_results)
    if args.json:
        print_json({"status": page.status, "previewResults": results, "summary": page.summary})
        return EXIT_OK
    print(f"{page.registry_id}/{page.repository_name}: the policy expires "
          f"{page.summary.expiring_image_total_count} image(s)")
    for r in results:
        print(_line(r))
    return EXIT_OK


def _repository(text: str) -> str:
    from .. import validate

    try:
        return validate.repository_name(text)
    except InvalidParameterException as e:
        raise argparse.ArgumentTypeError(e.message) from None


def add_commands(commands: Any) -> None:
    """Register ``lifecycle run`` and ``lifecycle preview`` on the main parser's subparsers."""
    group = commands.add_parser("lifecycle", help="apply or preview lifecycle policies",
                                description="Apply the repositories' lifecycle policies (expire the images "
                                            "they select) or preview what a policy expires.")
    sub = group.add_subparsers(dest="lifecycle_command", metavar="COMMAND", required=True)
    p = add_command(sub, "run", cmd_run, json_output=True, help="expire the images the policies select",
                    description="Apply every stored lifecycle policy now (of every registry, or of "
                                "--registry-id's; or --repository's only): delete the images it expires. "
                                "Safe while the store is in use: each deletion is re-checked.")
    p.add_argument("--repository", type=_repository, metavar="NAME", help="only this repository")
    p.add_argument("--dry-run", action="store_true", help="report what would be expired, change nothing")
    p.add_argument("--gc", action="store_true",
                   help="then reclaim the blobs no image references any more (gc with no grace)")
    p = add_command(sub, "preview", cmd_preview, json_output=True, help="preview a lifecycle policy",
                    description="Evaluate a repository's lifecycle policy (or --policy) over its images "
                                "now, keep it as the repository's preview and print the images it expires.")
    p.add_argument("--repository", type=_repository, metavar="NAME", required=True)
    p.add_argument("--policy", metavar="FILE", help="the policy text to preview ('-': standard input)")
