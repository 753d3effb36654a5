"""DirectAppender: streamed appends through O_DIRECT (or buffered where refused) land exactly
where they should, whatever the offsets, chunk sizes and staging size."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from ecrstore.fsutil import DirectAppender


def _roundtrip(path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        expect = bytearray()
        start = rnd.choice([0, 1, 4095, 4096, 5000])
        if start:
            os.pwrite(fd, b"p" * start, 0)
            expect += b"p" * start
        appender = DirectAppender(fd, stage=rnd.choice([4096, 8192, 65536]))
        offset = start
        for _ in range(rnd.randint(1, 10)):
            chunks = [rnd.randbytes(rnd.choice([0, 1, 3, 100, 4095, 4096, 4097, 70000]))
                      for _ in range(rnd.randint(1, 5))]
            assert appender.append(offset, chunks) == sum(len(c) for c in chunks)
            for chunk in chunks:
                expect += chunk
                offset += len(chunk)
            if rnd.random() < 0.3:
                appender.finish()
        appender.finish()
        appender.close()
        appender.close()  # idempotent
        os.fsync(fd)
        assert path.read_bytes() == bytes(expect)
    finally:
        os.close(fd)


@pytest.mark.parametrize("where", ["disk", "tmpfs"])
def test_appends_at_any_offset_and_size_land_exactly(tmp_path, where):
    root = tmp_path if where == "disk" else Path("/dev/shm")
    path = root / f"direct-{os.getpid()}-{where}"
    try:
        for seed in range(60):
            _roundtrip(path, seed)
    finally:
        path.unlink(missing_ok=True)


def test_a_jump_in_offsets_finishes_what_was_staged(tmp_path):
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        appender = DirectAppender(fd, stage=8192)
        appender.append(0, [b"a" * 5000])
        appender.append(10000, [b"b" * 10])  # not where the last append ended
        appender.finish()
        appender.close()
        data = path.read_bytes()
        assert data[:5000] == b"a" * 5000 and data[10000:] == b"b" * 10
    finally:
        os.close(fd)


def test_closing_drops_what_was_staged_and_never_finished(tmp_path):
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        appender = DirectAppender(fd, stage=65536)
        appender.append(0, [b"x" * 100])
        direct = appender.direct
        appender.close()
        # Staged for a direct write, never finished: gone. Written buffered at once otherwise.
        assert path.stat().st_size == (0 if direct else 100)
    finally:
        os.close(fd)
