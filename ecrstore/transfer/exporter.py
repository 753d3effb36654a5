"""Exporting an image of the store as an OCI layout, an OCI archive or a docker-save tarball.

Manifests and blobs are written byte for byte as stored, so importing an export gives the
same image digest and the same blobs. Blob bytes are copied kernel-side from the store's
immutable blob files (``copy_file_range``, ``sendfile`` where that is refused; a backend
whose readers have no file descriptor is read in chunks); only tar headers are built in
Python.

* ``oci``: an OCI image layout directory. An existing layout is added to (blobs already
  there are kept; an index.json entry with the same tag is replaced), so several images can
  share one layout, as with ``skopeo copy ... oci:DIR:TAG``.
* ``oci-archive``: the same layout as one tar file.

  Docker schema 2 manifests and manifest lists are written unchanged by default: the OCI
  layout allows any manifest type, and this importer, containerd and ``docker load`` read
  them, but skopeo and podman only look at OCI-typed index.json entries. ``convert_to_oci``
  rewrites them with the OCI media types instead (what ``skopeo copy`` does when it writes
  an OCI layout): config and layer blobs are unchanged, but the manifests, hence the image
  digest, are new ones.
* ``docker-archive``: what ``docker save`` writes since Docker 25: ``manifest.json``
  (``Config``, ``RepoTags``, ``Layers``) over an embedded OCI layout. ``docker load`` and
  skopeo read it (compressed layers included: both detect and decompress them); importing it
  back prefers the embedded layout, so the manifests come back unchanged.

Files are created under temporary names and renamed into place (an archive as a whole, a
layout blob by blob with index.json last), so an interrupted export never leaves a
destination that names content it does not have. Nothing is fsync-ed (as with ``cp``).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import tarfile
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..digest import content_digest
from ..errors import ImageNotFoundException
from ..manifest import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, parse_manifest
from ..models import Image, ImageIdentifier
from .errors import DestinationError, TransferUsageError
from .formats import CONTAINERD_NAME, REF_NAME, blob_path
from .progress import Emitter, ProgressCallback

if TYPE_CHECKING:
    from ..blobs.base import BlobReader
    from ..store import Store

__all__ = ["ExportReport", "export_image", "parse_reference", "FORMATS"]

FORMATS = ("oci", "oci-archive", "docker-archive")
_OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
_IMAGE_CONFIGS = ("application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,299}")
_BATCH = 100


@dataclasses.dataclass(frozen=True, slots=True)
class ExportReport:
    """What an export wrote. ``blobs_written`` / ``bytes_written`` leave out blobs an
    existing layout already had."""

    reference: str
    repository_name: str
    image_digest: str
    image_manifest_media_type: str
    image_tag: str | None
    destination: str
    format: str
    manifests: int
    blobs_written: int
    bytes_written: int
    seconds: float


def parse_reference(reference: str) -> tuple[str, str | None, str | None]:
    """``REPO:TAG`` or ``REPO@sha256:<hex>`` -> (repository, tag, digest).
    TransferUsageError for anything else."""
    if "@" in reference:
        repo, _, digest = reference.partition("@")
        if not repo or not re.fullmatch(r"sha256:[0-9a-fA-F]{64}", digest):
            raise TransferUsageError(f"{reference!r}: expected REPOSITORY@sha256:<64 hex digits>")
        return repo, None, digest.lower()
    repo, sep, tag = reference.rpartition(":")
    if not sep or not repo or "/" in tag or not _TAG.fullmatch(tag):
        raise TransferUsageError(f"{reference!r}: name the image as REPOSITORY:TAG or REPOSITORY@sha256:<digest>")
    return repo, tag, None


@dataclasses.dataclass(frozen=True, slots=True)
class _Manifest:
    digest: str
    media_type: str
    text: str
    config: str | None
    layers: tuple[str, ...]
    children: tuple[str, ...]


def export_image(store: Store, reference: str, dest: str | os.PathLike[str], *, format: str = "oci",
                 convert_to_oci: bool = False, progress: ProgressCallback | None = None,
                 registry_id: str | None = None) -> ExportReport:
    """Write the image ``reference`` (``REPO:TAG`` or ``REPO@sha256:…``) of ``store`` to
    ``dest`` in ``format`` (``"oci"``, ``"oci-archive"`` or ``"docker-archive"``).
    ``convert_to_oci`` (OCI formats only) rewrites Docker manifests with OCI media types, for
    tools that read only those (the image digest changes; see the module documentation).
    ``registry_id``: the registry of the repository (None: the store's default).

    An image index is exported with every manifest it references. Errors: the store's
    EcrError (RepositoryNotFound; ImageNotFoundException when the repository has no such
    image); TransferUsageError (malformed reference, unknown format); DestinationError
    (``dest`` exists and is not an OCI layout, is not writable, the disk is full, or the
    image cannot be expressed as a docker-archive). Not durable: nothing is fsync-ed.
    Reads the store only, so it is safe alongside any other use of the store; but two exports
    into one layout directory at once may lose one's index.json entry (run them in turn).
    """
    started = time.monotonic()
    if format not in FORMATS:
        raise TransferUsageError(f"unknown export format {format!r} (choose from {', '.join(FORMATS)})")
    if convert_to_oci and format == "docker-archive":
        raise TransferUsageError("convert_to_oci applies to the oci and oci-archive formats only")
    emit = Emitter(progress)
    repo, tag, digest = parse_reference(reference)
    dest = os.fspath(dest)
    top, manifests = _collect(store, repo, tag, digest, reference, registry_id)
    if convert_to_oci:
        top, manifests = _as_oci(top, manifests)
    blobs: dict[str, int] = {}
    for m in manifests.values():
        for d in ([m.config] if m.config else []) + list(m.layers):
            if d not in blobs:
                with store.open_layer(repo, d, registry_id=registry_id) as reader:
                    blobs[d] = reader.size
    emit("plan", total_bytes=sum(blobs.values()), total_layers=len(blobs))
    writer = _Writer(store, repo, emit, registry_id)
    try:
        if format == "oci":
            written = writer.oci_dir(dest, top, manifests, blobs, tag)
        else:
            written = writer.archive(dest, top, manifests, blobs, repo, tag, docker=format == "docker-archive")
    except OSError as e:
        raise DestinationError(f"cannot write {dest}: {e.strerror or e}") from e
    return ExportReport(
        reference=reference, repository_name=repo, image_digest=top.digest,
        image_manifest_media_type=top.media_type, image_tag=tag, destination=dest, format=format,
        manifests=len(manifests), blobs_written=written[0], bytes_written=written[1],
        seconds=time.monotonic() - started,
    )


def _collect(store: Store, repo: str, tag: str | None, digest: str | None,
             reference: str, registry_id: str | None) -> tuple[_Manifest, dict[str, _Manifest]]:
    """The image and, for an index, every manifest under it (children first)."""
    ident = ImageIdentifier(image_tag=tag) if tag is not None else ImageIdentifier(digest)
    res = store.batch_get_image(repo, [ident], registry_id=registry_id)
    if not res.images:
        reason = res.failures[0].failure_reason if res.failures else "Requested image not found"
        raise ImageNotFoundException(f"{reference}: {reason}")
    image = res.images[0]
    top = _from_image(image)
    ordered: dict[str, _Manifest] = {}
    pending = [top]
    seen = {top.digest: top}
    while pending:  # breadth first; the order is fixed below
        wanted = [c for m in pending for c in m.children if c not in seen]
        pending = []
        for i in range(0, len(wanted), _BATCH):
            got = store.batch_get_image(repo, [ImageIdentifier(d) for d in wanted[i:i + _BATCH]],
                                        registry_id=registry_id)
            if got.failures:
                f = got.failures[0]
                raise ImageNotFoundException(
                    f"{reference}: referenced manifest {f.image_id.image_digest}: {f.failure_reason}"
                )
            for im in got.images:
                m = _from_image(im)
                if m.digest not in seen:
                    seen[m.digest] = m
                    pending.append(m)

    def visit(m: _Manifest) -> None:
        if m.digest in ordered:
            return
        for c in m.children:
            visit(seen[c])
        ordered[m.digest] = m

    visit(top)
    return top, ordered


def _from_image(image: Image) -> _Manifest:
    digest = image.image_id.image_digest
    assert digest is not None  # the store names every image it answers by its digest
    return _parse(digest, image.image_manifest, image.image_manifest_media_type)


def _parse(digest: str, text: str, media_type: str) -> _Manifest:
    parsed = parse_manifest(text, media_type, max_layers=10**6)
    if parsed.is_index:
        return _Manifest(digest, parsed.media_type, text, None, (), tuple(str(m.digest) for m in parsed.manifests))
    assert parsed.config is not None  # parse_manifest gives every image manifest a config
    return _Manifest(digest, parsed.media_type, text, str(parsed.config.digest),
                     tuple(str(d.digest) for d in parsed.layers), ())


_OCI_TYPES = {
    DOCKER_MANIFEST: OCI_MANIFEST,
    DOCKER_MANIFEST_LIST: OCI_INDEX,
    "application/vnd.docker.container.image.v1+json": "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}


def _as_oci(top: _Manifest, manifests: dict[str, _Manifest]) -> tuple[_Manifest, dict[str, _Manifest]]:
    """The manifests with Docker media types replaced by OCI ones (children first, so an
    index refers to its children's new digests). Blobs are untouched."""
    renamed: dict[str, _Manifest] = {}
    for old in manifests.values():
        doc = json.loads(old.text)
        changed = False

        def retype(desc: dict[str, Any]) -> None:
            nonlocal changed
            new_type = _OCI_TYPES.get(desc.get("mediaType", ""))
            if new_type:
                desc["mediaType"] = new_type
                changed = True

        retype(doc)
        for desc in [doc.get("config")] + list(doc.get("layers") or []):
            if isinstance(desc, dict):
                retype(desc)
        for desc in doc.get("manifests") or []:
            child = renamed.get(desc.get("digest"))
            if child is not None and child.digest != desc["digest"]:
                desc.update(mediaType=child.media_type, digest=child.digest, size=len(child.text.encode("utf-8")))
                changed = True
            else:
                retype(desc)
        if not changed:
            renamed[old.digest] = old
            continue
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        digest = str(content_digest(text.encode("utf-8")))
        renamed[old.digest] = _parse(digest, text, doc["mediaType"])
    return renamed[top.digest], {m.digest: m for m in renamed.values()}


def _index_entry(m: _Manifest, annotations: dict[str, str] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"mediaType": m.media_type, "digest": m.digest, "size": len(m.text.encode("utf-8"))}
    if annotations:
        entry["annotations"] = annotations
    return entry


class _Writer:
    def __init__(self, store: Store, repo: str, emit: Emitter, registry_id: str | None = None) -> None:
        self._store = store
        self._repo = repo
        self._emit = emit
        self._registry_id = registry_id

    # --- OCI layout directory ------------------------------------------------------------

    def oci_dir(self, dest: str, top: _Manifest, manifests: dict[str, _Manifest], blobs: dict[str, int],
                tag: str | None) -> tuple[int, int]:
        if os.path.lexists(dest):
            if not os.path.isdir(dest):
                raise DestinationError(f"{dest} exists and is not a directory")
            if os.listdir(dest) and not os.path.isfile(os.path.join(dest, "oci-layout")):
                raise DestinationError(f"{dest} exists, is not empty and is not an OCI image layout")
        os.makedirs(os.path.join(dest, "blobs", "sha256"), exist_ok=True)
        count = nbytes = 0
        for digest, size in blobs.items():
            path = os.path.join(dest, blob_path(digest))
            if os.path.isfile(path) and os.path.getsize(path) == size:
                self._emit("layer", digest=digest, nbytes=size, skipped=True)
                continue
            with self._store.open_layer(self._repo, digest, registry_id=self._registry_id) as reader:
                _atomic_copy(path, reader, self._on_bytes)
            self._emit("layer", digest=digest, nbytes=size)
            count += 1
            nbytes += size
        for m in manifests.values():
            path = os.path.join(dest, blob_path(m.digest))
            if not os.path.isfile(path):
                _atomic_bytes(path, m.text.encode("utf-8"))
        layout = os.path.join(dest, "oci-layout")
        if not os.path.isfile(layout):
            _atomic_bytes(layout, _OCI_LAYOUT)
        index_path = os.path.join(dest, "index.json")
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        if os.path.isfile(index_path):
            try:
                with open(index_path, "rb") as f:
                    index = json.load(f)
                if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
                    raise ValueError("no manifests list")
            except ValueError as e:
                raise DestinationError(f"{index_path} is not a valid OCI index ({e}); refusing to replace it") from e
        annotations = {REF_NAME: tag} if tag else None
        kept = [e for e in index["manifests"] if not _same_slot(e, top.digest, tag)]
        index["manifests"] = kept + [_index_entry(top, annotations)]
        _atomic_bytes(index_path, json.dumps(index, separators=(",", ":")).encode())
        return count, nbytes

    def _on_bytes(self, n: int) -> None:
        self._emit("bytes", nbytes=n)

    # --- archives ------------------------------------------------------------------------

    def archive(self, dest: str, top: _Manifest, manifests: dict[str, _Manifest], blobs: dict[str, int],
                repo: str, tag: str | None, *, docker: bool) -> tuple[int, int]:
        if os.path.isdir(dest):
            raise DestinationError(f"{dest} is a directory; an archive is written to a file")
        docker_entries = self._docker_entries(manifests, repo, tag) if docker else None

        def write(fd: int) -> None:
            tar = _TarOut(fd)
            tar.add_bytes("oci-layout", _OCI_LAYOUT)
            tar.add_dir("blobs")
            tar.add_dir("blobs/sha256")
            for digest, size in blobs.items():
                with self._store.open_layer(self._repo, digest, registry_id=self._registry_id) as reader:
                    tar.add_blob(blob_path(digest), reader, self._on_bytes)
                self._emit("layer", digest=digest, nbytes=size)
            for m in manifests.values():
                tar.add_bytes(blob_path(m.digest), m.text.encode("utf-8"))
            annotations = None
            if tag:
                annotations = {REF_NAME: tag}
                if docker:
                    annotations = {CONTAINERD_NAME: f"{repo}:{tag}", REF_NAME: tag}
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [_index_entry(top, annotations)]}
            tar.add_bytes("index.json", json.dumps(index, separators=(",", ":")).encode())
            if docker_entries is not None:
                tar.add_bytes("manifest.json", json.dumps(docker_entries, separators=(",", ":")).encode())
            tar.close()

        _atomic_file(dest, write)
        return len(blobs), sum(blobs.values())

    def _docker_entries(self, manifests: dict[str, _Manifest], repo: str, tag: str | None) -> list[dict[str, Any]]:
        images = [(m, m.config) for m in manifests.values() if m.config is not None]
        entries = []
        for m, config in images:
            config_type = json.loads(m.text).get("config", {}).get("mediaType")
            if config_type not in _IMAGE_CONFIGS:
                raise DestinationError(
                    f"manifest {m.digest} is not a container image (its config is {config_type}); "
                    f"it cannot be written as a docker-archive: use --format oci"
                )
            repo_tags = [f"{repo}:{tag}"] if tag and len(images) == 1 else []
            entries.append({"Config": blob_path(config), "RepoTags": repo_tags,
                            "Layers": [blob_path(d) for d in m.layers]})
        return entries


def _same_slot(entry: object, digest: str, tag: str | None) -> bool:
    """Whether an existing index.json entry is the one this export replaces: the same tag,
    or (untagged) the same digest without a tag."""
    if not isinstance(entry, dict):
        return False
    annotations = entry.get("annotations")
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    if tag is not None:
        return name == tag
    return name is None and entry.get("digest") == digest


class _TarOut:
    """A tar stream written at explicit offsets of ``fd``: headers from tarfile, bodies copied
    kernel-side, then tar's end marker padded to a whole record (as tarfile does)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pos = 0

    def _header(self, info: tarfile.TarInfo) -> None:
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._write(info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict"))

    def _write(self, data: bytes) -> None:
        _pwrite_all(self._fd, data, self._pos)
        self._pos += len(data)

    def _pad(self, size: int) -> None:
        rest = size % tarfile.BLOCKSIZE
        if rest:
            self._write(b"\0" * (tarfile.BLOCKSIZE - rest))

    def add_dir(self, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        self._header(info)

    def add_bytes(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self._header(info)
        self._write(data)
        self._pad(len(data))

    def add_blob(self, name: str, reader: BlobReader, on_bytes: Callable[[int], None]) -> None:
        size = reader.size
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        self._header(info)
        _copy_blob(reader, self._fd, self._pos, on_bytes)
        self._pos += size
        self._pad(size)

    def close(self) -> None:
        self._write(b"\0" * (2 * tarfile.BLOCKSIZE))
        rest = self._pos % tarfile.RECORDSIZE
        if rest:
            self._write(b"\0" * (tarfile.RECORDSIZE - rest))
        os.ftruncate(self._fd, self._pos)


def _copy_blob(reader: BlobReader, dst: int, offset: int, on_bytes: Callable[[int], None] | None) -> None:
    """Copy all of a blob (``reader.size`` bytes) to ``dst`` at ``offset``."""
    # BlobReader promises no descriptor (a blob in an object store has none); the local
    # backend's readers have one, which keeps the copy in the kernel.
    fileno = getattr(reader, "fileno", None)
    if fileno is not None:
        _copy_fd(int(fileno()), dst, reader.size, offset, on_bytes)
        return
    done = 0
    for chunk in reader.iter_chunks(length=reader.size):
        _pwrite_all(dst, chunk, offset + done)
        done += len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
    if done != reader.size:
        raise OSError(errno.EIO, "the blob ended before its recorded size")


def _copy_fd(src: int, dst: int, size: int, offset: int, on_bytes: Callable[[int], None] | None) -> None:
    """Copy all of ``src`` (``size`` bytes) to ``dst`` at ``offset``, in the kernel."""
    done = 0
    step = 64 * 2**20  # progress granularity
    while done < size:
        want = min(step, size - done)
        try:
            n = os.copy_file_range(src, dst, want, done, offset + done)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            os.lseek(dst, offset + done, os.SEEK_SET)
            n = os.sendfile(dst, src, done, want)
        if n == 0:
            raise OSError(errno.EIO, "the blob file ended before its recorded size")
        done += n
        if on_bytes is not None:
            on_bytes(n)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _write_all(fd: int, data: bytes) -> None:
    _pwrite_all(fd, data, 0)


def _atomic_bytes(path: str, data: bytes) -> None:
    _atomic_file(path, lambda fd: _write_all(fd, data))


def _atomic_copy(path: str, reader: BlobReader, on_bytes: Callable[[int], None]) -> None:
    _atomic_file(path, lambda fd: _copy_blob(reader, fd, 0, on_bytes))


def _atomic_file(path: str, fill: Callable[[int], None]) -> None:
    """Create ``path`` through a temporary name in its directory: readers see it complete
    or not at all."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:12]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            fill(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise

