"""The native SHA-256: NIST CAVP vectors on every kernel, differential tests against hashlib,
the exported state format (golden bytes and field layout), damaged states, threads, and the
ECRSTORE_SHA256_KERNEL demand.

Kernels this CPU lacks are skipped with the reason "CPU lacks <kernel>", never passed.
"""

from __future__ import annotations

import array
import hashlib
import itertools
import math
import mmap
import os
import pickle
import random
import struct
import subprocess
import sys
import threading
from pathlib import Path

import cryptography_vectors
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecrstore import Sha256, sha256_kernel, sha256_kernels
from ecrstore._sha256 import STATE_SIZE
from ecrstore.errors import HashStateError, ServerException

ALL_KERNELS = ("portable", "shani", "armv8")


def _kernel_param(name: str):
    return pytest.param(
        name, id=name, marks=pytest.mark.skipif(name not in sha256_kernels(), reason=f"CPU lacks {name}")
    )


KERNELS = [_kernel_param(k) for k in ALL_KERNELS]
KERNEL_PAIRS = [
    pytest.param(
        a,
        b,
        id=f"{a}->{b}",
        marks=pytest.mark.skipif(
            a not in sha256_kernels() or b not in sha256_kernels(),
            reason=f"CPU lacks {a if a not in sha256_kernels() else b}",
        ),
    )
    for a in ALL_KERNELS
    for b in ALL_KERNELS
]


def _data(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


# --- an independent SHA-256 model: constants derived from their definition ---------------------


def _primes(n: int) -> list[int]:
    out: list[int] = []
    c = 2
    while len(out) < n:
        if all(c % p for p in out if p * p <= c):
            out.append(c)
        c += 1
    return out


def _icbrt(n: int) -> int:
    x = 1 << ((n.bit_length() + 2) // 3)
    while True:
        y = (2 * x + n // (x * x)) // 3
        if y >= x:
            break
        x = y
    while x**3 > n:
        x -= 1
    while (x + 1) ** 3 <= n:
        x += 1
    return x


# FIPS 180-4 4.2.2 and 5.3.3: fractional parts of cube and square roots of the first primes.
PY_K = [_icbrt(p << 96) & 0xFFFFFFFF for p in _primes(64)]
PY_IV = [math.isqrt(p << 64) & 0xFFFFFFFF for p in _primes(8)]


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & 0xFFFFFFFF


def py_compress(h: list[int], block: bytes) -> list[int]:
    w = list(struct.unpack(">16I", block))
    for t in range(16, 64):
        s0 = _rotr(w[t - 15], 7) ^ _rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
        s1 = _rotr(w[t - 2], 17) ^ _rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & 0xFFFFFFFF)
    a, b, c, d, e, f, g, hh = h
    for t in range(64):
        t1 = hh + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g)) + PY_K[t] + w[t]
        t2 = (_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))
        a, b, c, d, e, f, g, hh = (t1 + t2) & 0xFFFFFFFF, a, b, c, (d + t1) & 0xFFFFFFFF, e, f, g
    return [(x + y) & 0xFFFFFFFF for x, y in zip(h, (a, b, c, d, e, f, g, hh), strict=True)]


def py_midstate(message: bytes) -> tuple[list[int], int, bytes]:
    """(chaining words, byte count, pending partial block) after hashing ``message``."""
    h = list(PY_IV)
    full = len(message) - len(message) % 64
    for i in range(0, full, 64):
        h = py_compress(h, message[i : i + 64])
    return h, len(message), message[full:]


def py_final(h: list[int], count: int, pending: bytes) -> bytes:
    tail = pending + b"\x80" + b"\0" * ((55 - len(pending)) % 64) + struct.pack(">Q", count * 8)
    for i in range(0, len(tail), 64):
        h = py_compress(h, tail[i : i + 64])
    return struct.pack(">8I", *h)


def py_encode_state(h: list[int], count: int, pending: bytes, *, magic=b"ES2\x00", version=1,
                    reserved=b"\0\0\0", padding: bytes | None = None) -> bytes:
    """The documented layout (csrc/sha256.h), written independently of the C code."""
    buf = pending + (padding if padding is not None else b"\0" * (64 - len(pending)))
    body = magic + bytes([version]) + reserved + struct.pack(">8IQ", *h, count) + buf
    assert len(body) == 112
    return body + hashlib.sha256(body).digest()[:8]


def reseal(state: bytes) -> bytes:
    """``state`` with its checksum recomputed, to reach the checks that follow the checksum."""
    return state[:112] + hashlib.sha256(state[:112]).digest()[:8]


def test_independent_model_agrees_with_hashlib():
    assert PY_K[0] == 0x428A2F98 and PY_K[63] == 0xC67178F2 and PY_IV[0] == 0x6A09E667
    for n in (0, 3, 55, 56, 64, 100, 200):
        m = _data(n, n)
        assert py_final(*py_midstate(m)) == hashlib.sha256(m).digest()


# --- NIST CAVP (SHAVS) vectors --------------------------------------------------------------------


def _rsp(name: str) -> list[dict[str, str]]:
    """The records of a CAVP response file (``key = value`` lines, blank-line separated)."""
    records, rec = [], {}
    with cryptography_vectors.open_vector_file(os.path.join("hashes", "SHA2", name), "r") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(("#", "[")):
                if rec:
                    records.append(rec)
                    rec = {}
                continue
            key, _, value = line.partition("=")
            rec[key.strip()] = value.strip()
    if rec:
        records.append(rec)
    return records


def _msg_vectors(name: str) -> list[tuple[int, bytes, str]]:
    out = []
    for r in _rsp(name):
        if "Len" in r:
            bits = int(r["Len"])
            assert bits % 8 == 0
            out.append((bits, bytes.fromhex(r["Msg"])[: bits // 8], r["MD"]))
    return out


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name, count", [("SHA256ShortMsg.rsp", 65), ("SHA256LongMsg.rsp", 64)])
def test_cavp_messages(kernel, name, count):
    vectors = _msg_vectors(name)
    assert len(vectors) == count
    for bits, msg, md in vectors:
        assert Sha256(msg, kernel=kernel).hexdigest() == md, f"{name} Len={bits}"
        # And byte-ragged: the same message through the partial-block buffer.
        h = Sha256(kernel=kernel)
        for i in range(0, len(msg), 37):
            h.update(msg[i : i + 37])
        assert h.hexdigest() == md, f"{name} Len={bits} in 37-byte pieces"


@pytest.mark.parametrize("kernel", KERNELS)
def test_cavp_monte_carlo(kernel):
    records = _rsp("SHA256Monte.rsp")
    seed = bytes.fromhex(next(r["Seed"] for r in records if "Seed" in r))
    checkpoints = [(int(r["COUNT"]), bytes.fromhex(r["MD"])) for r in records if "COUNT" in r]
    assert [c for c, _ in checkpoints] == list(range(100))
    for j, expected in checkpoints:
        md0 = md1 = md2 = seed
        for _ in range(1000):  # i = 3 .. 1002: MD_i = SHA(MD_{i-3} || MD_{i-2} || MD_{i-1})
            md0, md1, md2 = md1, md2, Sha256(md0 + md1 + md2, kernel=kernel).digest()
        seed = md2
        assert seed == expected, f"Monte Carlo checkpoint {j}"


# --- kernels --------------------------------------------------------------------------------------


def test_kernel_inventory():
    kernels = sha256_kernels()
    assert kernels[0] == "portable"
    assert set(kernels) <= set(ALL_KERNELS)
    assert sha256_kernel() in kernels
    assert Sha256().kernel == sha256_kernel()


def test_default_is_the_best_usable_kernel():
    if os.environ.get("ECRSTORE_SHA256_KERNEL"):
        pytest.skip("a kernel is demanded in this environment")
    assert sha256_kernel() == sha256_kernels()[-1]


@pytest.mark.parametrize("kernel", KERNELS)
def test_pinned_kernel_follows_copies(kernel):
    h = Sha256(b"x", kernel=kernel)
    assert h.kernel == kernel and h.copy().kernel == kernel
    assert Sha256.from_state(h.export_state(), kernel=kernel).kernel == kernel


def test_unknown_and_unusable_kernels_are_refused():
    with pytest.raises(ValueError, match="unknown sha256 kernel 'bogus'"):
        Sha256(kernel="bogus")
    with pytest.raises(ValueError, match="unknown sha256 kernel"):
        Sha256(kernel="portable\0")
    with pytest.raises(TypeError):
        Sha256(kernel=1)
    for k in set(ALL_KERNELS) - set(sha256_kernels()):
        with pytest.raises(ValueError, match=f"CPU lacks {k}"):
            Sha256(kernel=k)


# --- differential against hashlib -----------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_random_chunking_matches_hashlib(kernel, data, cuts):
    h = Sha256(kernel=kernel)
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    for a, b in itertools.pairwise(bounds):
        h.update(data[a:b])
    assert h.digest() == hashlib.sha256(data).digest()
    assert h.nbytes == len(data)


@pytest.mark.parametrize("kernel", KERNELS)
@given(seed=st.integers(0, 2**32), size=st.integers(0, 300_000), pieces=st.integers(1, 6))
def test_large_updates_match_hashlib(kernel, seed, size, pieces):
    # Large enough to take the GIL-free path (> 4 KiB) with unaligned piece boundaries.
    data = _data(size, seed)
    h = Sha256(kernel=kernel)
    step = -(-size // pieces) if size else 1
    for i in range(0, size, step):
        h.update(memoryview(data)[i : i + step])
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("size", [4095, 4096, 4097, 65536, 1 << 20])
def test_sizes_around_the_gil_threshold(kernel, size):
    data = _data(size, size)
    assert Sha256(data, kernel=kernel).digest() == hashlib.sha256(data).digest()


def _buffers(tmp_path: Path) -> list[tuple[str, object, bytes]]:
    raw = _data(10_000, 7)
    path = tmp_path / "blob"
    path.write_bytes(raw)
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    frozen = np.frombuffer(raw, dtype=np.uint8)  # read-only
    u32 = np.frombuffer(raw[:8000], dtype="<u4").copy()
    return [
        ("bytes", raw, raw),
        ("bytearray", bytearray(raw), raw),
        ("memoryview slice", memoryview(raw)[3:9001], raw[3:9001]),
        ("read-only mmap", mapped, raw),
        ("memoryview of mmap", memoryview(mapped)[100:], raw[100:]),
        ("numpy uint8", np.frombuffer(raw, dtype=np.uint8).copy(), raw),
        ("read-only numpy", frozen, raw),
        ("numpy uint32", u32, raw[:8000]),
        ("numpy 2-D", np.frombuffer(raw, dtype=np.uint8).reshape(100, 100), raw),
        ("numpy contiguous slice", frozen[10:20], raw[10:20]),
        ("array('I')", array.array("I", raw[:8000]), raw[:8000]),
        ("empty", b"", b""),
    ]


@pytest.mark.parametrize("kernel", KERNELS)
def test_buffer_types(kernel, tmp_path):
    for label, buf, raw in _buffers(tmp_path):
        h = Sha256(kernel=kernel)
        h.update(buf)
        assert h.digest() == hashlib.sha256(raw).digest(), label
        assert Sha256(buf, kernel=kernel).digest() == hashlib.sha256(raw).digest(), label


def test_non_contiguous_and_non_buffers_are_refused():
    h = Sha256(b"abc")
    arr = np.arange(100, dtype=np.uint8)
    for bad in (arr[::2], np.arange(100, dtype=np.uint8).reshape(10, 10).T, memoryview(b"abcdef")[::2]):
        with pytest.raises(ValueError, match="C-contiguous"):
            h.update(bad)
    with pytest.raises(TypeError, match="encoded"):
        h.update("abc")
    for bad in (None, 12, 3.5, object()):
        with pytest.raises(TypeError):
            h.update(bad)
    assert h.nbytes == 3 and h.digest() == hashlib.sha256(b"abc").digest()


# --- object behaviour -----------------------------------------------------------------------------


def test_attributes():
    h = Sha256()
    assert (h.name, h.digest_size, h.block_size) == ("sha256", 32, 64)
    assert (Sha256.name, Sha256.digest_size, Sha256.block_size) == ("sha256", 32, 64)
    assert h.hexdigest() == hashlib.sha256().hexdigest()
    assert "nbytes=0" in repr(h)


def test_copy_is_independent():
    a = Sha256(b"hello ")
    b = a.copy()
    b.update(b"world")
    a.update(b"there")
    assert a.digest() == hashlib.sha256(b"hello there").digest()
    assert b.digest() == hashlib.sha256(b"hello world").digest()
    assert (a.nbytes, b.nbytes) == (11, 11)


def test_digest_is_repeatable_and_updates_continue():
    h = Sha256(b"a" * 100)
    d1, d2, x = h.digest(), h.digest(), h.hexdigest()
    assert d1 == d2 == bytes.fromhex(x) == hashlib.sha256(b"a" * 100).digest()
    h.update(b"b" * 30)
    assert h.digest() == hashlib.sha256(b"a" * 100 + b"b" * 30).digest()
    assert h.nbytes == 130


def test_pickle_round_trip():
    h = Sha256(_data(1000))
    g = pickle.loads(pickle.dumps(h))
    assert g.nbytes == 1000 and g.digest() == h.digest()


# --- exported state: round trips ------------------------------------------------------------------

SPECIAL_LENGTHS = [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129]


@pytest.mark.parametrize("first, second", KERNEL_PAIRS)
def test_export_import_at_every_split(first, second):
    message = _data(300, 1)
    for n in range(301):
        m = message[:n]
        expected = hashlib.sha256(m).digest()
        for split in range(n + 1):
            state = Sha256(m[:split], kernel=first).export_state()
            assert len(state) == STATE_SIZE
            h = Sha256.from_state(state, kernel=second)
            assert h.nbytes == split
            h.update(m[split:])
            assert h.digest() == expected, (n, split)


@pytest.mark.parametrize("first, second", KERNEL_PAIRS)
def test_export_import_after_a_long_prefix(first, second):
    prefix = _data(1 << 20, 2)  # H is far from the initial value here
    rest = _data(300, 3)
    for tail in SPECIAL_LENGTHS:
        h = Sha256(prefix, kernel=first)
        h.update(rest[:tail])
        g = Sha256.from_state(h.export_state(), kernel=second)
        assert g.nbytes == len(prefix) + tail
        assert g.digest() == hashlib.sha256(prefix + rest[:tail]).digest(), tail
        g.update(rest[tail:])
        assert g.digest() == hashlib.sha256(prefix + rest).digest(), tail


def test_from_state_accepts_bytes_likes():
    s = Sha256(b"abc").export_state()
    for form in (s, bytearray(s), memoryview(s), np.frombuffer(s, dtype=np.uint8)):
        assert Sha256.from_state(form).digest() == hashlib.sha256(b"abc").digest()
    with pytest.raises(TypeError):
        Sha256.from_state(s.hex())


# --- exported state: the format, pinned -----------------------------------------------------------

GOLDEN_ABC = (
    "45533200" "01" "000000"
    "6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19"
    "0000000000000003"
    "616263" + "00" * 61 +
    "f010f0edd109e220"
)
GOLDEN_100 = (  # after bytes(range(100))
    "45533200" "01" "000000"
    "fc99a2df88f42a7a7bb9d18033cdc6a20256755f9d5b9a5044a9cc315abe84a7"
    "0000000000000064"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f60616263" + "00" * 28 +
    "5736c2683a2618aa"
)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("message, golden", [(b"abc", GOLDEN_ABC), (bytes(range(100)), GOLDEN_100)])
def test_golden_state(kernel, message, golden):
    state = Sha256(message, kernel=kernel).export_state()
    assert state.hex() == golden
    # The golden bytes are the documented layout, computed without the C code.
    assert state == py_encode_state(*py_midstate(message))
    assert Sha256.from_state(bytes.fromhex(golden)).digest() == hashlib.sha256(message).digest()


def test_state_fields():
    message = _data(1000, 4)
    state = Sha256(message).export_state()
    magic, version, reserved, *h, count = struct.unpack(">4sB3s8IQ", state[:48])
    assert (magic, version, reserved) == (b"ES2\x00", 1, b"\0\0\0")
    ref_h, ref_count, pending = py_midstate(message)
    assert h == ref_h
    assert count == ref_count == 1000
    assert state[48:112] == pending + b"\0" * (64 - len(pending))
    assert len(pending) == 1000 % 64
    assert state[112:] == hashlib.sha256(state[:112]).digest()[:8]


@pytest.mark.parametrize("kernel", KERNELS)
def test_64_bit_counts(kernel):
    # A state past 4 GiB (and one just below the 2^61-byte limit), built from the layout:
    # the length padding must carry the full 64-bit bit count.
    h0 = py_midstate(_data(640, 5))[0]
    for count in (2**32 + 5, 2**35 + 64 * 7 + 63, 2**61 - 1):
        pending = _data(count % 64, count)
        state = py_encode_state(h0, count, pending)
        g = Sha256.from_state(state, kernel=kernel)
        assert g.nbytes == count
        assert g.export_state() == state
        assert g.digest() == py_final(h0, count, pending)
    with pytest.raises(OverflowError, match="2\\^61"):
        g.update(b"x")
    assert g.nbytes == 2**61 - 1  # unchanged by the refused update


# --- exported state: damaged or foreign -----------------------------------------------------------


def _good_state() -> bytes:
    return Sha256(_data(100, 6)).export_state()


def test_hash_state_error_is_a_value_error_and_a_server_exception():
    assert issubclass(HashStateError, ValueError) and issubclass(HashStateError, ServerException)


def test_wrong_size_states():
    s = _good_state()
    for n in range(len(s)):
        with pytest.raises(HashStateError, match=f"120 bytes, got {n}"):
            Sha256.from_state(s[:n])
    for extra in (b"\0", b"x" * 10, s):
        with pytest.raises(HashStateError, match="120 bytes"):
            Sha256.from_state(s + extra)


def test_wrong_magic_and_version():
    s = _good_state()
    with pytest.raises(HashStateError, match="magic"):
        Sha256.from_state(b"XXXX" + s[4:])
    with pytest.raises(HashStateError, match="magic"):
        Sha256.from_state(bytes(120))
    for version in (0, 2, 255):
        with pytest.raises(HashStateError, match=f"version {version} is not supported"):
            Sha256.from_state(reseal(s[:4] + bytes([version]) + s[5:]))


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_flipped_byte_is_detected(mask):
    s = _good_state()
    for pos in range(len(s)):
        bad = bytearray(s)
        bad[pos] ^= mask
        with pytest.raises(HashStateError):
            Sha256.from_state(bytes(bad))


def test_checks_behind_the_checksum():
    h, count, pending = py_midstate(_data(100, 6))
    cases = {
        "reserved": py_encode_state(h, count, pending, reserved=b"\0\1\0"),
        "after its partial block": py_encode_state(h, count, pending, padding=b"\0" * 27 + b"\1"),
        "byte count": py_encode_state(h, 2**61, b""),
    }
    # Fewer than 64 bytes means nothing was compressed: any H but the initial one is a lie.
    cases["inconsistent"] = py_encode_state(h, 3, b"abc")
    for words, state in cases.items():
        with pytest.raises(HashStateError, match=words):
            Sha256.from_state(state)
    # The same layout with legal values is accepted.
    assert Sha256.from_state(py_encode_state(h, count, pending)).nbytes == 100


def test_checksum_message():
    s = bytearray(_good_state())
    s[50] ^= 1
    with pytest.raises(HashStateError, match="checksum"):
        Sha256.from_state(bytes(s))


# --- threads --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_two_threads_two_objects(kernel):
    inputs = [_data(8 << 20, 10), _data(8 << 20, 11)]
    results: list[bytes | None] = [None, None]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            h = Sha256(kernel=kernel)
            view = memoryview(inputs[i])
            for off in range(0, len(view), 1 << 20):
                h.update(view[off : off + (1 << 20)])
            results[i] = h.digest()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [hashlib.sha256(x).digest() for x in inputs]


def test_one_object_two_threads_is_refused():
    """A second updater is refused, not interleaved: the object holds exactly what succeeded.

    Thread A makes one large update (GIL released); the main thread keeps making small updates
    until one is refused. A refusal means A's update was running, so every small update that
    succeeded before it came before A's bytes. Repeated a bounded number of times in case the
    scheduler lets A finish before the main thread runs; a refusal must be seen at least once.
    """
    big = np.frombuffer(_data(32 << 20, 12), dtype=np.uint8)
    small = b"0123456789"
    for _ in range(20):
        h = Sha256()
        started = threading.Event()
        done = threading.Event()

        def worker(h: Sha256, started: threading.Event, done: threading.Event) -> None:
            started.set()
            h.update(big)
            done.set()

        a = threading.Thread(target=worker, args=(h, started, done))
        a.start()
        started.wait()
        succeeded_before = 0
        refused = False
        while not done.is_set():
            try:
                h.update(small)
            except RuntimeError as e:
                assert "another thread" in str(e)
                refused = True
                break
            succeeded_before += 1
        a.join()
        if refused:
            expected = hashlib.sha256(small * succeeded_before + big.tobytes())
            assert h.digest() == expected.digest()
            assert h.nbytes == len(small) * succeeded_before + big.nbytes
            return
    pytest.fail("no concurrent update was ever refused in 20 tries")


# --- ECRSTORE_SHA256_KERNEL -----------------------------------------------------------------------

_PROBE = "import ecrstore; print(ecrstore.sha256_kernel())"


def _import_with(demand: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ECRSTORE_SHA256_KERNEL=demand)
    return subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kernel", KERNELS)
def test_demanded_kernel_is_used(kernel):
    r = _import_with(kernel)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == kernel


def test_empty_demand_means_the_default():
    r = _import_with("")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == sha256_kernels()[-1]


def test_unknown_demand_fails_the_import():
    r = _import_with("bogus")
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert "ECRSTORE_SHA256_KERNEL='bogus' names no sha256 kernel" in r.stderr


def test_unusable_demand_fails_the_import():
    lacking = [k for k in ALL_KERNELS if k not in sha256_kernels()]
    if not lacking:
        pytest.skip("this CPU runs every kernel; no unusable one to demand")
    r = _import_with(lacking[0])
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert f"ECRSTORE_SHA256_KERNEL='{lacking[0]}': this CPU cannot run that sha256 kernel" in r.stderr
    assert "refusing to fall back" in r.stderr
