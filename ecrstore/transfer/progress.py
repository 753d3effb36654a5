"""Progress events of an import or export, delivered to a caller's callback.

The callback is called with one :class:`ProgressEvent` at a time, never concurrently (calls
from worker threads are serialised here), so it need not be thread-safe; it should return
quickly, since a worker waits for it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

__all__ = ["ProgressEvent", "ProgressCallback", "Emitter"]

log = logging.getLogger("ecrstore.transfer")


@dataclasses.dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of a transfer.

    ``kind`` is one of:

    * ``"plan"``: the work is known: ``total_bytes`` and ``total_layers`` to transfer, and
      ``skipped_layers`` / ``skipped_bytes`` already present (import) that will not be.
    * ``"bytes"``: ``nbytes`` more bytes transferred.
    * ``"layer"``: blob ``digest`` (``nbytes`` long) done; ``skipped`` when it was already
      present and nothing was transferred.
    * ``"image"``: manifest ``digest`` done with ``tags``; ``skipped`` when it was already
      present.
    * ``"note"``: ``message`` for a person (a decompression starting, a part of the source
      left out and why).
    """

    kind: str
    digest: str | None = None
    nbytes: int = 0
    skipped: bool = False
    tags: tuple[str, ...] = ()
    total_bytes: int = 0
    total_layers: int = 0
    skipped_layers: int = 0
    skipped_bytes: int = 0
    message: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


class Emitter:
    """Serialises events to a callback; notes go to the log when there is no callback."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._lock = threading.Lock()

    def __call__(self, kind: str, **fields: object) -> None:
        if self._callback is None:
            if kind == "note":
                log.info("%s", fields.get("message"))
            return
        event = ProgressEvent(kind, **fields)  # type: ignore[arg-type]
        with self._lock:
            self._callback(event)

    def note(self, message: str) -> None:
        self("note", message=message)
