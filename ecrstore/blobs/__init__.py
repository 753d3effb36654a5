"""Blob backends: the layer-bytes seam. :mod:`.base` says what a backend must do; :mod:`.local`
is the embedded default (a content-addressed file tree)."""

from .base import BlobReader, BlobStore, Retired, StoredFile, UploadData

__all__ = ["BlobReader", "BlobStore", "Retired", "StoredFile", "UploadData"]
