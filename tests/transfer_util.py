"""Builders of image sources for the import and export tests, and checks of their results.

Everything is built by hand from the specifications (docker save's legacy and current
layouts, the OCI image layout), deterministically, so the tests need no external tool; the
tests that drive skopeo and umoci use :func:`require_tool`.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import tarfile
from pathlib import Path

import pytest

from ecrstore import ImageIdentifier, Store

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
REF_NAME = "org.opencontainers.image.ref.name"

# Small parts so that multi-part uploads happen with small layers.
SMALL_PARTS = dict(part_size=16 * 1024, min_part_size=16 * 1024, max_part_size=64 * 1024)

#: The Debian package of every program the tests drive (make test's DEB_PEERS).
DEBIAN_PACKAGES = {
    "skopeo": "skopeo", "umoci": "umoci", "docker": "docker.io", "dockerd": "docker.io", "podman": "podman",
    "buildah": "buildah", "containerd": "containerd", "ctr": "containerd", "docker-registry": "docker-registry",
    "unshare": "util-linux", "umount": "mount", "htpasswd": "apache2-utils", "postgres": "postgresql",
}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rand_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def open_store(path, **kw) -> Store:
    return Store(path, **{"durable": False, **SMALL_PARTS, **kw})


def require_tool(name: str, path: str | None = None) -> str:
    """The tool's path (``path`` when given, else found on PATH); fails (never skips) when it
    is missing, naming the Debian package."""
    found = shutil.which(name) if path is None else path if os.access(path, os.X_OK) else None
    if found is None:
        package = DEBIAN_PACKAGES.get(name, name)
        pytest.fail(f"{name} is not installed: it comes with the Debian package '{package}' "
                    f"(make test installs it; or: apt-get install -y {package})")
    return found


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer: a tar of regular files (deterministic)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclasses.dataclass
class Img:
    """An image's bytes: the config and the layers as stored (``layers``), with the
    uncompressed layers' digests in the config."""

    config: bytes
    layers: list[bytes]
    gzip: bool = False

    @property
    def config_digest(self) -> str:
        return sha(self.config)

    @property
    def layer_digests(self) -> list[str]:
        return [sha(x) for x in self.layers]


def make_image(seed: int = 0, *, layers: int = 2, size: int = 40_000, gzip_layers: bool = False,
               arch: str = "amd64") -> Img:
    raw = [layer_tar({f"data/{seed}-{i}.bin": rand_bytes(size + 1000 * i, seed * 100 + i)}) for i in range(layers)]
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "Labels": {"seed": str(seed)}},
        "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in raw]},
        "history": [{"created_by": f"layer {i}"} for i in range(layers)],
    }
    stored = [gzip.compress(x, mtime=0) for x in raw] if gzip_layers else raw
    return Img(json.dumps(config, sort_keys=True).encode(), stored, gzip_layers)


def oci_manifest(img: Img, *, media_type: str = OCI_MANIFEST) -> bytes:
    docker = media_type == DOCKER_MANIFEST
    if docker:
        layer_type = DOCKER_LAYER + (".gzip" if img.gzip else "")
    else:
        layer_type = OCI_LAYER_GZIP if img.gzip else OCI_LAYER
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG, "digest": img.config_digest,
                   "size": len(img.config)},
        "layers": [{"mediaType": layer_type, "digest": sha(x), "size": len(x)} for x in img.layers],
    }
    return json.dumps(doc, indent=2).encode()


def oci_index(manifests: list[tuple[bytes, str]]) -> bytes:
    """An image index over (manifest bytes, architecture)."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(m), "size": len(m),
                       "platform": {"architecture": arch, "os": "linux"}} for m, arch in manifests],
    }
    return json.dumps(doc).encode()


# --- writing trees -----------------------------------------------------------------------------


@dataclasses.dataclass
class Link:
    target: str
    hard: bool = False


def write_tar(path: Path, entries: list[tuple[str, bytes | Link | None]], *, compress: str | None = None) -> Path:
    """A tar of ``entries``: (name, bytes) files, (name, Link) links, (name, None) directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, value in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if value is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            elif isinstance(value, Link):
                info.type = tarfile.LNKTYPE if value.hard else tarfile.SYMTYPE
                info.linkname = value.target
                tf.addfile(info)
            else:
                info.size, info.mode = len(value), 0o644
                tf.addfile(info, io.BytesIO(value))
    data = buf.getvalue()
    if compress == "gzip":
        data = gzip.compress(data, mtime=0)
    elif compress is not None:
        raise ValueError(compress)
    path.write_bytes(data)
    return path


def tree_entries(root: Path) -> list[tuple[str, bytes | Link | None]]:
    """The entries of a directory tree, for write_tar (sorted; symbolic links kept)."""
    out: list[tuple[str, bytes | Link | None]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            out.append((rel, None))
        for f in sorted(filenames):
            p = Path(dirpath) / f
            name = os.path.normpath(os.path.join(rel, f))
            out.append((name, Link(os.readlink(p)) if p.is_symlink() else p.read_bytes()))
    return out


def docker_save_legacy(path: Path, images: list[tuple[Img, list[str]]], *, compress: str | None = None,
                       skopeo_style: bool = False, extra: list[tuple[str, bytes | Link | None]] = ()) -> Path:
    """A legacy ``docker save``: ``<id>/layer.tar``, ``<id>/json``, ``<id>/VERSION``,
    ``<config hex>.json``, ``manifest.json``, ``repositories``. ``skopeo_style``: the layer
    files are ``<digest hex>.tar`` at the top and ``<id>/layer.tar`` links to them."""
    entries: list[tuple[str, bytes | Link | None]] = []
    manifest = []
    seen: set[str] = set()
    for img, tags in images:
        names = []
        parent = ""
        for layer in img.layers:
            layer_id = hashlib.sha256((parent + sha(layer)).encode()).hexdigest()
            parent = layer_id
            if layer_id in seen:
                names.append(f"{layer_id}/layer.tar")
                continue
            seen.add(layer_id)
            entries.append((layer_id, None))
            entries.append((f"{layer_id}/VERSION", b"1.0"))
            entries.append((f"{layer_id}/json", json.dumps({"id": layer_id}).encode()))
            if skopeo_style:
                top = f"{sha(layer)[7:]}.tar"
                if top not in seen:
                    seen.add(top)
                    entries.append((top, layer))
                entries.append((f"{layer_id}/layer.tar", Link(f"../{top}")))
                names.append(top)
            else:
                entries.append((f"{layer_id}/layer.tar", layer))
                names.append(f"{layer_id}/layer.tar")
        config_name = f"{img.config_digest[7:]}.json"
        if config_name not in seen:
            seen.add(config_name)
            entries.append((config_name, img.config))
        manifest.append({"Config": config_name, "RepoTags": tags or None, "Layers": names})
    entries.append(("manifest.json", json.dumps(manifest).encode()))
    entries.extend(extra)
    return write_tar(path, entries, compress=compress)


def oci_layout(root: Path, images: list[tuple[Img, str | None]] = (), *,
               indexes: list[tuple[list[Img], str | None]] = (), media_type: str = OCI_MANIFEST) -> dict[str, str]:
    """Write an OCI image layout; answer {tag or '#i': manifest digest} of its index.json entries.
    ``images``: (image, tag) entries; ``indexes``: (platform images, tag) multi-platform entries."""
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(data: bytes) -> str:
        d = sha(data)
        (root / "blobs" / "sha256" / d[7:]).write_bytes(data)
        return d

    entries = []
    out = {}
    for n, (img, tag) in enumerate(images):
        blob(img.config)
        for x in img.layers:
            blob(x)
        m = oci_manifest(img, media_type=media_type)
        entry = {"mediaType": media_type, "digest": blob(m), "size": len(m)}
        if tag:
            entry["annotations"] = {REF_NAME: tag}
        entries.append(entry)
        out[tag or f"#{n}"] = entry["digest"]
    for n, (imgs, tag) in enumerate(indexes):
        ms = []
        for img in imgs:
            blob(img.config)
            for x in img.layers:
                blob(x)
            m = oci_manifest(img)
            blob(m)
            ms.append((m, json.loads(img.config)["architecture"]))
        idx = oci_index(ms)
        entry = {"mediaType": OCI_INDEX, "digest": blob(idx), "size": len(idx)}
        if tag:
            entry["annotations"] = {REF_NAME: tag}
        entries.append(entry)
        out[tag or f"#index{n}"] = entry["digest"]
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
    return out


def docker_save_current(path: Path, images: list[tuple[Img, list[str]]], *, compress: str | None = None,
                        work: Path) -> dict[str, str]:
    """A current (Docker 25+) ``docker save``: an OCI layout plus ``manifest.json`` whose
    Config and Layers name files of the layout. Answers {first tag: manifest digest}."""
    root = work / f"save-{path.name}"
    digests = oci_layout(root, [(img, tags[0] if tags else None) for img, tags in images])
    index = json.loads((root / "index.json").read_text())
    for entry, (_, tags) in zip(index["manifests"], images, strict=True):
        if tags:
            entry["annotations"] = {REF_NAME: tags[0].rsplit(":", 1)[-1], "io.containerd.image.name": tags[0]}
    (root / "index.json").write_text(json.dumps(index))
    manifest = [{"Config": f"blobs/sha256/{img.config_digest[7:]}", "RepoTags": tags,
                 "Layers": [f"blobs/sha256/{d[7:]}" for d in img.layer_digests]} for img, tags in images]
    (root / "manifest.json").write_text(json.dumps(manifest))
    write_tar(path, tree_entries(root), compress=compress)
    return digests


def stored_manifest(store: Store, repo: str, tag: str | None = None, digest: str | None = None):
    ident = ImageIdentifier(image_tag=tag) if tag is not None else ImageIdentifier(digest)
    res = store.batch_get_image(repo, [ident])
    assert res.images, res.failures
    return res.images[0]


def layer_bytes(store: Store, repo: str, digest: str) -> bytes:
    with store.open_layer(repo, digest) as r:
        return r.read()


def image_count(store: Store, repo: str) -> int:
    return len({i.image_digest for i in store.list_images(repo).image_ids})
