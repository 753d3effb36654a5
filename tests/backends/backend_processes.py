"""What the conformance suite runs in spawned processes.

A module of its own, not the conftest: a spawned child finds a function by its module's
name, and with several conftest.py files on the path ``conftest`` may name another one.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ecrstore.blobs.local import Layout, LocalBlobStore


def call_with_handle(reopen: Callable[..., Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    handle = reopen()
    try:
        return fn(handle, *args)
    finally:
        close = getattr(handle, "close", None)
        if close is not None:
            close()


def open_local(root: Any) -> LocalBlobStore:
    return LocalBlobStore(Layout(root), durable=True, background=ThreadPoolExecutor(1).submit)
