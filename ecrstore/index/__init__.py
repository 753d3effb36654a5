"""Index backends: the metadata seam. :mod:`.base` says what a backend must do; :mod:`.lmdb` is
the embedded default."""

from .base import Index, IndexCounts, ReadTxn, WriteTxn
from .records import BlobRecord, ImageRecord, LinkRecord, RepoRecord, UploadRecord

__all__ = [
    "BlobRecord", "ImageRecord", "Index", "IndexCounts", "LinkRecord", "ReadTxn", "RepoRecord",
    "UploadRecord", "WriteTxn",
]
