"""The Store facade: ECR's repository and layer operations over one store directory.

Every operation validates all its inputs before it changes anything, raises only
:mod:`ecrstore.errors` exceptions, and changes nothing when it raises (completion's
LayerAlreadyExists, which consumes the upload as the contract says, is the one documented
exception). A Store is safe to share between threads; several processes may open the same
path at once (each opens its own Store, after any fork).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import validate as v
from .backends import open_blobs, open_index, prepare_path
from .blobs.base import BlobReader
from .creation_templates import CreationTemplates
from .digest import parse_digest
from .errors import (
    EcrError,
    InvalidParameterException,
    ServerException,
    invalid_parameter,
    storage_failure,
)
from .hashing import PartSource
from .images import Images
from .index.records import RepoRecord
from .layers import Layers
from .lifecycle import Lifecycle
from .limits import (
    DEFAULT_GC_GRACE,
    DEFAULT_PART_BYTES,
    DEFAULT_PURGE_GRACE,
    DEFAULT_REGION,
    DEFAULT_REGISTRY_ID,
    DEFAULT_UPLOAD_TTL,
    MAX_IMAGES_PER_REPOSITORY,
    MAX_LAYERS_PER_IMAGE,
    MAX_PART_BYTES,
    MAX_REPOSITORIES_PER_REGISTRY,
    MAX_UPLOADS_PER_REGISTRY,
    MIN_PART_BYTES,
)
from .maintenance import GcReport, Maintenance, PurgeReport, StoreStats, VerifyReport
from .models import (
    BatchCheckLayerAvailabilityResult,
    BatchDeleteImageResult,
    BatchGetImageResult,
    CompleteLayerUploadResult,
    DescribeImagesFilter,
    DescribeImagesResult,
    DescribeRepositoriesResult,
    EncryptionConfiguration,
    ExclusionFilter,
    GetDownloadUrlForLayerResult,
    ImageIdentifier,
    ImageScanningConfiguration,
    InitiateLayerUploadResult,
    ListImagesFilter,
    ListImagesResult,
    PutImageResult,
    Referrer,
    Repository,
    StoredManifest,
    Tag,
    TagPage,
    UploadInfo,
    UploadLayerPartResult,
)
from .policies import Policies
from .pull_through import PullThrough
from .replication import Replication
from .repositories import Repositories
from .repository_settings import RepositorySettings
from .scanning import Scanning
from .uploads import Uploads, UploadStream
from .urls import UrlSigner

__all__ = ["Store"]

log = logging.getLogger("ecrstore")

T = TypeVar("T")
_KEY_FILE = "url-signing.key"


class Store:
    """An ECR-compatible layer store rooted at ``path`` (created on first use).

    Settings: ``registry_id`` is the default registry for calls that name none;
    ``part_size`` is what InitiateLayerUpload advises; parts other than the last must be at
    least ``min_part_size`` (checked at completion, as ECR does) and no part may exceed
    ``max_part_size``; uploads idle longer than ``upload_ttl`` seconds answer UploadNotFound.
    Quotas (LimitExceededException past them): layers per image, images per repository,
    repositories per registry, uploads in progress per registry.

    ``registry_host`` (``host:port``) is where clients reach this store's registry (``ecrstore
    serve --public-url``): repositoryUri is ``<registry_host>/<name>``; without it, ECR's
    ``<registry>.dkr.ecr.<region>.amazonaws.com/<name>``.

    Backends (:mod:`ecrstore.backends`): by default an LMDB index and a local blob tree under
    ``path``; ``index="postgresql://…"`` and ``blobs="s3://bucket/prefix"`` share one store
    between nodes (``path`` then keeps only this node's own files).

    Opening: ``create=False`` refuses a path with no store (ServerException "no store at");
    ``read_only=True`` writes nothing at all, so a store on a read-only mount can be read,
    listed and verified (every write call raises ServerException).

    Durability: with ``durable=True`` (the default) every call that returns has its effect on
    stable storage (layer data fsync-ed before the index commit that acknowledges it; directory
    fsync after each rename). With ``durable=False`` (batch imports) effects survive a process
    crash but not an OS crash or power loss until :meth:`sync` returns.

    The rest of ECR's control plane is in areas, each an attribute with the calls of its
    operations: ``settings`` (resource tags, tag mutability, scan on push, ListImageReferrers),
    ``policies`` (repository and registry policies, and the decisions front ends enforce),
    ``lifecycle`` (lifecycle policies, previews, expiry runs), ``replication`` (registry
    replication, carried out on push), ``pull_through`` (pull-through cache rules) and
    ``scanning`` (image scans and scanning configurations) and ``templates`` (repository
    creation templates, applied to the repositories replication, the cache and pushes create).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        registry_id: str = DEFAULT_REGISTRY_ID,
        part_size: int = DEFAULT_PART_BYTES,
        min_part_size: int = MIN_PART_BYTES,
        max_part_size: int = MAX_PART_BYTES,
        upload_ttl: float = DEFAULT_UPLOAD_TTL,
        durable: bool = True,
        region: str = DEFAULT_REGION,
        max_layers_per_image: int = MAX_LAYERS_PER_IMAGE,
        max_images_per_repository: int = MAX_IMAGES_PER_REPOSITORY,
        max_repositories_per_registry: int = MAX_REPOSITORIES_PER_REGISTRY,
        max_uploads_per_registry: int = MAX_UPLOADS_PER_REGISTRY,
        map_size: int = 1 << 30,
        create: bool = True,
        read_only: bool = False,
        registry_host: str | None = None,
        index: str | None = None,
        blobs: str | None = None,
    ) -> None:
        self.registry_id = v.registry_id(registry_id, DEFAULT_REGISTRY_ID)
        if not 1 <= min_part_size <= part_size <= max_part_size:
            raise InvalidParameterException("store settings need 1 <= min_part_size <= part_size <= max_part_size")
        if upload_ttl <= 0:
            raise InvalidParameterException("upload_ttl must be positive")
        if min(max_layers_per_image, max_images_per_repository, max_repositories_per_registry,
               max_uploads_per_registry) < 1:
            raise InvalidParameterException("store quotas must be at least 1")
        self.part_size = part_size
        self.min_part_size = min_part_size
        self.max_part_size = max_part_size
        self.upload_ttl = upload_ttl
        self.durable = durable
        self.region = region
        self.read_only = read_only
        self.path = os.fspath(path)
        layout = prepare_path(self.path, index=index, blobs=blobs, create=create, read_only=read_only)
        # The key is checked before the index opens: a refusal leaves nothing open behind it.
        self._signer = UrlSigner(os.path.join(self.path, _KEY_FILE), create=not read_only)
        self._index = open_index(index, layout, durable=durable, read_only=read_only, map_size=map_size)
        self._pool_lock = threading.Lock()
        self._pool_obj: ThreadPoolExecutor | None = None
        self._pool_pid = -1
        try:
            self._blobs = open_blobs(blobs, layout, self._index, durable=durable,
                                     background=lambda fn, *a: self._pool().submit(fn, *a))
        except BaseException:
            self._index.close()
            raise
        self._uploads = Uploads(self._index, self._blobs, min_part_size=min_part_size, upload_ttl=upload_ttl,
                                max_per_registry=max_uploads_per_registry, pool=self._pool)
        self._maint = Maintenance(self._index, self._blobs, self._uploads)
        self._repos = Repositories(self._index, registry_id=self.registry_id, region=region,
                                   max_per_registry=max_repositories_per_registry, registry_host=registry_host)
        self._layers = Layers(self._index, self._blobs)
        self._images = Images(self._index, self._signer, max_layers=max_layers_per_image,
                              max_images=max_images_per_repository, repo_lookup=self._repo,
                              presign=self._blobs.presigned_url)
        # The control plane's areas (see the class docstring).
        self.settings = RepositorySettings(self._index, self._repos, self._images.list_referrers)
        self.policies = Policies(self._index, self._repos)
        self.lifecycle = Lifecycle(self._index, self._repos, self._images)
        self.templates = CreationTemplates(self._index, self._repos, self.policies, self.lifecycle)
        self.replication = Replication(self._index, self._repos, self._images, self._layers, self.policies,
                                       self.templates)
        self._images.commit_hooks.append(self.replication.mark_pending)
        self.pull_through = PullThrough(self._index, registry_id=self.registry_id)
        self.scanning = Scanning(self._index, self._repos, self._images, registry_id=self.registry_id)
        #: Called with each PutImageResult after its commit, in order: what follows a push.
        self._push_hooks: list[Callable[[PutImageResult], None]] = [self.replication.after_push,
                                                                     self.scanning.on_push]

    # --- lifecycle -----------------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        """The I/O threads of this process (recreated in a forked child)."""
        if self._pool_obj is None or self._pool_pid != os.getpid():
            with self._pool_lock:
                if self._pool_obj is None or self._pool_pid != os.getpid():
                    self._pool_obj = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ecrstore-io")
                    self._pool_pid = os.getpid()
        return self._pool_obj

    @property
    def url_signer(self) -> UrlSigner:
        """The signer of this store's download URLs (front ends verify their route with it)."""
        return self._signer

    def sync(self) -> None:
        """Make every effect so far durable (what ``durable=False`` defers): blob data first,
        then the index."""
        self._os(self._blobs.sync)
        self._index.sync()

    def close(self) -> None:
        """Release the index and the I/O threads. Idempotent."""
        self.scanning.close()  # first: no scan result is written once the index closes
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
        return self._repos.create(registry_id, repository_name, image_tag_mutability,
                                  image_tag_mutability_exclusion_filters, image_scanning_configuration,
                                  encryption_configuration, tags)

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
        return self._repos.describe(registry_id, repository_names, max_results, next_token)

    def repository_names(self, *, limit: int | None = None, after: str | None = None,
                         registry_id: str | None = None) -> tuple[tuple[str, ...], bool]:
        """A registry's repository names in order after ``after``, at most ``limit``, and
        whether more follow (OCI's catalog). One snapshot."""
        return self._repos.names(registry_id, limit, after)

    def delete_repository(self, repository_name: str, *, registry_id: str | None = None,
                          force: bool = False) -> Repository:
        """DeleteRepository: removes the repository, its pending uploads and its layer links,
        and with ``force`` its images (blobs no other repository links are reclaimed by
        :meth:`gc` / :meth:`purge`). Errors: RepositoryNotFound, RepositoryNotEmpty (images
        present and not ``force``). One transaction: all of it happens or none."""
        rec, uids = self._repos.delete(registry_id, repository_name, force, self._images.delete_all)
        self._os(self._uploads.remove_data, uids)
        return self._repos.result(rec)

    # --- layer upload --------------------------------------------------------------------

    def initiate_layer_upload(self, repository_name: str, *,
                              registry_id: str | None = None) -> InitiateLayerUploadResult:
        """InitiateLayerUpload. Errors: RepositoryNotFound, InvalidParameter. The upload is
        durable on return (durable mode) and expires after ``upload_ttl`` idle seconds."""
        self._writable()
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
        self._writable()
        uid = v.upload_id(upload_id)
        first = v.non_negative(part_first_byte, "partFirstByte")
        last = v.non_negative(part_last_byte, "partLastByte")
        try:
            src = PartSource(layer_part_blob)
        except TypeError:
            raise invalid_parameter("layerPartBlob",
                                    "Member must be a blob (bytes-like, path or binary file)") from None
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
        part_minimum: bool = True,
    ) -> CompleteLayerUploadResult:
        """CompleteLayerUpload, in the service's check order: RepositoryNotFound,
        UploadNotFound, EmptyUpload, LayerPartTooSmall, InvalidLayer, LayerAlreadyExists.

        O(1) in the layer's size (the digest is finalised from the midstate kept with the
        upload). On success the layer is available in this repository, stored once however
        many repositories hold it, and durable on return (durable mode). Success and
        LayerAlreadyExists consume the upload; the validation errors leave it as it was.
        Racing completions of one digest in one repository: one wins, the other gets
        LayerAlreadyExists. ``part_minimum=False`` (OCI uploads, whose chunks may have any
        size) skips LayerPartTooSmall.
        """
        self._writable()
        uid = v.upload_id(upload_id)
        raw = v.str_list(layer_digests, "layerDigests", max_items=100)
        digests = [parse_digest(d, "layerDigests") for d in raw]
        repo = self._repo(registry_id, repository_name)
        done = self._os(self._uploads.complete, repo, upload_id, uid, digests, part_minimum=part_minimum)
        return CompleteLayerUploadResult(repo.registry_id, repo.name, upload_id, str(done.digest))

    def open_upload_stream(self, repository_name: str, upload_id: str, *, first_byte: int | None = None,
                           registry_id: str | None = None) -> UploadStream:
        """Append one streamed body to an upload (OCI's PATCH and PUT bodies: chunks of any
        size, a whole layer in one). ``first_byte`` is where the client says the body starts
        (None: wherever the upload is). Holds the upload's writer lock until closed; see
        :class:`~ecrstore.uploads.UploadStream` for what write, commit and close guarantee.
        Errors: RepositoryNotFound, UploadNotFound, InvalidParameter, InvalidLayerPart (with
        ``last_valid_byte_received``: ``first_byte`` is not the next byte, or another request
        is writing the upload now)."""
        self._writable()
        uid = v.upload_id(upload_id)
        first = v.non_negative(first_byte, "firstByte") if first_byte is not None else None
        repo = self._repo(registry_id, repository_name)
        return self._os(self._uploads.open_stream, repo, upload_id, uid, first)

    def upload_status(self, repository_name: str, upload_id: str, *, registry_id: str | None = None) -> int:
        """The bytes an upload of this repository has acknowledged so far. Errors:
        RepositoryNotFound, UploadNotFound (unknown, expired or of another repository)."""
        uid = v.upload_id(upload_id)
        repo = self._repo(registry_id, repository_name)
        return self._uploads.status(repo, upload_id, uid)

    # --- layers --------------------------------------------------------------------------

    def mount_layer(self, repository_name: str, layer_digest: str, from_repository: str, *,
                    registry_id: str | None = None) -> int | None:
        """Make a layer of ``from_repository`` (same registry) available in this repository
        without moving a byte (OCI's cross-repository mount); its size, or None when the source
        does not hold it (the client then uploads it). Errors: RepositoryNotFound (this
        repository), InvalidParameter. Durable on return (durable mode)."""
        self._writable()
        registry = v.registry_id(registry_id, self.registry_id)
        return self._layers.mount(registry, repository_name, layer_digest, from_repository)

    def delete_layer(self, repository_name: str, layer_digest: str, *, registry_id: str | None = None) -> None:
        """Remove a layer from this repository (OCI's blob DELETE); gc reclaims its bytes once
        no repository holds them. Errors: RepositoryNotFound, LayersNotFound,
        LayerInaccessible (an image of the repository references it). Durable on return."""
        self._writable()
        registry = v.registry_id(registry_id, self.registry_id)
        self._layers.unlink(registry, repository_name, layer_digest)

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
        return self._layers.batch_check(registry, repository_name, layer_digests)

    def open_layer(self, repository_name: str, layer_digest: str, *, registry_id: str | None = None) -> BlobReader:
        """A reader over a layer of this repository. Errors: RepositoryNotFound,
        LayersNotFound (not a layer of this repository), InvalidParameter, ServerException
        (the stored bytes are missing or not the recorded size: checked before any is read).
        The reader stays valid if the layer is deleted meanwhile; one per thread."""
        registry = v.registry_id(registry_id, self.registry_id)
        return self._os(self._layers.open, registry, repository_name, layer_digest)

    def list_layers(self, repository_name: str, *, registry_id: str | None = None) -> Iterator[tuple[str, int]]:
        """(digest, size) of every layer of the repository, in digest order (a snapshot)."""
        return self._layers.list(v.registry_id(registry_id, self.registry_id), repository_name)

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
        LimitExceeded. One transaction, durable on return (durable mode). What follows a
        push (replication, scan on push) runs after the commit; its failures are its own
        (logged and recorded in its status), never the push's."""
        result = self._images.put_image(registry_id, repository_name, image_manifest,
                                        image_manifest_media_type, image_tag, image_digest)
        for hook in self._push_hooks:
            try:
                hook(result)
            except Exception:  # the push is committed and acknowledged whatever a follow-up does
                log.exception("after pushing %s:%s", result.image.repository_name, result.image.image_id)
        return result

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
        """GetDownloadUrlForLayer: a presigned GET of the object with S3 blobs (as ECR's),
        else a URL under ``base_url`` (where ``ecrstore serve`` listens) signed with the
        store's key; valid for ``expires_in`` seconds. Errors: LayersNotFound,
        LayerInaccessible (no image references the layer), RepositoryNotFound."""
        return self._os(self._images.get_download_url_for_layer, registry_id, repository_name, layer_digest,
                        base_url, expires_in)

    def get_manifest(self, repository_name: str, reference: str, *, registry_id: str | None = None) -> StoredManifest:
        """The manifest a tag or digest names, byte for byte. Errors: RepositoryNotFound,
        InvalidParameter, ImageNotFound. One snapshot."""
        return self._images.get_manifest(registry_id, repository_name, reference)

    def untag_image(self, repository_name: str, tag: str, *, registry_id: str | None = None) -> str:
        """Remove one tag and keep its image (OCI's tag DELETE); the digest it named. Errors:
        RepositoryNotFound, InvalidParameter, ImageNotFound. Durable on return."""
        return self._images.untag(registry_id, repository_name, tag)

    def list_tags(self, repository_name: str, *, limit: int | None = None, after: str | None = None,
                  registry_id: str | None = None) -> TagPage:
        """A repository's tags in order, after ``after``, at most ``limit``. One snapshot."""
        return self._images.list_tags(registry_id, repository_name, limit, after)

    def list_referrers(self, repository_name: str, subject: str, *, artifact_type: str | None = None,
                       registry_id: str | None = None) -> tuple[Referrer, ...]:
        """The repository's manifests whose ``subject`` is ``subject`` (OCI 1.1 referrers),
        of ``artifact_type`` only when given. Errors: RepositoryNotFound, InvalidParameter."""
        return self._images.list_referrers(registry_id, repository_name, subject, artifact_type)

    # --- maintenance ---------------------------------------------------------------------

    def gc(self, *, grace: float = DEFAULT_GC_GRACE, dry_run: bool = False) -> GcReport:
        """Online garbage collection: unlink layers that no image of their repository
        references and that were linked more than ``grace`` seconds ago, then delete blobs no
        repository links. Runs while uploads, completions and PutImage continue: every
        deletion re-checks its condition inside the write transaction that performs it, and a
        completion racing a blob deletion puts its own copy in place."""
        if not dry_run:
            self._writable()
        return self._os(self._maint.gc, grace=grace, dry_run=dry_run)

    # --- maintenance (files) -------------------------------------------------------------

    def purge(self, *, grace: float = DEFAULT_PURGE_GRACE, uploads_idle: float | None = None) -> PurgeReport:
        """Reclaim space: uploads idle past ``upload_ttl`` (or past ``uploads_idle`` seconds,
        when given), blobs no repository links (older than ``grace`` seconds), and files left
        by crashes (older than ``grace``). Safe to run while other threads and processes
        upload; an upload being written at that moment is left alone."""
        self._writable()
        if uploads_idle is not None and not (isinstance(uploads_idle, (int, float)) and uploads_idle >= 0):
            raise InvalidParameterException("uploads_idle must be a non-negative number of seconds")
        return self._os(self._maint.purge, grace=grace, uploads_idle=uploads_idle)

    def list_uploads(self, *, repository_name: str | None = None,
                     registry_id: str | None = None) -> tuple[UploadInfo, ...]:
        """Uploads in progress (of one repository, or of every repository of the registry),
        oldest first. Errors: RepositoryNotFound, InvalidParameter. One snapshot."""
        registry = v.registry_id(registry_id, self.registry_id)
        repo = self._repo(registry, repository_name) if repository_name is not None else None
        return self._maint.list_uploads(registry, repo)

    def abort_upload(self, upload_id: str, *, registry_id: str | None = None) -> UploadInfo:
        """Remove an upload in progress now, with its data; answer what it was. Waits for a
        part being written to it. Errors: UploadNotFound (unknown, or of another registry),
        InvalidParameter. Durable on return (durable mode)."""
        self._writable()
        uid = v.upload_id(upload_id)
        registry = v.registry_id(registry_id, self.registry_id)
        return self._os(self._maint.abort_upload, registry, upload_id, uid, self._repos.by_id)

    def purge_uploads(self) -> int:
        """Remove uploads idle past ``upload_ttl`` (found through the index, not the tree);
        answer how many were removed."""
        self._writable()
        return self._os(self._uploads.purge_idle)[0]

    def verify(self, *, progress: Any = None) -> VerifyReport:
        """Re-hash every stored blob through the native mmap path and check every link;
        ``progress(nbytes)`` is called as bytes are hashed. Changes nothing."""
        return self._os(self._maint.verify, progress=progress)

    def stats(self) -> StoreStats:
        """Counts and sizes: repositories, layer links, blobs, bytes, dedupe savings."""
        return self._maint.stats()

    # --- helpers -------------------------------------------------------------------------

    def _repo(self, registry_id: str | None, repository_name: str) -> RepoRecord:
        return self._repos.lookup(registry_id, repository_name)

    def _writable(self) -> None:
        """Refuse a call that would write blob files first (the index refuses the others)."""
        if self.read_only:
            raise ServerException("the store is open read-only")

    @staticmethod
    def _os(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn``; an OSError (disk full, I/O error) becomes ServerException."""
        try:
            return fn(*args, **kwargs)
        except EcrError:
            raise
        except OSError as e:
            log.error("%s failed: %s", getattr(fn, "__name__", fn), e)
            raise storage_failure(e) from e

