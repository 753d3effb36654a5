"""Store maintenance: purge (reclaim space), verify (re-hash content) and stats.

All three run while the store is in use by other threads and processes. Deletion follows one
rule that keeps it safe against completions racing it: a blob is deleted only inside a write
transaction that sees no link to it, by renaming it to ``trash/`` *before* the commit that drops
its record (renamed back if that commit fails). A completion that commits after the deletion
sees no record and puts its own copy in place; one that commits before keeps the blob linked.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .digest import Digest
from .errors import HashStateError
from .hashing import hash_file
from .index import Index, Txn
from .layout import Layout, fsync_dir, unlink_quiet
from .uploads import Uploads

log = logging.getLogger("ecrstore")

__all__ = ["Maintenance", "GcReport", "PurgeReport", "VerifyReport", "StoreStats"]

_HEX = frozenset("0123456789abcdef")
# Deletions per write transaction: large enough that a collection of 100,000 layers costs
# a few hundred commits, small enough that the write lock is never held for long.
_BATCH = 512


@dataclass(frozen=True, slots=True)
class PurgeReport:
    uploads_removed: int
    blobs_removed: int
    orphans_removed: int
    bytes_freed: int


@dataclass(frozen=True, slots=True)
class GcReport:
    layers_unlinked: int
    blobs_deleted: int
    bytes_freed: int
    dry_run: bool


@dataclass(frozen=True, slots=True)
class VerifyReport:
    checked: int
    bytes: int
    mismatches: tuple[tuple[str, str], ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches


@dataclass(frozen=True, slots=True)
class StoreStats:
    repositories: int
    layers: int
    blobs: int
    blob_bytes: int
    linked_bytes: int
    uploads_in_progress: int
    #: Bytes of blobs no repository links: what gc and purge would free.
    reclaimable_bytes: int = 0

    @property
    def dedupe_saved_bytes(self) -> int:
        """Bytes not stored thanks to content addressing (layers linked in several repositories):
        linked bytes less the bytes of the linked blobs, so never negative."""
        return max(0, self.linked_bytes - (self.blob_bytes - self.reclaimable_bytes))


class Maintenance:
    def __init__(self, index: Index, layout: Layout, uploads: Uploads, *, durable: bool) -> None:
        self._index = index
        self._layout = layout
        self._uploads = uploads
        self._durable = durable

    # --- gc ------------------------------------------------------------------------------

    def gc(self, *, grace: float, dry_run: bool) -> GcReport:
        """Unlink unreferenced layers older than ``grace``, then delete unlinked blobs."""
        cutoff = time.time() - grace
        with self._index.read() as t:
            stale = [(rid, dg) for rid, dg, rec in t.iter_all_links()
                     if rec.linked_at < cutoff and not t.layer_is_referenced(rid, dg)]
        if dry_run:
            going: dict[bytes, set[int]] = {}
            for rid, dg in stale:
                going.setdefault(dg, set()).add(rid)
            with self._index.read() as t:
                doomed = [rec.size for dg, rec in t.iter_blobs()
                          if set(t.blob_link_repos(dg)) <= going.get(dg, set())]
            return GcReport(len(stale), len(doomed), sum(doomed), True)
        unlinked = 0
        for i in range(0, len(stale), _BATCH):
            def commit(t: Txn, batch: list[tuple[int, bytes]] = stale[i:i + _BATCH]) -> int:
                n = 0
                for rid, dg in batch:
                    rec = t.get_link(rid, dg)
                    # Re-checked under the write lock: a PutImage or a new completion since the
                    # snapshot keeps the layer.
                    if rec is None or rec.linked_at >= cutoff or t.layer_is_referenced(rid, dg):
                        continue
                    t.delete_link(rid, dg)
                    n += 1
                return n

            unlinked += self._index.write(commit)
        deleted, freed = self._unlinked_blobs(time.time())
        return GcReport(unlinked, deleted, freed, False)

    # --- purge ---------------------------------------------------------------------------

    def purge(self, *, grace: float) -> PurgeReport:
        now = time.time()
        cutoff = now - grace
        uploads_removed, freed = self._uploads.purge_idle(now)
        restored_or_removed = self._empty_trash()
        blobs_removed, blob_bytes = self._unlinked_blobs(cutoff)
        orphans, orphan_bytes = self._orphan_uploads(cutoff)
        o2, o2_bytes = self._orphan_blobs(cutoff)
        return PurgeReport(
            uploads_removed=uploads_removed,
            blobs_removed=blobs_removed,
            orphans_removed=orphans + o2 + restored_or_removed,
            bytes_freed=freed + blob_bytes + orphan_bytes + o2_bytes,
        )

    def _unlinked_blobs(self, cutoff: float) -> tuple[int, int]:
        """Delete blobs no repository links (committed before ``cutoff``), a batch per write
        transaction; answer (blobs deleted, bytes freed)."""
        with self._index.read() as t:
            candidates = [dg for dg, rec in t.iter_blobs() if rec.created < cutoff and not t.blob_is_linked(dg)]
        removed = freed = 0
        for i in range(0, len(candidates), _BATCH):
            batch = candidates[i:i + _BATCH]
            moved: dict[bytes, str] = {}  # blob -> its name in trash/, across re-runs of commit

            def commit(t: Txn, batch: list[bytes] = batch, moved: dict[bytes, str] = moved) -> list[int]:
                sizes = []
                for dg in batch:
                    rec = t.get_blob(dg)
                    path = self._layout.blob(dg.hex())
                    if rec is None or t.blob_is_linked(dg):
                        if dg in moved:  # linked again between two runs of this transaction
                            os.rename(moved.pop(dg), path)
                        continue
                    if dg not in moved and os.path.exists(path):
                        moved[dg] = self._layout.trash_path(f"{dg.hex()}.{uuid.uuid4().hex}")
                        os.rename(path, moved[dg])
                    t.delete_blob(dg)
                    sizes.append(rec.size)
                return sizes

            try:
                sizes = self._index.write(commit)
            except BaseException:
                for dg, trash in moved.items():  # the records survived: so must the files
                    os.rename(trash, self._layout.blob(dg.hex()))
                raise
            for trash in moved.values():
                unlink_quiet(trash)
            removed += len(sizes)
            freed += sum(sizes)
        return removed, freed

    def _empty_trash(self) -> int:
        """Trash left by a crash mid-deletion: restore it if its record survived, else drop it."""
        n = 0
        for name in os.listdir(self._layout.trash):
            hexd = name.split(".", 1)[0]
            path = self._layout.trash_path(name)
            with self._index.read() as t:
                keep = len(hexd) == 64 and set(hexd) <= _HEX and t.get_blob(bytes.fromhex(hexd)) is not None
            if keep and not os.path.exists(self._layout.blob(hexd)):
                os.rename(path, self._layout.blob(hexd))
            else:
                unlink_quiet(path)
            n += 1
        return n

    def _orphan_uploads(self, cutoff: float) -> tuple[int, int]:
        """Upload files without a record (a crash between file creation and commit)."""
        n = freed = 0
        for name in os.listdir(self._layout.uploads):
            path = self._layout.upload(name)
            try:
                uid = uuid.UUID(hex=name).bytes
                st = os.stat(path)
            except (ValueError, FileNotFoundError):
                continue
            if st.st_mtime >= cutoff:
                continue
            with self._index.read() as t:
                live = t.get_upload(uid) is not None
            if not live:
                unlink_quiet(path)
                n += 1
                freed += st.st_size
        return n, freed

    def _orphan_blobs(self, cutoff: float) -> tuple[int, int]:
        """Blob files without a record (a crash between the rename and the index commit)."""
        n = freed = 0
        for sub in os.listdir(self._layout.blobs):
            d = os.path.join(self._layout.blobs, sub)
            for name in os.listdir(d):
                path = os.path.join(d, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                # ctime: linking the upload file into blobs/ sets it, unlike mtime.
                if st.st_ctime >= cutoff:
                    continue
                if name.startswith(".") and name.endswith(".tmp"):  # a placement cut short
                    unlink_quiet(path)
                    n += 1
                    continue
                try:
                    dg = bytes.fromhex(name)
                except ValueError:
                    continue

                def commit(t: Txn, dg: bytes = dg, path: str = path) -> bool:
                    if t.get_blob(dg) is not None:
                        return False
                    unlink_quiet(path)
                    return True

                if self._index.write(commit):
                    n += 1
                    freed += st.st_size
        if n and self._durable:
            fsync_dir(self._layout.blobs)
        return n, freed

    # --- verify --------------------------------------------------------------------------

    def verify(self, *, progress: Callable[[int], object] | None = None) -> VerifyReport:
        with self._index.read() as t:
            blobs = list(t.iter_blobs())
            dangling = [(rid, dg) for rid, dg, _ in t.iter_all_links() if t.get_blob(dg) is None]
        problems: list[tuple[str, str]] = []
        total = 0
        for dg, rec in blobs:
            digest = str(Digest.from_raw(dg))
            path = self._layout.blob(dg.hex())
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                problems.append((digest, "blob file missing"))
                continue
            if size != rec.size:
                problems.append((digest, f"size {size} differs from the recorded {rec.size}"))
                continue
            try:
                h = hash_file(path, 0, size, None)
            except (OSError, ValueError, HashStateError) as e:
                problems.append((digest, f"unreadable: {e}"))
                continue
            if h.digest() != dg:
                problems.append((digest, f"content hashes to sha256:{h.hexdigest()}"))
            total += size
            if progress is not None:
                progress(size)
        for rid, dg in dangling:
            problems.append((str(Digest.from_raw(dg)), f"linked by repository #{rid} but not stored"))
        return VerifyReport(len(blobs), total, tuple(problems))

    # --- stats ---------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        with self._index.read() as t:
            blob_bytes = reclaimable = 0
            for dg, rec in t.iter_blobs():
                blob_bytes += rec.size
                if not t.blob_is_linked(dg):
                    reclaimable += rec.size
            linked_bytes = sum(rec.size for _, _, rec in t.iter_all_links())
            return StoreStats(
                repositories=t.count("repos"),
                layers=t.count("links"),
                blobs=t.count("blobs"),
                blob_bytes=blob_bytes,
                linked_bytes=linked_bytes,
                uploads_in_progress=t.count("uploads"),
                reclaimable_bytes=reclaimable,
            )
