"""Import path of the credentials-file errors used by ``ecrstore serve``; the module itself
is :mod:`ecrstore.server.auth.credentials`, also exported by :mod:`ecrstore.server`."""

from .auth.credentials import CredentialsFileError

__all__ = ["CredentialsFileError"]
