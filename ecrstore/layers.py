"""A repository's layers: BatchCheckLayerAvailability, opening a layer, listing a repository's
layers, and OCI's cross-repository mount and blob deletion.

Each read uses one index snapshot and changes nothing; each write is one transaction.
Registries are tenants: a layer only another registry holds is reported as missing, never as
present elsewhere, and mounts never cross registries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from . import validate as v
from .blobs.base import BlobReader, BlobStore
from .digest import SHA256_RE, Digest, parse_digest, sha256_text, try_parse_digest
from .errors import LayerInaccessibleException, LayersNotFoundException, repository_not_found
from .index.base import Index, WriteTxn
from .index.records import LinkRecord, RepoRecord
from .models import BatchCheckLayerAvailabilityResult, Layer, LayerFailure

__all__ = ["Layers"]


class Layers:
    def __init__(self, index: Index, blobs: BlobStore) -> None:
        self._index = index
        self._blobs = blobs

    def batch_check(self, registry: str, repository_name: str,
                    layer_digests: Sequence[str]) -> BatchCheckLayerAvailabilityResult:
        name = v.repository_name(repository_name)
        raw = v.str_list(layer_digests, "layerDigests", max_items=100, max_len=1000)
        # This call is on every push's critical path (clients ask before each layer), so the
        # common well-formed sha256 form is recognised with one regex and no Digest objects.
        keys: list[bytes | None] = []
        for text in raw:
            m = SHA256_RE.fullmatch(text)
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
        for text, key in zip(raw, keys, strict=True):
            if key is None:
                failures.append(LayerFailure(text, "InvalidLayerDigest", "Invalid layer digest"))
            elif key in links:
                size, media_type = links[key]
                layers.append(Layer(sha256_text(key), "AVAILABLE", size, media_type or None))
            elif key in stored:
                layers.append(Layer(sha256_text(key), "UNAVAILABLE"))
            else:
                failures.append(LayerFailure(text, "MissingLayerDigest", "Could not find layer"))
        return BatchCheckLayerAvailabilityResult(tuple(layers), tuple(failures))

    def open(self, registry: str, repository_name: str, layer_digest: str) -> BlobReader:
        d = parse_digest(layer_digest, "layerDigest")
        name = v.repository_name(repository_name)
        with self._index.read() as t:
            repo = t.get_repo(registry, name)
            if repo is None:
                raise repository_not_found(registry, name)
            link = t.get_link(repo.id, d.raw) if d.is_sha256 else None
            blob = t.get_blob(d.raw) if link is not None else None
        if link is None:
            raise LayersNotFoundException(
                f"The layer with digest {d} does not exist within the repository with name "
                f"'{name}' in the registry with id '{registry}'"
            )
        return self._blobs.open(d.hex, link.size, blob.placement if blob is not None else "")

    def mount(self, registry: str, repository_name: str, layer_digest: str, from_repository: str) -> int | None:
        """Make a layer of ``from_repository`` (same registry) a layer of this repository too,
        without any byte moving; answer its size, or None when ``from_repository`` does not
        exist or does not hold the layer (the caller then uploads it). Already a layer here:
        its size. Errors: RepositoryNotFound (this repository), InvalidParameter. One write
        transaction, durable on return (durable mode)."""
        d = parse_digest(layer_digest, "layerDigest")
        name = v.repository_name(repository_name)
        source = v.repository_name(from_repository)
        if not d.is_sha256:
            return None
        now = time.time()

        def commit(t: WriteTxn) -> int | None:
            repo = t.get_repo(registry, name)
            if repo is None:
                raise repository_not_found(registry, name)
            here = t.get_link(repo.id, d.raw)
            if here is not None:
                return here.size
            src = t.get_repo(registry, source)
            link = t.get_link(src.id, d.raw) if src is not None else None
            if link is None or t.get_blob(d.raw) is None:
                return None
            t.put_link(repo.id, d.raw, LinkRecord(link.size, now, link.media_type))
            return link.size

        return self._index.write(commit)

    def link_replica(self, source: RepoRecord, destination: RepoRecord, digests: Sequence[bytes]) -> None:
        """Make blobs of ``source`` layers of ``destination`` too, across registries (image
        replication: the store holds each blob once, so no byte moves). Unlike :meth:`mount`
        this crosses tenants, so it is never a client's call: the caller (replication) has
        checked the destination registry permits it. One write transaction that re-checks
        both repositories (same ids) and every source link and blob. Errors:
        RepositoryNotFound (either repository gone or re-created), LayersNotFound (a blob the
        source no longer holds). A digest already linked in the destination keeps its link."""
        wanted = list(dict.fromkeys(digests))
        now = time.time()

        def commit(t: WriteTxn) -> None:
            for rec in (source, destination):
                cur = t.get_repo(rec.registry_id, rec.name)
                if cur is None or cur.id != rec.id:
                    raise repository_not_found(rec.registry_id, rec.name)
            missing = []
            for dg in wanted:
                if t.get_link(destination.id, dg) is not None:
                    continue
                link = t.get_link(source.id, dg)
                if link is None or t.get_blob(dg) is None:
                    missing.append(sha256_text(dg))
                    continue
                t.put_link(destination.id, dg, LinkRecord(link.size, now, link.media_type))
            if missing:
                raise LayersNotFoundException(
                    f"Layers with digests {missing} do not exist within the repository with name "
                    f"'{source.name}' in the registry with id '{source.registry_id}'"
                )

        self._index.write(commit)

    def unlink(self, registry: str, repository_name: str, layer_digest: str) -> None:
        """Remove a layer from this repository (its bytes are reclaimed by gc once no
        repository holds them). Errors: RepositoryNotFound, LayersNotFound, and
        LayerInaccessible while an image of the repository references it."""
        d = parse_digest(layer_digest, "layerDigest")
        name = v.repository_name(repository_name)

        def commit(t: WriteTxn) -> None:
            repo = t.get_repo(registry, name)
            if repo is None:
                raise repository_not_found(registry, name)
            if not d.is_sha256 or t.get_link(repo.id, d.raw) is None:
                raise LayersNotFoundException(
                    f"The layer with digest {d} does not exist within the repository with name "
                    f"'{name}' in the registry with id '{registry}'"
                )
            if t.layer_is_referenced(repo.id, d.raw):
                raise LayerInaccessibleException(
                    f"The layer with digest {d} is referenced by an image of the repository with name "
                    f"'{name}' in the registry with id '{registry}'; delete the image first"
                )
            t.delete_link(repo.id, d.raw)

        self._index.write(commit)

    def list(self, registry: str, repository_name: str) -> Iterator[tuple[str, int]]:
        name = v.repository_name(repository_name)
        with self._index.read() as t:
            repo = t.get_repo(registry, name)
            if repo is None:
                raise repository_not_found(registry, name)
            items = [(str(Digest.from_raw(dg)), rec.size) for dg, rec in t.iter_links(repo.id)]
        return iter(items)
