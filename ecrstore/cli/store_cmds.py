"""The commands on a store's contents: ``init``, ``repo``, ``layers`` (and the older spellings
``push-layer`` / ``ls-layers``), ``images`` and ``uploads``.

The listings (``repo ls``/``show``, ``layers ls``, ``images ls``, ``uploads ls``) open the store
read-only: they write nothing and work on a read-only store. Only ``init`` creates a store; the
others refuse a path holding none.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from .._sha256 import Sha256
from ..digest import Digest
from ..errors import (
    LayerAlreadyExistsException,
    RepositoryAlreadyExistsException,
    RepositoryNotFoundException,
    UploadNotFoundException,
)
from ..models import EncryptionConfiguration, ImageDetail, Repository, Tag
from ..store import Store
from .common import (
    ENGINE_DEFAULTS,
    EXIT_OK,
    CliError,
    add_command,
    add_progress_options,
    hinted,
    human_bytes,
    human_time,
    open_store,
    parse_size,
    plural,
    print_json,
    progress_bar,
)

__all__ = ["add_commands"]

_PAGE = 1000  # the largest page DescribeRepositories and DescribeImages answer
_CREATE_REPO_HINT = "add --create-repo to create it"


# --- init and repositories -------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    """Create the store (or open an existing one: not an error) and say which."""
    try:
        store, state = open_store(args, mode="write"), "opened existing"
    except CliError:
        store, state = open_store(args, mode="create"), "created"
    with store:
        stats = store.stats()
    print(f"{state} store at {os.path.abspath(args.store)} ({stats.repositories} repositories, "
          f"{stats.blobs} blobs)")
    return EXIT_OK


def cmd_repo_create(args: argparse.Namespace) -> int:
    """Create a repository (durable on return); prints its URI."""
    tags = []
    for item in args.tag or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--tag wants KEY=VALUE, got {item!r}")
        tags.append(Tag(key, value))
    encryption = EncryptionConfiguration("KMS", args.kms_key) if args.kms_key else None
    with open_store(args, mode="write") as store:
        repo = store.create_repository(
            args.name,
            image_tag_mutability="IMMUTABLE" if args.immutable else "MUTABLE",
            encryption_configuration=encryption,
            tags=tags or None,
        )
    if args.json:
        print_json(repo)
    else:
        print(repo.repository_uri)
    return EXIT_OK


def _all_repositories(store: Store) -> list[Repository]:
    repos: list[Repository] = []
    token = None
    while True:
        page = store.describe_repositories(next_token=token, max_results=_PAGE)
        repos.extend(page.repositories)
        token = page.next_token
        if not token:
            return repos


def _all_images(store: Store, repository: str) -> list[ImageDetail]:
    images: list[ImageDetail] = []
    token = None
    while True:
        page = store.describe_images(repository, next_token=token, max_results=_PAGE)
        images.extend(page.image_details)
        token = page.next_token
        if not token:
            return images


def cmd_repo_ls(args: argparse.Namespace) -> int:
    """List the repositories of the registry in name order (read-only)."""
    with open_store(args, mode="read") as store:
        repos = _all_repositories(store)
    if args.json:
        print_json(repos)
        return EXIT_OK
    if not repos:
        print("no repositories", file=sys.stderr)
        return EXIT_OK
    width = max(len(r.repository_name) for r in repos)
    for r in repos:
        print(f"{r.repository_name:<{width}}  {r.image_tag_mutability:<9}  {human_time(r.created_at)}  "
              f"{r.repository_uri}")
    return EXIT_OK


def cmd_repo_show(args: argparse.Namespace) -> int:
    """One repository's settings and what it holds: images, layers and uploads (read-only)."""
    with open_store(args, mode="read") as store, hinted(RepositoryNotFoundException,
                                                          "ecrstore repo ls lists the repositories"):
        repo = store.describe_repositories(repository_names=[args.name]).repositories[0]
        images = _all_images(store, args.name)
        layers = list(store.list_layers(args.name))
        uploads = store.list_uploads(repository_name=args.name)
    layer_bytes = sum(size for _, size in layers)
    if args.json:
        print_json({"repository": repo, "imageCount": len(images), "layerCount": len(layers),
                    "layerBytes": layer_bytes, "uploadsInProgress": len(uploads)})
        return EXIT_OK
    encryption = repo.encryption_configuration
    rows = [
        ("name", repo.repository_name),
        ("uri", repo.repository_uri),
        ("arn", repo.repository_arn),
        ("registry", repo.registry_id),
        ("created", f"{human_time(repo.created_at)} UTC"),
        ("tag mutability", repo.image_tag_mutability),
        ("scan on push", "yes" if repo.image_scanning_configuration.scan_on_push else "no"),
        ("encryption", encryption.encryption_type + (f" ({encryption.kms_key})" if encryption.kms_key else "")),
        ("images", str(len(images))),
        ("layers", f"{len(layers)} ({human_bytes(layer_bytes)})"),
        ("uploads in progress", str(len(uploads))),
    ]
    for name, value in rows:
        print(f"{name:<20} {value}")
    return EXIT_OK


def cmd_repo_rm(args: argparse.Namespace) -> int:
    """Delete a repository (with --force even when it holds images); its blobs no other
    repository links are reclaimed by gc / purge."""
    with open_store(args, mode="write") as store:
        repo = store.delete_repository(args.name, force=args.force)
    print(f"deleted {repo.repository_name}")
    return EXIT_OK


# --- layers and images -----------------------------------------------------------------------


def cmd_layers_push(args: argparse.Namespace) -> int:
    """Upload FILE in parts, as ECR clients do, and print its digest. A layer already in the
    repository is not an error. Durable once the digest is printed."""
    try:
        f = open(args.file, "rb")
    except OSError as e:
        raise CliError(f"cannot open {args.file}: {e.strerror or e}") from e
    with f, open_store(args, mode="write") as store:
        if args.create_repo:
            try:
                store.create_repository(args.repo)
            except RepositoryAlreadyExistsException:
                pass
        size = os.fstat(f.fileno()).st_size
        with hinted(RepositoryNotFoundException, _CREATE_REPO_HINT):
            upload = store.initiate_layer_upload(args.repo)
        part_size = args.part_size or upload.part_size
        sha = Sha256()
        offset = 0
        with progress_bar(size, "push", args) as bar:
            while True:
                part = f.read(part_size)
                if not part:
                    break
                sha.update(part)
                store.upload_layer_part(args.repo, upload.upload_id, offset, offset + len(part) - 1, part)
                offset += len(part)
                bar.update(len(part))
        digest = str(Digest.of(sha))
        try:
            digest = store.complete_layer_upload(args.repo, upload.upload_id, [digest]).layer_digest
        except LayerAlreadyExistsException:
            print(f"note: layer {digest} was already in repository {args.repo}", file=sys.stderr)
    print(digest)
    return EXIT_OK


def cmd_layers_ls(args: argparse.Namespace) -> int:
    """List a repository's layers in digest order: digest and size (read-only)."""
    with open_store(args, mode="read") as store:
        layers = list(store.list_layers(args.repo))
    if args.json:
        print_json([{"layerDigest": d, "layerSize": s} for d, s in layers])
        return EXIT_OK
    for digest, size in layers:
        print(f"{digest}  {size:>14}  {human_bytes(size)}")
    return EXIT_OK


def cmd_images_ls(args: argparse.Namespace) -> int:
    """List a repository's images, newest first: tags, digest, size and push time (read-only)."""
    with open_store(args, mode="read") as store:
        images = _all_images(store, args.repo)
    images.sort(key=lambda d: (-d.image_pushed_at, d.image_digest))
    if args.json:
        print_json(images)
        return EXIT_OK
    if not images:
        print(f"no images in {args.repo}", file=sys.stderr)
        return EXIT_OK
    tags = [",".join(d.image_tags) if d.image_tags else "<untagged>" for d in images]
    width = max(4, *(len(t) for t in tags))
    print(f"{'TAGS':<{width}}  {'DIGEST':<71}  {'SIZE':>10}  PUSHED AT (UTC)")
    for d, t in zip(images, tags, strict=True):
        print(f"{t:<{width}}  {d.image_digest:<71}  {human_bytes(d.image_size_in_bytes):>10}  "
              f"{human_time(d.image_pushed_at)}")
    return EXIT_OK


# --- uploads ---------------------------------------------------------------------------------


def cmd_uploads_ls(args: argparse.Namespace) -> int:
    """List the uploads in progress, of one repository or of all, with bytes received and how
    long each has been idle (read-only)."""
    with open_store(args, mode="read") as store:
        uploads = store.list_uploads(repository_name=args.repo)
    if args.json:
        print_json(list(uploads))
        return EXIT_OK
    if not uploads:
        print("no uploads in progress", file=sys.stderr)
        return EXIT_OK
    now = time.time()
    width = max(10, *(len(u.repository_name) for u in uploads))
    print(f"{'UPLOAD ID':<36}  {'REPOSITORY':<{width}}  {'RECEIVED':>10}  {'PARTS':>5}  "
          f"{'STARTED (UTC)':<19}  IDLE")
    for u in uploads:
        print(f"{u.upload_id:<36}  {u.repository_name:<{width}}  {human_bytes(u.received):>10}  {u.parts:>5}  "
              f"{human_time(u.created_at)}  {max(0, now - u.updated_at):.0f} s")
    return EXIT_OK


def cmd_uploads_abort(args: argparse.Namespace) -> int:
    """Abandon an upload: its record and data are removed; later parts or a completion with its
    id answer UploadNotFoundException. Durable on return."""
    with open_store(args, mode="write") as store, hinted(UploadNotFoundException,
                                                           "ecrstore uploads ls lists the uploads in progress"):
        info = store.abort_upload(args.upload_id)
    if args.json:
        print_json(info)
        return EXIT_OK
    print(f"aborted upload {info.upload_id} of {info.repository_name} ({human_bytes(info.received)} "
          f"in {plural(info.parts, 'part')})")
    return EXIT_OK


# --- parser ----------------------------------------------------------------------------------


def _push_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="the layer blob (e.g. a .tar.gz)")
    p.add_argument("--repo", required=True, help="repository name")
    p.add_argument("--create-repo", action="store_true", help="create the repository if it does not exist")
    p.add_argument("--part-size", type=parse_size, metavar="SIZE",
                   help=f"part size (default: the store's, {human_bytes(ENGINE_DEFAULTS['part_size'])})")
    add_progress_options(p)


_PUSH_DESCRIPTION = ("Upload FILE as a layer of a repository in parts (as ECR clients do) and print its "
                     "digest. An existing identical layer is not an error.")
_LS_LAYERS_DESCRIPTION = "List the layers available in a repository: digest and size."


def add_commands(commands: Any) -> None:
    """Register ``init``, ``repo``, ``layers``, ``push-layer``, ``ls-layers``, ``images`` and
    ``uploads`` on the main parser's subparsers."""
    add_command(commands, "init", cmd_init, help="create a store",
                description="Create a store (or open an existing one).")

    repo = commands.add_parser("repo", help="create, list, show and delete repositories",
                               description="Manage repositories.")
    actions = repo.add_subparsers(dest="repo_command", metavar="ACTION", required=True)
    p = add_command(actions, "create", cmd_repo_create, json_output=True, help="create a repository",
                    description="Create a repository and print its URI.")
    p.add_argument("name", help="repository name, e.g. team/app")
    p.add_argument("--immutable", action="store_true", help="make image tags immutable")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="repository tag (repeatable)")
    p.add_argument("--kms-key", metavar="ARN", help="encrypt with KMS and this key")
    add_command(actions, "ls", cmd_repo_ls, json_output=True, help="list repositories",
                description="List the repositories: name, tag mutability, creation time, URI.")
    p = add_command(actions, "show", cmd_repo_show, json_output=True, help="show one repository",
                    description="Show a repository's settings and counts of its images, layers and uploads.")
    p.add_argument("name", help="repository name")
    p = add_command(actions, "rm", cmd_repo_rm, help="delete a repository", description="Delete a repository.")
    p.add_argument("name", help="repository name")
    p.add_argument("--force", action="store_true", help="delete even if it holds images")

    layers = commands.add_parser("layers", help="push and list layers", description="Push and list layers.")
    actions = layers.add_subparsers(dest="layers_command", metavar="ACTION", required=True)
    _push_options(add_command(actions, "push", cmd_layers_push, help="upload a file as a layer",
                              description=_PUSH_DESCRIPTION))
    p = add_command(actions, "ls", cmd_layers_ls, json_output=True, help="list a repository's layers",
                    description=_LS_LAYERS_DESCRIPTION)
    p.add_argument("repo", metavar="REPO", help="repository name")
    _push_options(add_command(commands, "push-layer", cmd_layers_push,
                              help="upload a file as a layer (same as: layers push)", description=_PUSH_DESCRIPTION))
    p = add_command(commands, "ls-layers", cmd_layers_ls, json_output=True,
                    help="list a repository's layers (same as: layers ls)", description=_LS_LAYERS_DESCRIPTION)
    p.add_argument("--repo", required=True, help="repository name")

    images = commands.add_parser("images", help="list images", description="List images.")
    actions = images.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    p = add_command(actions, "ls", cmd_images_ls, json_output=True, help="list a repository's images",
                    description="List a repository's images, newest first: tags, digest, size and push time.")
    p.add_argument("repo", metavar="REPO", help="repository name")

    uploads = commands.add_parser("uploads", help="list and abort uploads in progress",
                                  description="List and abort uploads in progress.")
    actions = uploads.add_subparsers(dest="uploads_command", metavar="ACTION", required=True)
    p = add_command(actions, "ls", cmd_uploads_ls, json_output=True, help="list uploads in progress",
                    description="List the uploads in progress (of REPO, or of every repository): bytes "
                                "received, parts, start time and idle time.")
    p.add_argument("repo", metavar="REPO", nargs="?", help="only this repository's uploads")
    p = add_command(actions, "abort", cmd_uploads_abort, json_output=True, help="abandon an upload",
                    description="Abandon an upload: its data is removed and its id is no longer valid.")
    p.add_argument("upload_id", metavar="UPLOAD_ID", help="the upload's id (see: uploads ls)")
