"""AWS Signature Version 4 verification for the JSON endpoint.

Verification is split in two so that everything the headers alone decide is refused before a
byte of the body is read:

1. :meth:`SigV4Verifier.check_headers` parses ``Authorization`` and ``X-Amz-Date``, finds the
   access key, checks the clock skew and the credential scope (date, the server's region,
   service), and that the signature covers what selects and authorises the operation:
   ``host``, ``x-amz-date``, ``x-amz-target`` and, when sent, ``x-amz-security-token`` — so
   a captured request cannot be replayed as another operation by swapping an unsigned header.
   It raises MissingAuthenticationTokenException, IncompleteSignatureException,
   UnrecognizedClientException
2. :meth:`SigV4Verifier.verify` recomputes the signature once the body's sha256 is known and
   compares it in constant time (InvalidSignatureException on mismatch).

The signature is recomputed with botocore's own signer (:class:`botocore.auth.SigV4Auth`) over
an :class:`botocore.awsrequest.AWSRequest` rebuilt from the received method, path, query and
signed headers, so canonicalisation is exactly the client's. Only two choices are ours: the
headers signed are the ones the client listed in ``SignedHeaders`` (not botocore's selection
rule), and the payload hash is the one computed while the body was buffered, or the value of a
signed ``x-amz-content-sha256`` header, which must then match the body.

Both calls are pure and thread-safe; :meth:`verify` is meant to run off the event loop.
"""

from __future__ import annotations

import calendar
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from ...errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from .credentials import Credential

__all__ = ["ALGORITHM", "MAX_CLOCK_SKEW", "REQUIRED_SIGNED_HEADERS", "PendingAuth", "SigV4Verifier",
           "parse_authorization"]

ALGORITHM = "AWS4-HMAC-SHA256"
#: AWS refuses signatures dated more than 15 minutes away from its clock.
MAX_CLOCK_SKEW = 15 * 60
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: Headers every signature must cover (``x-amz-security-token`` too, whenever it is sent).
REQUIRED_SIGNED_HEADERS = ("host", "x-amz-date", "x-amz-target")
_HEADER_NAMES = {"host": "Host", "x-amz-date": "X-Amz-Date", "x-amz-target": "X-Amz-Target",
                 "x-amz-security-token": "X-Amz-Security-Token"}
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")

_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_BAD_TOKEN = "The security token included in the request is invalid."


@dataclass(frozen=True, slots=True)
class AuthorizationHeader:
    """The parts of an ``AWS4-HMAC-SHA256`` Authorization header."""

    access_key_id: str
    scope_date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


@dataclass(frozen=True, slots=True)
class PendingAuth:
    """A request whose headers passed; the signature is still to be checked against the body."""

    header: AuthorizationHeader
    credential: Credential
    amz_date: str


def parse_authorization(value: str) -> AuthorizationHeader:
    """Parse an Authorization header value; IncompleteSignatureException when malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignatureException(f"Unsupported AWS 'algorithm': '{algorithm}'. Authorization={value}")
    params: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, val = item.strip().partition("=")
        if sep and name:
            params[name] = val.strip()
    missing = [p for p in ("Credential", "Signature", "SignedHeaders") if not params.get(p)]
    if missing:
        raise IncompleteSignatureException(
            " ".join(f"Authorization header requires '{p}' parameter." for p in missing)
            + f" Authorization={value}"
        )
    scope = params["Credential"].split("/")
    if len(scope) != 5 or not all(scope):
        raise IncompleteSignatureException(
            f"Credential should be of the form '<access key>/<date>/<region>/<service>/aws4_request'; "
            f"got '{params['Credential']}'. Authorization={value}"
        )
    signed = tuple(h.strip().lower() for h in params["SignedHeaders"].split(";"))
    if any(not h for h in signed):
        raise IncompleteSignatureException(
            f"Authorization header has an empty 'SignedHeaders' entry. Authorization={value}")
    key_id, scope_date, region, service, terminator = scope
    return AuthorizationHeader(key_id, scope_date, region, service, terminator, signed, params["Signature"])


def _format_amz_date(epoch: float) -> str:
    return time.strftime(_AMZ_DATE_FORMAT, time.gmtime(epoch))


class _RequestSigner(SigV4Auth):
    """botocore's SigV4 signer, told which headers were signed and what the payload hash is."""

    def __init__(self, credentials: Credentials, service: str, region: str,
                 signed_headers: tuple[str, ...], payload_hash: str) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed_headers
        self._payload_hash = payload_hash

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        # botocore would pick headers by its own rule (and drop some it never signs); the
        # verifier must use exactly the list the client signed.
        selected = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or ():
                selected[name] = value
        return selected

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


class _Source(Protocol):
    def current(self) -> Mapping[str, Credential]: ...


class _Fixed:
    def __init__(self, credentials: Mapping[str, Credential]) -> None:
        self._credentials = dict(credentials)

    def current(self) -> Mapping[str, Credential]:
        return self._credentials


class SigV4Verifier:
    """Verifies SigV4-signed requests against a set of credentials.

    ``credentials`` maps access key id -> Credential, or is a source whose ``current()`` does
    (a :class:`.credentials.CredentialsSource` follows its file). ``region`` is the one region
    a credential scope may name (this server's); ``service`` the signing name ("ecr").
    ``clock`` returns epoch seconds (tests pass a fake).
    """

    def __init__(self, credentials: Mapping[str, Credential] | _Source, *, region: str = "us-east-1",
                 service: str = "ecr", max_skew: float = MAX_CLOCK_SKEW,
                 clock: Callable[[], float] = time.time) -> None:
        self._source: _Source = _Fixed(credentials) if isinstance(credentials, Mapping) else credentials
        self._region = region
        self._service = service
        self._max_skew = max_skew
        self._clock = clock

    def check_headers(self, headers: Mapping[str, str]) -> PendingAuth:
        """Everything the headers decide. ``headers`` maps lower-case names to values.

        Raises MissingAuthenticationTokenException (unsigned), IncompleteSignatureException
        (malformed Authorization or date), UnrecognizedClientException (unknown key) or
        InvalidSignatureException (clock skew, wrong scope).
        """
        value = headers.get("authorization")
        if not value:
            raise MissingAuthenticationTokenException("Missing Authentication Token")
        header = parse_authorization(value)
        amz_date = headers.get("x-amz-date")
        if not amz_date:
            raise IncompleteSignatureException(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
                f"Authorization={value}"
            )
        amz_date = amz_date.strip()
        try:
            if not _AMZ_DATE_RE.fullmatch(amz_date):
                raise ValueError(amz_date)
            signed_at = calendar.timegm(time.strptime(amz_date, _AMZ_DATE_FORMAT))
        except ValueError:
            raise IncompleteSignatureException(
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
            ) from None
        required = REQUIRED_SIGNED_HEADERS + (("x-amz-security-token",) if "x-amz-security-token" in headers else ())
        for name in required:
            if name not in header.signed_headers:
                raise IncompleteSignatureException(
                    f"'{_HEADER_NAMES[name]}' must be a 'SignedHeader' in the AWS Authorization. Authorization={value}"
                )
        credential = self._source.current().get(header.access_key_id)
        if credential is None:
            raise UnrecognizedClientException(_BAD_TOKEN)
        now = self._clock()
        if signed_at < now - self._max_skew:
            raise InvalidSignatureException(
                f"Signature expired: {amz_date} is now earlier than "
                f"{_format_amz_date(now - self._max_skew)} ({_format_amz_date(now)} - 15 min.)"
            )
        if signed_at > now + self._max_skew:
            raise InvalidSignatureException(
                f"Signature not yet current: {amz_date} is still later than "
                f"{_format_amz_date(now + self._max_skew)} ({_format_amz_date(now)} + 15 min.)"
            )
        if header.scope_date != amz_date[:8]:
            raise InvalidSignatureException(
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                f"from HTTP: '{header.scope_date}' != '{amz_date[:8]}', from '{amz_date}'."
            )
        if header.region != self._region:
            raise InvalidSignatureException(
                f"Credential should be scoped to a valid region, not '{header.region}'. "
            )
        if header.service != self._service:
            raise InvalidSignatureException(f"Credential should be scoped to correct service: '{self._service}'. ")
        if header.terminator != "aws4_request":
            raise InvalidSignatureException(
                f"Credential should be scoped with a valid terminator: 'aws4_request', not '{header.terminator}'. "
            )
        return PendingAuth(header, credential, amz_date)

    def verify(self, pending: PendingAuth, method: str, raw_path: str, query: str,
               headers: Iterable[tuple[str, str]], body_sha256: str) -> Credential:
        """Recompute the signature for the buffered request; the Credential when it matches.

        ``headers`` are all received (name, value) pairs with lower-case names, repeated names
        kept; ``body_sha256`` is the hex sha256 of the body. Raises InvalidSignatureException.
        """
        header = pending.header
        wanted = set(header.signed_headers)
        request_headers = HTTPHeaders()
        present = set()
        for name, value in headers:
            if name in wanted:
                request_headers[name] = value
                present.add(name)
        if present != wanted:
            raise InvalidSignatureException(_BAD_SIGNATURE)
        payload_hash = body_sha256
        claimed = request_headers.get("x-amz-content-sha256")
        if claimed is not None:
            claimed = claimed.strip()
            if claimed != UNSIGNED_PAYLOAD and claimed.lower() != body_sha256:
                raise InvalidSignatureException(
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                )
        host = request_headers.get("host", "localhost")
        url = f"http://{host}{raw_path or '/'}" + (f"?{query}" if query else "")
        # HTTPHeaders is the mapping botocore signs with (its stubs ask for a plain Mapping).
        request = AWSRequest(method=method, url=url, headers=request_headers)  # type: ignore[arg-type]
        request.context["timestamp"] = pending.amz_date
        credential = pending.credential
        signer = _RequestSigner(
            Credentials(credential.access_key_id, credential.secret_access_key),
            header.service, header.region, header.signed_headers, payload_hash,
        )
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected.encode(), header.signature.encode("utf-8", "replace")):
            raise InvalidSignatureException(_BAD_SIGNATURE)
        return credential
