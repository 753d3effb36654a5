"""Which registry a ``/v2/`` request addresses, and whether its token's principal may act there.

ECR addresses a registry by host name (``<account>.dkr.ecr.<region>.amazonaws.com``): a
request whose ``Host`` is ``<12-digit registry id>.<anything>`` addresses that registry, any
other host the token's own registry. On another registry, a token's principal
(``arn:aws:iam::<account>:user/<access key id>``, as the JSON API names it) may do what that
repository's policy allows (:meth:`ecrstore.policies.Policies.authorize`), each endpoint
standing for the ECR action it performs (:func:`ecr_action`); in its own registry, all but
what a repository policy explicitly denies it. Refusals are 403 DENIED.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import OciError
from .routes import Endpoint

__all__ = ["addressed_registry", "authorize", "ecr_action"]

_HOST = re.compile(r"([0-9]{12})\.[^/]+")

#: (endpoint kind, method) -> the ECR action it performs.
_ACTIONS = {
    ("manifest", "GET"): "ecr:BatchGetImage", ("manifest", "HEAD"): "ecr:BatchGetImage",
    ("manifest", "PUT"): "ecr:PutImage", ("manifest", "DELETE"): "ecr:BatchDeleteImage",
    ("blob", "GET"): "ecr:GetDownloadUrlForLayer", ("blob", "HEAD"): "ecr:BatchCheckLayerAvailability",
    ("uploads", "POST"): "ecr:InitiateLayerUpload", ("upload", "GET"): "ecr:UploadLayerPart",
    ("upload", "PATCH"): "ecr:UploadLayerPart", ("upload", "DELETE"): "ecr:UploadLayerPart",
    ("upload", "PUT"): "ecr:CompleteLayerUpload", ("tags", "GET"): "ecr:ListImages",
    ("referrers", "GET"): "ecr:DescribeImages", ("catalog", "GET"): "ecr:DescribeRepositories",
}


def addressed_registry(host: str | None) -> str | None:
    """The registry id a ``Host`` header names (``111111111111.localhost:5000``), or None."""
    m = _HOST.fullmatch(host.strip()) if host else None
    return m.group(1) if m else None


def ecr_action(endpoint: Endpoint, method: str) -> str | None:
    """The ECR action a request performs; None for one ECR has no action for (a layer DELETE)."""
    return _ACTIONS.get((endpoint.kind, method))


def authorize(policies: Any, endpoint: Endpoint, method: str, host: str | None, own: str, access_key_id: str) -> str:
    """The registry the request acts in, or OciError 403 DENIED. Reads the index once (call
    it in the worker's pool); the base endpoint (``/v2/``) is answered in every registry."""
    wanted = addressed_registry(host) or own
    if endpoint.kind == "base" or policies is None:
        return wanted if policies is not None else own
    user = f"arn:aws:iam::{own}:user/{access_key_id}"
    action = ecr_action(endpoint, method)
    if action is None:
        access = "Allow" if wanted == own else "ImplicitDeny"
    else:
        access = policies.authorize(wanted, endpoint.name or None, action, principal_account=own, principal_arn=user)
    if access == "Allow":
        return wanted
    why = ("with an explicit deny in a resource-based policy" if access == "ExplicitDeny"
           else f"because no resource-based policy allows the {action or method} action")
    raise OciError(403, "DENIED", f"User: {user} is not authorized to perform: {action or method} on repository "
                   f"{endpoint.name or '*'} of registry {wanted} {why}")
