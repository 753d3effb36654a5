"""Store maintenance: gc and purge (reclaim space), verify (re-hash content) and stats.

All of them run while the store is in use by other threads and processes, over any backend
pair. Deletion follows one rule that keeps it safe against completions racing it: a blob is
deleted only inside a write transaction that sees no link to it, by retiring it in the blob
backend *before* the commit that drops its record (restored if that commit fails, freed after
it). A completion that commits after the deletion sees no record and publishes its own copy;
one that commits before keeps the blob linked.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .blobs.base import BlobStore, Retired
from .digest import Digest
from .errors import EcrError, HashStateError, UploadNotFoundException
from .index.base import Index, ReadTxn, WriteTxn
from .index.records import RepoRecord, UploadRecord
from .models import UploadInfo
from .uploads import Uploads

log = logging.getLogger("ecrstore")

__all__ = ["Maintenance", "GcReport", "PurgeReport", "VerifyReport", "StoreStats"]

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
    #: Bytes of stored blobs no repository links: what gc / purge would free.
    reclaimable_bytes: int = 0

    @property
    def dedupe_saved_bytes(self) -> int:
        """Bytes not stored thanks to content addressing (layers linked in several
        repositories); never negative: unlinked blobs count as reclaimable instead."""
        return max(0, self.linked_bytes - (self.blob_bytes - self.reclaimable_bytes))


class Maintenance:
    def __init__(self, index: Index, blobs: BlobStore, uploads: Uploads) -> None:
        self._index = index
        self._blobs = blobs
        self._uploads = uploads

    # --- uploads in progress -------------------------------------------------------------

    def list_uploads(self, registry: str, repo: RepoRecord | None) -> tuple[UploadInfo, ...]:
        """Uploads in progress of ``repo`` (None: of every repository of ``registry``), oldest
        first. One snapshot."""
        with self._index.read() as t:
            repos = {repo.id: repo} if repo is not None else {r.id: r for r in t.iter_repos(registry)}
            found = [_upload_info(uid, rec, repos[rec.repo_id])
                     for uid, rec in t.iter_uploads() if rec.repo_id in repos]
        return tuple(sorted(found, key=lambda u: (u.created_at, u.upload_id)))

    def abort_upload(self, registry: str, upload_id: str, uid: bytes,
                     by_id: Callable[[ReadTxn, str, int], RepoRecord | None]) -> UploadInfo:
        """Remove an upload of ``registry`` with its data (waiting for a part being written);
        what it was. UploadNotFound for one unknown or of another registry."""
        with self._index.read() as t:
            rec = t.get_upload(uid)
            owner = by_id(t, registry, rec.repo_id) if rec is not None else None
        last = self._uploads.abort(uid, upload_id) if rec is not None and owner is not None else None
        if last is None or owner is None:
            raise UploadNotFoundException(
                f"The upload with id '{upload_id}' does not exist in the registry with id '{registry}'"
            )
        return _upload_info(uid, last, owner)

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
            def commit(t: WriteTxn, batch: list[tuple[int, bytes]] = stale[i:i + _BATCH]) -> int:
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

    def purge(self, *, grace: float, uploads_idle: float | None = None) -> PurgeReport:
        now = time.time()
        cutoff = now - grace
        uploads_removed, freed = self._uploads.purge_idle(now, uploads_idle)
        restored_or_removed = self._blobs.recover_retired(self._recorded_placement)
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
            retired: dict[bytes, Retired] = {}  # across re-runs of commit

            def commit(t: WriteTxn, batch: list[bytes] = batch,
                       retired: dict[bytes, Retired] = retired) -> list[int]:
                sizes = []
                for dg in batch:
                    rec = t.get_blob(dg)
                    if rec is None or t.blob_is_linked(dg):
                        if dg in retired:  # linked again between two runs of this transaction
                            retired.pop(dg).restore()
                        continue
                    if dg not in retired:
                        hidden = self._blobs.retire(dg.hex(), rec.placement)
                        if hidden is not None:
                            retired[dg] = hidden
                    t.delete_blob(dg)
                    sizes.append(rec.size)
                return sizes

            try:
                sizes = self._index.write(commit)
            except BaseException:
                for hidden in retired.values():  # the records survived: so must the bytes
                    hidden.restore()
                raise
            for hidden in retired.values():
                hidden.drop()
            removed += len(sizes)
            freed += sum(sizes)
        return removed, freed

    def _recorded_placement(self, hexdigest: str) -> str | None:
        with self._index.read() as t:
            rec = t.get_blob(bytes.fromhex(hexdigest))
        return None if rec is None else rec.placement

    def _orphan_uploads(self, cutoff: float) -> tuple[int, int]:
        """Upload data without a record (a crash between its creation and the commit)."""
        n = freed = 0
        for f in self._blobs.iter_uploads():
            try:
                uid = uuid.UUID(hex=f.name).bytes
            except ValueError:
                continue
            if f.changed_at >= cutoff:
                continue
            with self._index.read() as t:
                live = t.get_upload(uid) is not None
            if not live:
                self._blobs.discard_upload(f.name)
                n += 1
                freed += f.size
        return n, freed

    def _orphan_blobs(self, cutoff: float) -> tuple[int, int]:
        """Blobs without a record (a crash between publishing and the index commit) and
        placements cut short."""
        n = freed = 0
        for f in self._blobs.iter_blobs():
            if f.changed_at >= cutoff:
                continue
            if f.temporary:
                self._blobs.delete_blob(f.name)
                n += 1
                continue
            # A content-addressed name is its digest; a placement names its digest itself, and
            # is also the id of the upload it was written by (which may still complete).
            hexd, placement = (f.digest, f.name) if f.digest else (f.name, "")
            try:
                dg = bytes.fromhex(hexd)
                uid = uuid.UUID(hex=placement).bytes if placement else b""
            except ValueError:
                continue

            def commit(t: WriteTxn, dg: bytes = dg, name: str = f.name, placement: str = placement,
                       uid: bytes = uid) -> bool:
                rec = t.get_blob(dg)
                if rec is not None and rec.placement == placement:
                    return False
                if uid and t.get_upload(uid) is not None:
                    return False
                self._blobs.delete_blob(name)
                return True

            if self._index.write(commit):
                n += 1
                freed += f.size
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
            size = self._blobs.stat(dg.hex(), rec.placement)
            if size is None:
                problems.append((digest, "blob file missing"))
                continue
            if size != rec.size:
                problems.append((digest, f"size {size} differs from the recorded {rec.size}"))
                continue
            try:
                with self._blobs.open(dg.hex(), rec.size, rec.placement) as reader:
                    h = reader.hash()
            except (OSError, ValueError, HashStateError, EcrError) as e:
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
            counts = t.counts()
        return StoreStats(
            repositories=counts.repositories,
            layers=counts.links,
            blobs=counts.blobs,
            blob_bytes=blob_bytes,
            linked_bytes=linked_bytes,
            uploads_in_progress=counts.uploads,
            reclaimable_bytes=reclaimable,
        )


def _upload_info(uid: bytes, rec: UploadRecord, repo: RepoRecord) -> UploadInfo:
    return UploadInfo(str(uuid.UUID(bytes=uid)), repo.registry_id, repo.name, rec.received, rec.parts,
                      rec.created, rec.updated)
