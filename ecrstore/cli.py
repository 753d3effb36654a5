"""The ``ecrstore`` command-line tool.

Exit codes: 0 success; 1 failure (an ECR error, an I/O error, a verify mismatch); 2 usage error
(bad arguments, from argparse); 130 interrupted. Errors are printed to stderr as
``error: <code>: <message>``; logs and progress bars go to stderr, results to stdout.

Every command that works on a store takes ``--store PATH`` (default ``./ecrstore-data``; the
demo's default is ``./demo-store``). Only ``init``, ``serve`` and ``demo`` create a store;
the other commands refuse a path where none exists.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .cli_transfer import add_commands as add_transfer_commands
from .cliutil import (
    DEFAULT_DEMO_STORE,
    DEFAULT_STORE,
    EXIT_FAILURE,
    EXIT_OK,
    CliError,
    human_bytes,
    parse_size,
    run_reporting,
)
from .cliutil import non_negative_int as _non_negative_int
from .cliutil import positive_int as _positive_int
from .cliutil import print_json as _print_json
from .cliutil import registry_id_arg as _registry_id
from .cliutil import seconds_arg as _seconds
from .models import EncryptionConfiguration, Tag

__all__ = ["main", "build_parser"]

log = logging.getLogger("ecrstore.cli")

# --- store access -----------------------------------------------------------------------------


def _store_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if getattr(args, "registry_id", None):
        options["registry_id"] = args.registry_id
    for name in ("region", "part_size", "min_part_size", "max_part_size", "upload_ttl"):
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    if getattr(args, "no_durable", False):
        options["durable"] = False
    return options


def _open_store(args: argparse.Namespace, *, create: bool = False):
    from . import Store

    if not create and not os.path.isdir(args.store):
        raise CliError(f"no store at {args.store} (create one with: ecrstore init --store {args.store})")
    return Store(args.store, **_store_options(args))


def _progress(total: int | None, desc: str, args: argparse.Namespace):
    """A tqdm bar on stderr (shown only on a terminal unless --progress)."""
    from tqdm import tqdm

    disable = False if args.progress is True else (True if args.progress is False else None)
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, disable=disable, leave=False)


# --- commands ---------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    existed = os.path.isdir(args.store)
    with _open_store(args, create=True) as store:
        stats = store.stats()
    state = "opened existing" if existed else "created"
    print(f"{state} store at {os.path.abspath(args.store)} ({stats.repositories} repositories, "
          f"{stats.blobs} blobs)")
    return EXIT_OK


def cmd_repo_create(args: argparse.Namespace) -> int:
    tags = []
    for item in args.tag or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--tag wants KEY=VALUE, got {item!r}")
        tags.append(Tag(key, value))
    encryption = None
    if args.kms_key:
        encryption = EncryptionConfiguration("KMS", args.kms_key)
    with _open_store(args) as store:
        repo = store.create_repository(
            args.name,
            image_tag_mutability="IMMUTABLE" if args.immutable else "MUTABLE",
            encryption_configuration=encryption,
            tags=tags or None,
        )
    if args.json:
        _print_json(repo)
    else:
        print(repo.repository_uri)
    return EXIT_OK


def _all_repositories(store: Any) -> list[Any]:
    repos: list[Any] = []
    token = None
    while True:
        page = store.describe_repositories(next_token=token, max_results=1000)
        repos.extend(page.repositories)
        token = page.next_token
        if not token:
            return repos


def cmd_repo_ls(args: argparse.Namespace) -> int:
    import datetime

    with _open_store(args) as store:
        repos = _all_repositories(store)
    if args.json:
        _print_json(repos)
        return EXIT_OK
    if not repos:
        print("no repositories", file=sys.stderr)
        return EXIT_OK
    width = max(len(r.repository_name) for r in repos)
    for r in repos:
        created = r.created_at
        if not isinstance(created, datetime.datetime):
            created = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
        print(f"{r.repository_name:<{width}}  {r.image_tag_mutability:<9}  "
              f"{created.strftime('%Y-%m-%d %H:%M:%S')}  {r.repository_uri}")
    return EXIT_OK


def cmd_repo_rm(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        repo = store.delete_repository(args.name, force=args.force)
    print(f"deleted {repo.repository_name}")
    return EXIT_OK


def cmd_push_layer(args: argparse.Namespace) -> int:
    from .errors import LayerAlreadyExistsException, RepositoryAlreadyExistsException

    try:
        f = open(args.file, "rb")
    except OSError as e:
        raise CliError(f"cannot open {args.file}: {e.strerror or e}") from e
    with f, _open_store(args) as store:
        if args.create_repo:
            try:
                store.create_repository(args.repo)
            except RepositoryAlreadyExistsException:
                pass
        size = os.fstat(f.fileno()).st_size
        upload = store.initiate_layer_upload(args.repo)
        part_size = args.part_size or upload.part_size
        sha = hashlib.sha256()
        offset = 0
        with _progress(size, "push", args) as bar:
            while True:
                part = f.read(part_size)
                if not part:
                    break
                sha.update(part)
                store.upload_layer_part(args.repo, upload.upload_id, offset, offset + len(part) - 1, part)
                offset += len(part)
                bar.update(len(part))
        digest = "sha256:" + sha.hexdigest()
        try:
            digest = store.complete_layer_upload(args.repo, upload.upload_id, [digest]).layer_digest
        except LayerAlreadyExistsException:
            print(f"note: layer {digest} was already in repository {args.repo}", file=sys.stderr)
    print(digest)
    return EXIT_OK


def cmd_ls_layers(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        layers = list(store.list_layers(args.repo))
    if args.json:
        _print_json([{"layerDigest": d, "layerSize": s} for d, s in layers])
        return EXIT_OK
    for digest, size in layers:
        print(f"{digest}  {size:>14}  {human_bytes(size)}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        total = store.stats().blob_bytes
        with _progress(total, "verify", args) as bar:
            report = store.verify(progress=bar.update)
    print(f"checked {report.checked} blobs, {human_bytes(report.bytes)} ({report.bytes} bytes)")
    if report.mismatches:
        print(f"{len(report.mismatches)} problem(s):")
        for digest, problem in report.mismatches:
            print(f"  {digest}: {problem}")
        return EXIT_FAILURE
    print("all blobs match their digests")
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        report = store.purge() if args.grace is None else store.purge(grace=args.grace)
    print(f"removed {report.uploads_removed} expired upload(s), {report.blobs_removed} unreferenced blob(s) "
          f"and {report.orphans_removed} orphan file(s), freed {human_bytes(report.bytes_freed)} "
          f"({report.bytes_freed} bytes)")
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"dry_run": args.dry_run}
    if args.grace is not None:
        options["grace"] = args.grace
    with _open_store(args) as store:
        report = store.gc(**options)
    if args.json:
        _print_json({"layers_unlinked": report.layers_unlinked, "blobs_deleted": report.blobs_deleted,
                     "bytes_freed": report.bytes_freed, "dry_run": report.dry_run})
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
    with _open_store(args) as store:
        s = store.stats()
    saved = s.linked_bytes - s.blob_bytes
    if args.json:
        _print_json({**{k: getattr(s, k) for k in ("repositories", "layers", "blobs", "blob_bytes",
                                                    "linked_bytes", "uploads_in_progress")},
                     "dedupe_saved_bytes": saved})
        return EXIT_OK
    ratio = f" ({saved / s.linked_bytes:.1%} of linked bytes)" if s.linked_bytes else ""
    rows = [
        ("repositories", str(s.repositories)),
        ("layers (repository links)", str(s.layers)),
        ("blobs (distinct digests)", str(s.blobs)),
        ("stored bytes", f"{human_bytes(s.blob_bytes)} ({s.blob_bytes})"),
        ("linked bytes", f"{human_bytes(s.linked_bytes)} ({s.linked_bytes})"),
        ("dedupe savings", f"{human_bytes(saved)}{ratio}"),
        ("uploads in progress", str(s.uploads_in_progress)),
    ]
    for name, value in rows:
        print(f"{name:<27} {value}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    result = demo.run(store_path=args.store, file=args.file)
    return result if isinstance(result, int) else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .server.config import ServerConfig
    from .server.credentials import CredentialsFileError
    from .server.runner import prepare_credentials, prepare_store, serve, usage_hint

    if args.credentials and args.no_auth:
        raise CliError("--credentials and --no-auth exclude each other")
    options = _store_options(args)
    prepare_store(args.store, options)
    credentials_file = None
    if not args.no_auth:
        try:
            credentials_file, creds, created = prepare_credentials(
                args.store, args.credentials, options.get("registry_id", "000000000000"))
        except CredentialsFileError as e:
            raise CliError(str(e)) from e
        if not args.credentials:
            print(usage_hint(credentials_file, next(iter(creds.values())), args.host, args.port, created),
                  file=sys.stderr, end="")
    else:
        log.warning("authentication is off (--no-auth): any client can use this server")
    if args.fail_next_upload_parts:
        log.warning("testing hook on: the first %d UploadLayerPart call(s) per worker will answer 500",
                    args.fail_next_upload_parts)
    config = ServerConfig(
        store_path=os.path.abspath(args.store),
        store_options=options,
        auth=not args.no_auth,
        credentials_file=os.path.abspath(credentials_file) if credentials_file else None,
        max_body_bytes=args.max_body_size,
        body_idle_timeout=args.body_timeout,
        threads=args.threads,
        download_url_ttl=args.download_url_ttl,
        fail_upload_parts=args.fail_next_upload_parts,
    )
    status = serve(config, host=args.host, port=args.port, workers=args.workers,
                   log_level=args.log_level, access_log=not args.no_access_log)
    return EXIT_OK if status == 0 else EXIT_FAILURE


# --- parser -----------------------------------------------------------------------------------


def _store_arguments(parser: argparse.ArgumentParser, default: str = DEFAULT_STORE) -> None:
    parser.add_argument("--store", metavar="PATH", default=default,
                        help=f"store directory (default: {default})")
    parser.add_argument("--registry-id", metavar="ID", type=_registry_id,
                        help="the store's default registry id, 12 digits (default: 000000000000)")
    parser.add_argument("--region", metavar="NAME",
                        help="region named in repository ARNs and URIs (default: us-east-1)")


def _progress_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="always show the progress bar (default: only on a terminal)")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="never show it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecrstore",
        description="Content-addressed storage of container image layers with Amazon ECR's semantics.",
        epilog="Exit codes: 0 success, 1 failure or verify mismatch, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error", "critical"],
                        help="log verbosity on stderr (default: info)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser("serve", help="serve ECR's API (AWS JSON 1.1) over HTTP",
                            description="Serve the store over ECR's HTTP API for boto3, the AWS CLI and "
                                        "other AWS SDKs. Without --credentials or --no-auth, the key pair "
                                        "in <store>/credentials is used (created on first start and "
                                        "printed to stderr).")
    _store_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_non_negative_int, default=5000, help="TCP port (default: 5000)")
    p.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1,
                   help="worker processes, each with its own store handle (default: number of CPUs)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--credentials", metavar="FILE",
                      help="credentials file: 'ACCESS_KEY_ID SECRET_ACCESS_KEY REGISTRY_ID' per line, # comments")
    auth.add_argument("--no-auth", action="store_true",
                      help="accept requests with any or no signature (local experiments only)")
    p.add_argument("--part-size", type=parse_size, metavar="SIZE",
                   help="part size InitiateLayerUpload suggests (default: 10MiB)")
    p.add_argument("--min-part-size", type=parse_size, metavar="SIZE",
                   help="smallest part allowed except the last (default: 5MiB)")
    p.add_argument("--max-part-size", type=parse_size, metavar="SIZE",
                   help="largest part allowed (default: 20MiB)")
    p.add_argument("--upload-ttl", type=_positive_int, metavar="SECONDS",
                   help="an upload expires this long after its last part (default: 86400)")
    p.add_argument("--no-durable", action="store_true",
                   help="skip fsync (faster; a crash may lose recent writes)")
    p.add_argument("--max-body-size", type=parse_size, metavar="SIZE", default=29_000_000,
                   help="largest request body accepted (default: 29000000 bytes, a 20MiB part in base64)")
    p.add_argument("--body-timeout", type=float, metavar="SECONDS", default=60.0,
                   help="answer 408 when a request body stalls this long (default: 60)")
    p.add_argument("--threads", type=_positive_int, default=16,
                   help="threads per worker running store calls (default: 16)")
    p.add_argument("--download-url-ttl", type=_seconds(zero_ok=False), metavar="SECONDS", default=3600.0,
                   help="how long GetDownloadUrlForLayer's URLs stay valid (default: 3600)")
    p.add_argument("--no-access-log", action="store_true", help="do not log one line per request")
    testing = p.add_argument_group("testing only")
    testing.add_argument("--fail-next-upload-parts", type=_non_negative_int, default=0, metavar="N",
                         help="fault injection for tests: each worker stores its first N layer parts "
                              "but answers them with a 500 ServerException (default: 0, off)")
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser("init", help="create a store", description="Create a store (or open an existing one).")
    _store_arguments(p)
    p.set_defaults(func=cmd_init)

    repo = commands.add_parser("repo", help="create, list and delete repositories",
                               description="Manage repositories.")
    repo_commands = repo.add_subparsers(dest="repo_command", metavar="ACTION", required=True)
    p = repo_commands.add_parser("create", help="create a repository", description="Create a repository.")
    p.add_argument("name", help="repository name, e.g. team/app")
    _store_arguments(p)
    p.add_argument("--immutable", action="store_true", help="make image tags immutable")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="repository tag (repeatable)")
    p.add_argument("--kms-key", metavar="ARN", help="encrypt with KMS and this key")
    p.add_argument("--json", action="store_true", help="print the repository as JSON")
    p.set_defaults(func=cmd_repo_create)
    p = repo_commands.add_parser("ls", help="list repositories", description="List the repositories.")
    _store_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_repo_ls)
    p = repo_commands.add_parser("rm", help="delete a repository", description="Delete a repository.")
    p.add_argument("name", help="repository name")
    _store_arguments(p)
    p.add_argument("--force", action="store_true", help="delete even if it holds images")
    p.set_defaults(func=cmd_repo_rm)

    p = commands.add_parser("push-layer", help="upload a file as a layer",
                            description="Upload FILE as a layer of a repository in parts (as ECR clients do) "
                                        "and print its digest. An existing identical layer is not an error.")
    p.add_argument("file", metavar="FILE", help="the layer blob (e.g. a .tar.gz)")
    p.add_argument("--repo", required=True, help="repository name")
    _store_arguments(p)
    p.add_argument("--create-repo", action="store_true", help="create the repository if it does not exist")
    p.add_argument("--part-size", type=parse_size, metavar="SIZE",
                   help="part size (default: the store's, 10MiB)")
    _progress_arguments(p)
    p.set_defaults(func=cmd_push_layer)

    p = commands.add_parser("ls-layers", help="list a repository's layers",
                            description="List the layers available in a repository: digest and size.")
    p.add_argument("--repo", required=True, help="repository name")
    _store_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_ls_layers)

    p = commands.add_parser("verify", help="re-hash every stored blob",
                            description="Re-hash every stored blob and compare it with its digest. "
                                        "Exit code 1 and a report when any blob does not match.")
    _store_arguments(p)
    _progress_arguments(p)
    p.set_defaults(func=cmd_verify)

    p = commands.add_parser("purge", help="reclaim space of expired uploads and unreferenced files",
                            description="Remove uploads idle past the upload TTL, blobs no repository links "
                                        "and files left by crashes, and report the space freed. Safe while "
                                        "the store is in use.")
    _store_arguments(p)
    p.add_argument("--grace", type=float, metavar="SECONDS",
                   help="leave unreferenced blobs and stray files younger than this (default: 3600)")
    p.set_defaults(func=cmd_purge)

    p = commands.add_parser("gc", help="unlink layers no image uses and delete their blobs",
                            description="Garbage-collect: unlink every layer that no image of its repository "
                                        "references and that was linked more than --grace seconds ago, then "
                                        "delete the blobs no repository links any more, and report the "
                                        "layers unlinked, blobs deleted and bytes freed. Safe while the store "
                                        "is in use (pushes, completions and PutImage go on).")
    _store_arguments(p)
    p.add_argument("--grace", type=_seconds(zero_ok=True), metavar="SECONDS",
                   help="keep layers linked less than this long ago, so that a push can finish "
                        "uploading an image's layers before its PutImage (default: 86400)")
    p.add_argument("--dry-run", action="store_true", help="report what would go, change nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_gc)

    p = commands.add_parser("stats", help="counts, bytes and dedupe savings",
                            description="Print repository, layer and blob counts, stored bytes and the "
                                        "space saved by storing each digest once.")
    _store_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_stats)

    p = commands.add_parser("demo", help="run the end-to-end demonstration",
                            description="Push an image end to end into an embedded store: a layer in parts, its config, the manifest, the same layer into a second repository (stored once), read back and verify.")
    p.add_argument("--store", metavar="PATH", default=DEFAULT_DEMO_STORE,
                   help=f"store directory (default: {DEFAULT_DEMO_STORE})")
    p.add_argument("--file", metavar="FILE", help="push this file as a layer instead of generated data")
    p.set_defaults(func=cmd_demo)
    add_transfer_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_reporting(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
