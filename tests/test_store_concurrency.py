"""Threads and processes sharing one store: racing parts, racing completions, parallel uploads."""

from __future__ import annotations

import multiprocessing as mp
import threading

import pytest
from storeutil import SMALL, digest_of, open_store

from ecrstore import Store, errors


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "store") as s:
        s.create_repository("app")
        yield s


def run_threads(n, fn):
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except errors.EcrError as e:
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_racing_parts_of_one_upload_one_wins(store):
    for round_ in range(10):
        up = store.initiate_layer_upload("app").upload_id
        blobs = [bytes([i + 1, round_]) * 1024 for i in range(4)]
        results = run_threads(4, lambda i, up=up, blobs=blobs: store.upload_layer_part("app", up, 0, 2047, blobs[i]))
        winners = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        assert len(winners) == 1, results
        assert all(isinstance(r, errors.InvalidLayerPartException) and r.last_valid_byte_received == 2047
                   for i, r in enumerate(results) if i not in winners)
        # the stored bytes are the winner's, whole
        d = store.complete_layer_upload("app", up, [digest_of(blobs[winners[0]])]).layer_digest
        with store.open_layer("app", d) as rd:
            assert rd.read() == blobs[winners[0]]


def test_racing_completions_of_one_digest(store):
    payload = b"same bytes " * 300
    for round_ in range(5):
        repo = f"race-{round_}"
        store.create_repository(repo)
        ups = []
        for _ in range(4):
            up = store.initiate_layer_upload(repo).upload_id
            store.upload_layer_part(repo, up, 0, len(payload) - 1, payload)
            ups.append(up)
        results = run_threads(
            4, lambda i, repo=repo, ups=ups: store.complete_layer_upload(repo, ups[i], [digest_of(payload)]))
        ok = [r for r in results if not isinstance(r, Exception)]
        assert len(ok) == 1, results
        assert all(isinstance(r, errors.LayerAlreadyExistsException) for r in results if r not in ok)
        assert store.stats().uploads_in_progress == 0
    assert store.stats().blobs == 1 and store.stats().layers == 5
    assert store.verify().ok


def test_parallel_uploads_from_threads(store):
    payloads = [bytes([i]) * 2000 + bytes(range(i + 1)) for i in range(8)]

    def push(i):
        up = store.initiate_layer_upload("app").upload_id
        data = payloads[i]
        for off in range(0, len(data), 1024):
            chunk = data[off:off + 1024]
            store.upload_layer_part("app", up, off, off + len(chunk) - 1, chunk)
        return store.complete_layer_upload("app", up, [digest_of(data)]).layer_digest

    results = run_threads(8, push)
    assert results == [digest_of(p) for p in payloads]
    assert store.verify().ok


def _process_push(args):
    path, repo, seed, n = args
    out = []
    with Store(path, **SMALL) as s:
        for k in range(n):
            data = bytes([seed]) * 1500 + k.to_bytes(4, "big") + b"shared" * (seed % 2)
            up = s.initiate_layer_upload(repo).upload_id
            s.upload_layer_part(repo, up, 0, 1023, data[:1024])
            s.upload_layer_part(repo, up, 1024, len(data) - 1, data[1024:])
            try:
                out.append(s.complete_layer_upload(repo, up, [digest_of(data)]).layer_digest)
            except errors.LayerAlreadyExistsException:
                out.append("exists")
    return out


def test_processes_share_one_store(tmp_path):
    path = str(tmp_path / "shared")
    with open_store(path) as s:
        s.create_repository("app")
    ctx = mp.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.map(_process_push, [(path, "app", seed, 10) for seed in (1, 2, 1)], chunksize=1)
    # seed 1 twice: the same ten layers raced from two processes; each one completes once
    for a, b in zip(results[0], results[2], strict=True):
        assert sorted([a == "exists", b == "exists"]) == [False, True], (a, b)
    assert "exists" not in results[1]
    with open_store(path) as s:
        st = s.stats()
        assert st.layers == 20 and st.blobs == 20 and st.uploads_in_progress == 0
        assert s.verify().ok


def test_store_survives_fork(tmp_path):
    """A store opened before fork is usable in the child (it reopens its index there)."""
    path = str(tmp_path / "forked")
    with open_store(path) as s:
        s.create_repository("app")
        ctx = mp.get_context("fork")
        q = ctx.Queue()

        def child():
            try:
                up = s.initiate_layer_upload("app").upload_id
                s.upload_layer_part("app", up, 0, 3, b"kid!")
                q.put(s.complete_layer_upload("app", up, [digest_of(b"kid!")]).layer_digest)
            except Exception as e:  # reported to the parent, which fails the test
                q.put(repr(e))

        p = ctx.Process(target=child)
        p.start()
        p.join(60)
        assert q.get(timeout=5) == digest_of(b"kid!")
        assert s.batch_check_layer_availability("app", [digest_of(b"kid!")]).layers[0].layer_availability == "AVAILABLE"
