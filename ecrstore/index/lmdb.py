"""The LMDB index backend: the embedded default, one environment per process per store.

This is the only module that imports :mod:`lmdb`. It owns the environment (reopened after
fork), the named databases (their key layouts and the record formats are in
:mod:`.lmdb_codec`), map growth (``MapFullError`` / ``MapResizedError`` handled in
:meth:`LmdbIndex.write` and :meth:`LmdbIndex.read` only) and the translation of every
``lmdb.Error`` into ServerException. It keeps the contract of :mod:`ecrstore.index.base`:
LMDB has one writer at a time, so a write transaction's checks hold at commit; with
``durable=True`` a commit is on stable storage when it returns (``sync`` and ``metasync``).
"""

from __future__ import annotations

import errno
import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import lmdb

from ..errors import ServerException
from ..fsutil import file_identity
from . import lmdb_codec as codec
from . import lmdb_migrate
from .base import IndexCounts
from .lmdb_codec import DB_NAMES, FORMAT_VERSION, repo_key
from .records import BlobRecord, ImageRecord, LinkRecord, RepoRecord, UploadRecord

__all__ = ["LmdbIndex", "LmdbTxn"]

T = TypeVar("T")

_RID = codec.RID
_TIME = codec.TIME
_EMPTY = b""


# --- transactions ----------------------------------------------------------------------------


class LmdbTxn:
    """The read and write protocols of :mod:`.base` over one LMDB transaction."""

    __slots__ = ("_t", "_db")

    # Transaction[bytes]: every transaction is begun with buffers=False (py-lmdb's default), so
    # keys and values come back as bytes, never memoryviews valid only inside the transaction.
    def __init__(self, txn: lmdb.Transaction[bytes], dbs: dict[str, Any]) -> None:
        self._t = txn
        self._db = dbs

    # meta
    def next_repo_id(self) -> int:
        db = self._db["meta"]
        n = int(self._t.get(b"next_repo_id", b"1", db=db))
        self._t.put(b"next_repo_id", str(n + 1).encode(), db=db)
        return n

    # repositories
    def get_repo(self, registry_id: str, name: str) -> RepoRecord | None:
        raw = self._t.get(repo_key(registry_id, name), db=self._db["repos"])
        return None if raw is None else codec.decode_repo(raw)

    def put_repo(self, rec: RepoRecord) -> None:
        key = repo_key(rec.registry_id, rec.name)
        if self._t.get(key, db=self._db["repos"]) is None:
            self._add_count(codec.registry_count_key("R", rec.registry_id), 1)
        self._t.put(key, codec.encode_repo(rec), db=self._db["repos"])
        self._t.put(_RID.pack(rec.id), rec.registry_id.encode(), db=self._db["repo_ids"])

    def delete_repo(self, rec: RepoRecord) -> None:
        if self._t.delete(repo_key(rec.registry_id, rec.name), db=self._db["repos"]):
            self._add_count(codec.registry_count_key("R", rec.registry_id), -1)
        self._t.delete(_RID.pack(rec.id), db=self._db["repo_ids"])

    def count_repos(self, registry_id: str) -> int:
        return self._count(codec.registry_count_key("R", registry_id))

    def registry_links(self, registry_id: str, dgs: list[bytes]) -> set[bytes]:
        """Which of ``dgs`` some repository of ``registry_id`` links. Registries are tenants:
        content another registry holds is never revealed."""
        if not dgs:
            return set()
        reg = registry_id.encode()
        ids = self._db["repo_ids"]
        cur = self._t.cursor(db=self._db["blob_links"])
        out = set()
        for dg in dgs:
            found = cur.set_range(dg)
            while found:
                key = cur.key()
                if key[:32] != dg:
                    break
                if self._t.get(key[32:], db=ids) == reg:
                    out.add(dg)
                    break
                found = cur.next()
        return out

    def iter_repos(self, registry_id: str, after: str | None = None) -> Iterator[RepoRecord]:
        """Repositories of a registry in name order, starting after ``after``."""
        prefix = f"{registry_id}/".encode()
        start = prefix + (after.encode() + b"\x00" if after is not None else b"")
        cur = self._t.cursor(db=self._db["repos"])
        if not cur.set_range(start):
            return
        for k, v in cur:
            if not k.startswith(prefix):
                return
            yield codec.decode_repo(v)

    def get_upload(self, uid: bytes) -> UploadRecord | None:
        raw = self._t.get(uid, db=self._db["uploads"])
        return None if raw is None else codec.decode_upload(raw)

    def put_upload(self, uid: bytes, rec: UploadRecord, old: UploadRecord | None = None) -> None:
        """Insert or replace an upload; ``old`` is the record it replaces (for the expiry key)."""
        if old is not None and old.updated != rec.updated:
            self._t.delete(_TIME.pack(old.updated) + uid, db=self._db["expiry"])
        self._t.put(_TIME.pack(rec.updated) + uid, _EMPTY, db=self._db["expiry"])
        if old is None:
            self._t.put(_RID.pack(rec.repo_id) + uid, _EMPTY, db=self._db["repo_uploads"])
            self._count_upload(rec.repo_id, 1)
        self._t.put(uid, codec.encode_upload(rec), db=self._db["uploads"])

    def delete_upload(self, uid: bytes, rec: UploadRecord) -> None:
        if self._t.delete(uid, db=self._db["uploads"]):
            self._count_upload(rec.repo_id, -1)
        self._t.delete(_TIME.pack(rec.updated) + uid, db=self._db["expiry"])
        self._t.delete(_RID.pack(rec.repo_id) + uid, db=self._db["repo_uploads"])

    def count_uploads(self, registry_id: str) -> int:
        return self._count(codec.registry_count_key("U", registry_id))

    def _count_upload(self, repo_id: int, delta: int) -> None:
        registry = self._t.get(_RID.pack(repo_id), db=self._db["repo_ids"])
        if registry is not None:
            self._add_count(codec.registry_count_key("U", registry.decode()), delta)

    def _count(self, key: bytes) -> int:
        raw = self._t.get(key, db=self._db["counts"])
        return 0 if raw is None else int(_RID.unpack(raw)[0])

    def uploads_idle_since(self, before: float, limit: int | None = None) -> list[tuple[bytes, UploadRecord]]:
        """Uploads whose last activity is earlier than ``before`` (an index range, no scan)."""
        out: list[tuple[bytes, UploadRecord]] = []
        end = _TIME.pack(before)
        for k, _ in self._t.cursor(db=self._db["expiry"]):
            if k[:8] >= end or (limit is not None and len(out) >= limit):
                break
            uid = k[8:]
            rec = self.get_upload(uid)
            if rec is not None:
                out.append((uid, rec))
        return out

    def iter_uploads(self) -> Iterator[tuple[bytes, UploadRecord]]:
        for k, v in self._t.cursor(db=self._db["uploads"]):
            yield bytes(k), codec.decode_upload(v)

    def repo_upload_ids(self, repo_id: int) -> list[bytes]:
        prefix = _RID.pack(repo_id)
        return [k[8:] for k in _prefix_keys(self._t.cursor(db=self._db["repo_uploads"]), prefix)]

    def get_blob(self, dg: bytes) -> BlobRecord | None:
        raw = self._t.get(dg, db=self._db["blobs"])
        return None if raw is None else codec.decode_blob(raw)

    def put_blob(self, dg: bytes, rec: BlobRecord) -> None:
        self._t.put(dg, codec.encode_blob(rec), db=self._db["blobs"])

    def delete_blob(self, dg: bytes) -> None:
        self._t.delete(dg, db=self._db["blobs"])

    def iter_blobs(self) -> Iterator[tuple[bytes, BlobRecord]]:
        for k, v in self._t.cursor(db=self._db["blobs"]):
            yield bytes(k), codec.decode_blob(v)

    def blob_link_repos(self, dg: bytes) -> list[int]:
        """Ids of the repositories that link a blob."""
        return [_RID.unpack_from(k, 32)[0] for k in _prefix_keys(self._t.cursor(db=self._db["blob_links"]), dg)]

    def blob_is_linked(self, dg: bytes) -> bool:
        return _has_prefix(self._t.cursor(db=self._db["blob_links"]), dg)

    # links (layers of a repository)
    def get_link(self, repo_id: int, dg: bytes) -> LinkRecord | None:
        raw = self._t.get(_RID.pack(repo_id) + dg, db=self._db["links"])
        return None if raw is None else codec.decode_link(raw)

    def get_links(self, repo_id: int, dgs: list[bytes]) -> dict[bytes, tuple[int, str]]:
        """(size, media type) of the links of many digests, in one cursor pass. The hot path
        of the batch availability check: records are not materialised."""
        if not dgs:
            return {}
        rid = _RID.pack(repo_id)
        cur = self._t.cursor(db=self._db["links"])
        return {k[8:]: codec.link_size_and_type(v) for k, v in cur.getmulti([rid + d for d in dgs])}

    def put_link(self, repo_id: int, dg: bytes, rec: LinkRecord) -> None:
        rid = _RID.pack(repo_id)
        self._t.put(rid + dg, codec.encode_link(rec), db=self._db["links"])
        self._t.put(dg + rid, _EMPTY, db=self._db["blob_links"])

    def delete_link(self, repo_id: int, dg: bytes) -> None:
        rid = _RID.pack(repo_id)
        self._t.delete(rid + dg, db=self._db["links"])
        self._t.delete(dg + rid, db=self._db["blob_links"])

    def iter_links(self, repo_id: int) -> Iterator[tuple[bytes, LinkRecord]]:
        prefix = _RID.pack(repo_id)
        cur = self._t.cursor(db=self._db["links"])
        if not cur.set_range(prefix):
            return
        for k, v in cur:
            if k[:8] != prefix:
                return
            yield bytes(k[8:]), codec.decode_link(v)

    def iter_all_links(self) -> Iterator[tuple[int, bytes, LinkRecord]]:
        for k, v in self._t.cursor(db=self._db["links"]):
            yield _RID.unpack_from(k)[0], bytes(k[8:]), codec.decode_link(v)

    # images
    def get_image(self, repo_id: int, dg: bytes, *, with_manifest: bool = True) -> ImageRecord | None:
        raw = self._t.get(_RID.pack(repo_id) + dg, db=self._db["images"])
        return None if raw is None else codec.decode_image(raw, with_manifest=with_manifest)

    def put_image(self, repo_id: int, dg: bytes, rec: ImageRecord) -> None:
        """Insert a new image (the caller checked it is new) and count it."""
        rid = _RID.pack(repo_id)
        self._t.put(rid + dg, codec.encode_image(rec), db=self._db["images"])
        self._add_count(rid, 1)

    def delete_image(self, repo_id: int, dg: bytes) -> None:
        rid = _RID.pack(repo_id)
        if self._t.delete(rid + dg, db=self._db["images"]):
            self._add_count(rid, -1)

    def image_count(self, repo_id: int) -> int:
        return self._count(_RID.pack(repo_id))

    def _add_count(self, rid: bytes, delta: int) -> None:
        raw = self._t.get(rid, db=self._db["counts"])
        n = (0 if raw is None else _RID.unpack(raw)[0]) + delta
        if n:
            self._t.put(rid, _RID.pack(n), db=self._db["counts"])
        else:
            self._t.delete(rid, db=self._db["counts"])

    def iter_image_digests(self, repo_id: int, start: bytes | None = None, *,
                           inclusive: bool = True) -> Iterator[bytes]:
        """Digests of a repository's images in digest order, from ``start`` on."""
        rid = _RID.pack(repo_id)
        cur = self._t.cursor(db=self._db["images"])
        start = rid if start is None else rid + start + (b"" if inclusive else b"\x00")
        if not cur.set_range(start):
            return
        for k in cur.iternext(keys=True, values=False):
            if k[:8] != rid:
                return
            yield bytes(k[8:])

    # tags
    def get_tag(self, repo_id: int, tag: str) -> bytes | None:
        raw = self._t.get(_RID.pack(repo_id) + tag.encode(), db=self._db["tags"])
        return None if raw is None else bytes(raw)

    def put_tag(self, repo_id: int, tag: str, dg: bytes) -> None:
        rid, t = _RID.pack(repo_id), tag.encode()
        self._t.put(rid + t, dg, db=self._db["tags"])
        self._t.put(rid + dg + t, _EMPTY, db=self._db["image_tags"])

    def delete_tag(self, repo_id: int, tag: str, dg: bytes) -> None:
        rid, t = _RID.pack(repo_id), tag.encode()
        self._t.delete(rid + t, db=self._db["tags"])
        self._t.delete(rid + dg + t, db=self._db["image_tags"])

    def image_tags(self, repo_id: int, dg: bytes) -> list[str]:
        prefix = _RID.pack(repo_id) + dg
        return [k[40:].decode() for k in _prefix_keys(self._t.cursor(db=self._db["image_tags"]), prefix)]

    def iter_tags(self, repo_id: int, after: str | None = None) -> Iterator[tuple[str, bytes]]:
        rid = _RID.pack(repo_id)
        cur = self._t.cursor(db=self._db["tags"])
        if not cur.set_range(rid if after is None else rid + after.encode() + b"\x00"):
            return
        for k, v in cur:
            if k[:8] != rid:
                return
            yield bytes(k[8:]).decode(), bytes(v)

    # OCI referrers: manifests naming a subject
    def referrers(self, repo_id: int, subject: bytes) -> list[bytes]:
        db = self._db["referrers"]
        if db is None:  # a read-only store written before referrers were indexed
            return []
        prefix = _RID.pack(repo_id) + subject
        return [k[40:] for k in _prefix_keys(self._t.cursor(db=db), prefix)]

    def add_referrer(self, repo_id: int, subject: bytes, referrer: bytes) -> None:
        self._t.put(_RID.pack(repo_id) + subject + referrer, _EMPTY, db=self._db["referrers"])

    def delete_referrer(self, repo_id: int, subject: bytes, referrer: bytes) -> None:
        self._t.delete(_RID.pack(repo_id) + subject + referrer, db=self._db["referrers"])

    # references between images, and from images to layers
    def add_image_ref(self, repo_id: int, child: bytes, parent: bytes) -> None:
        self._t.put(_RID.pack(repo_id) + child + parent, _EMPTY, db=self._db["image_refs"])

    def delete_image_ref(self, repo_id: int, child: bytes, parent: bytes) -> None:
        self._t.delete(_RID.pack(repo_id) + child + parent, db=self._db["image_refs"])

    def image_is_referenced(self, repo_id: int, child: bytes) -> bool:
        return _has_prefix(self._t.cursor(db=self._db["image_refs"]), _RID.pack(repo_id) + child)

    def add_layer_ref(self, repo_id: int, layer: bytes, image: bytes, media_type: str) -> None:
        self._t.put(_RID.pack(repo_id) + layer + image, media_type.encode(), db=self._db["layer_refs"])

    def delete_layer_ref(self, repo_id: int, layer: bytes, image: bytes) -> None:
        self._t.delete(_RID.pack(repo_id) + layer + image, db=self._db["layer_refs"])

    def layer_is_referenced(self, repo_id: int, layer: bytes) -> bool:
        return _has_prefix(self._t.cursor(db=self._db["layer_refs"]), _RID.pack(repo_id) + layer)

    # control-plane documents
    def get_doc(self, kind: str, key: str) -> bytes | None:
        db = self._db["docs"]
        return None if db is None else self._t.get(codec.doc_key(kind, key), db=db)

    def iter_docs(self, kind: str, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        db, start = self._db["docs"], codec.doc_key(kind, prefix)
        cur = None if db is None else self._t.cursor(db=db)  # None: a read-only older store
        for k, v in (cur if cur is not None and cur.set_range(start) else ()):
            if not k.startswith(start):
                return
            yield bytes(k[len(kind.encode()) + 1:]).decode(), bytes(v)

    def put_doc(self, kind: str, key: str, value: bytes) -> None:
        self._t.put(codec.doc_key(kind, key), value, db=self._db["docs"])

    def delete_doc(self, kind: str, key: str) -> bool:
        return bool(self._t.delete(codec.doc_key(kind, key), db=self._db["docs"]))

    def counts(self) -> IndexCounts:
        def n(name: str) -> int:
            return int(self._t.stat(self._db[name])["entries"])

        return IndexCounts(repositories=n("repos"), links=n("links"), blobs=n("blobs"), uploads=n("uploads"))


def _has_prefix(cur: lmdb.Cursor[bytes], prefix: bytes) -> bool:
    return cur.set_range(prefix) and cur.key()[: len(prefix)] == prefix


def _prefix_keys(cur: lmdb.Cursor[bytes], prefix: bytes) -> Iterator[bytes]:
    if not cur.set_range(prefix):
        return
    for k in cur.iternext(keys=True, values=False):
        if not k.startswith(prefix):
            return
        yield bytes(k)


# --- the environment -------------------------------------------------------------------------


def _open_existing(env: lmdb.Environment, name: str) -> Any:
    """A database of a store opened read-only; None for one added after the store was written
    (:data:`~.lmdb_codec.LATER_DBS`: read as empty)."""
    try:
        return env.open_db(name.encode(), create=False)
    except lmdb.NotFoundError:
        if name in codec.LATER_DBS:
            return None
        raise


class _ResizeGuard:
    """Transactions of this process share; a map resize excludes them all.

    LMDB allows ``mdb_env_set_mapsize`` only while the process has no transaction open, and does
    not check it itself (see the LMDB documentation of mdb_env_set_mapsize).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._resizing = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if not self._active:
                    self._cond.notify_all()

    def exclusive(self, fn: Callable[[], None]) -> None:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._active:
                self._cond.wait()
        try:
            fn()
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


def _adopt_map_size(env: lmdb.Environment) -> None:
    env.set_mapsize(0)  # 0: take the size another process grew the map to


def _double_map_size(env: lmdb.Environment) -> None:
    env.set_mapsize(env.info()["map_size"] * 2)


def _is_read_only_fs(e: lmdb.Error) -> bool:
    # py-lmdb reports the errno only in the message ("...: Read-only file system").
    return any(os.strerror(code) in str(e) for code in (errno.EROFS, errno.EACCES))


class LmdbIndex:
    """One store's LMDB environment, safe for threads; reopened transparently after ``fork``.

    ``durable=True``: a write transaction is on stable storage when :meth:`write` returns.
    ``durable=False``: commits survive a process crash (they are in the OS page cache) but not
    an OS crash until :meth:`sync`. ``read_only=True`` writes nothing, not even the lock file
    where it cannot (a read-only file system: then it relies on nobody writing meanwhile), and
    :meth:`write` raises ServerException.
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = True, read_only: bool = False,
                 map_size: int = 1 << 30, max_readers: int = 1024) -> None:
        self._path = os.fspath(path)
        self.durable = durable
        self.read_only = read_only
        self._durable = durable
        self._initial_map_size = map_size
        self._max_readers = max_readers
        self._guard = _ResizeGuard()
        self._open_lock = threading.Lock()
        self._env: lmdb.Environment | None = None
        self._dbs: dict[str, Any] = {}
        self._pid = -1
        try:
            self._environment()
        except lmdb.Error as e:
            raise ServerException(f"cannot open the index at {self._path}: {e}") from e

    def _environment(self) -> lmdb.Environment:
        if self._pid == os.getpid() and self._env is not None:
            return self._env
        with self._open_lock:
            if self._pid == os.getpid() and self._env is not None:
                return self._env
            if self._env is not None:
                # Inherited across fork: unusable here (LMDB forbids it) but py-lmdb refuses a
                # second open of the path while it is registered. Closing it in the child only
                # releases the child's copies: reader slots are cleared by the child's pid and
                # the lock file's fcntl locks are the parent's, so the parent is untouched.
                try:
                    self._env.close()
                except lmdb.Error:
                    pass
            env = self._open_env(lock=True)
            if env is None:  # read-only file system: no lock file can be taken
                env = self._open_env(lock=False)
            assert env is not None
            # Clear reader slots left by processes that died holding a read transaction, so
            # they cannot pin old pages (and grow the file) forever.
            if not self.read_only:
                env.reader_check()
            if self.read_only:
                # Handles opened inside a read transaction die with it: let py-lmdb open each
                # in a transaction of its own, which it commits.
                dbs = {name: _open_existing(env, name) for name in DB_NAMES}
                with env.begin() as txn:
                    fmt = txn.get(b"format", db=dbs["meta"])
            else:
                with env.begin(write=True) as txn:
                    dbs = {name: env.open_db(name.encode(), txn=txn) for name in DB_NAMES}
                    fmt = txn.get(b"format", db=dbs["meta"])
                    if fmt is None:
                        fmt = str(FORMAT_VERSION).encode()
                        txn.put(b"format", fmt, db=dbs["meta"])
                    if txn.get(codec.REGISTRY_COUNTS_FLAG, db=dbs["meta"]) is None:
                        lmdb_migrate.build_registry_counts(txn, dbs)
                    if txn.get(codec.REFERRERS_FLAG, db=dbs["meta"]) is None:
                        lmdb_migrate.build_referrers(txn, dbs)
            if fmt is None or int(fmt) != FORMAT_VERSION:
                raise ServerException(f"store format {fmt!r} is not supported (expected {FORMAT_VERSION})")
            self._data_file = os.path.join(self._path, "data.mdb")
            self._identity = file_identity(self._data_file)
            self._env, self._dbs, self._pid = env, dbs, os.getpid()
            return env

    def _check_present(self) -> None:
        """Refuse to commit into an index whose file was removed or replaced since it was
        opened (the store deleted under a running server): such commits would be acknowledged
        and then lost. One stat per write transaction."""
        self._environment()
        if file_identity(self._data_file) != self._identity:
            raise ServerException(
                f"the store's index {self._data_file} was removed or replaced while open: "
                "nothing is written; restart on the store's current location"
            )

    def _open_env(self, *, lock: bool) -> lmdb.Environment | None:
        try:
            return lmdb.open(
                self._path, map_size=self._initial_map_size, max_dbs=len(DB_NAMES) + 4,
                max_readers=self._max_readers, sync=self._durable, metasync=self._durable,
                writemap=False, readahead=False, subdir=True, lock=lock, readonly=self.read_only,
                create=not self.read_only, mode=0o600,  # every tenant's metadata: the owner's alone
            )
        except lmdb.Error as e:
            if lock and self.read_only and _is_read_only_fs(e):
                return None
            raise

    @contextmanager
    def read(self) -> Iterator[LmdbTxn]:
        """A short read-only snapshot. Do not hold it across file I/O."""
        while True:
            with self._guard.shared():
                env = self._environment()
                try:
                    txn = env.begin(buffers=False)
                except lmdb.MapResizedError:
                    pass  # another process grew the map: adopt its size, then retry
                except lmdb.Error as e:
                    raise ServerException(f"index read failed: {e}") from e
                else:
                    try:
                        yield LmdbTxn(txn, self._dbs)
                    except lmdb.Error as e:
                        raise ServerException(f"index read failed: {e}") from e
                    finally:
                        txn.abort()
                    return
            self._guard.exclusive(functools.partial(_adopt_map_size, env))

    def write(self, fn: Callable[[LmdbTxn], T]) -> T:
        """Run ``fn`` in one write transaction and commit it; answer what ``fn`` returns.

        ``fn`` may run more than once (when the map must grow it is re-run in a new
        transaction), so it must not have effects outside the transaction that a second run
        would repeat wrongly. An exception from ``fn`` aborts the transaction and propagates.
        """
        if self.read_only:
            raise ServerException("the store is open read-only")
        self._check_present()
        while True:
            with self._guard.shared():
                env = self._environment()
                try:
                    with env.begin(write=True) as txn:
                        return fn(LmdbTxn(txn, self._dbs))
                except lmdb.MapFullError:
                    grow = True
                except lmdb.MapResizedError:
                    grow = False
                except lmdb.Error as e:
                    raise ServerException(f"index write failed: {e}") from e
            if grow:
                self._guard.exclusive(functools.partial(_double_map_size, env))
            else:
                self._guard.exclusive(functools.partial(_adopt_map_size, env))

    def sync(self) -> None:
        """Flush committed transactions to stable storage (what ``durable=False`` defers)."""
        try:
            with self._guard.shared():
                self._environment().sync(True)
        except lmdb.Error as e:
            raise ServerException(f"index sync failed: {e}") from e

    def map_size(self) -> int:
        return self._environment().info()["map_size"]

    def close(self) -> None:
        with self._open_lock:
            if self._env is not None and self._pid == os.getpid():
                self._env.close()
            self._env = None
