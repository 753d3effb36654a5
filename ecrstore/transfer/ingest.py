"""Storing one blob of a source as a layer: initiate, parts, complete.

The bytes never pass through Python buffers: every part is handed to the store as a
:class:`~ecrstore.FileRange` of the source (a tar member's range of the archive, or a file of
a layout directory), which the store hashes through ``mmap`` and copies kernel-side
(``copy_file_range``), both with the GIL released. Blobs already in memory (a legacy
archive's image config, read to learn the layer digests) go as bytes.

The source must not shrink while it is imported: hashing maps the file, and a page of a
mapping with no file behind it is a SIGBUS (the contract of :func:`ecrstore.hash_file`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import InvalidLayerException, LayerAlreadyExistsException
from ..hashing import FileRange
from .errors import BlobMismatchError, SourceError, TransferError
from .formats import BlobSource
from .sources import Extent, Tree

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["store_blob", "Cancelled"]


class Cancelled(TransferError):
    """The transfer was cancelled (another blob failed, or the caller was interrupted)."""


def store_blob(store: Store, repository_name: str, tree: Tree, blob: BlobSource, *, part_size: int,
               cancel: threading.Event, on_bytes: Callable[[int], None]) -> bool:
    """Upload ``blob`` as a layer of the repository and complete it with its claimed digest.

    Parts are ``part_size`` bytes (the last one shorter). Answers True when stored, False when
    the repository already had it (a concurrent import completed it first). Raises
    BlobMismatchError when the bytes do not match the digest, SourceError when the source
    file is not as the plan found it, Cancelled when ``cancel`` is set between parts, and the
    store's EcrError otherwise. A cancelled or failed upload is left to expire (the store
    reclaims it after its upload TTL; there is no call to abandon an upload).
    """
    upload_id = store.initiate_layer_upload(repository_name).upload_id
    if blob.data is not None:
        label = blob.name
        _parts(store, repository_name, upload_id, blob.data, part_size, cancel, on_bytes)
    else:
        with tree.open(blob.name) as ext:
            label = ext.label
            if ext.size != blob.size:
                raise SourceError(f"{ext.label} is {ext.size} bytes; the source said {blob.size}")
            _parts(store, repository_name, upload_id, ext, part_size, cancel, on_bytes)
    try:
        store.complete_layer_upload(repository_name, upload_id, [blob.digest])
    except InvalidLayerException as e:
        raise BlobMismatchError(
            f"{label} does not match its digest {blob.digest}: the file is damaged or was altered",
            name=label, digest=blob.digest,
        ) from e
    except LayerAlreadyExistsException:
        return False
    return True


def _parts(store: Store, repository_name: str, upload_id: str, source: bytes | Extent,
           part_size: int, cancel: threading.Event, on_bytes: Callable[[int], None]) -> None:
    size = len(source) if isinstance(source, bytes) else source.size
    pos = 0
    while pos < size:
        if cancel.is_set():
            raise Cancelled("cancelled")
        n = min(part_size, size - pos)
        if isinstance(source, bytes):
            part: bytes | FileRange = source[pos:pos + n]
        else:
            part = FileRange(source.fd, source.offset + pos, n)
        store.upload_layer_part(repository_name, upload_id, pos, pos + n - 1, part)
        pos += n
        on_bytes(n)
