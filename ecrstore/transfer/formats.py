"""What a source holds: the images, their manifests and tags, and where each blob is.

Three layouts are understood (in a tar archive, compressed or not, or in a directory):

* **OCI image layout** (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``): every entry of
  ``index.json`` is imported with its manifest exactly as stored (so its digest does not
  change); image indexes bring every manifest they reference. Tags come from the
  ``org.opencontainers.image.ref.name`` annotation (``io.containerd.image.name`` as a
  fallback; a full reference contributes its tag).
* **docker save, current** (the above plus ``manifest.json``): as an OCI layout, and each
  ``manifest.json`` entry adds its ``RepoTags`` to the manifest that has the same config and
  layer files. An index whose manifests are not all in the archive (a single-platform save
  of a multi-platform image) is left out and its complete manifests are imported on their
  own.
* **docker save, legacy** (``manifest.json``, ``<id>/layer.tar``, ``<config>.json``): a Docker
  schema 2 manifest is written for each entry, serialised deterministically (Go's
  ``json.Marshal`` style: compact, fixed member order) so that the same archive always gives
  the same image digest. Uncompressed layers take their digest from the config's
  ``rootfs.diff_ids`` (the store verifies it as it ingests the bytes); compressed layers are
  hashed first.

Nothing here writes to the store. Every manifest read is checked against its digest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from ..digest import content_digest
from ..errors import InvalidParameterException
from ..manifest import DOCKER_MANIFEST, parse_manifest
from .errors import SourceError, TransferUsageError
from .sources import ArchiveTree, Tree, clean_path

__all__ = [
    "BlobSource",
    "PlannedImage",
    "Plan",
    "read_plan",
    "docker_schema2_manifest",
    "tag_of_reference",
    "tag_of_annotations",
    "blob_path",
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "REF_NAME",
    "CONTAINERD_NAME",
]

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

_MAX_MANIFEST = 4_194_304 * 4  # UTF-8 bytes of ECR's 4,194,304-character limit, at most
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,299}")
_GZIP = b"\x1f\x8b"
_OTHER_COMPRESSION = ((b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))


@dataclasses.dataclass(frozen=True, slots=True)
class BlobSource:
    """A blob to store: its claimed digest and size, and where its bytes are (a file of the
    tree, or ``data`` already in memory)."""

    digest: str
    size: int
    name: str
    data: bytes | None = None


@dataclasses.dataclass(slots=True)
class PlannedImage:
    """A manifest to put, what it references (an image manifest: its config and layers; an
    index: its manifests) and the tags the source gives it. ``root``: named by the source's
    index.json or manifest.json (not only referenced by another manifest)."""

    digest: str
    media_type: str
    text: str
    tags: list[str]
    config: str | None = None
    layers: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    root: bool = False

    @property
    def blobs(self) -> tuple[str, ...]:
        """The distinct blobs the manifest needs in the repository (config first)."""
        return tuple(dict.fromkeys(([self.config] if self.config else []) + list(self.layers)))


@dataclasses.dataclass(slots=True)
class Plan:
    """Everything a source would import. ``images`` are in put order: a manifest comes after
    every manifest it references."""

    format: str
    images: dict[str, PlannedImage]
    blobs: dict[str, BlobSource]
    notes: list[str]

    @property
    def roots(self) -> list[PlannedImage]:
        return [im for im in self.images.values() if im.root]

    def retag(self, tag: str) -> None:
        """Give the source's only top-level image the tag ``tag`` instead of its own tags.
        TransferUsageError when the source holds several."""
        roots = self.roots
        if len(roots) != 1:
            names = ", ".join(_describe(im) for im in roots)
            raise TransferUsageError(
                f"the source holds {len(roots)} images ({names}); a tag can replace the tags of exactly one"
            )
        for im in self.images.values():
            im.tags = []
        roots[0].tags = [tag]


def _describe(im: PlannedImage) -> str:
    return f"{im.digest[:19]}…" + (f" [{', '.join(im.tags)}]" if im.tags else "")


#: Answers the sha256 digests (``sha256:<hex>``) of files of the tree, in order.
HashFiles = Callable[[Sequence[str]], list[str]]


def read_plan(tree: Tree, hash_files: HashFiles) -> Plan:
    """The plan of a source. ``hash_files`` hashes files of the tree (the caller runs it in
    parallel); it is needed only for compressed layers of a legacy docker save, whose digest
    no metadata states. Raises SourceError."""
    if tree.has("manifest.json"):
        return _docker_plan(tree, hash_files)
    if tree.has("index.json") or tree.has("oci-layout"):
        plan = _oci_plan(tree, strict=True)
        plan.format = "oci-archive" if isinstance(tree, ArchiveTree) else "oci"
        return plan
    raise SourceError(
        f"{tree.label} is not an image archive or layout: it has neither manifest.json (docker save) "
        f"nor index.json (OCI image layout)"
    )


# --- OCI image layout ---------------------------------------------------------------------------


def _json(tree: Tree, name: str, limit: int | None = None) -> Any:
    raw = tree.read(name) if limit is None else tree.read(name, limit)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeError) as e:
        raise SourceError(f"{name} in {tree.label} is not valid JSON ({e})") from e


def blob_path(digest: str) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


def _sha256_digest(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise SourceError(f"{where}: the digest is missing or not a string")
    algorithm, sep, hexpart = value.partition(":")
    if not sep or algorithm != "sha256" or not _SHA256_HEX.fullmatch(hexpart):
        raise SourceError(f"{where}: {value!r} is not a sha256 digest (sha256:<64 lower-case hex>)")
    return value


class _OciReader:
    def __init__(self, tree: Tree, strict: bool) -> None:
        self.tree = tree
        self.strict = strict
        self.images: dict[str, PlannedImage] = {}
        self.blobs: dict[str, BlobSource] = {}
        self.notes: list[str] = []
        self.incomplete: set[str] = set()
        self._visiting: set[str] = set()

    def _blob(self, digest: str, size: Any, where: str) -> BlobSource | None:
        name = blob_path(digest)
        if not self.tree.has(name):
            if self.strict:
                raise SourceError(f"{where}: blob {digest} is missing from {self.tree.label} ({name})")
            return None
        actual = self.tree.size(name)
        label = f"{name} in {self.tree.label}"
        if isinstance(size, int) and not isinstance(size, bool) and size != actual:
            raise SourceError(f"{where}: blob {digest} should be {size} bytes but {label} is {actual}")
        if actual == 0:
            raise SourceError(f"{label} is empty: the store cannot hold zero-byte blobs")
        return BlobSource(digest, actual, name)

    def manifest(self, desc: Any, where: str) -> str | None:
        """Read a manifest (recursively for an index); answer its digest, or None when it is
        incomplete in a non-strict reading."""
        if not isinstance(desc, dict):
            raise SourceError(f"{where}: a manifest descriptor must be a JSON object")
        digest = _sha256_digest(desc.get("digest"), where)
        if digest in self.images:
            return digest
        if digest in self.incomplete:
            return None
        if digest in self._visiting:
            raise SourceError(f"{where}: manifest {digest} references itself")
        name = blob_path(digest)
        if not self.tree.has(name):
            if self.strict:
                raise SourceError(f"{where}: manifest {digest} is missing from {self.tree.label} ({name})")
            self.incomplete.add(digest)
            return None
        raw = self.tree.read(name, _MAX_MANIFEST)
        actual = str(content_digest(raw))
        if actual != digest:
            raise SourceError(f"{name} in {self.tree.label} does not match its digest: it is {actual}")
        size = desc.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size != len(raw):
            raise SourceError(f"{where}: manifest {digest} should be {size} bytes but is {len(raw)}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SourceError(f"manifest {digest} in {self.tree.label} is not UTF-8 ({e})") from e
        declared = desc.get("mediaType") if isinstance(desc.get("mediaType"), str) else None
        try:
            parsed = parse_manifest(text, declared or None, max_layers=10**6)
        except InvalidParameterException as e:
            raise SourceError(f"manifest {digest} in {self.tree.label} cannot be stored: {e.message}") from e
        media_type = parsed.media_type
        self._visiting.add(digest)
        try:
            if parsed.is_index:
                # Every child is read even after a missing one: a current docker save of one
                # platform holds that platform's manifest, wherever it is in the list.
                read = [self.manifest(child, f"manifest {digest[:19]}…, manifests[{i}]")
                        for i, child in enumerate(json.loads(text).get("manifests", []))]
                children = [c for c in read if c is not None]
                if len(children) != len(read):
                    self.incomplete.add(digest)
                    return None
                image = PlannedImage(digest, media_type, text, [], children=tuple(dict.fromkeys(children)))
            else:
                assert parsed.config is not None  # parse_manifest gives every image manifest a config
                needed = []
                for d in (parsed.config, *parsed.layers):
                    blob = self._blob(str(d.digest), d.size, f"manifest {digest[:19]}…")
                    if blob is None:
                        self.incomplete.add(digest)
                        return None
                    self.blobs.setdefault(blob.digest, blob)
                    needed.append(blob.digest)
                image = PlannedImage(digest, media_type, text, [], config=needed[0], layers=tuple(needed[1:]))
        finally:
            self._visiting.discard(digest)
        self.images[digest] = image  # after its children: insertion order is put order
        return digest


def _oci_plan(tree: Tree, *, strict: bool) -> Plan:
    if tree.has("oci-layout"):
        layout = _json(tree, "oci-layout")
        if not isinstance(layout, dict) or not isinstance(layout.get("imageLayoutVersion"), str):
            raise SourceError(f"oci-layout in {tree.label} has no imageLayoutVersion")
    elif strict:
        raise SourceError(f"{tree.label} has index.json but no oci-layout file: not an OCI image layout")
    if not tree.has("index.json"):
        raise SourceError(f"{tree.label} has no index.json: not an OCI image layout")
    index = _json(tree, "index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise SourceError(f"index.json in {tree.label} has no 'manifests' list")
    reader = _OciReader(tree, strict)
    for i, entry in enumerate(index["manifests"]):
        where = f"index.json in {tree.label}, manifests[{i}]"
        digest = reader.manifest(entry, where)
        if digest is None:
            reader.notes.append(
                f"{where}: {entry.get('digest')} is not complete in the archive (only some of its "
                f"platforms were saved); importing the images it has on their own"
            )
            continue
        image = reader.images[digest]
        image.root = True
        annotations = entry.get("annotations") if isinstance(entry.get("annotations"), dict) else {}
        tag = tag_of_annotations(annotations)
        if tag is not None and tag not in image.tags:
            image.tags.append(tag)
    return Plan("oci", reader.images, reader.blobs, reader.notes)


def tag_of_annotations(annotations: dict[str, Any]) -> str | None:
    """The tag an index.json entry gives its image: ``org.opencontainers.image.ref.name``
    (a bare tag, or a full reference whose tag is taken), else ``io.containerd.image.name``."""
    for key in (REF_NAME, CONTAINERD_NAME):
        value = annotations.get(key)
        if isinstance(value, str) and value:
            if key == REF_NAME and _TAG.fullmatch(value):
                return value
            tag = tag_of_reference(value)
            if tag is not None:
                return tag
    return None


def tag_of_reference(ref: str) -> str | None:
    """``docker.io/library/busybox:1.36`` -> ``1.36``; None when the reference has no tag."""
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        tag = name[colon + 1:]
        if _TAG.fullmatch(tag):
            return tag
    return None


# --- docker save --------------------------------------------------------------------------------


def _docker_plan(tree: Tree, hash_files: HashFiles) -> Plan:
    entries = _json(tree, "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise SourceError(f"manifest.json in {tree.label} must be a non-empty list of images")
    if tree.has("index.json"):
        plan = _oci_plan(tree, strict=False)
        plan.format = "docker-archive+oci"
    else:
        plan = Plan("docker-archive", {}, {}, [])
    # A current docker save names the files of the OCI layout it embeds: match on them.
    by_files = {
        (blob_path(im.config), tuple(blob_path(d) for d in im.layers)): im
        for im in plan.images.values() if im.config is not None
    }
    legacy: list[tuple[int, str, list[str], list[str]]] = []
    for i, entry in enumerate(entries):
        where = f"manifest.json in {tree.label}, entry {i}"
        if not isinstance(entry, dict):
            raise SourceError(f"{where}: must be a JSON object")
        config = entry.get("Config")
        layers = entry.get("Layers")
        if not isinstance(config, str) or not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise SourceError(f"{where}: needs a 'Config' file name and a 'Layers' list of file names")
        config = clean_path(config, where)
        layers = [clean_path(x, where) for x in layers]
        tags = [t for t in (tag_of_reference(r) for r in entry.get("RepoTags") or [] if isinstance(r, str)) if t]
        match = by_files.get((config, tuple(layers)))
        if match is not None:
            match.root = True
            for t in tags:
                if t not in match.tags:
                    match.tags.append(t)
        else:
            legacy.append((i, config, layers, tags))
    if legacy:
        _legacy_images(tree, legacy, plan, hash_files)
    if not plan.roots:
        raise SourceError(f"{tree.label} holds no complete image")
    _prune(plan)
    return plan


def _prune(plan: Plan) -> None:
    """Keep only what the source's top-level images need (the platforms of an incomplete
    index that no manifest.json entry names are not imported on their own)."""
    keep: set[str] = set()
    stack = [im.digest for im in plan.roots]
    while stack:
        digest = stack.pop()
        if digest not in keep:
            keep.add(digest)
            stack.extend(plan.images[digest].children)
    plan.images = {d: im for d, im in plan.images.items() if d in keep}
    needed = {b for im in plan.images.values() for b in im.blobs}
    plan.blobs = {d: b for d, b in plan.blobs.items() if d in needed}


def _legacy_images(tree: Tree, entries: list[tuple[int, str, list[str], list[str]]], plan: Plan,
                   hash_files: HashFiles) -> None:
    """Docker schema 2 manifests for legacy ``docker save`` entries."""
    prepared = []
    to_hash: dict[str, None] = {}
    for i, config_name, layer_names, tags in entries:
        where = f"manifest.json in {tree.label}, entry {i}"
        config_raw = tree.read(config_name)
        if not config_raw:
            raise SourceError(f"{config_name} in {tree.label} is empty: not an image config")
        try:
            config = json.loads(config_raw)
        except (ValueError, UnicodeError) as e:
            raise SourceError(f"{config_name} in {tree.label} is not valid JSON ({e})") from e
        rootfs = config.get("rootfs") if isinstance(config, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_names):
            raise SourceError(
                f"{where}: {config_name} lists {len(diff_ids) if isinstance(diff_ids, list) else 'no'} "
                f"rootfs.diff_ids for {len(layer_names)} layers"
            )
        if not layer_names:
            raise SourceError(f"{where}: an image needs at least one layer")
        layers: list[tuple[str, int, str | None, str]] = []
        for name, diff_id in zip(layer_names, diff_ids, strict=True):  # lengths checked above
            with tree.open(name) as ext:
                if ext.size == 0:
                    raise SourceError(f"{ext.label} is empty: the store cannot hold zero-byte blobs")
                head = os.pread(ext.fd, 8, ext.offset)
            if head.startswith(_GZIP):
                to_hash[name] = None
                layers.append((name, ext.size, None, DOCKER_LAYER_GZIP))
                continue
            for magic, kind in _OTHER_COMPRESSION:
                if head.startswith(magic):
                    raise SourceError(f"{ext.label} is {kind}-compressed: only plain and gzip layers are supported")
            layers.append((name, ext.size, _sha256_digest(diff_id, f"{config_name}: rootfs.diff_ids"), DOCKER_LAYER))
        prepared.append((config_name, config_raw, layers, tags))
    hashed = dict(zip(to_hash, hash_files(list(to_hash)), strict=True)) if to_hash else {}
    for config_name, config_raw, layers, tags in prepared:
        config_digest = str(content_digest(config_raw))
        plan.blobs.setdefault(config_digest, BlobSource(config_digest, len(config_raw), config_name, config_raw))
        descs = []
        for name, size, digest, media_type in layers:
            digest = digest or hashed[name]
            plan.blobs.setdefault(digest, BlobSource(digest, size, name))
            descs.append((media_type, size, digest))
        text = docker_schema2_manifest((DOCKER_CONFIG, len(config_raw), config_digest), descs)
        digest = str(content_digest(text.encode()))
        image = plan.images.get(digest)
        if image is None:
            image = plan.images[digest] = PlannedImage(
                digest, DOCKER_MANIFEST, text, [], config=config_digest, layers=tuple(d[2] for d in descs))
        image.root = True
        for t in tags:
            if t not in image.tags:
                image.tags.append(t)


def docker_schema2_manifest(config: tuple[str, int, str], layers: Sequence[tuple[str, int, str]]) -> str:
    """A Docker image manifest, schema 2, serialised the way Go's ``json.Marshal`` writes the
    distribution types: compact, members in the order schemaVersion, mediaType, config,
    layers, and mediaType, size, digest in each descriptor. Same input, same bytes, same digest."""
    def desc(d: tuple[str, int, str]) -> dict[str, Any]:
        media_type, size, digest = d
        return {"mediaType": media_type, "size": size, "digest": digest}

    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": desc(config),
        "layers": [desc(x) for x in layers],
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
