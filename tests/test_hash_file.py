"""hash_file: byte ranges of regular files through mmap windows, compared with hashlib."""

from __future__ import annotations

import hashlib
import mmap
import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecrstore import Sha256, hash_file, hashing
from ecrstore.errors import HashStateError

GRAN = mmap.ALLOCATIONGRANULARITY
SIZE = 5 * GRAN + 123  # several small windows, and a ragged end


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, bytes]:
    data = random.Random(1).randbytes(SIZE)
    path = tmp_path_factory.mktemp("hash_file") / "sample"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def small_windows(monkeypatch):
    monkeypatch.setattr(hashing, "WINDOW_SIZE", GRAN)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


RANGES = [
    (0, None),
    (0, 1),
    (1, None),
    (GRAN - 1, 2),  # straddles the first window boundary
    (GRAN, GRAN),  # exactly the second window
    (GRAN + 1, 3 * GRAN),  # unaligned start, several windows
    (2 * GRAN - 7, None),
    (SIZE - 1, 1),
    (SIZE - 1, None),
    (0, SIZE),
]


@pytest.mark.parametrize("window", [GRAN, 2 * GRAN, hashing.WINDOW_SIZE])
@pytest.mark.parametrize("offset, length", RANGES)
def test_ranges(sample, monkeypatch, window, offset, length):
    monkeypatch.setattr(hashing, "WINDOW_SIZE", window)
    path, data = sample
    end = SIZE if length is None else offset + length
    h = hash_file(path, offset, length)
    assert isinstance(h, Sha256)
    assert h.digest() == sha(data[offset:end])
    assert h.nbytes == end - offset


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offset=st.integers(0, SIZE - 1),
    length=st.one_of(st.none(), st.integers(1, SIZE)),
    windows=st.integers(1, 3),
)
def test_any_range_any_window(sample, monkeypatch, offset, length, windows):
    if length is not None and offset + length > SIZE:
        length = SIZE - offset
    monkeypatch.setattr(hashing, "WINDOW_SIZE", windows * GRAN)
    path, data = sample
    end = SIZE if length is None else offset + length
    assert hash_file(path, offset, length).digest() == sha(data[offset:end])


def test_path_forms(sample):
    path, data = sample
    for form in (path, str(path), os.fsencode(path)):
        assert hash_file(form).digest() == sha(data)


def test_fd_is_left_open_and_unmoved(sample, small_windows):
    path, data = sample
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 1234, os.SEEK_SET)
        assert hash_file(fd, 10, 3 * GRAN).digest() == sha(data[10 : 10 + 3 * GRAN])
        assert hash_file(fd).digest() == sha(data)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 1234
        assert os.read(fd, 4) == data[1234:1238]  # still open and usable
    finally:
        os.close(fd)


def test_file_object_fileno(sample):
    path, data = sample
    with open(path, "rb") as f:
        assert hash_file(f.fileno(), 5).digest() == sha(data[5:])


def test_continue_from_sha256_object(sample, small_windows):
    path, data = sample
    head = b"previous bytes of the upload"
    start = Sha256(head)
    before = (start.nbytes, start.digest())
    h = hash_file(path, 100, 2 * GRAN, state=start)
    assert h is not start
    assert h.digest() == sha(head + data[100 : 100 + 2 * GRAN])
    assert h.nbytes == len(head) + 2 * GRAN
    assert (start.nbytes, start.digest()) == before  # the caller's object is not touched


def test_continue_from_exported_state(sample, small_windows):
    path, data = sample
    state = Sha256(data[:GRAN + 5]).export_state()
    for form in (state, bytearray(state), memoryview(state)):
        h = hash_file(path, GRAN + 5, None, state=form)
        assert h.digest() == sha(data)
        assert h.nbytes == SIZE


def test_continuation_keeps_a_pinned_kernel(sample):
    path, data = sample
    h = hash_file(path, 1, None, state=Sha256(data[:1], kernel="portable"))
    assert h.kernel == "portable"
    assert h.digest() == sha(data)


def test_bad_state(sample):
    path, _ = sample
    with pytest.raises(HashStateError):
        hash_file(path, state=b"not a state")
    with pytest.raises(TypeError):
        hash_file(path, state="not a state")


# --- errors ---------------------------------------------------------------------------------------


def test_negative_offset_or_length(sample):
    path, _ = sample
    with pytest.raises(ValueError, match="offset must be >= 0"):
        hash_file(path, -1)
    with pytest.raises(ValueError, match="length must be >= 0"):
        hash_file(path, 0, -5)


def test_empty_ranges_are_refused(sample, tmp_path):
    path, _ = sample
    with pytest.raises(ValueError, match="empty range"):
        hash_file(path, 10, 0)
    with pytest.raises(ValueError, match=f"empty range \\[{SIZE}, {SIZE}\\)"):
        hash_file(path, SIZE)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty range .* \\(0 bytes\\)"):
        hash_file(empty)


def test_ranges_past_the_end(sample):
    path, _ = sample
    with pytest.raises(ValueError, match=f"range \\[{SIZE - 1}, {SIZE + 1}\\) runs past the end .*\\({SIZE} bytes\\)"):
        hash_file(path, SIZE - 1, 2)
    with pytest.raises(ValueError, match=f"runs past the end .*\\({SIZE} bytes\\)"):
        hash_file(path, SIZE + 1)
    with pytest.raises(ValueError, match="runs past the end"):
        hash_file(path, 0, SIZE + 1)


def test_not_a_regular_file(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        hash_file(tmp_path)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match=f"fd {fd} is not a regular file"):
            hash_file(fd)
    finally:
        os.close(fd)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):  # and does not block on open
        hash_file(fifo)


def test_os_errors_propagate(tmp_path, sample):
    with pytest.raises(FileNotFoundError):
        hash_file(tmp_path / "missing")
    path, _ = sample
    fd = os.open(path, os.O_WRONLY)
    try:
        with pytest.raises(OSError):  # a mapping needs a readable descriptor
            hash_file(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        hash_file(987654)  # not an open descriptor


def test_window_size_must_be_aligned(sample, monkeypatch):
    path, _ = sample
    monkeypatch.setattr(hashing, "WINDOW_SIZE", GRAN + 1)
    with pytest.raises(ValueError, match="WINDOW_SIZE"):
        hash_file(path)


# --- big files ------------------------------------------------------------------------------------


def _hashlib_file(path: Path, offset: int = 0, length: int | None = None) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while left is None or left > 0:
            chunk = f.read(16 << 20 if left is None else min(16 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.digest()


def test_default_window_boundary(tmp_path):
    # A range across the real WINDOW_SIZE boundary, on a sparse file.
    w = hashing.WINDOW_SIZE
    path = tmp_path / "sparse"
    with open(path, "wb") as f:
        f.truncate(w + 2 * GRAN)
        f.seek(w - 100)
        f.write(random.Random(2).randbytes(300))
    assert hash_file(path, w - 150, 400).digest() == _hashlib_file(path, w - 150, 400)
    assert hash_file(path, 7).digest() == _hashlib_file(path, 7)


def test_file_larger_than_4_gib(tmp_path):
    """A sparse 4 GiB + 1 MiB file, with data around the 4 GiB mark: 64-bit offsets, sizes
    and byte counts all the way through (takes a few seconds)."""
    size = (4 << 30) + (1 << 20)
    path = tmp_path / "big"
    rnd = random.Random(3)
    try:
        with open(path, "wb") as f:
            f.truncate(size)
            for pos in (0, (1 << 31) + 12345, (4 << 30) - 1000, size - 4096):
                f.seek(pos)
                f.write(rnd.randbytes(4096))
        assert os.stat(path).st_size == size
        h = hash_file(path)
        assert h.nbytes == size
        assert h.digest() == _hashlib_file(path)
        # A range that starts below 4 GiB and ends above it, from an fd.
        fd = os.open(path, os.O_RDONLY)
        try:
            off, length = (4 << 30) - 3000, 9000
            assert hash_file(fd, off, length).digest() == _hashlib_file(path, off, length)
        finally:
            os.close(fd)
    finally:
        path.unlink(missing_ok=True)
