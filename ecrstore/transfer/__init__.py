"""Batch import and export of container images.

:func:`import_image` stores the images of a ``docker save`` tarball (legacy or current
layout, plain or compressed), an OCI image layout directory or an OCI archive in a repository
of a :class:`~ecrstore.Store`; :func:`export_image` writes an image of the store as an OCI
layout, an OCI archive or a ``docker load``-able tarball. Importing an export reproduces the
same manifests and blobs.

Failures of the source or destination are :class:`TransferError` s; the store's own are
:class:`ecrstore.errors.EcrError` s.
"""

from .errors import BlobMismatchError, DestinationError, SourceError, TransferError, TransferUsageError
from .exporter import ExportReport, export_image
from .importer import ImportedImage, ImportReport, import_image
from .progress import ProgressEvent

__all__ = [
    "BlobMismatchError",
    "DestinationError",
    "ExportReport",
    "ImportReport",
    "ImportedImage",
    "ProgressEvent",
    "SourceError",
    "TransferError",
    "TransferUsageError",
    "export_image",
    "import_image",
]
