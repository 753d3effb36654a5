"""The Store facade: ECR's repository and layer operations over one store directory.

Every operation validates all its inputs before it changes anything, raises only
:mod:`ecrstore.errors` exceptions, and changes nothing when it raises (completion's
LayerAlreadyExists, which consumes the upload as the contract says, is the one documented
exception). A Store is safe to share between threads; several processes may open the same
path at once (each opens its own Store, after any fork).
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import validate as v
from .digest import Digest, parse_digest, try_parse_digest
from .errors import (
    EcrError,
    InvalidParameterException,
    InvalidTagParameterException,
    RepositoryNotEmptyException,
    LayersNotFoundException,
    RepositoryAlreadyExistsException,
    ServerException,
    TooManyTagsException,
    UploadNotFoundException,
    invalid_parameter,
    repository_not_found,
)
from .images import Images
from .index import Index, Txn
from .layout import Layout, unlink_quiet
from .maintenance import GcReport, Maintenance, PurgeReport, StoreStats, VerifyReport
from .models import (
    BatchCheckLayerAvailabilityResult,
    BatchDeleteImageResult,
    BatchGetImageResult,
    CompleteLayerUploadResult,
    DescribeImagesResult,
    DescribeRepositoriesResult,
    DescribeImagesFilter,
    EncryptionConfiguration,
    ExclusionFilter,
    GetDownloadUrlForLayerResult,
    ImageIdentifier,
    ImageScanningConfiguration,
    InitiateLayerUploadResult,
    Layer,
    LayerFailure,
    ListImagesFilter,
    ListImagesResult,
    PutImageResult,
    Repository,
    Tag,
    UploadInfo,
    UploadLayerPartResult,
)
from .reader import LayerReader
from .records import RepoRecord
from .uploads import PartSource, Uploads
from .urls import UrlSigner

__all__ = ["Store"]

log = logging.getLogger("ecrstore")

DEFAULT_REGISTRY_ID = "000000000000"
_MAX_REPO_TAGS = 50
_SHA256_RE = re.compile(r"sha256:([0-9a-fA-F]{64})")
_DEFAULT_PAGE = 100


class Store:
    """An ECR-compatible layer store rooted at ``path`` (created on first use).

    Settings: ``registry_id`` is the default registry for calls that name none;
    ``part_size`` is what InitiateLayerUpload advises; parts other than the last must be at
    least ``min_part_size`` (checked at completion, as ECR does) and no part may exceed
    ``max_part_size``; uploads idle longer than ``upload_ttl`` seconds answer UploadNotFound.

    Durability: with ``durable=True`` (the default) every call that returns has its effect on
    stable storage (layer data fsync-ed before the index commit that acknowledges it; directory
    fsync after each rename). With ``durable=False`` (batch imports) effects survive a process
    crash but not an OS crash or power loss until :meth:`sync` returns.

    Opening: with ``create=False`` a path holding no store raises ServerException ("no store at
    PATH") instead of creating one. ``read_only=True`` (which never creates) writes nothing to
    the store directory, so it works on a read-only file system; every call that would change
    the store raises ServerException.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        read_only: bool = False,
        registry_id: str = DEFAULT_REGISTRY_ID,
        part_size: int = 10 * 2**20,
        min_part_size: int = 5 * 2**20,
        max_part_size: int = 20 * 2**20,
        upload_ttl: float = 24 * 3600,
        durable: bool = True,
        region: str = "us-east-1",
        max_layers_per_image: int = 127,
        max_images_per_repository: int = 10_000,
        map_size: int = 1 << 30,
    ) -> None:
        self.registry_id = v.registry_id(registry_id, DEFAULT_REGISTRY_ID)
        if not 1 <= min_part_size <= part_size <= max_part_size:
            raise InvalidParameterException(
                "store settings need 1 <= min_part_size <= part_size <= max_part_size"
            )
        if upload_ttl <= 0:
            raise InvalidParameterException("upload_ttl must be positive")
        self.part_size = part_size
        self.min_part_size = min_part_size
        self.max_part_size = max_part_size
        self.upload_ttl = upload_ttl
        self.durable = durable
        self.region = region
        self.path = os.fspath(path)
        self.read_only = read_only
        self._layout = Layout(self.path)
        if (read_only or not create) and not self._layout.index.is_dir():
            raise ServerException(f"no store at {self.path}")
        if not read_only:
            try:
                self._layout.create()
            except OSError as e:
                raise ServerException(f"cannot create the store at {self.path}: {e}") from e
        self._index = Index(self._layout.index, durable=durable, map_size=map_size, read_only=read_only)
        self._pool_lock = threading.Lock()
        self._pool_obj: ThreadPoolExecutor | None = None
        self._pool_pid = -1
        self._uploads = Uploads(
            self._index, self._layout, durable=durable, min_part_size=min_part_size,
            upload_ttl=upload_ttl, pool=self._pool,
        )
        self._maint = Maintenance(self._index, self._layout, self._uploads, durable=durable)
        self._images = Images(
            self._index, UrlSigner(os.path.join(self.path, "url-signing.key")),
            max_layers=max_layers_per_image, max_images=max_images_per_repository, repo_lookup=self._repo,
        )

    # --- lifecycle -----------------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        """The I/O threads of this process (recreated in a forked child)."""
        if self._pool_obj is None or self._pool_pid != os.getpid():
            with self._pool_lock:
                if self._pool_obj is None or self._pool_pid != os.getpid():
                    self._pool_obj = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ecrstore-io")
                    self._pool_pid = os.getpid()
        return self._pool_obj

    def sync(self) -> None:
        """Make every effect so far durable (what ``durable=False`` defers): file data first,
        then the index."""
        try:
            os.sync()
        except OSError as e:  # pragma: no cover - sync(2) does not fail on Linux
            raise ServerException(f"sync failed: {e}") from e
        self._index.sync()

    def close(self) -> None:
        """Release the index and the I/O threads. Idempotent."""
        if self._pool_obj is not None and self._pool_pid == os.getpid():
            self._pool_obj.shutdown(wait=True)
        self._pool_obj = None
        self._index.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.path!r}, registry_id={self.registry_id!r}, durable={self.durable})"

    # --- repositories --------------------------------------------------------------------

    def create_repository(
        self,
        repository_name: str,
        *,
        registry_id: str | None = None,
        image_tag_mutability: str = "MUTABLE",
        image_tag_mutability_exclusion_filters: Sequence[ExclusionFilter] | None = None,
        image_scanning_configuration: ImageScanningConfiguration | None = None,
        encryption_configuration: EncryptionConfiguration | None = None,
        tags: Sequence[Tag] | None = None,
    ) -> Repository:
        """CreateRepository. Errors: InvalidParameter, InvalidTagParameter, TooManyTags,
        RepositoryAlreadyExists. Durable on return (durable mode)."""
        registry = v.registry_id(registry_id, self.registry_id)
        name = v.repository_name(repository_name)
        mutability = v.enum(image_tag_mutability, "imageTagMutability", v.TAG_MUTABILITY)
        filters = _exclusion_filters(image_tag_mutability_exclusion_filters, mutability)
        scan = _scanning(image_scanning_configuration)
        enc = _encryption(encryption_configuration)
        tag_list = _tags(tags)
        now = time.time()

        def commit(t: Txn) -> RepoRecord:
            if t.get_repo(registry, name) is not None:
                raise RepositoryAlreadyExistsException(
                    f"The repository with name '{name}' already exists in the registry with id '{registry}'"
                )
            rec = RepoRecord(
                id=t.next_repo_id(), registry_id=registry, name=name, created_at=now,
                image_tag_mutability=mutability, image_tag_mutability_exclusion_filters=filters,
                scan_on_push=scan.scan_on_push, encryption_type=enc.encryption_type,
                kms_key=enc.kms_key, tags=tag_list,
            )
            t.put_repo(rec)
            return rec

        return self._repository(self._index.write(commit))

    def describe_repositories(
        self,
        *,
        registry_id: str | None = None,
        repository_names: Sequence[str] | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> DescribeRepositoriesResult:
        """DescribeRepositories: the named repositories (each must exist:
        RepositoryNotFound), or a page of all of them in name order."""
        registry = v.registry_id(registry_id, self.registry_id)
        page = v.max_results(max_results)
        if repository_names is not None:
            names = v.str_list(repository_names, "repositoryNames", max_items=100)
            for n in names:
                v.repository_name(n, "repositoryNames")
            if page is not None or next_token is not None:
                raise InvalidParameterException(
                    "maxResults and nextToken cannot be used with repositoryNames"
                )
            with self._index.read() as t:
                recs = [t.get_repo(registry, n) for n in names]
            for n, rec in zip(names, recs):
                if rec is None:
                    raise repository_not_found(registry, n)
            return DescribeRepositoriesResult(tuple(self._repository(r) for r in recs))
        after = _decode_token(next_token, registry) if next_token is not None else None
        limit = page or _DEFAULT_PAGE
        with self._index.read() as t:
            recs = []
            for rec in t.iter_repos(registry, after):
                recs.append(rec)
                if len(recs) > limit:
                    break
        more = len(recs) > limit
        recs = recs[:limit]
        token = _encode_token(registry, recs[-1].name) if more else None
        return DescribeRepositoriesResult(tuple(self._repository(r) for r in recs), token)

    def delete_repository(self, repository_name: str, *, registry_id: str | None = None,
                          force: bool = False) -> Repository:
        """DeleteRepository: removes the repository, its pending uploads and its layer links,
        and with ``force`` its images (blobs no other repository links are reclaimed by
        :meth:`gc` / :meth:`purge`). Errors: RepositoryNotFound, RepositoryNotEmpty (images
        present and not ``force``). One transaction: all of it happens or none."""
        registry = v.registry_id(registry_id, self.registry_id)
        name = v.repository_name(repository_name)
        if not isinstance(force, bool):
            raise invalid_parameter("force", "Member must be a boolean")

        def commit(t: Txn) -> tuple[RepoRecord, list[bytes]]:
            rec = t.get_repo(registry, name)
            if rec is None:
                raise repository_not_found(registry, name)
            if t.image_count(rec.id):
                if not force:
                    raise RepositoryNotEmptyException(
                        f"The repository with name '{name}' in registry with id '{registry}' cannot be "
                        "deleted because it still contains images"
                    )
                self._images.delete_all(t, rec.id)
            uids = t.repo_upload_ids(rec.id)
            for uid in uids:
                up = t.get_upload(uid)
                if up is not None:
                    t.delete_upload(uid, up)
            for dg, _ in list(t.iter_links(rec.id)):
                t.delete_link(rec.id, dg)
            t.delete_repo(rec)
            return rec, uids

        rec, uids = self._index.write(commit)
        self._uploads.remove_files(uids)
        return self._repository(rec)

    # --- layer upload --------------------------------------------------------------------

    def initiate_layer_upload(self, repository_name: str, *, registry_id: str | None = None) -> InitiateLayerUploadResult:
        """InitiateLayerUpload. Errors: RepositoryNotFound, InvalidParameter. The upload is
        durable on return (durable mode) and expires after ``upload_ttl`` idle seconds."""
        self._check_writable()
        repo = self._repo(registry_id, repository_name)
        upload_id = self._os(self._uploads.initiate, repo)
        return InitiateLayerUploadResult(upload_id, self.part_size)

    def upload_layer_part(
        self,
        repository_name: str,
        upload_id: str,
        part_first_byte: int,
        part_last_byte: int,
        layer_part_blob: Any,
        *,
        registry_id: str | None = None,
    ) -> UploadLayerPartResult:
        """UploadLayerPart: append bytes ``[part_first_byte, part_last_byte]`` (inclusive).

        ``layer_part_blob`` is any bytes-like object, a path / binary file whose whole contents
        are the part, or a :class:`FileRange` (a byte range of a file); file forms are hashed
        through the native mmap path and copied kernel-side, never through Python memory.
        Parts must be contiguous from byte 0; the exact re-send of the most recent part
        succeeds again and changes nothing. Errors: InvalidParameter (including a blob over
        ``max_part_size``), RepositoryNotFound, UploadNotFound, InvalidLayerPart (with
        ``last_valid_byte_received``), LimitExceeded. Durable on return (durable mode). Racing
        parts of one upload are serialised; the loser gets InvalidLayerPart.
        """
        self._check_writable()
        uid = v.upload_id(upload_id)
        first = v.non_negative(part_first_byte, "partFirstByte")
        last = v.non_negative(part_last_byte, "partLastByte")
        try:
            src = PartSource(layer_part_blob)
        except TypeError:
            raise invalid_parameter("layerPartBlob", "Member must be a blob (bytes-like, path or binary file)") from None
        except (OSError, ValueError) as e:
            raise InvalidParameterException(f"layerPartBlob: cannot read the part: {e}") from e
        try:
            if src.size > self.max_part_size:
                raise invalid_parameter(
                    "layerPartBlob", f"Member must have length less than or equal to {self.max_part_size}"
                )
            repo = self._repo(registry_id, repository_name)
            received = self._os(self._uploads.upload_part, repo, upload_id, uid, first, last, src)
        finally:
            src.close()
        return UploadLayerPartResult(repo.registry_id, repo.name, upload_id, received)

    def complete_layer_upload(
        self,
        repository_name: str,
        upload_id: str,
        layer_digests: Sequence[str],
        *,
        registry_id: str | None = None,
    ) -> CompleteLayerUploadResult:
        """CompleteLayerUpload, in the service's check order: RepositoryNotFound,
        UploadNotFound, EmptyUpload, LayerPartTooSmall, InvalidLayer, LayerAlreadyExists.

        O(1) in the layer's size (the digest is finalised from the midstate kept with the
        upload). On success the layer is available in this repository, stored once however
        many repositories hold it, and durable on return (durable mode). Success and
        LayerAlreadyExists consume the upload; the validation errors leave it as it was.
        Racing completions of one digest in one repository: one wins, the other gets
        LayerAlreadyExists.
        """
        self._check_writable()
        uid = v.upload_id(upload_id)
        raw = v.str_list(layer_digests, "layerDigests", max_items=100)
        digests = [parse_digest(d, "layerDigests") for d in raw]
        repo = self._repo(registry_id, repository_name)
        done = self._os(self._uploads.complete, repo, upload_id, uid, digests)
        return CompleteLayerUploadResult(repo.registry_id, repo.name, upload_id, str(done.digest))

    # --- layers --------------------------------------------------------------------------

    def batch_check_layer_availability(
        self, repository_name: str, layer_digests: Sequence[str], *, registry_id: str | None = None
    ) -> BatchCheckLayerAvailabilityResult:
        """BatchCheckLayerAvailability: each requested digest lands in exactly one list.

        A layer of this repository is AVAILABLE (with its size and, once a manifest
        references it, its media type); a layer only other repositories of the same registry
        hold is UNAVAILABLE here; a malformed digest is an InvalidLayerDigest failure and an
        unknown one (including content only other registries hold) a MissingLayerDigest
        failure. Request errors: RepositoryNotFound,
        InvalidParameter. Reads one snapshot; changes nothing.
        """
        registry = v.registry_id(registry_id, self.registry_id)
        name = v.repository_name(repository_name)
        raw = v.str_list(layer_digests, "layerDigests", max_items=100, max_len=1000)
        # This call is on every push's critical path (clients ask before each layer), so the
        # common well-formed sha256 form is recognised with one regex and no Digest objects.
        keys: list[bytes | None] = []
        for text in raw:
            m = _SHA256_RE.fullmatch(text)
            if m is not None:
                keys.append(bytes.fromhex(m.group(1)))
            else:
                d = try_parse_digest(text)
                keys.append(d.raw if d is not None and d.is_sha256 else (b"" if d is not None else None))
        wanted = [k for k in keys if k]
        with self._index.read() as t:
            repo = t.get_repo(registry, name)
            if repo is None:
                raise repository_not_found(registry, name)
            links = t.get_links(repo.id, wanted)
            stored = t.registry_links(registry, [k for k in wanted if k not in links])
        layers: list[Layer] = []
        failures: list[LayerFailure] = []
        for text, key in zip(raw, keys):
            if key is None:
                failures.append(LayerFailure(text, "InvalidLayerDigest", "Invalid layer digest"))
            elif key in links:
                size, media_type = links[key]
                layers.append(Layer("sha256:" + key.hex(), "AVAILABLE", size, media_type or None))
            elif key in stored:
                layers.append(Layer("sha256:" + key.hex(), "UNAVAILABLE"))
            else:
                failures.append(LayerFailure(text, "MissingLayerDigest", "Could not find layer"))
        return BatchCheckLayerAvailabilityResult(tuple(layers), tuple(failures))

    def open_layer(self, repository_name: str, layer_digest: str, *, registry_id: str | None = None) -> LayerReader:
        """A reader over a layer of this repository. Errors: RepositoryNotFound,
        LayersNotFound (not a layer of this repository), InvalidParameter."""
        d = parse_digest(layer_digest, "layerDigest")
        registry = v.registry_id(registry_id, self.registry_id)
        name = v.repository_name(repository_name)
        with self._index.read() as t:
            repo = t.get_repo(registry, name)
            if repo is None:
                raise repository_not_found(registry, name)
            link = t.get_link(repo.id, d.raw) if d.is_sha256 else None
        if link is None:
            raise LayersNotFoundException(
                f"The layer with digest {d} does not exist within the repository with name "
                f"'{name}' in the registry with id '{registry}'"
            )
        return self._os(LayerReader, self._layout.blob(d.hex), str(d), link.size)

    def list_layers(self, repository_name: str, *, registry_id: str | None = None) -> Iterator[tuple[str, int]]:
        """(digest, size) of every layer of the repository, in digest order (a snapshot)."""
        repo = self._repo(registry_id, repository_name)
        with self._index.read() as t:
            items = [(str(Digest.from_raw(dg)), rec.size) for dg, rec in t.iter_links(repo.id)]
        return iter(items)

    # --- images --------------------------------------------------------------------------

    def put_image(self, repository_name: str, image_manifest: str, *, image_manifest_media_type: str | None = None,
                  image_tag: str | None = None, image_digest: str | None = None,
                  registry_id: str | None = None) -> PutImageResult:
        """PutImage: store a manifest (byte for byte; its digest is the sha256 of its UTF-8
        bytes) and optionally tag it. Docker schema 2 manifests and manifest lists, OCI
        manifests and indexes. Errors: RepositoryNotFound, InvalidParameter (unparsable,
        layer-less, over the layer limit, schema 1), ImageDigestDoesNotMatch, LayersNotFound
        (the config blob and every layer must be layers of this repository),
        ReferencedImagesNotFound, ImageTagAlreadyExists (immutable tags), ImageAlreadyExists,
        LimitExceeded. One transaction, durable on return (durable mode)."""
        return self._images.put_image(registry_id, repository_name, image_manifest,
                                      image_manifest_media_type, image_tag, image_digest)

    def batch_get_image(self, repository_name: str, image_ids: Sequence[ImageIdentifier], *,
                        accepted_media_types: Sequence[str] | None = None,
                        registry_id: str | None = None) -> BatchGetImageResult:
        """BatchGetImage: manifests by digest and/or tag; missing or mismatched ids are
        per-item failures. Request errors: RepositoryNotFound, InvalidParameter."""
        return self._images.batch_get_image(registry_id, repository_name, image_ids, accepted_media_types)

    def batch_delete_image(self, repository_name: str, image_ids: Sequence[ImageIdentifier], *,
                           registry_id: str | None = None) -> BatchDeleteImageResult:
        """BatchDeleteImage: by tag removes the tag (and the image with its last tag); by digest
        removes the image and all its tags; an image a manifest list references is a failure
        (ImageReferencedByManifestList). Layers stay linked until :meth:`gc`."""
        return self._images.batch_delete_image(registry_id, repository_name, image_ids)

    def list_images(self, repository_name: str, *, filter: ListImagesFilter | None = None,
                    max_results: int | None = None, next_token: str | None = None,
                    registry_id: str | None = None) -> ListImagesResult:
        """ListImages: one id per (digest, tag), one digest-only id per untagged image, in
        digest order; ``next_token`` pages stay correct while images are pushed."""
        return self._images.list_images(registry_id, repository_name, filter, max_results, next_token)

    def describe_images(self, repository_name: str, *, image_ids: Sequence[ImageIdentifier] | None = None,
                        filter: DescribeImagesFilter | None = None, max_results: int | None = None,
                        next_token: str | None = None, registry_id: str | None = None) -> DescribeImagesResult:
        """DescribeImages: details of the named images (a missing one raises
        ImageNotFoundException) or a page of all of them."""
        return self._images.describe_images(registry_id, repository_name, image_ids, filter, max_results, next_token)

    def get_download_url_for_layer(self, repository_name: str, layer_digest: str, *,
                                   base_url: str, registry_id: str | None = None,
                                   expires_in: float = 3600.0) -> GetDownloadUrlForLayerResult:
        """GetDownloadUrlForLayer: a URL under ``base_url`` (where ``ecrstore serve`` listens),
        signed with the store's key and valid for ``expires_in`` seconds. Errors:
        LayersNotFound, LayerInaccessible (no image references the layer), RepositoryNotFound."""
        return self._images.get_download_url_for_layer(registry_id, repository_name, layer_digest,
                                                       base_url, expires_in)

    def open_download(self, method: str, path: str, query: dict[str, str]) -> LayerReader:
        """Open the layer a signed download URL names, after checking its signature and
        expiry (AccessDeniedException) and that the layer is still in its repository."""
        registry, repository, digest = self._images.verify_url(method, path, query)
        return self.open_layer(repository, digest, registry_id=registry)

    # --- maintenance ---------------------------------------------------------------------

    def gc(self, *, grace: float = 24 * 3600.0, dry_run: bool = False) -> GcReport:
        """Online garbage collection: unlink layers that no image of their repository
        references and that were linked more than ``grace`` seconds ago, then delete blobs no
        repository links. Runs while uploads, completions and PutImage continue: every
        deletion re-checks its condition inside the write transaction that performs it, and a
        completion racing a blob deletion puts its own copy in place. ``dry_run`` only reads
        (it works on a read-only store)."""
        if not dry_run:
            self._check_writable()
        return self._os(self._maint.gc, grace=grace, dry_run=dry_run)

    # --- maintenance (files) -------------------------------------------------------------

    def purge(self, *, grace: float = 3600.0, uploads_idle: float | None = None) -> PurgeReport:
        """Reclaim space: uploads idle past ``upload_ttl`` (or, for this purge, past
        ``uploads_idle`` seconds), blobs no repository links (older than ``grace`` seconds), and
        files left by crashes (older than ``grace``). Safe to run while other threads and
        processes upload. Errors: InvalidParameter (a negative ``uploads_idle``)."""
        self._check_writable()
        early = (0, 0)
        if uploads_idle is not None:
            if not 0 <= uploads_idle < float("inf"):
                raise invalid_parameter("uploadsIdle", "Member must be a non-negative number of seconds")
            if uploads_idle < self.upload_ttl:
                # purge_idle(now) removes uploads idle for longer than the TTL before ``now``;
                # moving ``now`` forward by the difference removes those idle for longer than
                # ``uploads_idle`` with the same locking and re-checks.
                early = self._os(self._uploads.purge_idle, time.time() - uploads_idle + self.upload_ttl)
        report = self._os(self._maint.purge, grace=grace)
        return dataclasses.replace(report, uploads_removed=report.uploads_removed + early[0],
                                   bytes_freed=report.bytes_freed + early[1])

    def purge_uploads(self) -> int:
        """Remove uploads idle past ``upload_ttl`` (found through the index, not the tree);
        answer how many were removed."""
        self._check_writable()
        return self._os(self._uploads.purge_idle)[0]

    def list_uploads(self, *, repository_name: str | None = None,
                     registry_id: str | None = None) -> tuple[UploadInfo, ...]:
        """The uploads in progress of a registry, or of one repository, by repository name and
        then start time (one snapshot; expired uploads not yet purged are included). Errors:
        RepositoryNotFound (a named repository), InvalidParameter. Changes nothing."""
        registry = v.registry_id(registry_id, self.registry_id)
        name = v.repository_name(repository_name) if repository_name is not None else None
        out: list[UploadInfo] = []
        with self._index.read() as t:
            if name is not None:
                rec = t.get_repo(registry, name)
                if rec is None:
                    raise repository_not_found(registry, name)
                repos = [rec]
            else:
                repos = list(t.iter_repos(registry))
            for repo in repos:
                for uid in t.repo_upload_ids(repo.id):
                    up = t.get_upload(uid)
                    if up is not None:
                        out.append(UploadInfo(str(uuid.UUID(bytes=uid)), repo.registry_id, repo.name,
                                              up.received, up.parts, up.created, up.updated))
        out.sort(key=lambda u: (u.repository_name, u.created_at, u.upload_id))
        return tuple(out)

    def abort_upload(self, upload_id: str, *, registry_id: str | None = None) -> UploadInfo:
        """Abandon an upload of the registry: its record and data file are removed and later
        calls with its id answer UploadNotFound. A part being written to it at that moment
        finishes first. Answers the upload as it was. Errors: UploadNotFound, InvalidParameter.
        Durable on return (durable mode)."""
        self._check_writable()
        uid = v.upload_id(upload_id)
        registry = v.registry_id(registry_id, self.registry_id)
        missing = UploadNotFoundException(
            f"The upload with id '{upload_id}' does not exist in the registry with id '{registry}'")
        path = self._layout.upload(uuid.UUID(bytes=uid).hex)

        def commit(t: Txn) -> UploadInfo:
            up = t.get_upload(uid)
            repo = next((r for r in t.iter_repos(registry) if up is not None and r.id == up.repo_id), None)
            if up is None or repo is None:
                raise missing
            t.delete_upload(uid, up)
            return UploadInfo(str(uuid.UUID(bytes=uid)), repo.registry_id, repo.name,
                              up.received, up.parts, up.created, up.updated)

        def abort() -> UploadInfo:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = -1
            try:
                if fd >= 0:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # parts hold this lock while they write
                info = self._index.write(commit)
                unlink_quiet(path)
                return info
            finally:
                if fd >= 0:
                    os.close(fd)

        return self._os(abort)

    def verify(self, *, progress: Any = None) -> VerifyReport:
        """Re-hash every stored blob through the native mmap path and check every link;
        ``progress(nbytes)`` is called as bytes are hashed. Changes nothing."""
        return self._os(self._maint.verify, progress=progress)

    def stats(self) -> StoreStats:
        """Counts and sizes: repositories, layer links, blobs, bytes, dedupe savings (never
        negative) and the bytes of unlinked blobs that gc / purge would reclaim."""
        return self._maint.stats()

    # --- helpers -------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise ServerException(f"the store at {self.path} is open read-only")

    def _repo(self, registry_id: str | None, repository_name: str) -> RepoRecord:
        registry = v.registry_id(registry_id, self.registry_id)
        name = v.repository_name(repository_name)
        with self._index.read() as t:
            rec = t.get_repo(registry, name)
        if rec is None:
            raise repository_not_found(registry, name)
        return rec

    def _repository(self, rec: RepoRecord) -> Repository:
        return Repository(
            repository_arn=f"arn:aws:ecr:{self.region}:{rec.registry_id}:repository/{rec.name}",
            registry_id=rec.registry_id,
            repository_name=rec.name,
            repository_uri=f"{rec.registry_id}.dkr.ecr.{self.region}.amazonaws.com/{rec.name}",
            created_at=rec.created_at,
            image_tag_mutability=rec.image_tag_mutability,
            image_scanning_configuration=ImageScanningConfiguration(rec.scan_on_push),
            encryption_configuration=EncryptionConfiguration(rec.encryption_type, rec.kms_key),
        )

    @staticmethod
    def _os(fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn``; an OSError (disk full, I/O error) becomes ServerException."""
        try:
            return fn(*args, **kwargs)
        except EcrError:
            raise
        except OSError as e:
            log.error("%s failed: %s", getattr(fn, "__name__", fn), e)
            raise ServerException(f"storage failure: {e.strerror or e}") from e


# --- argument shapes ---------------------------------------------------------------------------


def _tags(tags: Sequence[Tag] | None) -> list[dict[str, str]]:
    if tags is None:
        return []
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Sequence):
        raise InvalidTagParameterException("tags must be a list of Tag")
    if len(tags) > _MAX_REPO_TAGS:
        raise TooManyTagsException(f"A repository may have at most {_MAX_REPO_TAGS} tags")
    out = []
    for tag in tags:
        if not isinstance(tag, Tag):
            raise InvalidTagParameterException("tags must be a list of Tag")
        if not isinstance(tag.key, str) or not 1 <= len(tag.key) <= 128:
            raise InvalidTagParameterException("Tag keys must be strings of 1 to 128 characters")
        if not isinstance(tag.value, str) or len(tag.value) > 256:
            raise InvalidTagParameterException("Tag values must be strings of at most 256 characters")
        out.append({"Key": tag.key, "Value": tag.value})
    return out


def _encryption(conf: EncryptionConfiguration | None) -> EncryptionConfiguration:
    if conf is None:
        return EncryptionConfiguration()
    if not isinstance(conf, EncryptionConfiguration):
        raise invalid_parameter("encryptionConfiguration", "Member must be an EncryptionConfiguration")
    etype, key = conf.encryption_type, conf.kms_key
    v.enum(etype, "encryptionConfiguration.encryptionType", v.ENCRYPTION_TYPES)
    if key is not None:
        v.string(key, "encryptionConfiguration.kmsKey", min_len=1, max_len=2048)
        if etype == "AES256":
            raise InvalidParameterException("A KMS key can only be given with the KMS or KMS_DSSE encryption type")
    return conf


def _scanning(conf: ImageScanningConfiguration | None) -> ImageScanningConfiguration:
    if conf is None:
        return ImageScanningConfiguration()
    if isinstance(conf, ImageScanningConfiguration) and isinstance(conf.scan_on_push, bool):
        return conf
    raise invalid_parameter("imageScanningConfiguration", "Member must be a structure with a boolean scanOnPush")


def _exclusion_filters(filters: Sequence[ExclusionFilter] | None, mutability: str) -> list[dict[str, str]]:
    if filters is None:
        filters = ()
    if isinstance(filters, (str, bytes)) or not isinstance(filters, Sequence) or len(filters) > 5:
        raise invalid_parameter("imageTagMutabilityExclusionFilters", "Member must be a list of at most 5 filters")
    if filters and not mutability.endswith("_WITH_EXCLUSION"):
        raise InvalidParameterException("Exclusion filters need a *_WITH_EXCLUSION tag mutability")
    out = []
    for f in filters:
        if not isinstance(f, ExclusionFilter) or f.filter_type != "WILDCARD":
            raise invalid_parameter("imageTagMutabilityExclusionFilters.filterType", "Member must satisfy enum value set: [WILDCARD]")
        pattern = f.filter
        v.string(pattern, "imageTagMutabilityExclusionFilters.filter", min_len=1, max_len=128)
        if not all(c.isalnum() or c in "._*-" for c in pattern):
            raise invalid_parameter("imageTagMutabilityExclusionFilters.filter",
                                    "Member must satisfy regular expression pattern: ^[0-9a-zA-Z._*-]{1,128}")
        out.append({"filterType": "WILDCARD", "filter": pattern})
    return out


def _encode_token(registry: str, after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([registry, after]).encode()).decode()


def _decode_token(token: Any, registry: str) -> str:
    try:
        reg, after = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        if reg != registry or not isinstance(after, str):
            raise ValueError
        return after
    except (ValueError, TypeError):
        raise InvalidParameterException("Invalid NextToken") from None
