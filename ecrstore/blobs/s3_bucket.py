"""S3 requests for the S3 blob backend: one bucket and prefix, one botocore client per process.

:class:`Bucket` is the only place that calls botocore; :mod:`ecrstore.blobs.s3` lays layers and
uploads out on top of it. Every method raises OSError for a failed request (the engine reports
it as ServerException) except where it says it answers None for a missing object.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import InvalidParameterException, ServerException

__all__ = ["Bucket", "S3Location", "UploadState", "parse_s3_url", "translated"]

_STATE_MAGIC = b"ecrstore-s3-upload/1\n"
_STATE_PROBE = 64 << 10  # a state's first GET: the header of any upload up to ~1,000 parts
_MISSING = ("404", "NoSuchKey", "NotFound", "NoSuchUpload")
#: Objects per DeleteObjects request (S3's limit).
_DELETE_BATCH = 1000

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"


def parse_s3_url(url: str) -> S3Location:
    """``s3://bucket[/prefix]`` → its location (InvalidParameter for anything else)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise InvalidParameterException(f"not an S3 location (s3://bucket/prefix): {url!r}")
    prefix = parts.path.strip("/")
    return S3Location(parts.netloc, f"{prefix}/" if prefix else "")


def _missing(e: ClientError) -> bool:
    err = e.response.get("Error", {})
    return str(err.get("Code")) in _MISSING or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404


def _failure(e: ClientError | BotoCoreError) -> OSError:
    return OSError(f"S3 {e.operation_name}: {e}" if isinstance(e, ClientError) else f"S3: {e}")


def translated(fn: F) -> F:
    """Translate S3 failures into OSError, which the engine reports as ServerException."""
    def wrapped(*args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except (ClientError, BotoCoreError) as e:
            raise _failure(e) from e
    wrapped.__name__ = fn.__name__
    wrapped.__qualname__ = fn.__qualname__
    wrapped.__doc__ = fn.__doc__
    return cast(F, wrapped)


class _ViewBody(io.RawIOBase):
    """A seekable file over a buffer, so botocore streams a part from it without a copy of
    the whole part (it reads, signs and sends it in chunks, and seeks back to retry)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._view.nbytes - self._pos)
        b[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._view.nbytes}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def __len__(self) -> int:
        return self._view.nbytes


@dataclass
class UploadState:
    """What an upload holds in S3: its parts and its tail, ``[tail_start, tail_start +
    tail_len)``, whose bytes the state object holds from offset ``tail_object[2]`` (it may
    hold more: ``tail_object`` is (start, length, offset) of what it holds)."""

    s3_id: str
    parts: list[tuple[int, int, str]] = field(default_factory=list)  # (number, size, etag)
    tail_start: int = 0
    tail_len: int = 0
    tail_object: tuple[int, int, int] | None = None
    completed: bool = False
    #: The bytes ``tail_object`` describes, when they came with the state's first GET (a
    #: small state does) or were written from here: no second GET for them.
    held: bytes | None = None

    @property
    def end(self) -> int:
        return self.tail_start + self.tail_len


class Bucket:
    """Requests on ``s3://bucket/prefix``; thread-safe, and safe across ``fork`` (a child
    makes its own client). ``endpoint_url`` None: botocore's usual sources decide."""

    def __init__(self, location: S3Location, *, endpoint_url: str | None = None, max_connections: int = 32) -> None:
        self.location = location
        self.name = location.bucket
        self._endpoint = endpoint_url
        self._config = Config(
            s3={"addressing_style": "path"}, signature_version="s3v4", retries={"max_attempts": 4, "mode": "standard"},
            max_pool_connections=max_connections, connect_timeout=10, read_timeout=120,
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        self._client_obj: Any = None
        self._client_pid = -1
        self._client_lock = threading.Lock()
        try:
            self.client.head_bucket(Bucket=self.name)
        except ClientError as e:
            raise ServerException(f"the S3 bucket {self.name!r} is not usable: {e}") from e
        except BotoCoreError as e:
            raise ServerException(f"cannot reach the S3 service: {e}") from e

    @property
    def client(self) -> Any:
        if self._client_obj is None or self._client_pid != os.getpid():
            with self._client_lock:
                if self._client_obj is None or self._client_pid != os.getpid():
                    session = botocore.session.get_session()
                    self._client_obj = session.create_client("s3", endpoint_url=self._endpoint, config=self._config)
                    self._client_pid = os.getpid()
        return self._client_obj

    def key(self, *parts: str) -> str:
        return self.location.prefix + "/".join(parts)

    # --- objects -------------------------------------------------------------------------

    @translated
    def put(self, key: str, body: bytes = b"") -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    @translated
    def size_of(self, key: str) -> int | None:
        """The object's size, or None when there is none."""
        try:
            return int(self.client.head_object(Bucket=self.name, Key=key)["ContentLength"])
        except ClientError as e:
            if _missing(e):
                return None
            raise

    def read_range(self, key: str, start: int, end: int, chunk: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of an object, streamed in pieces of about ``chunk`` bytes."""
        try:
            body = self.client.get_object(Bucket=self.name, Key=key, Range=f"bytes={start}-{end - 1}")["Body"]
            try:
                yield from body.iter_chunks(chunk)
            finally:
                body.close()
        except (ClientError, BotoCoreError) as e:
            raise _failure(e) from e

    @translated
    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), _DELETE_BATCH):
            self.client.delete_objects(Bucket=self.name, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + _DELETE_BATCH]], "Quiet": True})

    def listing(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix`` in key order (Key, Size, LastModified), page by page."""
        yield from self._paged("list_objects_v2", "Contents", Prefix=prefix)

    def presigned_get(self, key: str, expires_in: float) -> str:
        """A URL any HTTP client can GET the object from until it expires (signed locally)."""
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.name, "Key": key}, ExpiresIn=max(1, int(expires_in))))

    # --- multipart uploads ---------------------------------------------------------------

    @translated
    def create_multipart(self, key: str) -> str:
        return str(self.client.create_multipart_upload(Bucket=self.name, Key=key)["UploadId"])

    @translated
    def upload_part(self, key: str, s3_id: str, number: int, body: bytes | memoryview) -> str:
        """Send one part (streamed from the buffer, no copy); answer its ETag."""
        return self._upload_part(key, s3_id, number, body)

    def _upload_part(self, key: str, s3_id: str, number: int, body: bytes | memoryview) -> str:
        r = self.client.upload_part(Bucket=self.name, Key=key, UploadId=s3_id, PartNumber=number,
                                    ContentLength=len(body), Body=_ViewBody(memoryview(body)))
        return str(r["ETag"])

    @translated
    def complete_multipart(self, key: str, st: UploadState, tail: bytes = b"") -> None:
        """Complete ``st``'s multipart upload into ``key`` with exactly its listed parts, after
        sending ``tail`` (its pending tail bytes) as the last one (``st`` then lists it). Done
        already (by an attempt cut short after S3 completed it, or by another node) counts as
        done: the multipart upload is gone and ``key`` holds ``st.end`` bytes."""
        try:
            if tail:
                number = len(st.parts) + 1
                st.parts.append((number, len(tail), self._upload_part(key, st.s3_id, number, tail)))
                st.tail_start, st.tail_len = st.tail_start + len(tail), 0
            if not st.parts:  # an empty layer: S3 wants at least one part
                self.client.put_object(Bucket=self.name, Key=key, Body=b"")
                self.client.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=st.s3_id)
                return
            self.client.complete_multipart_upload(
                Bucket=self.name, Key=key, UploadId=st.s3_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, _, e in st.parts]},
            )
        except ClientError as e:
            if _missing(e) and self.size_of(key) == st.end:
                return
            raise

    @translated
    def abort_multipart(self, key: str, s3_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=s3_id)
        except ClientError as e:
            if not _missing(e):
                raise

    def multipart_uploads(self, prefix: str) -> Iterator[tuple[str, str, float]]:
        """Multipart uploads in progress under ``prefix``: (key, upload id, initiated at)."""
        for u in self._paged("list_multipart_uploads", "Uploads", Prefix=prefix):
            yield u["Key"], u["UploadId"], u["Initiated"].timestamp()

    def _paged(self, operation: str, items: str, **params: Any) -> Iterator[dict[str, Any]]:
        try:
            for page in self.client.get_paginator(operation).paginate(Bucket=self.name, **params):
                yield from page.get(items, ())
        except (ClientError, BotoCoreError) as e:
            raise _failure(e) from e

    # --- upload state objects ------------------------------------------------------------

    @translated
    def put_state(self, key: str, s3_id: str, parts: list[tuple[int, int, str]], tail_start: int, tail: bytes) -> int:
        """Write an upload's state object; answer where its tail bytes start in it."""
        header = json.dumps({"s3": s3_id, "parts": parts, "tail": tail_start}, separators=(",", ":")).encode()
        head = _STATE_MAGIC + len(header).to_bytes(8, "big") + header
        self.client.put_object(Bucket=self.name, Key=key, Body=head + tail)
        return len(head)

    @translated
    def get_state(self, key: str) -> UploadState | None:
        """An upload's state object as written (every part listed, its whole tail), or None."""
        try:
            r = self.client.get_object(Bucket=self.name, Key=key, Range=f"bytes=0-{_STATE_PROBE - 1}")
        except ClientError as e:
            if _missing(e):
                return None
            raise
        total = int(r["ContentRange"].rsplit("/", 1)[1]) if r.get("ContentRange") else int(r["ContentLength"])
        head = r["Body"].read()
        magic = len(_STATE_MAGIC)
        if head[:magic] != _STATE_MAGIC or len(head) < magic + 8:
            raise OSError(f"{key}: not an upload state ecrstore wrote")
        size = int.from_bytes(head[magic:magic + 8], "big")
        offset = magic + 8 + size
        if len(head) < offset:
            head = self.client.get_object(Bucket=self.name, Key=key, Range=f"bytes=0-{offset - 1}")["Body"].read()
        doc = json.loads(head[magic + 8:offset])
        parts = [(int(n), int(z), str(e)) for n, z, e in doc["parts"]]
        held = bytes(head[offset:total]) if len(head) >= total else None
        return UploadState(str(doc["s3"]), parts, int(doc["tail"]), 0, (int(doc["tail"]), total - offset, offset),
                           held=held)

    @translated
    def get_tail(self, key: str, offset: int, length: int) -> bytes:
        data = self.client.get_object(Bucket=self.name, Key=key,
                                      Range=f"bytes={offset}-{offset + length - 1}")["Body"].read()
        if len(data) != length:
            raise OSError(f"{key}: holds {len(data)} tail bytes, {length} expected")
        return bytes(data)
