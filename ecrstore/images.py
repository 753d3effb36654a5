"""ECR's image operations: PutImage, BatchGetImage, BatchDeleteImage, ListImages,
DescribeImages, GetDownloadUrlForLayer.

Each write is one LMDB write transaction that re-checks everything it depends on (the
repository, the layers a manifest references, the tag), so a concurrent deletion or GC can
never leave an image pointing at content that is gone. Reads use one snapshot each.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import validate as v
from .digest import Digest, parse_digest, sha256_text, try_parse_digest
from .errors import (
    ImageAlreadyExistsException,
    ImageDigestDoesNotMatchException,
    ImageNotFoundException,
    ImageTagAlreadyExistsException,
    InvalidParameterException,
    LayerInaccessibleException,
    LayersNotFoundException,
    LimitExceededException,
    ReferencedImagesNotFoundException,
    invalid_parameter,
    repository_not_found,
)
from .index.base import Index, ReadTxn, WriteTxn
from .index.records import ImageRecord, LinkRecord, RepoRecord
from .limits import DEFAULT_PAGE, MAX_MANIFEST_CHARS, MAX_TAGS_PER_IMAGE
from .manifest import Descriptor, ParsedManifest, manifest_annotations, parse_manifest
from .models import (
    BatchDeleteImageResult,
    BatchGetImageResult,
    DescribeImagesFilter,
    DescribeImagesResult,
    GetDownloadUrlForLayerResult,
    Image,
    ImageDetail,
    ImageFailure,
    ImageIdentifier,
    ListImagesFilter,
    ListImagesResult,
    PutImageResult,
    Referrer,
    StoredManifest,
    TagPage,
)
from .scanning import scan_summary
from .tokens import decode_token, encode_token
from .urls import UrlSigner

__all__ = ["Images"]

_TAG_STATUS = ("TAGGED", "UNTAGGED", "ANY")
_IMAGE_STATUS = ("ACTIVE", "ARCHIVED", "ACTIVATING", "ANY")


class Images:
    def __init__(self, index: Index, signer: UrlSigner, *, max_layers: int, max_images: int,
                 repo_lookup: Callable[[str | None, str], RepoRecord],
                 presign: Callable[[str, float, str], str | None]) -> None:
        self._index = index
        self._signer = signer
        self._presign = presign  # the blob backend's own download URLs, where it has them
        self._max_layers = max_layers
        self._max_images = max_images
        self._repo = repo_lookup
        #: Called inside each PutImage's write transaction, after its writes, with (txn, the
        #: repository's record, the image digest, the tag or None): what must commit with the
        #: push (replication's pending statuses). Must only write through ``txn``.
        self.commit_hooks: list[Callable[[WriteTxn, RepoRecord, bytes, str | None], None]] = []

    # --- PutImage ------------------------------------------------------------------------

    def put_image(self, registry_id: str | None, repository_name: str, image_manifest: str,
                  media_type: str | None, image_tag: str | None, image_digest: str | None, *,
                  commit_hooks: bool = True) -> PutImageResult:
        v.string(image_manifest, "imageManifest", min_len=1, max_len=MAX_MANIFEST_CHARS)
        if media_type is not None:
            v.string(media_type, "imageManifestMediaType", min_len=1, max_len=255)
        if image_tag is not None:
            v.image_tag(image_tag)
        given = parse_digest(image_digest, "imageDigest") if image_digest is not None else None
        repo = self._repo(registry_id, repository_name)
        parsed = parse_manifest(image_manifest, media_type, max_layers=self._max_layers)
        if given is not None and given != parsed.digest:
            raise ImageDigestDoesNotMatchException(
                f"Invalid parameter at 'imageDigest' failed to satisfy constraint: 'the digest of the "
                f"manifest is {parsed.digest}, not {given}'"
            )
        manifest_bytes = image_manifest.encode("utf-8")
        dg = parsed.digest.raw
        now = time.time()

        def commit(t: WriteTxn) -> None:
            cur = t.get_repo(repo.registry_id, repo.name)
            if cur is None or cur.id != repo.id:
                raise repository_not_found(repo.registry_id, repo.name)
            size = self._check_references(t, repo, parsed)
            existing = t.get_image(repo.id, dg, with_manifest=False)
            if image_tag is not None:
                points_at = t.get_tag(repo.id, image_tag)
                # The record read in this transaction: a mutability change applies at once.
                if points_at is not None and _tag_is_immutable(cur, image_tag):
                    raise ImageTagAlreadyExistsException(
                        f"The image tag '{image_tag}' already exists in the '{repo.name}' repository "
                        f"and cannot be overwritten because the tag is immutable."
                    )
                if points_at == dg:
                    raise _already_exists(parsed.digest, image_tag, repo)
                if points_at is not None:
                    t.delete_tag(repo.id, image_tag, points_at)  # the tag moves
            elif existing is not None:
                raise _already_exists(parsed.digest, None, repo)
            if existing is None:
                if t.image_count(repo.id) >= self._max_images:
                    raise LimitExceededException(
                        f"The repository '{repo.name}' holds its maximum of {self._max_images} images"
                    )
                t.put_image(repo.id, dg, ImageRecord(now, size, parsed.media_type,
                                                     parsed.artifact_media_type or "", manifest_bytes))
                self._add_references(t, repo.id, parsed)
            if image_tag is not None:
                if len(t.image_tags(repo.id, dg)) >= MAX_TAGS_PER_IMAGE:
                    raise LimitExceededException(f"An image may have at most {MAX_TAGS_PER_IMAGE} tags")
                t.put_tag(repo.id, image_tag, dg)
            for hook in self.commit_hooks if commit_hooks else ():
                hook(t, cur, dg, image_tag)

        self._index.write(commit)
        image = Image(repo.registry_id, repo.name, ImageIdentifier(str(parsed.digest), image_tag),
                      image_manifest, parsed.media_type)
        return PutImageResult(image)

    def _check_references(self, t: ReadTxn, repo: RepoRecord, parsed: ParsedManifest) -> int:
        """Check the manifest's references in this repository; answer imageSizeInBytes."""
        if parsed.is_index:
            children = [t.get_image(repo.id, m.digest.raw, with_manifest=False) for m in parsed.manifests]
            missing = [str(m.digest) for m, rec in zip(parsed.manifests, children, strict=True) if rec is None]
            if missing:
                raise ReferencedImagesNotFoundException(
                    f"Some of the referenced images were not found in the repository with name "
                    f"'{repo.name}' in the registry with id '{repo.registry_id}': {', '.join(missing)}"
                )
            return max((rec.size for rec in children if rec is not None), default=0)
        wanted = _blobs(parsed)
        links = {d.digest.raw: t.get_link(repo.id, d.digest.raw) for d in wanted}
        missing = [str(d.digest) for d in wanted if links[d.digest.raw] is None]
        if missing:
            raise LayersNotFoundException(
                f"Layers with digests {sorted(set(missing))} required for pushing image into repository "
                f"with name '{repo.name}' in the registry with id '{repo.registry_id}' do not exist"
            )
        # Every link is present (checked above); the test only narrows the type.
        return sum(link.size for d in parsed.layers if (link := links[d.digest.raw]) is not None)

    def _add_references(self, t: WriteTxn, repo_id: int, parsed: ParsedManifest) -> None:
        dg = parsed.digest.raw
        if parsed.subject is not None:
            t.add_referrer(repo_id, parsed.subject.digest.raw, dg)
        if parsed.is_index:
            for m in parsed.manifests:
                t.add_image_ref(repo_id, m.digest.raw, dg)
            return
        for d in _blobs(parsed):
            key = d.digest.raw
            t.add_layer_ref(repo_id, key, dg, d.media_type)
            link = t.get_link(repo_id, key)
            if link is not None and not link.media_type and d.media_type:
                t.put_link(repo_id, key, LinkRecord(link.size, link.linked_at, d.media_type))

    # --- deletion ------------------------------------------------------------------------

    def _delete_image(self, t: WriteTxn, repo_id: int, dg: bytes) -> None:
        rec = t.get_image(repo_id, dg)
        for tag in t.image_tags(repo_id, dg):
            t.delete_tag(repo_id, tag, dg)
        parsed = _reparse(rec)
        if parsed is not None:
            if parsed.subject is not None:
                t.delete_referrer(repo_id, parsed.subject.digest.raw, dg)
            if parsed.is_index:
                for m in parsed.manifests:
                    t.delete_image_ref(repo_id, m.digest.raw, dg)
            else:
                for d in _blobs(parsed):
                    t.delete_layer_ref(repo_id, d.digest.raw, dg)
        t.delete_image(repo_id, dg)

    def delete_all(self, t: WriteTxn, repo_id: int) -> None:
        """Remove every image of a repository (DeleteRepository with force)."""
        for dg in list(t.iter_image_digests(repo_id)):
            self._delete_image(t, repo_id, dg)

    def delete_image_in(self, t: WriteTxn, repo_id: int, dg: bytes) -> None:
        """Remove one image with its tags and references inside the caller's write transaction
        (lifecycle expiry); the caller has checked that no manifest list references it."""
        self._delete_image(t, repo_id, dg)

    def batch_delete_image(self, registry_id: str | None, repository_name: str,
                           image_ids: Sequence[Any]) -> BatchDeleteImageResult:
        ids = _image_ids(image_ids)
        repo = self._repo(registry_id, repository_name)

        def commit(t: WriteTxn) -> tuple[list[ImageIdentifier], list[ImageFailure]]:
            deleted: list[ImageIdentifier] = []
            failures: list[ImageFailure] = []
            for ident in ids:
                found = self._resolve(t, repo, ident)
                if isinstance(found, ImageFailure):
                    failures.append(found)
                    continue
                dg, _ = found
                if ident.image_digest is None:  # by tag: the tag goes; the image with its last tag
                    tag = ident.image_tag
                    assert tag is not None  # _resolve fails an identifier with neither digest nor tag
                    tags = t.image_tags(repo.id, dg)
                    if len(tags) > 1:
                        t.delete_tag(repo.id, tag, dg)
                        deleted.append(ImageIdentifier(str(Digest.from_raw(dg)), tag))
                        continue
                if t.image_is_referenced(repo.id, dg):
                    failures.append(ImageFailure(ident, "ImageReferencedByManifestList",
                                                 "Requested image is referenced by a manifest list"))
                    continue
                tags = t.image_tags(repo.id, dg)
                self._delete_image(t, repo.id, dg)
                digest = str(Digest.from_raw(dg))
                deleted.extend(ImageIdentifier(digest, tag) for tag in tags) if tags else deleted.append(
                    ImageIdentifier(digest))
            return deleted, failures

        deleted, failures = self._index.write(commit)
        return BatchDeleteImageResult(tuple(deleted), tuple(failures))

    def untag(self, registry_id: str | None, repository_name: str, tag: str) -> str:
        """Remove one tag, leaving its image (untagged if it was its last tag); answer the
        digest it pointed at. Errors: RepositoryNotFound, InvalidParameter, ImageNotFound."""
        v.image_tag(tag)
        repo = self._repo(registry_id, repository_name)

        def commit(t: WriteTxn) -> bytes:
            cur = t.get_repo(repo.registry_id, repo.name)
            if cur is None or cur.id != repo.id:
                raise repository_not_found(repo.registry_id, repo.name)
            dg = t.get_tag(repo.id, tag)
            if dg is None:
                raise ImageNotFoundException(
                    f"The image with imageId {{imageTag={tag}}} does not exist within the repository with name "
                    f"'{repo.name}' in the registry with id '{repo.registry_id}'"
                )
            t.delete_tag(repo.id, tag, dg)
            return dg

        return sha256_text(self._index.write(commit))

    # --- reads ---------------------------------------------------------------------------

    def get_manifest(self, registry_id: str | None, repository_name: str, reference: str) -> StoredManifest:
        """The manifest a tag or a digest names. Errors: RepositoryNotFound, InvalidParameter
        (a reference that is neither), ImageNotFound."""
        repo = self._repo(registry_id, repository_name)
        if not isinstance(reference, str):
            raise invalid_parameter("reference", "Member must be a string")
        digest = try_parse_digest(reference) if ":" in reference else None
        if digest is None and not v.is_image_tag(reference):
            raise invalid_parameter("reference", "Member must be an image tag or a digest")
        with self._index.read() as t:
            dg = (digest.raw if digest.is_sha256 else None) if digest is not None else t.get_tag(repo.id, reference)
            rec = t.get_image(repo.id, dg) if dg is not None else None
        if rec is None or dg is None:
            what = f"imageDigest={reference}" if digest is not None else f"imageTag={reference}"
            raise ImageNotFoundException(
                f"The image with imageId {{{what}}} does not exist within the repository with name "
                f"'{repo.name}' in the registry with id '{repo.registry_id}'"
            )
        return StoredManifest(sha256_text(dg), rec.media_type, rec.manifest)

    def list_tags(self, registry_id: str | None, repository_name: str, limit: int | None,
                  after: str | None) -> TagPage:
        """Tags in order (of their UTF-8 bytes, which is code point order) after ``after``, at
        most ``limit`` (None: all). One snapshot. Errors: RepositoryNotFound, InvalidParameter."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise invalid_parameter("n", "Member must be a non-negative integer")
        if after is not None and not isinstance(after, str):
            raise invalid_parameter("last", "Member must be a string")
        repo = self._repo(registry_id, repository_name)
        tags: list[str] = []
        more = False
        with self._index.read() as t:
            for tag, _ in t.iter_tags(repo.id, after):
                if limit is not None and len(tags) == limit:
                    more = True
                    break
                tags.append(tag)
        return TagPage(tuple(tags), more)

    def list_referrers(self, registry_id: str | None, repository_name: str, subject: str,
                       artifact_type: str | None) -> tuple[Referrer, ...]:
        """The manifests of the repository whose ``subject`` is ``subject`` (stored or not), in
        digest order, those of ``artifact_type`` only when given. Errors: RepositoryNotFound,
        InvalidParameter (a malformed digest)."""
        d = parse_digest(subject, "subject")
        repo = self._repo(registry_id, repository_name)
        if not d.is_sha256:
            return ()
        found: list[Referrer] = []
        with self._index.read() as t:
            for dg in t.referrers(repo.id, d.raw):
                rec = t.get_image(repo.id, dg)
                parsed = _reparse(rec)
                if rec is None or parsed is None:
                    continue
                if artifact_type is not None and parsed.artifact_type != artifact_type:
                    continue
                found.append(Referrer(sha256_text(dg), rec.media_type, len(rec.manifest), parsed.artifact_type,
                                      manifest_annotations(rec.manifest)))
        return tuple(found)

    def batch_get_image(self, registry_id: str | None, repository_name: str, image_ids: Sequence[Any],
                        accepted_media_types: Sequence[str] | None) -> BatchGetImageResult:
        ids = _image_ids(image_ids)
        accepted = None
        if accepted_media_types is not None:
            accepted = set(v.str_list(accepted_media_types, "acceptedMediaTypes", max_items=100,
                                      min_len=1, max_len=255))
        repo = self._repo(registry_id, repository_name)
        images: list[Image] = []
        failures: list[ImageFailure] = []
        seen: set[tuple[bytes, str | None]] = set()
        with self._index.read() as t:
            for ident in ids:
                found = self._resolve(t, repo, ident)
                if isinstance(found, ImageFailure):
                    failures.append(found)
                    continue
                dg, rec = found
                if accepted is not None and rec.media_type not in accepted:
                    failures.append(ImageFailure(ident, "ImageNotFound",
                                                 f"Requested image's media type {rec.media_type} is not accepted"))
                    continue
                if (dg, ident.image_tag) in seen:
                    continue
                seen.add((dg, ident.image_tag))
                images.append(Image(repo.registry_id, repo.name,
                                    ImageIdentifier(str(Digest.from_raw(dg)), ident.image_tag),
                                    rec.manifest.decode("utf-8"), rec.media_type))
        return BatchGetImageResult(tuple(images), tuple(failures))

    def _resolve(self, t: ReadTxn, repo: RepoRecord,
                 ident: ImageIdentifier) -> tuple[bytes, ImageRecord] | ImageFailure:
        """The image an identifier names, or the per-item failure ECR reports for it."""
        if ident.image_digest is None and ident.image_tag is None:
            return ImageFailure(ident, "MissingDigestAndTag",
                                "Invalid request parameters: both tag and digest cannot be null")
        dg = None
        if ident.image_digest is not None:
            d = try_parse_digest(ident.image_digest)
            if d is None or not d.is_sha256:
                return ImageFailure(ident, "InvalidImageDigest",
                                    "Invalid request parameters: image digest should satisfy the regex "
                                    "'[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'")
            dg = d.raw
        if ident.image_tag is not None:
            if not v.is_image_tag(ident.image_tag):
                return ImageFailure(ident, "InvalidImageTag",
                                    "Invalid request parameters: image tag must be 1 to 300 characters of "
                                    f"'{v.IMAGE_TAG_PATTERN}'")
            tagged = t.get_tag(repo.id, ident.image_tag)
            if tagged is None:
                return ImageFailure(ident, "ImageNotFound", "Requested image not found")
            if dg is not None and dg != tagged:
                return ImageFailure(ident, "ImageTagDoesNotMatchDigest",
                                    "Invalid request parameters: given tag does not map to the given digest")
            dg = tagged
        assert dg is not None  # a digest or a tag was given (checked first)
        rec = t.get_image(repo.id, dg)
        if rec is None:
            return ImageFailure(ident, "ImageNotFound", "Requested image not found")
        return dg, rec

    def list_images(self, registry_id: str | None, repository_name: str, filter: Any,
                    max_results: int | None, next_token: str | None) -> ListImagesResult:
        tag_status, _ = _filter(filter)
        limit = v.max_results(max_results) or DEFAULT_PAGE
        repo = self._repo(registry_id, repository_name)
        after = _decode_token(next_token, repo, "l") if next_token is not None else None
        out: list[tuple[bytes, str | None]] = []
        more = False
        with self._index.read() as t:
            # From the token's digest on, inclusive: it may have tags left to list.
            start = bytes.fromhex(after[0]) if after is not None else None
            for dg in t.iter_image_digests(repo.id, start, inclusive=True):
                tags = t.image_tags(repo.id, dg)
                entries: list[str | None] = list(tags) if tags else [None]
                if tag_status == "TAGGED" and not tags or tag_status == "UNTAGGED" and tags:
                    continue
                for tag in entries:
                    if after is not None and (dg.hex(), tag or "") <= (after[0], after[1] or ""):
                        continue
                    if len(out) == limit:
                        more = True
                        break
                    out.append((dg, tag))
                if more:
                    break
        token = _encode_token(repo, "l", out[-1][0].hex(), out[-1][1]) if more else None
        return ListImagesResult(tuple(ImageIdentifier(str(Digest.from_raw(dg)), tag) for dg, tag in out), token)

    def describe_images(self, registry_id: str | None, repository_name: str, image_ids: Sequence[Any] | None,
                        filter: Any, max_results: int | None, next_token: str | None) -> DescribeImagesResult:
        tag_status, _ = _filter(filter)
        repo = self._repo(registry_id, repository_name)
        if image_ids is not None:
            if max_results is not None or next_token is not None:
                raise InvalidParameterException("maxResults and nextToken cannot be used with imageIds")
            ids = _image_ids(image_ids)
            with self._index.read() as t:
                details, seen = [], set()
                for ident in ids:
                    found = self._resolve(t, repo, ident)
                    if isinstance(found, ImageFailure):
                        if found.failure_code in ("ImageNotFound", "ImageTagDoesNotMatchDigest"):
                            raise ImageNotFoundException(
                                f"The image with imageId {_ident_text(ident)} does not exist within the repository "
                                f"with name '{repo.name}' in the registry with id '{repo.registry_id}'"
                            )
                        raise InvalidParameterException(found.failure_reason)
                    if found[0] not in seen:
                        seen.add(found[0])
                        details.append(self._detail(t, repo, *found))
            return DescribeImagesResult(tuple(details))
        limit = v.max_results(max_results) or DEFAULT_PAGE
        after = _decode_token(next_token, repo, "d") if next_token is not None else None
        details = []
        more = False
        with self._index.read() as t:
            for dg in t.iter_image_digests(repo.id, bytes.fromhex(after[0]) if after else None, inclusive=False):
                tags = t.image_tags(repo.id, dg)
                if tag_status == "TAGGED" and not tags or tag_status == "UNTAGGED" and tags:
                    continue
                if len(details) == limit:
                    more = True
                    break
                rec = t.get_image(repo.id, dg, with_manifest=False)
                assert rec is not None  # listed by this snapshot
                details.append(self._detail(t, repo, dg, rec, tags))
        token = _encode_token(repo, "d", details[-1].image_digest[7:], None) if more else None
        return DescribeImagesResult(tuple(details), token)

    def _detail(self, t: ReadTxn, repo: RepoRecord, dg: bytes, rec: ImageRecord,
                tags: list[str] | None = None) -> ImageDetail:
        if tags is None:
            tags = t.image_tags(repo.id, dg)
        scan_status, scan_findings = scan_summary(t, repo.id, dg, rec)
        return ImageDetail(
            registry_id=repo.registry_id, repository_name=repo.name, image_digest=str(Digest.from_raw(dg)),
            image_tags=tuple(tags) or None, image_size_in_bytes=rec.size, image_pushed_at=rec.pushed_at,
            image_manifest_media_type=rec.media_type, artifact_media_type=rec.artifact_media_type or None,
            image_scan_status=scan_status, image_scan_findings_summary=scan_findings,
        )

    # --- download URLs -------------------------------------------------------------------

    def get_download_url_for_layer(self, registry_id: str | None, repository_name: str, layer_digest: str,
                                   base_url: str, expires_in: float) -> GetDownloadUrlForLayerResult:
        d = parse_digest(layer_digest, "layerDigest")
        repo = self._repo(registry_id, repository_name)
        with self._index.read() as t:
            linked = d.is_sha256 and t.get_link(repo.id, d.raw) is not None
            referenced = linked and t.layer_is_referenced(repo.id, d.raw)
            blob = t.get_blob(d.raw) if referenced else None
        if not linked:
            raise LayersNotFoundException(
                f"The layer with digest {d} does not exist within the repository with name "
                f"'{repo.name}' in the registry with id '{repo.registry_id}'"
            )
        if not referenced:
            raise LayerInaccessibleException(
                f"The layer with digest {d} in the repository with name '{repo.name}' in the registry "
                f"with id '{repo.registry_id}' is not referenced by any image"
            )
        url = self._presign(d.hex, expires_in, blob.placement) if blob is not None else None
        if url is None:
            url = self._signer.sign(base_url, repo.registry_id, repo.name, str(d), expires_in)
        return GetDownloadUrlForLayerResult(url, str(d))


def _tag_is_immutable(repo: RepoRecord, tag: str) -> bool:
    mode = repo.image_tag_mutability
    if mode == "IMMUTABLE":
        return True
    if mode == "MUTABLE":
        return False
    matched = any(fnmatch.fnmatchcase(tag, f["filter"]) for f in repo.image_tag_mutability_exclusion_filters)
    # The filters name the exceptions to the repository's rule.
    return not matched if mode == "IMMUTABLE_WITH_EXCLUSION" else matched


def _image_ids(image_ids: Any) -> list[ImageIdentifier]:
    if isinstance(image_ids, (str, bytes)) or not isinstance(image_ids, Sequence):
        raise invalid_parameter("imageIds", "Member must be a list")
    if not 1 <= len(image_ids) <= 100:
        raise invalid_parameter("imageIds", "Member must have length between 1 and 100")
    for item in image_ids:
        if not isinstance(item, ImageIdentifier):
            raise invalid_parameter("imageIds", "Member must be a list of ImageIdentifier")
        if any(x is not None and not isinstance(x, str) for x in (item.image_digest, item.image_tag)):
            raise invalid_parameter("imageIds", "imageDigest and imageTag must be strings")
    return list(image_ids)


def _filter(value: Any) -> tuple[str, str]:
    if value is None:
        return "ANY", "ANY"
    if isinstance(value, ListImagesFilter):
        return v.enum(value.tag_status, "filter.tagStatus", _TAG_STATUS), "ANY"
    if isinstance(value, DescribeImagesFilter):
        return (v.enum(value.tag_status, "filter.tagStatus", _TAG_STATUS),
                v.enum(value.image_status, "filter.imageStatus", _IMAGE_STATUS))
    raise invalid_parameter("filter", "Member must be a ListImagesFilter or DescribeImagesFilter")


def _encode_token(repo: RepoRecord, kind: str, digest_hex: str, tag: str | None) -> str:
    return encode_token(kind, repo.id, digest_hex, tag)


def _decode_token(token: object, repo: RepoRecord, kind: str) -> tuple[str, str | None]:
    def read(fields: list[object]) -> tuple[str, str | None]:
        k, rid, digest_hex, tag = fields
        if k != kind or rid != repo.id or not isinstance(digest_hex, str) or len(bytes.fromhex(digest_hex)) != 32:
            raise ValueError
        if tag is not None and not isinstance(tag, str):
            raise ValueError
        return digest_hex, tag

    return decode_token(token, read)


def _blobs(parsed: ParsedManifest) -> tuple[Descriptor, ...]:
    """The blobs an image manifest references: its config, then its layers."""
    # parse_manifest gives every image manifest (not an index) a config.
    assert parsed.config is not None, "an image manifest always has a config"
    return (parsed.config, *parsed.layers)


def _reparse(rec: ImageRecord | None) -> ParsedManifest | None:
    if rec is None:
        return None
    try:
        return parse_manifest(rec.manifest.decode("utf-8"), rec.media_type, max_layers=10**9)
    except InvalidParameterException:  # stored manifests were valid when put
        return None


def _ident_text(ident: ImageIdentifier) -> str:
    parts = []
    if ident.image_digest is not None:
        parts.append(f"imageDigest={ident.image_digest}")
    if ident.image_tag is not None:
        parts.append(f"imageTag={ident.image_tag}")
    return "{" + ", ".join(parts) + "}"


def _already_exists(digest: Digest, tag: str | None, repo: RepoRecord) -> ImageAlreadyExistsException:
    return ImageAlreadyExistsException(
        f"Image with digest '{digest}'" + (f" and tag '{tag}'" if tag else "")
        + f" already exists in the repository with name '{repo.name}' in registry with id '{repo.registry_id}'"
    )
