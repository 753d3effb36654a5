"""The ``ecrstore import`` and ``ecrstore export`` commands.

Exit codes as for every ecrstore command: 0 success; 1 failure (a bad, truncated or unsafe
source, a digest mismatch, an ECR error, an I/O error); 2 usage error; 130 interrupted. Errors
go to stderr as ``error: <message>``; progress goes to stderr (a bar on a terminal, plain lines
otherwise, nothing with ``--quiet``); the result (a summary line, or ``--json``) goes to stdout.

``import`` opens the store with ``durable=False`` (no fsync per part: one import writes many
parts) and calls ``store.sync()`` before it reports success, so a 0 exit status means every
layer and manifest of the import is on stable storage. ``export`` opens the store read-only.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..errors import RepositoryAlreadyExistsException, RepositoryNotFoundException
from .common import (
    EXIT_OK,
    add_global_options,
    hinted,
    human_bytes,
    open_store,
    plural,
    positive_int,
    print_json,
)

__all__ = ["add_commands"]

# --- progress ----------------------------------------------------------------------------------


class _Display:
    """Renders ProgressEvents on stderr: a tqdm bar (bytes, layers, rate, ETA) on a terminal,
    one plain line per layer and image otherwise, nothing when quiet."""

    def __init__(self, verb: str, *, quiet: bool) -> None:
        self._verb = verb
        self._mode = "off" if quiet else ("bar" if sys.stderr.isatty() else "lines")
        self._bar: Any = None
        self._total_layers = 0
        self._total_bytes = 0
        self._layers = 0
        self._bytes = 0
        self._started = time.monotonic()

    def __call__(self, ev: Any) -> None:
        if self._mode == "off":
            return
        handler = getattr(self, f"_on_{ev.kind}", None)
        if handler is not None:
            handler(ev)

    def _say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def _on_note(self, ev: Any) -> None:
        self._say(f"note: {ev.message}")

    def _on_plan(self, ev: Any) -> None:
        self._total_layers, self._total_bytes = ev.total_layers, ev.total_bytes
        self._started = time.monotonic()
        if ev.skipped_layers:
            skipped = f"{plural(ev.skipped_layers, 'layer')} ({human_bytes(ev.skipped_bytes)})"
            self._say(f"{skipped} already present: skipped")
        if self._mode == "bar" and ev.total_layers:
            from tqdm import tqdm

            self._bar = tqdm(total=ev.total_bytes, desc=self._verb, unit="B", unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, dynamic_ncols=True, leave=False)
            self._bar.set_postfix_str(f"layers 0/{ev.total_layers}")
        elif self._mode == "lines":
            self._say(f"{self._verb}: {plural(ev.total_layers, 'layer')}, {human_bytes(ev.total_bytes)}")

    def _on_bytes(self, ev: Any) -> None:
        self._bytes += ev.nbytes
        if self._bar is not None:
            self._bar.update(ev.nbytes)

    def _on_layer(self, ev: Any) -> None:
        if ev.skipped and self._verb == "import":
            return  # counted in the plan line
        self._layers += 1
        if self._bar is not None:
            self._bar.set_postfix_str(f"layers {self._layers}/{self._total_layers}", refresh=False)
        elif self._mode == "lines":
            elapsed = max(time.monotonic() - self._started, 1e-9)
            done = f"{self._bytes / self._total_bytes:.0%}" if self._total_bytes else "100%"
            state = "present" if ev.skipped else "done"
            self._say(f"[{self._layers}/{self._total_layers}] {ev.digest} {human_bytes(ev.nbytes)} {state} "
                      f"({done}, {self._bytes / elapsed / 1e6:.0f} MB/s)")

    def _on_image(self, ev: Any) -> None:
        self.close()
        tags = f" [{', '.join(ev.tags)}]" if ev.tags else ""
        self._say(f"image {ev.digest}{tags}: {'already present' if ev.skipped else 'imported'}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# --- commands ----------------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    """Import every image of SOURCE; with --create-repo the store and the repository are
    created when missing. Success is reported only once the import is durable."""
    from ..transfer import import_image

    display = _Display("import", quiet=args.quiet)
    try:
        with open_store(args, mode="create" if args.create_repo else "write", durable=False) as store:
            if args.create_repo:
                try:
                    store.create_repository(args.repo)
                except RepositoryAlreadyExistsException:
                    pass
            with hinted(RepositoryNotFoundException, "add --create-repo to create it"):
                report = import_image(store, args.source, args.repo, tag=args.tag, jobs=args.jobs,
                                      progress=display, tmp_dir=args.tmp_dir)
            store.sync()  # success is reported only once the import is durable
    finally:
        display.close()
    if args.json:
        print_json(report)
        return EXIT_OK
    rate = f", {human_bytes(report.bytes_stored / report.seconds)}/s" if report.bytes_stored and report.seconds else ""
    already = f" ({report.images_skipped} already present)" if report.images_skipped else ""
    print(f"imported {plural(report.images_imported, 'image')}{already} into {report.repository_name} from "
          f"{report.source_format} {report.source}: {plural(report.layers_stored, 'layer')} stored "
          f"({human_bytes(report.bytes_stored)}), {report.layers_skipped} skipped as already present "
          f"({human_bytes(report.bytes_skipped)}), {report.seconds:.2f} s{rate}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Write one image (and every manifest an index references) to DEST; read-only on the store."""
    from ..transfer import export_image

    fmt = args.format or "oci"
    if fmt == "oci" and args.dest.endswith(".tar"):
        fmt = "oci-archive"
    display = _Display("export", quiet=args.quiet)
    try:
        with open_store(args, mode="read") as store:
            report = export_image(store, args.reference, args.dest, format=fmt,
                                  convert_to_oci=args.convert_to_oci, progress=display)
    finally:
        display.close()
    if args.json:
        print_json(report)
        return EXIT_OK
    print(f"exported {args.reference} ({report.image_digest}) to {report.destination} as {report.format}: "
          f"{plural(report.blobs_written, 'blob')} written ({human_bytes(report.bytes_written)}), "
          f"{report.seconds:.2f} s")
    return EXIT_OK


def _guarded(command: Any) -> Any:
    """A TransferError carries its own exit status (2 for a request the source cannot meet,
    such as --tag on a source of several images)."""

    def run(args: argparse.Namespace) -> int:
        from ..transfer import TransferError

        try:
            return int(command(args))
        except TransferError as e:
            print(f"error: {e.message}", file=sys.stderr)
            return e.exit_code

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    return run


# --- parser ------------------------------------------------------------------------------------


def add_commands(subparsers: Any) -> None:
    """Register ``import`` and ``export`` on an argparse subparsers object; each sets
    ``func`` to a handler taking the parsed arguments and answering the exit code."""
    p = subparsers.add_parser(
        "import", help="import images from a docker save tarball, an OCI layout or an OCI archive",
        description="Import every image of SOURCE into a repository: a docker save tarball (legacy or "
                    "current layout), an OCI image layout directory or an OCI archive; tarballs may be "
                    "gzip-, bzip2- or xz-compressed. Tags are the ones the source names (docker RepoTags, "
                    "OCI ref.name annotations). Layers already in the repository are skipped; images "
                    "already present are not an error. Every blob is checked against its digest, and no "
                    "manifest is stored unless all its blobs are. The store is synced before success is "
                    "reported.",
    )
    p.add_argument("source", metavar="SOURCE", help="docker save tarball, OCI layout directory or OCI archive")
    p.add_argument("--repo", required=True, help="repository to import into")
    p.add_argument("--tag", help="tag the (single) image with TAG instead of the tags the source names")
    p.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="layers stored at once (default: number of CPUs)")
    add_global_options(p, json_output=True)
    p.add_argument("--create-repo", action="store_true",
                   help="create the repository (and the store) if it does not exist")
    p.add_argument("--tmp-dir", metavar="DIR",
                   help="where a compressed SOURCE is decompressed (default: the system's temporary directory)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(func=_guarded(cmd_import))

    p = subparsers.add_parser(
        "export", help="export an image as an OCI layout, an OCI archive or a docker-archive tarball",
        description="Write the image REPO:TAG or REPO@sha256:<digest> (with every manifest an index "
                    "references) to DEST: an OCI image layout directory (added to when it exists), an OCI "
                    "archive when DEST ends in .tar, or a tarball docker load and skopeo read "
                    "(--format docker-archive). Importing the result gives the same manifests and blobs "
                    "(unless --convert-to-oci).",
    )
    p.add_argument("reference", metavar="REPO:TAG|REPO@DIGEST", help="the image to export")
    p.add_argument("dest", metavar="DEST", help="destination directory or .tar file")
    p.add_argument("--format", choices=["oci", "oci-archive", "docker-archive"],
                   help="oci (default: a directory, or an OCI archive when DEST ends in .tar), "
                        "oci-archive, or docker-archive")
    p.add_argument("--convert-to-oci", action="store_true",
                   help="write Docker manifests with OCI media types (for skopeo and podman, which read only "
                        "those from an OCI layout); the image gets a new digest")
    add_global_options(p, json_output=True)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(func=_guarded(cmd_export))
