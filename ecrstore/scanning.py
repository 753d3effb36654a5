"""Image scanning: StartImageScan, DescribeImageScanFindings, the registry's scanning
configuration (Put/GetRegistryScanningConfiguration), BatchGetRepositoryScanningConfiguration,
and scan on push.

The engine runs no program: a scan is done by the *runner* the front end configures
(:meth:`Scanning.configure`), a callable that takes a :class:`~ecrstore.scan_models.ScanTarget` and
answers a :class:`~ecrstore.scan_models.ScanReport` or raises :class:`ScannerError`
(``ecrstore serve --scanner`` builds one from a command line: ``ecrstore.transfer.scanner``).
Scans run in the background on one thread of this Store, fed by a bounded queue: StartImageScan
answers ``IN_PROGRESS`` at once, and the scan ends ``COMPLETE`` with the runner's findings or
``FAILED`` with a description of why. With no runner configured a scan is ``FAILED`` at once,
saying so: findings are never invented.

What is kept (:mod:`ecrstore.documents`): per image, its scan's status (IMAGE_SCAN: small, read
by DescribeImages) and a completed scan's findings (IMAGE_SCAN_FINDINGS); per registry, its
scanning configuration (REGISTRY_SCANNING). A scan document names the push of the image it is
for (its ``imagePushedAt``): an image deleted and pushed again starts with no scan.

Limits (ECR's): a scan may be started once per 24 hours per image, a scan on push included
(LimitExceededException); a FAILED scan does not count (it scanned nothing), so a scan can be
retried once the scanner works.

Crashes: an ``IN_PROGRESS`` scan records the process (host, pid) and the Store instance that
runs it. Once that process or instance is gone (a crash, a restart, :meth:`Scanning.close`), or
:data:`STALE_SCAN_SECONDS` after it started whatever the owner, every reader answers it as
``FAILED`` "interrupted" (it may be started again at once); :meth:`Scanning.recover`, which
``ecrstore serve`` runs as it starts, also rewrites such documents so.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from . import documents
from . import scanning_rules as scan_rules
from . import validate as v
from .digest import sha256_text
from .errors import (
    ImageNotFoundException,
    InvalidParameterException,
    LimitExceededException,
    RepositoryNotFoundException,
    ScanNotFoundException,
    UnsupportedImageTypeException,
    invalid_parameter,
    repository_not_found,
)
from .index.base import Index, ReadTxn, WriteTxn
from .index.records import ImageRecord, RepoRecord
from .limits import DEFAULT_PAGE
from .manifest import INDEXES
from .models import ImageIdentifier, PutImageResult
from .scan_models import (
    Attribute,
    BatchGetRepositoryScanningConfigurationResult,
    DescribeImageScanFindingsResult,
    GetRegistryScanningConfigurationResult,
    ImageScanFinding,
    ImageScanFindings,
    ImageScanFindingsSummary,
    ImageScanStatus,
    PutRegistryScanningConfigurationResult,
    RegistryScanningRule,
    RepositoryScanningConfiguration,
    RepositoryScanningConfigurationFailure,
    ScanReport,
    ScanTarget,
    StartImageScanResult,
)
from .tokens import decode_token, encode_token

if TYPE_CHECKING:
    from .images import Images
    from .repositories import Repositories

__all__ = [
    "MAX_LISTED_FINDINGS", "MAX_QUEUED_SCANS", "SCAN_INTERVAL", "SEVERITIES", "STALE_SCAN_SECONDS",
    "ScanRunner", "ScannerError", "Scanning", "scan_summary",
]

log = logging.getLogger("ecrstore.scanning")

#: One scan per image per this many seconds (ECR's basic scanning limit).
SCAN_INTERVAL = 24 * 3600.0
#: Scans waiting for the scanner in one Store; a scan past it is FAILED at once, saying so.
MAX_QUEUED_SCANS = 1000
#: Findings kept for listing per scan (all are counted in findingSeverityCounts).
MAX_LISTED_FINDINGS = 10_000
#: An IN_PROGRESS scan older than this is answered as interrupted whoever runs it (a backstop
#: for an owner process id reused by another program).
STALE_SCAN_SECONDS = 6 * 3600.0
#: ECR's finding severities, most severe first (findings are listed in this order).
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
_IMAGE_CONFIGS = ("application/vnd.docker.container.image.v1+json", "application/vnd.oci.image.config.v1+json")

NO_SCANNER = ("No scanner is configured for this registry (ecrstore serve --scanner), "
              "so the image was not scanned.")
QUEUE_FULL = "The scanner's queue is full ({} scans waiting), so the image was not scanned."
INTERRUPTED = "The scan was interrupted (the process running it stopped) before it finished."
COMPLETED = "The scan was completed successfully."
LIMIT = "The scan quota per image has been exceeded. Wait and try again."

_HOST = socket.gethostname()
#: Scanning instances open in this process: an IN_PROGRESS scan of this pid is live only
#: while the instance running it is.
_LIVE: set[str] = set()
_LIVE_LOCK = threading.Lock()


class ScannerError(Exception):
    """A scan could not be done; ``description`` (a sentence for a person) becomes the FAILED
    status's description."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class ScanRunner(Protocol):
    """Runs one scan; raises ScannerError when it cannot. May have a ``close()`` that stops
    the scans it runs (called by :meth:`Scanning.close`)."""

    def __call__(self, target: ScanTarget) -> ScanReport: ...


class _Job:
    __slots__ = ("digest", "media_type", "registry_id", "repo_id", "repository_name", "scan")

    def __init__(self, scan: str, repo: RepoRecord, digest: bytes, media_type: str) -> None:
        self.scan, self.repo_id, self.digest, self.media_type = scan, repo.id, digest, media_type
        self.registry_id, self.repository_name = repo.registry_id, repo.name


class Scanning:
    """The scanning area of a Store (``store.scanning``). Thread-safe; scans run on one
    background thread per Store (started on first use). Every write is one index write
    transaction, durable on return in durable mode."""

    def __init__(self, index: Index, repos: Repositories, images: Images, *, registry_id: str) -> None:
        self._index = index
        self._repos = repos
        self._images = images
        self.registry_id = registry_id
        self._runner: ScanRunner | None = None
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._instance = uuid.uuid4().hex
        with _LIVE_LOCK:
            _LIVE.add(self._instance)

    # --- set-up --------------------------------------------------------------------------

    def configure(self, runner: ScanRunner | None) -> None:
        """Use ``runner`` for the scans started from now on (None: no scanner, scans fail)."""
        with self._lock:
            self._runner = runner

    def close(self) -> None:
        """Stop scanning: queued and running scans are left to read as interrupted, and the
        runner's ``close()`` (if it has one) stops what it runs. Idempotent; waits for a
        result being written, and none is written after it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runner, self._runner = self._runner, None
            thread = self._thread
        with _LIVE_LOCK:
            _LIVE.discard(self._instance)
        if thread is not None:
            self._queue.put(None)
        closer = getattr(runner, "close", None)
        if callable(closer):
            closer()

    def recover(self) -> int:
        """Rewrite as FAILED "interrupted" the IN_PROGRESS scans whose process is gone (what
        readers already answer for them); how many. Durable on return."""
        def stale(t: ReadTxn) -> list[str]:
            return [key for key, doc in documents.items(t, documents.IMAGE_SCAN)
                    if doc.get("status") == "IN_PROGRESS" and not _live(doc)]

        with self._index.read() as t:
            if not stale(t):
                return 0

        def commit(t: WriteTxn) -> int:
            keys = stale(t)
            for key in keys:
                doc = documents.get(t, documents.IMAGE_SCAN, key)
                documents.put(t, documents.IMAGE_SCAN, key, {**doc, "status": "FAILED", "description": INTERRUPTED,
                                                             "owner": None})
            return len(keys)

        return self._index.write(commit)

    # --- StartImageScan / DescribeImageScanFindings --------------------------------------

    def start_image_scan(self, repository_name: str, image_id: ImageIdentifier, *,
                         registry_id: str | None = None) -> StartImageScanResult:
        """StartImageScan: scan the image in the background; its status now (IN_PROGRESS, or
        FAILED when no scanner is configured or its queue is full). Errors: InvalidParameter,
        RepositoryNotFound, ImageNotFound, UnsupportedImageType (a manifest list or a
        non-image artifact), LimitExceeded (scanned or being scanned in the last 24 hours)."""
        repo, digest = self._resolve(registry_id, repository_name, image_id)
        status = self._begin(repo, digest, on_push=False)
        assert status is not None  # only a push may decline to scan
        return StartImageScanResult(repo.registry_id, repo.name, ImageIdentifier(sha256_text(digest),
                                                                                   image_id.image_tag), status)

    def describe_image_scan_findings(self, repository_name: str, image_id: ImageIdentifier, *,
                                     registry_id: str | None = None, max_results: int | None = None,
                                     next_token: str | None = None) -> DescribeImageScanFindingsResult:
        """DescribeImageScanFindings: the image's scan status and, once COMPLETE, a page of its
        findings (most severe first) with the counts of all. Errors: InvalidParameter,
        RepositoryNotFound, ImageNotFound, ScanNotFound (never scanned). One snapshot."""
        limit = v.max_results(max_results) or DEFAULT_PAGE
        if next_token is not None:  # its shape now, what it names once the scan is known
            decode_token(next_token, _token_shape)
        repo, digest = self._resolve(registry_id, repository_name, image_id)
        key = documents.image_key(repo.id, digest)
        with self._index.read() as t:
            rec = t.get_image(repo.id, digest, with_manifest=False)
            doc = _valid(documents.get(t, documents.IMAGE_SCAN, key), rec)
            status = _status(doc) if doc is not None else None
            listed = documents.get(t, documents.IMAGE_SCAN_FINDINGS, key) if status and _complete(status) else None
        if doc is None or status is None:
            raise ScanNotFoundException(
                f"Image scan does not exist for the image with '{{imageDigest:'{image_id.image_digest or 'null'}', "
                f"imageTag:'{image_id.image_tag or 'null'}'}}' in the repository with name '{repo.name}' "
                f"in the registry with id '{repo.registry_id}'"
            )
        ident = ImageIdentifier(sha256_text(digest), image_id.image_tag)
        start = _decode_token(next_token, repo, digest, doc["scan"]) if next_token is not None else 0
        if listed is None or status.status != "COMPLETE":
            if start:
                raise _bad_token()
            return DescribeImageScanFindingsResult(repo.registry_id, repo.name, ident, status)
        found = listed["findings"]
        page = tuple(_finding(f) for f in found[start:start + limit])
        token = (encode_token("s", repo.id, digest.hex(), doc["scan"], start + limit)
                 if start + limit < len(found) else None)
        findings = ImageScanFindings(doc["completed"], dict(doc["counts"]), page, doc.get("source"))
        return DescribeImageScanFindingsResult(repo.registry_id, repo.name, ident, status, findings, token)

    # --- registry and repository configuration -------------------------------------------

    def put_registry_scanning_configuration(
        self, *, scan_type: str | None = None, rules: Sequence[RegistryScanningRule] | None = None,
        registry_id: str | None = None,
    ) -> PutRegistryScanningConfigurationResult:
        """PutRegistryScanningConfiguration: replace the registry's scan type (BASIC or ENHANCED)
        and rules (at most two, one per frequency; BASIC supports SCAN_ON_PUSH and MANUAL,
        ENHANCED SCAN_ON_PUSH and CONTINUOUS_SCAN; each with up to 100 WILDCARD repository
        filters). Errors: InvalidParameter. Durable on return."""
        registry = v.registry_id(registry_id, self.registry_id)
        config = scan_rules.check_configuration(scan_type, rules)

        def commit(t: WriteTxn) -> None:
            documents.put(t, documents.REGISTRY_SCANNING, documents.registry_key(registry),
                          scan_rules.config_doc(config))

        self._index.write(commit)
        return PutRegistryScanningConfigurationResult(config)

    def get_registry_scanning_configuration(self, *, registry_id: str | None = None
                                            ) -> GetRegistryScanningConfigurationResult:
        """GetRegistryScanningConfiguration: BASIC with no rules until one is put."""
        registry = v.registry_id(registry_id, self.registry_id)
        with self._index.read() as t:
            config = scan_rules.registry_config(t, registry)
        return GetRegistryScanningConfigurationResult(registry, config)

    def batch_get_repository_scanning_configuration(
        self, repository_names: Sequence[str], *, registry_id: str | None = None,
    ) -> BatchGetRepositoryScanningConfigurationResult:
        """BatchGetRepositoryScanningConfiguration: for each of 1..25 repositories, whether it is
        scanned on push and at what frequency, with the registry rule's filters that match it;
        an unknown repository is a REPOSITORY_NOT_FOUND failure. Errors: InvalidParameter.
        One snapshot."""
        registry = v.registry_id(registry_id, self.registry_id)
        names = v.str_list(repository_names, "repositoryNames", max_items=25)
        for name in names:
            v.repository_name(name, "repositoryNames")
        found: list[RepositoryScanningConfiguration] = []
        failures: list[RepositoryScanningConfigurationFailure] = []
        with self._index.read() as t:
            config = scan_rules.registry_config(t, registry)
            for name in names:
                rec = t.get_repo(registry, name)
                if rec is None:
                    failures.append(RepositoryScanningConfigurationFailure(
                        name, "REPOSITORY_NOT_FOUND", repository_not_found(registry, name).message))
                    continue
                frequency, filters = scan_rules.applied(config, rec)
                found.append(RepositoryScanningConfiguration(
                    self._repos.result(rec).repository_arn, rec.name,
                    rec.scan_on_push or frequency == "SCAN_ON_PUSH", frequency, filters))
        return BatchGetRepositoryScanningConfigurationResult(tuple(found), tuple(failures))

    # --- scan on push --------------------------------------------------------------------

    def on_push(self, result: PutImageResult) -> None:
        """The push hook: scan a new image whose repository scans on push (its own
        scanOnPush, or a registry rule with SCAN_ON_PUSH or CONTINUOUS_SCAN matching it).
        Manifest lists are not scanned (their images are, as they are pushed); re-tagging an
        image already scanned starts nothing."""
        image = result.image
        if image.image_manifest_media_type in INDEXES or image.image_id.image_digest is None:
            return
        try:
            repo = self._repos.lookup(image.registry_id, image.repository_name)
        except RepositoryNotFoundException:
            return  # deleted since the push
        with self._index.read() as t:
            frequency, _ = scan_rules.applied(scan_rules.registry_config(t, repo.registry_id), repo)
        if repo.scan_on_push or frequency in ("SCAN_ON_PUSH", "CONTINUOUS_SCAN"):
            self._begin(repo, bytes.fromhex(image.image_id.image_digest[7:]), on_push=True)

    # --- the scans -----------------------------------------------------------------------

    def _resolve(self, registry_id: str | None, repository_name: str,
                 image_id: ImageIdentifier) -> tuple[RepoRecord, bytes]:
        if not isinstance(image_id, ImageIdentifier):
            raise invalid_parameter("imageId", "Member must be an ImageIdentifier")
        repo = self._repos.lookup(registry_id, repository_name)
        detail = self._images.describe_images(repo.registry_id, repo.name, [image_id], None, None, None)
        return repo, bytes.fromhex(detail.image_details[0].image_digest[7:])

    def _begin(self, repo: RepoRecord, digest: bytes, *, on_push: bool) -> ImageScanStatus | None:
        """Record a new scan of the image and queue it; its status (None: a push found it
        already scanned)."""
        now = time.time()
        scan = uuid.uuid4().hex
        with self._lock:
            runner = self._runner
        reserved = runner is not None and self._reserve()
        key = documents.image_key(repo.id, digest)

        def commit(t: WriteTxn) -> tuple[dict[str, Any] | None, str]:
            cur = t.get_repo(repo.registry_id, repo.name)
            rec = t.get_image(repo.id, digest, with_manifest=False) if cur is not None and cur.id == repo.id else None
            if cur is None or cur.id != repo.id:
                raise repository_not_found(repo.registry_id, repo.name)
            if rec is None:
                raise ImageNotFoundException(
                    f"The image with imageId {{imageDigest={sha256_text(digest)}}} does not exist within the "
                    f"repository with name '{repo.name}' in the registry with id '{repo.registry_id}'")
            old = _valid(documents.get(t, documents.IMAGE_SCAN, key), rec)
            if on_push and old is not None:
                return None, rec.media_type
            doc: dict[str, Any] = {"scan": scan, "started": now, "pushed": rec.pushed_at, "owner": None}
            unsupported = _unsupported(repo, digest, rec)
            if unsupported is not None:
                if not on_push:
                    raise UnsupportedImageTypeException(unsupported)
                doc.update(status="UNSUPPORTED_IMAGE", description=unsupported)
            else:
                if old is not None and _counts(old, now):
                    raise LimitExceededException(LIMIT)
                if runner is None or not reserved:
                    doc.update(status="FAILED",
                               description=NO_SCANNER if runner is None else QUEUE_FULL.format(MAX_QUEUED_SCANS))
                else:
                    doc.update(status="IN_PROGRESS", description="The scan is in progress.",
                               owner={"host": _HOST, "pid": os.getpid(), "instance": self._instance})
            documents.put(t, documents.IMAGE_SCAN, key, doc)
            documents.delete(t, documents.IMAGE_SCAN_FINDINGS, key)
            return doc, rec.media_type

        try:
            doc, media_type = self._index.write(commit)
        except BaseException:
            if reserved:
                self._release()
            raise
        if doc is None or doc["status"] != "IN_PROGRESS":
            if reserved:
                self._release()
            return None if doc is None else _status(doc)
        self._enqueue(_Job(scan, repo, digest, media_type))
        return _status(doc)

    def _reserve(self) -> bool:
        with self._lock:
            if self._closed or self._pending >= MAX_QUEUED_SCANS:
                return False
            self._pending += 1
            return True

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    def _enqueue(self, job: _Job) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="ecrstore-scan", daemon=True)
                self._thread.start()
            self._queue.put(job)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._scan(job)
            except Exception:  # a scan's failure is its own; the next one still runs
                log.exception("scanning %s@%s", job.repository_name, sha256_text(job.digest))
            finally:
                self._release()

    def _scan(self, job: _Job) -> None:
        with self._lock:
            runner = None if self._closed else self._runner
        target = ScanTarget(job.registry_id, job.repository_name, sha256_text(job.digest), job.media_type)
        listed: dict[str, Any] | None = None
        try:
            if runner is None:
                raise ScannerError(NO_SCANNER)
            report = runner(target)
            if not isinstance(report, ScanReport):
                raise ScannerError("The scanner answered no report.")
            update, listed = _completed(report)
        except ScannerError as e:
            update = {"status": "FAILED", "description": e.description}
        except Exception as e:
            log.exception("the scanner of %s@%s failed", target.repository_name, target.image_digest)
            update = {"status": "FAILED", "description": f"The scanner failed unexpectedly: {type(e).__name__}: {e}"}
        self._finish(job, {**update, "owner": None}, listed)

    def _finish(self, job: _Job, update: dict[str, Any], listed: dict[str, Any] | None) -> None:
        key = documents.image_key(job.repo_id, job.digest)

        def commit(t: WriteTxn) -> None:
            cur = documents.get(t, documents.IMAGE_SCAN, key)
            if cur is None or cur.get("scan") != job.scan:
                return  # superseded, or its repository was deleted
            if t.get_image(job.repo_id, job.digest, with_manifest=False) is None:
                documents.delete(t, documents.IMAGE_SCAN, key)
                return
            documents.put(t, documents.IMAGE_SCAN, key, {**cur, **update})
            if listed is not None:
                documents.put(t, documents.IMAGE_SCAN_FINDINGS, key, {**listed, "scan": job.scan})

        with self._lock:  # close() waits for this write, and none starts after it
            if not self._closed:
                self._index.write(commit)


# --- scan documents ----------------------------------------------------------------------


def _live(doc: dict[str, Any]) -> bool:
    """Whether an IN_PROGRESS scan's owner may still finish it."""
    owner = doc.get("owner")
    if not isinstance(owner, dict) or time.time() - float(doc.get("started", 0)) > STALE_SCAN_SECONDS:
        return False
    if owner.get("host") != _HOST:
        return True  # another host's process cannot be asked; the age bound above covers it
    pid = owner.get("pid")
    if pid == os.getpid():
        with _LIVE_LOCK:
            return owner.get("instance") in _LIVE
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        return True
    return True


def _valid(doc: Any, rec: ImageRecord | None) -> dict[str, Any] | None:
    """The scan document if it is for this push of the image."""
    if not isinstance(doc, dict) or rec is None or doc.get("pushed") != rec.pushed_at:
        return None
    return doc


def _status(doc: dict[str, Any]) -> ImageScanStatus:
    if doc["status"] == "IN_PROGRESS" and not _live(doc):
        return ImageScanStatus("FAILED", INTERRUPTED)
    return ImageScanStatus(doc["status"], doc.get("description"))


def _complete(status: ImageScanStatus) -> bool:
    return status.status == "COMPLETE"


def _counts(doc: dict[str, Any], now: float) -> bool:
    """Whether a scan counts toward the one-per-24-hours limit."""
    return _status(doc).status in ("IN_PROGRESS", "COMPLETE") and now - float(doc["started"]) < SCAN_INTERVAL


def scan_summary(t: ReadTxn, repo_id: int, digest: bytes,
                 rec: ImageRecord) -> tuple[ImageScanStatus | None, ImageScanFindingsSummary | None]:
    """DescribeImages' imageScanStatus and imageScanFindingsSummary of an image (None: never
    scanned; no summary until a scan completed)."""
    doc = _valid(documents.get(t, documents.IMAGE_SCAN, documents.image_key(repo_id, digest)), rec)
    if doc is None:
        return None, None
    status = _status(doc)
    if not _complete(status):
        return status, None
    return status, ImageScanFindingsSummary(doc["completed"], dict(doc["counts"]), doc.get("source"))


def _unsupported(repo: RepoRecord, digest: bytes, rec: ImageRecord) -> str | None:
    """Why the image cannot be scanned, or None."""
    where = f"The image with digest '{sha256_text(digest)}' in the repository with name '{repo.name}'"
    if rec.media_type in INDEXES:
        return f"{where} is a manifest list ({rec.media_type}), which cannot be scanned: scan the images it lists"
    if rec.artifact_media_type not in _IMAGE_CONFIGS:
        return (f"{where} is an artifact of type '{rec.artifact_media_type}', not a container image, "
                "and cannot be scanned")
    return None


def _completed(report: ScanReport) -> tuple[dict[str, Any], dict[str, Any]]:
    """The status update and the findings document of a finished scan."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings = sorted(report.findings, key=lambda f: (order.get(f.severity, len(order)), f.name))
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    description = COMPLETED
    if len(findings) > MAX_LISTED_FINDINGS:
        description += (f" {len(findings)} findings were counted; the first {MAX_LISTED_FINDINGS}, "
                        "most severe first, are listed.")
    listed = [{"name": f.name, "severity": f.severity, "description": f.description, "uri": f.uri,
               "attributes": [[a.key, a.value] for a in f.attributes]} for f in findings[:MAX_LISTED_FINDINGS]]
    update = {"status": "COMPLETE", "description": description, "completed": time.time(), "counts": counts,
              "source": report.vulnerability_source_updated_at}
    return update, {"findings": listed}


def _finding(doc: dict[str, Any]) -> ImageScanFinding:
    return ImageScanFinding(doc["name"], doc["severity"], doc.get("description"), doc.get("uri"),
                            tuple(Attribute(k, val) for k, val in doc.get("attributes") or ()))


def _bad_token() -> InvalidParameterException:
    return InvalidParameterException("Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'")


def _token_shape(fields: list[object]) -> None:
    if len(fields) != 5 or fields[0] != "s":
        raise ValueError


def _decode_token(token: object, repo: RepoRecord, digest: bytes, scan: str) -> int:
    def read(fields: list[object]) -> int:
        kind, rid, digest_hex, scan_id, start = fields
        if (kind, rid, digest_hex, scan_id) != ("s", repo.id, digest.hex(), scan) or not isinstance(start, int) \
                or isinstance(start, bool) or start < 1:
            raise ValueError
        return start

    return decode_token(token, read)
