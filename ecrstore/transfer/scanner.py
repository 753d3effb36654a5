"""A scan runner that runs a vulnerability scanner's command over an exported image.

``ecrstore serve --scanner 'trivy image --quiet --format json --input {layout}'`` (or
``'grype -o json oci-dir:{layout}'``) builds a :class:`CommandScanner`: for each scan it
exports the image as an OCI image layout (:func:`~ecrstore.transfer.export_image`) into a
temporary directory, runs the command with ``{layout}`` replaced by that directory's path (no
shell: the command line is split as a POSIX shell would, then run directly), within a time
limit, and reads its standard output as a Trivy or Grype JSON report
(:mod:`.scan_reports`). A command that cannot start, exits non-zero, runs past the limit,
prints too much or prints something else makes the scan FAILED, saying which.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import threading
from typing import TYPE_CHECKING, BinaryIO

from ..errors import EcrError
from ..limits import DEFAULT_SCANNER_TIMEOUT
from ..scan_models import ScanReport, ScanTarget
from ..scanning import ScannerError
from .errors import TransferError
from .exporter import export_image
from .scan_reports import parse_report

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["LAYOUT", "MAX_REPORT_BYTES", "CommandScanner", "parse_command"]

#: The placeholder the command line must contain: the exported OCI layout's path.
LAYOUT = "{layout}"
#: The largest report read (a larger output fails the scan rather than fill memory).
MAX_REPORT_BYTES = 256 * 2**20
_STDERR_TAIL = 300


def parse_command(text: str) -> list[str]:
    """A scanner command line as arguments. ValueError (a sentence for a person) when it does
    not split, is empty or has no ``{layout}``."""
    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise ValueError(f"the scanner command {text!r} cannot be split into arguments: {e}") from None
    if not argv:
        raise ValueError("the scanner command is empty")
    if not any(LAYOUT in arg for arg in argv):
        raise ValueError(f"the scanner command must contain {LAYOUT}, where the image's OCI layout goes")
    return argv


class CommandScanner:
    """Runs ``command`` (see :func:`parse_command`) for each scan, at most ``timeout`` seconds
    each. Thread-safe; :meth:`close` kills the commands running (their scans read as
    interrupted)."""

    def __init__(self, store: Store, command: str, *, timeout: float = DEFAULT_SCANNER_TIMEOUT) -> None:
        if not timeout > 0:
            raise ValueError("the scanner timeout must be positive")
        self._store = store
        self._argv = parse_command(command)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._closed = False

    def __call__(self, target: ScanTarget) -> ScanReport:
        with tempfile.TemporaryDirectory(prefix="ecrstore-scan-") as tmp:
            layout = os.path.join(tmp, "layout")
            try:
                export_image(self._store, f"{target.repository_name}@{target.image_digest}", layout,
                             format="oci", registry_id=target.registry_id)
            except (EcrError, TransferError) as e:
                raise ScannerError(f"The image could not be exported for the scanner: {e}") from None
            out_path, err_path = os.path.join(tmp, "report.json"), os.path.join(tmp, "stderr.txt")
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                code = self._run([arg.replace(LAYOUT, layout) for arg in self._argv], tmp, out, err)
            if code != 0:
                raise ScannerError(f"The scanner exited with status {code}{_tail(err_path)}.")
            if os.path.getsize(out_path) > MAX_REPORT_BYTES:
                raise ScannerError(f"The scanner's report is larger than {MAX_REPORT_BYTES} bytes.")
            with open(out_path, "rb") as f:
                return parse_report(f.read())

    def _run(self, argv: list[str], cwd: str, out: BinaryIO, err: BinaryIO) -> int:
        with self._lock:
            if self._closed:
                raise ScannerError("The scanner was stopped before the scan ran.")
            try:
                # A session of its own, so a timeout kills what the command started too.
                proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        start_new_session=True)
            except OSError as e:
                raise ScannerError(f"The scanner command {argv[0]!r} could not be run: "
                                   f"{e.strerror or e}.") from None
            self._running.add(proc)
        try:
            return proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise ScannerError(f"The scanner did not finish within {self.timeout:g} seconds.") from None
        finally:
            with self._lock:
                self._running.discard(proc)

    def close(self) -> None:
        """Kill the commands running now and refuse further scans. Idempotent."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        for proc in running:
            _kill(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _tail(path: str) -> str:
    """The end of the command's standard error, for the description."""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - _STDERR_TAIL))
        text = f.read().decode("utf-8", "replace").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return f": {lines[-1].strip()}" if lines else ""
