"""Image manifests as PutImage sees them: media type, digest and the content they reference.

The manifest is parsed only to learn what it references; it is stored and returned exactly as
received, and its digest is the sha256 of those bytes (UTF-8), never of a re-serialisation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .digest import Digest, content_digest, parse_digest
from .errors import InvalidParameterException

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "OCI_MANIFEST",
    "OCI_INDEX",
    "IMAGE_MANIFESTS",
    "INDEXES",
    "SUPPORTED",
    "Descriptor",
    "ParsedManifest",
    "manifest_annotations",
    "parse_manifest",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
IMAGE_MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
SUPPORTED = IMAGE_MANIFESTS + INDEXES
# Layers that registries never hold (their bytes live at the descriptor's urls).
_FOREIGN = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)


@dataclass(frozen=True, slots=True)
class Descriptor:
    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    """What PutImage needs to know of a manifest."""

    digest: Digest
    media_type: str
    #: The config blob (image manifests only).
    config: Descriptor | None
    #: Layers the registry must hold (foreign / non-distributable layers excluded).
    layers: tuple[Descriptor, ...]
    #: Manifests an index / manifest list references.
    manifests: tuple[Descriptor, ...]
    #: ECR's artifactMediaType: the config's media type.
    artifact_media_type: str | None
    #: The manifest this one refers to (OCI 1.1 ``subject``): it is listed among that
    #: manifest's referrers.
    subject: Descriptor | None = None
    #: OCI's artifactType: the manifest's ``artifactType``, else (image manifests) the
    #: config's media type.
    artifact_type: str | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES


def manifest_digest(text: str) -> Digest:
    return content_digest(text.encode("utf-8"))


def parse_manifest(text: str, declared_media_type: str | None, *, max_layers: int) -> ParsedManifest:
    """Parse a manifest for PutImage. Raises InvalidParameterException when it is not JSON,
    names no (or an unsupported) media type, disagrees with the declared one, has no layer,
    more than ``max_layers`` layers, or a malformed descriptor."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise InvalidParameterException(_manifest_constraint("Invalid JSON syntax")) from None
    if not isinstance(doc, dict):
        raise InvalidParameterException(_manifest_constraint("Manifest must be a JSON object"))
    own = doc.get("mediaType")
    if own is not None and not isinstance(own, str):
        raise InvalidParameterException("Manifest mediaType must be a string")
    if own and declared_media_type and own != declared_media_type:
        raise InvalidParameterException(
            f"Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: "
            f"'mediaType in manifest should be '{own}' not '{declared_media_type}''"
        )
    media_type = own or declared_media_type
    if not media_type:
        raise InvalidParameterException(
            "Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: "
            "'the manifest has no mediaType and none was given'"
        )
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise InvalidParameterException("Docker image manifest schema 1 is not supported")
    if media_type not in SUPPORTED:
        raise InvalidParameterException(f"Unsupported manifest media type '{media_type}'")
    if doc.get("schemaVersion") != 2:
        raise InvalidParameterException(_manifest_constraint("schemaVersion must be 2"))
    digest = manifest_digest(text)
    subject = _descriptor(doc["subject"], "subject") if doc.get("subject") is not None else None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise InvalidParameterException("Invalid manifest: 'artifactType' must be a string")
    if media_type in INDEXES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise InvalidParameterException("A manifest list must have a 'manifests' array")
        manifests = tuple(_descriptor(e, "manifests") for e in entries)
        return ParsedManifest(digest, media_type, None, (), manifests, None, subject, artifact_type or None)
    config = _descriptor(doc.get("config"), "config")
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise InvalidParameterException("Image has to have at least 1 layer")
    if len(raw_layers) > max_layers:
        raise InvalidParameterException(f"Image has {len(raw_layers)} layers; the limit is {max_layers}")
    layers = tuple(
        d for d in (_descriptor(e, "layers") for e in raw_layers) if d.media_type not in _FOREIGN
    )
    return ParsedManifest(digest, media_type, config, layers, (), config.media_type or None, subject,
                          artifact_type or config.media_type or None)


def manifest_annotations(manifest: bytes) -> dict[str, str] | None:
    """The ``annotations`` of a stored manifest (what a referrers listing shows), or None."""
    try:
        doc = json.loads(manifest)
    except (ValueError, RecursionError):
        return None
    found = doc.get("annotations") if isinstance(doc, dict) else None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        return None
    return found


def _manifest_constraint(what: str) -> str:
    return f"Invalid parameter at 'imageManifest' failed to satisfy constraint: '{what}'"


def _descriptor(value: object, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise InvalidParameterException(f"Invalid manifest: '{where}' entries must be descriptors")
    digest = parse_digest(value.get("digest"), f"imageManifest.{where}.digest")
    if not digest.is_sha256:
        raise InvalidParameterException(f"Invalid manifest: '{where}' digest {digest} is not a sha256 digest")
    size = value.get("size", 0)
    media_type = value.get("mediaType", "")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0 or not isinstance(media_type, str):
        raise InvalidParameterException(f"Invalid manifest: a '{where}' descriptor has a bad size or mediaType")
    return Descriptor(digest, media_type, size)
