"""Errors of image import and export.

The store's own failures stay :class:`ecrstore.errors.EcrError` (RepositoryNotFound,
ImageTagAlreadyExists, ...) and pass through unchanged. What goes wrong with the *source* or
the *destination* of a transfer is one of the classes below; each carries a message meant for
a person (it names the file, the member and the digest involved) and the command-line exit
code it stands for.
"""

from __future__ import annotations

__all__ = [
    "TransferError",
    "SourceError",
    "BlobMismatchError",
    "DestinationError",
    "TransferUsageError",
]


class TransferError(Exception):
    """Base of import and export failures. ``message`` is the text for a person."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SourceError(TransferError):
    """The source cannot be imported: missing, unreadable, not an image archive or layout,
    malformed, truncated, or unsafe (a member name or link that escapes the archive)."""


class BlobMismatchError(SourceError):
    """A blob's bytes do not match the digest the source claims for them (a tampered or
    damaged file). Nothing of the images that use it is imported."""

    def __init__(self, message: str, *, name: str, digest: str) -> None:
        super().__init__(message)
        self.name = name
        self.digest = digest


class DestinationError(TransferError):
    """An export cannot write its destination (exists and is not an image layout, not
    writable, disk full)."""


class TransferUsageError(TransferError):
    """The request itself is wrong: a malformed image reference, ``tag`` given for a source
    holding several images, an unknown format. Exit code 2, like other usage errors."""

    exit_code = 2
