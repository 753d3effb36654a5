"""The S3 blob backend: layer bytes in any S3-compatible object store, shared by many nodes.

This is the only module that talks to S3 (through botocore). Objects under ``s3://bucket/prefix``::

    uploads/<upload>           an upload's state: its S3 multipart upload id, its parts (number,
                               size, ETag) and the bytes after the last part (under 5 MiB)
    layers/<upload>            the layer: the multipart upload, completed in place at publish
    layers/<upload>.sha256-<hex>  marker: the digest the layer was published under
    trash/<upload>.<hex>       tombstone: the layer is being deleted by gc

An ECR part maps onto one S3 part when it starts on a part boundary and is at least 5 MiB
(S3's minimum, as ECR's). Smaller pieces (``/v2/`` chunks, a short last part) collect as the
state's tail, which joins the next piece as a part once 5 MiB are there, and becomes the last
part at completion. Each write puts the part (if any), then the state listing it: the state
names the ETag of each part, so a part number uploaded twice (an attempt that failed) is
never ambiguous, whatever the service keeps of the earlier copy. A write that fails before
the index acknowledges it leaves a part or a longer tail past the acknowledged length, which
the next writer, given that length, ignores; a state written after a new part keeps the tail
the part was made from, so the acknowledged bytes are always there. So any node can take the
next part: the sha256 midstate travels in the index, the rest in the state object.

Publishing completes the multipart upload where it was written and answers its placement
(the upload id): the index maps the digest to it, so completion costs the same for any layer
size (no copy). Deleting follows mark → delete → forget: a tombstone is written before the
index commit that forgets the blob, the object is deleted after it, then the tombstone; a
crash anywhere leaves a tombstone that :meth:`S3BlobStore.recover_retired` finishes.

One writer per upload across every node: ``lock`` (the index database's advisory locks)
excludes writers of other threads, processes and nodes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from .._sha256 import Sha256
from ..digest import SHA256, Digest
from ..errors import ServerException
from ..fsutil import mapped_range
from .base import StoredFile
from .s3_bucket import Bucket, S3Location, UploadState, parse_s3_url, translated

__all__ = ["S3BlobStore", "S3Location", "parse_s3_url"]

#: S3's smallest part other than the last (5 MiB, as ECR's).
S3_MIN_PART = 5 * 2**20
#: Streamed bodies (``/v2/`` chunks) are sent as parts of this size: memory per stream.
STREAM_PART = 8 * 2**20
_CHUNK = 1 << 20
_COMPLETED_KEPT = 4096  # uploads this process completed, remembered until discarded

#: Takes a lock named by its argument for every node (``wait=False``: answer False at once if
#: another holds it); what :meth:`ecrstore.index.postgres.PostgresIndex.lock` provides.
LockFactory = Callable[..., AbstractContextManager[bool]]


class S3UploadData:
    """An upload in progress, held by its one writer (see the module docstring)."""

    def __init__(self, store: S3BlobStore, upload: str, state: UploadState | None) -> None:
        self._bucket = store.bucket
        self._layer = store.layer_key(upload)
        self._state_obj = store.state_key(upload)
        self._upload = upload
        self._state = state  # None: the upload's data is gone (discarded)
        self._tail: bytes | None = None  # the tail bytes, once read or written here
        self._buf: list[bytes] = []  # appended, not yet sent
        self._buf_len = 0

    def _live(self) -> UploadState:
        if self._state is None:
            raise ServerException(f"the data of upload {self._upload} is gone")
        return self._state

    def size(self) -> int:
        return (self._state.end if self._state is not None else 0) + self._buf_len

    def truncate(self, size: int) -> None:
        st = self._live()
        if size >= st.end:  # only unsent appended bytes go
            data = b"".join(self._buf)[:size - st.end]
            self._buf, self._buf_len = ([data] if data else []), len(data)
            return
        self._buf, self._buf_len = [], 0
        if size >= st.tail_start:
            st.tail_len = size - st.tail_start
            if self._tail is not None:
                self._tail = self._tail[:st.tail_len]
            return
        # Back inside the parts: to a part boundary, or into the tail a later part was made
        # from (the state object still holds it).
        while st.parts and st.tail_start - st.parts[-1][1] >= size:
            st.tail_start -= st.parts.pop()[1]
        if st.tail_start == size:
            st.tail_len = 0
        else:
            start = st.tail_start - st.parts[-1][1]
            obj = st.tail_object
            if obj is None or obj[0] != start or obj[0] + obj[1] < size:
                raise ServerException(f"upload {self._upload}: cannot cut its S3 data back to {size} bytes")
            st.parts.pop()
            st.tail_start, st.tail_len = start, size - start
        self._tail = None

    def write(self, offset: int, data: memoryview) -> None:
        self._check_offset(offset)
        self._send(data, final=True)

    def copy_from(self, fd: int, src_offset: int, count: int, offset: int) -> None:
        self._check_offset(offset)
        if count:
            with mapped_range(fd, src_offset, count) as view:
                self._send(view, final=True)

    def append(self, offset: int, chunks: Sequence[bytes]) -> None:
        self._check_offset(offset)
        for c in chunks:
            if len(c):
                self._buf.append(bytes(c))
                self._buf_len += len(c)
        if self._live().tail_len + self._buf_len >= STREAM_PART:
            data, self._buf, self._buf_len = b"".join(self._buf), [], 0
            self._send(memoryview(data), final=False)

    def flush(self) -> None:
        if self._buf_len:
            data, self._buf, self._buf_len = b"".join(self._buf), [], 0
            self._send(memoryview(data), final=True)

    def hash_range(self, hasher: Sha256, start: int, end: int) -> Sha256:
        st = self._live()
        if start < st.tail_start or end > st.end:
            raise ServerException(
                f"upload {self._upload}: its S3 parts cannot be read back before completion, so its "
                "sha256 state must come from the index"
            )
        hasher.update(self._tail_bytes()[start - st.tail_start:end - st.tail_start])
        return hasher

    # --- internals ---------------------------------------------------------------------

    def _check_offset(self, offset: int) -> None:
        if offset != self.size():
            raise ServerException(f"upload {self._upload}: S3 data is appended only (at {self.size()}, not {offset})")

    def _tail_bytes(self) -> bytes:
        st = self._live()
        if self._tail is None:
            obj = st.tail_object
            if not st.tail_len or obj is None:
                self._tail = b""
            elif st.held is not None:
                self._tail = st.held[:st.tail_len]
            else:
                self._tail = self._bucket.get_tail(self._state_obj, obj[2], st.tail_len)
        return self._tail

    def _send(self, data: memoryview, *, final: bool) -> None:
        """Durably add ``data`` after the current end: as a part when the tail and ``data``
        make at least 5 MiB (or ``final`` is False: a streamed part), else into the tail."""
        st = self._live()
        n = data.nbytes
        if n == 0:
            return
        tail = self._tail_bytes()
        if len(tail) + n >= S3_MIN_PART or not final:
            number = len(st.parts) + 1
            etag = self._bucket.upload_part(self._layer, st.s3_id, number,
                                                 data if not tail else tail + data)
            parts = [*st.parts, (number, len(tail) + n, etag)]
            # The state keeps the tail the part was made from: until the index acknowledges
            # the part, those are the bytes after the last acknowledged part.
            offset = self._bucket.put_state(self._state_obj, st.s3_id, parts, st.tail_start, tail)
            st.tail_object, st.held = (st.tail_start, len(tail), offset), tail
            st.parts = parts
            st.tail_start += len(tail) + n
            st.tail_len = 0
            self._tail = b""
        else:
            tail = tail + data
            offset = self._bucket.put_state(self._state_obj, st.s3_id, st.parts,
                                                  st.tail_start, tail)
            st.tail_object, st.held = (st.tail_start, len(tail), offset), tail
            st.tail_len = len(tail)
            self._tail = tail

    def _complete(self) -> None:
        st = self._live()
        self.flush()
        if st.completed:
            return
        self._bucket.complete_multipart(self._layer, st, self._tail_bytes() if st.tail_len else b"")
        self._tail = None  # what remains pending, if anything, is read again
        st.completed = True


class S3BlobReader:
    """Read access to one layer object (ranged GETs). Not for sharing between threads."""

    def __init__(self, store: S3BlobStore, key: str, digest: str, size: int) -> None:
        self._store = store
        self._key = key
        self.digest = digest
        self.size = size
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = self.size if n < 0 else min(self.size, self._pos + n)
        if end <= self._pos:
            return b""
        data = b"".join(self.iter_chunks(_CHUNK, self._pos, end - self._pos))
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def view(self) -> memoryview | None:
        return None

    def hash(self) -> Sha256:
        h = Sha256()
        for chunk in self.iter_chunks(4 * _CHUNK):
            h.update(chunk)
        return h

    def iter_chunks(self, size: int = _CHUNK, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        end = self.size if length is None else min(self.size, offset + length)
        if end <= offset:
            return
        got = 0
        try:
            for chunk in self._store.bucket.read_range(self._key, offset, end, size):
                got += len(chunk)
                yield chunk
        except OSError as e:
            raise ServerException(f"reading the stored blob {self.digest} failed: {e}") from e
        if got != end - offset:
            raise ServerException(f"the stored blob {self.digest} is damaged: {got} bytes where {end - offset} "
                                  "were asked for")

    def close(self) -> None:
        pass

    def __enter__(self) -> S3BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _RetiredObject:
    __slots__ = ("_store", "_placement", "_tombstone")

    def __init__(self, store: S3BlobStore, placement: str, tombstone: str) -> None:
        self._store, self._placement, self._tombstone = store, placement, tombstone

    def restore(self) -> None:
        self._store.bucket.delete([self._tombstone])

    def drop(self) -> None:
        self._store.delete_blob(self._placement)
        self._store.bucket.delete([self._tombstone])


class S3BlobStore:
    """Blobs and uploads as objects under ``s3://bucket/prefix``. Thread-safe; every process
    and node may share the location (they must share ``lock``'s database too). Writes are
    durable when S3 acknowledges them, so ``durable`` changes nothing here. Credentials,
    region and endpoint come from botocore's usual sources (``AWS_*`` environment variables,
    ``~/.aws/config``; ``AWS_ENDPOINT_URL_S3`` or ``endpoint_url`` for a non-AWS service)."""

    def __init__(self, location: str | S3Location, *, lock: LockFactory, durable: bool = True,
                 endpoint_url: str | None = None, background: Callable[..., object] | None = None,
                 max_connections: int = 32) -> None:
        self.location = parse_s3_url(location) if isinstance(location, str) else location
        self.durable = durable
        self.bucket = Bucket(self.location, endpoint_url=endpoint_url, max_connections=max_connections)
        self._lock = lock
        self._background = background or (lambda fn, *a: fn(*a))
        self._open: dict[str, S3UploadData] = {}
        # Uploads this process completed in S3: discarding one leaves no multipart upload to
        # look up or abort (a cache only: bounded, and a miss costs two requests).
        self._completed: dict[str, str] = {}

    def layer_key(self, name: str) -> str:
        return self.bucket.key("layers", name)

    def state_key(self, upload: str) -> str:
        return self.bucket.key("uploads", upload)

    # --- upload states -----------------------------------------------------------------

    def _load(self, upload: str, received: int | None) -> UploadState | None:
        """The upload's state as of ``received`` acknowledged bytes (None: every byte present),
        read afresh (another node may have written since); None when its state object is gone."""
        written = self.bucket.get_state(self.state_key(upload))
        if written is None:
            if received:
                raise ServerException(f"the data of upload {upload} is missing from S3")
            return None
        limit = received if received is not None else 1 << 62
        st = UploadState(written.s3_id, tail_object=written.tail_object, held=written.held)
        for number, size, etag in written.parts:
            if st.tail_start + size > limit:
                break
            st.parts.append((number, size, etag))
            st.tail_start += size
        obj = st.tail_object
        if obj is not None and obj[0] == st.tail_start:
            st.tail_len = obj[1]  # with any leftovers past ``received``, as the contract has it
        if received is not None and st.end < received:
            raise ServerException(f"upload {upload}: acknowledged bytes {st.end}-{received - 1} are missing from S3")
        return st

    # --- ingest ------------------------------------------------------------------------

    def create_upload(self, upload: str) -> None:
        s3_id = self.bucket.create_multipart(self.layer_key(upload))
        self.bucket.put_state(self.state_key(upload), s3_id, [], 0, b"")

    @contextmanager
    def open_upload(self, upload: str, *, received: int, wait: bool = True) -> Iterator[S3UploadData]:
        with self._lock(f"upload:{upload}", wait=wait) as held:
            if not held:
                raise BlockingIOError(f"upload {upload} is being written by another writer")
            with self._opened(upload, received) as data:
                yield data

    @contextmanager
    def try_open_upload(self, upload: str) -> Iterator[S3UploadData | None]:
        with self._lock(f"upload:{upload}", wait=False) as held:
            if not held:
                yield None
                return
            yield S3UploadData(self, upload, None)

    @contextmanager
    def _opened(self, upload: str, received: int | None) -> Iterator[S3UploadData]:
        state = self._load(upload, received)
        data = S3UploadData(self, upload, state)
        self._open[upload] = data
        try:
            yield data
        finally:
            self._open.pop(upload, None)

    def discard_upload(self, upload: str, *, background: bool = False, orphaned: bool = False) -> None:
        if background:
            self._background(self._discard, upload, orphaned)
        else:
            self._discard(upload, orphaned)

    def _discard(self, upload: str, orphaned: bool) -> None:
        key = self.layer_key(upload)
        if self._completed.pop(upload, None) is None:
            written = self.bucket.get_state(self.state_key(upload))
            s3_ids = {written.s3_id} if written is not None else set()
            if not s3_ids:  # no state object: a creation cut short leaves the S3 upload unnamed
                s3_ids = {s3_id for k, s3_id, _ in self.bucket.multipart_uploads(key) if k == key}
            for s3_id in s3_ids:
                self.bucket.abort_multipart(key, s3_id)
        self.bucket.delete([self.state_key(upload)])
        if orphaned:
            self.delete_blob(upload)

    def publish(self, upload: str, hexdigest: str) -> str:
        """Complete the upload's multipart upload in place (after its digest marker) and
        answer its placement, which the index records for the digest."""
        data = self._open.get(upload)
        if data is None:  # not opened by this caller: every byte present is published
            with self._lock(f"upload:{upload}", wait=True), self._opened(upload, None) as data:
                return self._publish(data, upload, hexdigest)
        return self._publish(data, upload, hexdigest)

    @translated
    def _publish(self, data: S3UploadData, upload: str, hexdigest: str) -> str:
        self.bucket.put(self.layer_key(f"{upload}.sha256-{hexdigest}"))
        data._complete()
        if len(self._completed) >= _COMPLETED_KEPT:
            self._completed.clear()
        self._completed[upload] = data._live().s3_id
        return upload

    # --- read ----------------------------------------------------------------------------

    def open(self, hexdigest: str, size: int, placement: str = "") -> S3BlobReader:
        key = self.layer_key(placement)
        digest = str(Digest(SHA256, hexdigest))
        found = self.bucket.size_of(key) if placement else None
        if found is None:
            raise ServerException(f"the stored blob {digest} is missing")
        if found != size:
            raise ServerException(f"the stored blob {digest} is damaged: {found} bytes where {size} were stored")
        return S3BlobReader(self, key, digest, size)

    def stat(self, hexdigest: str, placement: str = "") -> int | None:
        return self.bucket.size_of(self.layer_key(placement)) if placement else None

    def presigned_url(self, hexdigest: str, expires_in: float, placement: str = "") -> str | None:
        return self.bucket.presigned_get(self.layer_key(placement), expires_in) if placement else None

    # --- delete ----------------------------------------------------------------------------

    def retire(self, hexdigest: str, placement: str = "") -> _RetiredObject | None:
        if not placement:
            return None
        tombstone = self.bucket.key("trash", f"{placement}.{hexdigest}")
        self.bucket.put(tombstone)
        return _RetiredObject(self, placement, tombstone)

    def recover_retired(self, lookup: Callable[[str], str | None]) -> int:
        n = 0
        for obj in list(self.bucket.listing(self.bucket.key("trash", ""))):
            name = obj["Key"].rsplit("/", 1)[-1]
            placement, _, hexd = name.partition(".")
            if lookup(hexd) != placement:
                self.delete_blob(placement)
            self.bucket.delete([obj["Key"]])
            n += 1
        return n

    def delete_blob(self, name: str) -> None:
        """Delete a layer object by its placement, with its digest markers (or one marker by
        its listed name)."""
        self.bucket.delete([self.layer_key(name)])
        if "." not in name:
            self.bucket.delete([o["Key"] for o in self.bucket.listing(self.layer_key(f"{name}."))])

    # --- list ------------------------------------------------------------------------------

    def iter_blobs(self) -> Iterator[StoredFile]:
        """Layer objects by placement, each with the digest its marker names. A marker with
        no layer object (a publication or a deletion cut short), or an object with no marker,
        is listed as temporary: nothing the index can reference."""
        base = len(self.layer_key(""))
        layer: StoredFile | None = None  # the last layer object listed, awaiting its marker
        for obj in self.bucket.listing(self.layer_key("")):
            name = obj["Key"][base:]
            placement, dot, rest = name.partition(".")
            found = StoredFile(name, int(obj["Size"]), obj["LastModified"].timestamp(), temporary=True)
            if layer is not None and dot and placement == layer.name and rest.startswith("sha256-"):
                yield StoredFile(placement, layer.size, layer.changed_at, digest=rest[len("sha256-"):])
                layer = None
                continue
            if layer is not None:
                yield layer
            layer = None if dot else found
            if dot:
                yield found
        if layer is not None:
            yield layer

    def iter_uploads(self) -> Iterator[StoredFile]:
        """State objects, and multipart uploads whose state was never written."""
        named: set[str] = set()
        base = len(self.state_key(""))
        for obj in self.bucket.listing(self.state_key("")):
            name = obj["Key"][base:]
            named.add(name)
            yield StoredFile(name, int(obj["Size"]), obj["LastModified"].timestamp())
        prefix = self.layer_key("")
        for key, _, initiated in self.bucket.multipart_uploads(prefix):
            name = key[len(prefix):]
            if name not in named:
                yield StoredFile(name, 0, initiated)

    def sync(self) -> None:
        """Nothing to do: S3 acknowledges a write once it is durable."""

