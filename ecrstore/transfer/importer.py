"""Importing images from a docker save tarball, an OCI image layout or an OCI archive.

Order of work, and why:

1. The source's headers and metadata are read and every manifest is checked (digest, size,
   media type, at least one layer) before the store is touched: a malformed source changes
   nothing.
2. One availability check per 100 blobs; blobs already AVAILABLE in the repository are not
   read at all (a re-import reads no layer bytes).
3. The missing blobs are stored in parallel (``jobs`` threads, largest first); the store
   verifies each one's sha256 against the digest the source claims as it completes the
   upload. The first failure cancels the rest.
4. Only when every blob is in does any manifest get put (children before the indexes that
   reference them), so an image is never visible without its content. If a blob failed, no
   manifest is put at all.

An interrupted import (Ctrl-C, SIGKILL, power loss) leaves stored layers but no image; running
it again skips the layers already stored and puts the manifests. An image already present is
success (counted as skipped), and so is a tag that already names the image.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..digest import Digest
from ..errors import ImageAlreadyExistsException, ImageTagAlreadyExistsException
from ..hashing import hash_file
from ..models import ImageIdentifier
from .errors import BlobMismatchError, SourceError
from .formats import BlobSource, Plan, PlannedImage, read_plan
from .ingest import Cancelled, store_blob
from .progress import Emitter, ProgressCallback
from .sources import Tree, open_tree

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["ImportReport", "ImportedImage", "import_image"]

_BATCH = 100  # ECR's limit for BatchCheckLayerAvailability and BatchGetImage


@dataclasses.dataclass(frozen=True, slots=True)
class ImportedImage:
    """A manifest the source held: ``status`` is ``"IMPORTED"`` (stored by this import) or
    ``"PRESENT"`` (the repository already had it; tags named by the source were still added)."""

    image_digest: str
    image_manifest_media_type: str
    image_tags: tuple[str, ...]
    status: str


@dataclasses.dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did. Layers here are ECR's: image configs count as layers too."""

    repository_name: str
    source: str
    source_format: str
    images: tuple[ImportedImage, ...]
    images_imported: int
    images_skipped: int
    layers_stored: int
    layers_skipped: int
    bytes_stored: int
    bytes_skipped: int
    seconds: float


def import_image(store: Store, source: str | os.PathLike[str], repository_name: str, *, tag: str | None = None,
                 jobs: int | None = None, progress: ProgressCallback | None = None,
                 tmp_dir: str | None = None, sync: bool = True) -> ImportReport:
    """Import every image of ``source`` into the repository ``repository_name`` of ``store``.

    ``source``: a ``docker save`` tarball (legacy or current layout), an OCI image layout
    directory or an OCI archive; tarballs may be gzip-, bzip2- or xz-compressed (decompressed
    once into an unnamed temporary file in ``tmp_dir``). Tags are those the source names
    (docker ``RepoTags``, OCI ``org.opencontainers.image.ref.name``); ``tag`` replaces them
    when the source holds exactly one top-level image. ``jobs`` blobs are stored at once
    (default: the number of CPUs). ``progress`` receives :class:`ProgressEvent` s (never
    concurrently).

    Errors: the store's EcrError (RepositoryNotFound, ImageTagAlreadyExists when an immutable
    tag names another image, ...); SourceError (missing, unreadable, malformed, truncated or
    unsafe source); BlobMismatchError (a blob does not match its digest: no manifest is put);
    TransferUsageError (``tag`` with a source of several images). KeyboardInterrupt stops the
    workers after their current part and propagates.

    Durability is the store's: with a durable store every stored layer and manifest is on
    stable storage when this returns. With ``durable=False`` and ``sync`` (the default),
    :meth:`Store.sync` runs once between the blobs and the first manifest, so that no
    manifest can outlive (through an OS crash) the blobs it references; the manifests
    themselves become durable at the caller's next ``store.sync()``.

    Threads: uses its own worker threads; any number of imports may run at once, in threads
    or processes, into the same store (a layer two of them store at once is kept once).
    """
    started = time.monotonic()
    emit = Emitter(progress)
    jobs = max(1, jobs or os.cpu_count() or 1)
    source = os.fspath(source)
    store.describe_repositories(repository_names=[repository_name])  # RepositoryNotFound before any work
    with open_tree(source, tmp_dir=tmp_dir, notify=emit.note) as tree:
        pool = cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="ecrstore-import")
        try:
            plan = read_plan(tree, lambda names: _hash_all(pool, tree, names))
            for note in plan.notes:
                emit.note(note)
            if tag is not None:
                plan.retag(tag)
            present = _available(store, repository_name, list(plan.blobs))
            missing = sorted((b for d, b in plan.blobs.items() if d not in present), key=lambda b: -b.size)
            skipped_bytes = sum(plan.blobs[d].size for d in present)
            emit("plan", total_bytes=sum(b.size for b in missing), total_layers=len(missing),
                 skipped_layers=len(present), skipped_bytes=skipped_bytes)
            for d in present:
                emit("layer", digest=d, nbytes=plan.blobs[d].size, skipped=True)
            stored, raced = _store_all(store, repository_name, tree, missing, pool, emit)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if sync and not store.durable:
        # Also when nothing was stored now: an interrupted earlier run may have left blobs
        # that were never synced, and the manifests about to be put reference them.
        store.sync()
    images = _put_images(store, repository_name, plan, emit)
    raced_bytes = sum(plan.blobs[d].size for d in raced)
    return ImportReport(
        repository_name=repository_name,
        source=source,
        source_format=plan.format,
        images=tuple(images),
        images_imported=sum(1 for im in images if im.status == "IMPORTED"),
        images_skipped=sum(1 for im in images if im.status == "PRESENT"),
        layers_stored=len(stored),
        layers_skipped=len(present) + len(raced),
        bytes_stored=sum(plan.blobs[d].size for d in stored),
        bytes_skipped=skipped_bytes + raced_bytes,
        seconds=time.monotonic() - started,
    )


def _hash_all(pool: cf.ThreadPoolExecutor, tree: Tree, names: Sequence[str]) -> list[str]:
    def one(name: str) -> str:
        with tree.open(name) as ext:
            try:
                return str(Digest.of(hash_file(ext.fd, ext.offset, ext.size)))
            except OSError as e:
                raise SourceError(f"cannot read {ext.label}: {e.strerror or e}") from e

    return list(pool.map(one, names))


def _available(store: Store, repository_name: str, digests: list[str]) -> set[str]:
    present: set[str] = set()
    for i in range(0, len(digests), _BATCH):
        res = store.batch_check_layer_availability(repository_name, digests[i:i + _BATCH])
        present.update(layer.layer_digest for layer in res.layers if layer.layer_availability == "AVAILABLE")
    return present


def _store_all(store: Store, repository_name: str, tree: Tree, blobs: list[BlobSource], pool: cf.ThreadPoolExecutor,
               emit: Emitter) -> tuple[list[str], list[str]]:
    """Store ``blobs`` in parallel; answer (digests stored, digests a concurrent import
    stored first). On the first failure the others stop after their current part."""
    cancel = threading.Event()
    part_size = store.max_part_size

    def on_bytes(n: int) -> None:
        emit("bytes", nbytes=n)

    def one(blob: BlobSource) -> bool:
        done = store_blob(store, repository_name, tree, blob, part_size=part_size, cancel=cancel, on_bytes=on_bytes)
        emit("layer", digest=blob.digest, nbytes=blob.size, skipped=not done)
        return done

    futures = {pool.submit(one, b): b for b in blobs}
    stored: list[str] = []
    raced: list[str] = []
    errors: list[BaseException] = []
    try:
        for fut in cf.as_completed(futures):
            try:
                (stored if fut.result() else raced).append(futures[fut].digest)
            except Cancelled:
                pass
            except BaseException as e:  # noqa: BLE001 - the first failure stops the rest
                errors.append(e)
                cancel.set()
    except BaseException:  # KeyboardInterrupt while waiting
        cancel.set()
        for fut in futures:
            fut.cancel()
        raise
    if errors:
        # A digest mismatch is the most useful thing to report; else the first failure.
        raise next((e for e in errors if isinstance(e, BlobMismatchError)), errors[0])
    return stored, raced


def _put_images(store: Store, repository_name: str, plan: Plan, emit: Emitter) -> list[ImportedImage]:
    """Put every manifest (children first) with its tags; answer ImportedImage per manifest."""
    digests = list(plan.images)
    existing: set[str] = set()
    for i in range(0, len(digests), _BATCH):
        res = store.batch_get_image(repository_name, [ImageIdentifier(d) for d in digests[i:i + _BATCH]])
        existing.update(d for im in res.images if (d := im.image_id.image_digest) is not None)
    out: list[ImportedImage] = []
    for image in plan.images.values():
        tags: list[str | None] = list(image.tags) or [None]
        for tag in tags:
            _put(store, repository_name, image, tag)
        present = image.digest in existing
        emit("image", digest=image.digest, tags=tuple(image.tags), skipped=present)
        out.append(ImportedImage(image.digest, image.media_type, tuple(image.tags),
                                 "PRESENT" if present else "IMPORTED"))
    return out


def _put(store: Store, repository_name: str, image: PlannedImage, tag: str | None) -> None:
    try:
        store.put_image(repository_name, image.text, image_manifest_media_type=image.media_type,
                        image_tag=tag, image_digest=image.digest)
    except ImageAlreadyExistsException:
        pass  # a re-import: the manifest (and tag) are already there
    except ImageTagAlreadyExistsException:
        # An immutable tag: fine when it already names this very image.
        res = store.batch_get_image(repository_name, [ImageIdentifier(image_tag=tag)])
        if not (res.images and res.images[0].image_id.image_digest == image.digest):
            raise

