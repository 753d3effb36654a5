"""The exception hierarchy: one class per ECR (or AWS protocol) error code.

Every public call of ecrstore raises only these. Each class declares the exact code string it
stands for (``code``) and the modeled extra fields ECR sends with it (``fields``: python
attribute -> wire member). The map from code to class, :data:`BY_CODE`, is built from the
classes, so the two cannot disagree. How an error travels over a protocol is each front end's
business, not the engine's.

This module imports nothing from ecrstore: the native core and every layer above raise from it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class EcrError(Exception):
    """Base of every ecrstore error.

    ``code`` is the exact ECR error code (``"LayerAlreadyExistsException"``), ``message`` the
    human text; the class's ``fields`` name the extra members ECR returns with it, each set as
    an attribute (``None`` when absent).
    """

    code: ClassVar[str] = "ServerException"
    fields: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str = "", **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        unknown = set(extra) - set(self.fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        for attr in self.fields:
            setattr(self, attr, extra.get(attr))

    def extra(self) -> dict[str, Any]:
        """The modeled extra fields that are set, as python attribute -> value."""
        return {a: getattr(self, a) for a in self.fields if getattr(self, a) is not None}

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with its fields: errors cross process pools
        return (_rebuild, (self.code, self.message, self.extra()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


_UPLOAD_FIELDS = {
    "registry_id": "registryId",
    "repository_name": "repositoryName",
    "upload_id": "uploadId",
}

def storage_failure(error: OSError) -> ServerException:
    """The ServerException a failure of the storage medium (disk full, I/O error) becomes."""
    return ServerException(f"storage failure: {error.strerror or error}")


class ServerException(EcrError):
    """An internal failure; the call may be retried."""

    code = "ServerException"


class InvalidParameterException(EcrError):
    """A request member violates the service model's constraints."""

    code = "InvalidParameterException"


class InvalidTagParameterException(EcrError):
    """A repository tag key or value is invalid."""

    code = "InvalidTagParameterException"


class TooManyTagsException(EcrError):
    """More than 50 tags on a repository."""

    code = "TooManyTagsException"


class LimitExceededException(EcrError):
    """A service quota would be exceeded."""

    code = "LimitExceededException"


class KmsException(EcrError):
    """The repository's encryption key cannot be used."""

    code = "KmsException"
    fields = {"kms_error": "kmsError"}


class RepositoryAlreadyExistsException(EcrError):
    """The repository name is taken in this registry."""

    code = "RepositoryAlreadyExistsException"


class RepositoryNotFoundException(EcrError):
    """No such repository in this registry."""

    code = "RepositoryNotFoundException"


class RepositoryNotEmptyException(EcrError):
    """The repository still holds images and force was not given."""

    code = "RepositoryNotEmptyException"


class UploadNotFoundException(EcrError):
    """Unknown, finished, expired, or another repository's upload."""

    code = "UploadNotFoundException"


class InvalidLayerPartException(EcrError):
    """A part is not contiguous with what the upload holds, or its size does not match its range."""

    code = "InvalidLayerPartException"
    fields = {**_UPLOAD_FIELDS, "last_valid_byte_received": "lastValidByteReceived"}


class EmptyUploadException(EcrError):
    """CompleteLayerUpload on an upload without parts."""

    code = "EmptyUploadException"


class LayerPartTooSmallException(EcrError):
    """A part other than the last is below the minimum part size."""

    code = "LayerPartTooSmallException"


class InvalidLayerException(EcrError):
    """None of the given digests matches the uploaded bytes."""

    code = "InvalidLayerException"


class LayerAlreadyExistsException(EcrError):
    """The layer is already available in this repository."""

    code = "LayerAlreadyExistsException"


class LayersNotFoundException(EcrError):
    """A referenced layer is not in this repository."""

    code = "LayersNotFoundException"


class LayerInaccessibleException(EcrError):
    """The layer exists but no image in the repository references it."""

    code = "LayerInaccessibleException"


class ImageAlreadyExistsException(EcrError):
    """The manifest (and tag) are already stored."""

    code = "ImageAlreadyExistsException"


class ImageTagAlreadyExistsException(EcrError):
    """The tag exists and the repository's rules forbid moving it."""

    code = "ImageTagAlreadyExistsException"


class ImageDigestDoesNotMatchException(EcrError):
    """The given imageDigest is not the manifest's digest."""

    code = "ImageDigestDoesNotMatchException"


class ImageNotFoundException(EcrError):
    """No such image in the repository."""

    code = "ImageNotFoundException"


class ReferencedImagesNotFoundException(EcrError):
    """A manifest list references images the repository lacks."""

    code = "ReferencedImagesNotFoundException"

# --- AWS protocol errors, raised by the HTTP front end. ---


class SerializationException(EcrError):
    """The request body is not valid JSON of the expected shape."""

    code = "SerializationException"


class UnknownOperationException(EcrError):
    """The X-Amz-Target header names no operation."""

    code = "UnknownOperationException"


class AccessDeniedException(EcrError):
    """The credentials may not act on this registry."""

    code = "AccessDeniedException"


class MissingAuthenticationTokenException(EcrError):
    """The request is not signed."""

    code = "MissingAuthenticationTokenException"


class IncompleteSignatureException(EcrError):
    """The Authorization header is malformed or incomplete."""

    code = "IncompleteSignatureException"


class InvalidSignatureException(EcrError):
    """The signature does not match the request, or it has expired (clock skew beyond 15 minutes)."""

    code = "InvalidSignatureException"


class RequestTimeoutException(EcrError):
    """The request body did not arrive in time."""

    code = "RequestTimeoutException"


class ThrottlingException(EcrError):
    """The server is saturated for the moment; the call may be retried (SDKs do)."""

    code = "ThrottlingException"


class UnrecognizedClientException(EcrError):
    """The access key id is unknown."""

    code = "UnrecognizedClientException"


class RepositoryPolicyNotFoundException(EcrError):
    """The repository has no repository policy."""

    code = "RepositoryPolicyNotFoundException"


class RegistryPolicyNotFoundException(EcrError):
    """The registry has no registry policy."""

    code = "RegistryPolicyNotFoundException"


class LifecyclePolicyNotFoundException(EcrError):
    """The repository has no lifecycle policy."""

    code = "LifecyclePolicyNotFoundException"


class LifecyclePolicyPreviewNotFoundException(EcrError):
    """No lifecycle policy preview was started for the repository."""

    code = "LifecyclePolicyPreviewNotFoundException"


class LifecyclePolicyPreviewInProgressException(EcrError):
    """The repository's previous lifecycle policy preview has not completed."""

    code = "LifecyclePolicyPreviewInProgressException"


class PullThroughCacheRuleAlreadyExistsException(EcrError):
    """The registry has a pull-through cache rule of that prefix already."""

    code = "PullThroughCacheRuleAlreadyExistsException"


class PullThroughCacheRuleNotFoundException(EcrError):
    """The registry has no pull-through cache rule of that prefix."""

    code = "PullThroughCacheRuleNotFoundException"


class UnsupportedUpstreamRegistryException(EcrError):
    """The upstream registry URL is not one a pull-through cache rule can use."""

    code = "UnsupportedUpstreamRegistryException"


class SecretNotFoundException(EcrError):
    """No upstream secret of the server has the credentialArn."""

    code = "SecretNotFoundException"


class ScanNotFoundException(EcrError):
    """The image has never been scanned (or its scan was for an earlier push of it)."""

    code = "ScanNotFoundException"


class UnsupportedImageTypeException(EcrError):
    """The image is of a type that cannot be scanned (a manifest list, a non-image artifact)."""

    code = "UnsupportedImageTypeException"


class TemplateAlreadyExistsException(EcrError):
    """A repository creation template with that prefix exists."""

    code = "TemplateAlreadyExistsException"


class TemplateNotFoundException(EcrError):
    """No repository creation template has that prefix."""

    code = "TemplateNotFoundException"


#: code string -> class, built from the classes themselves.
BY_CODE: dict[str, type[EcrError]] = {cls.code: cls for cls in EcrError.__subclasses__()}


def from_code(code: str, message: str = "", **extra: Any) -> EcrError:
    """The error instance for a code; an unknown code becomes ServerException."""
    return BY_CODE.get(code, ServerException)(message, **extra)


def _rebuild(code: str, message: str, extra: dict[str, Any]) -> EcrError:
    return from_code(code, message, **extra)


def repository_not_found(registry_id: str, name: str) -> RepositoryNotFoundException:
    """RepositoryNotFoundException worded as the service words it."""
    return RepositoryNotFoundException(
        f"The repository with name '{name}' does not exist in the registry with id '{registry_id}'"
    )


def invalid_parameter(member: str, reason: str) -> InvalidParameterException:
    """InvalidParameterException worded as the service words model-constraint failures."""
    return InvalidParameterException(
        f"Invalid parameter at '{member}' failed to satisfy constraint: '{reason}'"
    )


class HashStateError(ServerException, ValueError):
    """A paused sha256 state is corrupt, of an unknown format version, or not a state at all.

    On the wire it is a ServerException; the store recovers from it by re-hashing the data.
    """
