"""GetAuthorizationToken: the JSON API's half of ECR's docker login (the other half, checking
the password on ``/v2/``, is :mod:`..oci`; both use :mod:`..auth.registry_tokens`)."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from ... import validate as v
from ...errors import AccessDeniedException, invalid_parameter
from ...models import AuthorizationData, GetAuthorizationTokenResult
from ..auth.credentials import Credential
from ..auth.registry_tokens import USER, RegistryTokens

__all__ = ["Logins"]

#: The service model's bounds on registryIds.
_MAX_REGISTRY_IDS = 10


class Logins:
    """Answers GetAuthorizationToken with passwords from ``tokens`` (None: the server runs
    without authentication, so any password will do and an unsigned one is handed out).
    ``default_registry`` is the registry of callers that name none and sign with no key."""

    def __init__(self, tokens: RegistryTokens | None, default_registry: str) -> None:
        self._tokens = tokens
        self._default = default_registry
        self._anonymous = RegistryTokens({})

    def get_authorization_token(self, *, credential: Credential | None, proxy_endpoint: str,
                                registry_id: str | None = None,
                                registry_ids: Sequence[str] | None = None) -> GetAuthorizationTokenResult:
        """One login per requested registry (default: the caller's own), each valid 12 hours.
        A key reaches only its own registry: asking for another is AccessDenied. Errors:
        InvalidParameter (a malformed or over-long ``registryIds``)."""
        wanted = [registry_id or (credential.registry_id if credential else self._default)]
        if registry_ids is not None:
            if not 1 <= len(registry_ids) <= _MAX_REGISTRY_IDS:
                raise invalid_parameter("registryIds", f"Member must have length between 1 and {_MAX_REGISTRY_IDS}")
            wanted = [v.registry_id(r, self._default, "registryIds") for r in registry_ids]
        data = []
        for registry in dict.fromkeys(wanted):
            if credential is not None and registry != credential.registry_id:
                raise AccessDeniedException(
                    f"User: arn:aws:iam::{credential.registry_id}:user/{credential.access_key_id} is not "
                    f"authorized to perform: ecr:GetAuthorizationToken on registry {registry}"
                )
            if credential is not None and self._tokens is not None:
                password, expires = self._tokens.issue(credential)
            else:
                password, expires = self._anonymous.issue(Credential("anonymous", "", registry))
            token = base64.b64encode(f"{USER}:{password}".encode()).decode("ascii")
            data.append(AuthorizationData(token, expires, proxy_endpoint))
        return GetAuthorizationTokenResult(tuple(data))
