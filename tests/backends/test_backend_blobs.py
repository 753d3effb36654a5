"""The blob backend contract (ecrstore.blobs.base), checked against every blob backend."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid

import pytest

from ecrstore import Sha256
from ecrstore.errors import ServerException


def new_upload(store) -> str:
    upload = uuid.uuid4().hex
    store.create_upload(upload)
    return upload


def write(store, upload: str, data: bytes) -> None:
    with store.open_upload(upload, received=0) as d:
        d.write(0, memoryview(data))


def published(store, data: bytes) -> tuple[str, str]:
    """Publish ``data`` from an upload of its own; its (hex digest, placement)."""
    upload = new_upload(store)
    write(store, upload, data)
    hexd = hashlib.sha256(data).hexdigest()
    placement = store.publish(upload, hexd)
    store.discard_upload(upload)
    return hexd, placement


def stored_digests(store) -> set[str]:
    """The digests of the blobs listed (a placement's entry names its digest)."""
    return {f.digest or f.name for f in store.iter_blobs() if not f.temporary}


def test_upload_data_written_at_offsets_cut_and_hashed(blobs):
    store = blobs.instance
    upload = new_upload(store)
    with store.open_upload(upload, received=0) as d:
        assert d.size() == 0
        d.write(0, memoryview(b"hello "))
        d.write(6, memoryview(b"world, and more"))
        assert d.size() == 21
        d.truncate(11)
        assert d.size() == 11
        h = d.hash_range(Sha256(), 0, 11)
        assert h.hexdigest() == hashlib.sha256(b"hello world").hexdigest()
        part = d.hash_range(Sha256(b"hello"), 5, 11)
        assert part.hexdigest() == hashlib.sha256(b"hello world").hexdigest()


def test_copy_from_a_file_range(blobs, tmp_path):
    store = blobs.instance
    src = tmp_path / "src"
    src.write_bytes(b"0123456789" * 1000)
    upload = new_upload(store)
    fd = os.open(src, os.O_RDONLY)
    try:
        with store.open_upload(upload, received=0) as d:
            d.copy_from(fd, 5, 5000, 0)
            assert d.size() == 5000
            assert d.hash_range(Sha256(), 0, 5000).hexdigest() == hashlib.sha256(src.read_bytes()[5:5005]).hexdigest()
    finally:
        os.close(fd)


def test_appended_chunks_are_flushed_then_sized_and_hashed(blobs):
    store = blobs.instance
    upload = new_upload(store)
    chunks = [b"a", b"", bytearray(b"bcd"), memoryview(b"efghij"), b"k" * 70_000]
    whole = b"".join(bytes(c) for c in chunks)
    with store.open_upload(upload, received=0) as d:
        d.append(0, chunks)
        d.append(len(whole), [])
        d.append(len(whole), [b"tail"])
        d.flush()
        assert d.size() == len(whole) + 4
        assert d.hash_range(Sha256(), 0, d.size()).hexdigest() == hashlib.sha256(whole + b"tail").hexdigest()
        d.truncate(len(whole))  # appended bytes are cut like written ones
        d.append(len(whole), [b"TAIL!"])
        d.flush()
        d.flush()  # nothing new: a no-op
        assert d.hash_range(Sha256(), 0, d.size()).hexdigest() == hashlib.sha256(whole + b"TAIL!").hexdigest()
    with store.open_upload(upload, received=len(whole) + 5) as d:  # a later writer sees them all
        assert d.size() == len(whole) + 5
        d.truncate(6)  # back to what the index acknowledged, then on from there
        d.append(6, [b"XY"])
        d.flush()
        assert d.hash_range(Sha256(), 0, 8).hexdigest() == hashlib.sha256(b"abcdefXY").hexdigest()
    assert blobs.in_other_process(_hash_upload, upload, 8) == hashlib.sha256(b"abcdefXY").hexdigest()


def _hash_upload(store, upload: str, size: int) -> str:
    with store.open_upload(upload, received=size) as d:
        return d.hash_range(Sha256(), 0, d.size()).hexdigest()


def test_uploads_are_invisible_until_published(blobs):
    store = blobs.instance
    data = b"layer bytes" * 100
    hexd = hashlib.sha256(data).hexdigest()
    upload = new_upload(store)
    write(store, upload, data)
    assert store.stat(hexd) is None
    assert hexd not in stored_digests(store)
    assert upload in {f.name for f in store.iter_uploads()}
    with pytest.raises(ServerException):
        store.open(hexd, len(data))
    placement = store.publish(upload, hexd)
    assert store.stat(hexd, placement) == len(data)
    assert hexd in stored_digests(store)
    with store.open(hexd, len(data), placement) as r:
        assert r.read() == data and r.size == len(data) and r.digest == f"sha256:{hexd}"
        assert r.hash().hexdigest() == hexd
        assert b"".join(r.iter_chunks(7, 3, 20)) == data[3:23]
    store.discard_upload(upload)
    assert upload not in {f.name for f in store.iter_uploads()}
    with store.open(hexd, len(data), placement) as r:  # the published bytes outlive the upload's name
        assert r.read() == data


def test_publish_is_idempotent(blobs):
    store = blobs.instance
    data = b"same content"
    hexd, placement = published(store, data)
    again, other = published(store, data)
    assert again == hexd and store.stat(hexd, placement) == store.stat(hexd, other) == len(data)
    assert stored_digests(store) == {hexd}


def test_a_reader_refuses_content_not_of_the_recorded_size(blobs):
    store = blobs.instance
    hexd, placement = published(store, b"twelve bytes")
    with pytest.raises(ServerException):
        store.open(hexd, 13, placement)
    with pytest.raises(ServerException):
        store.open("0" * 64, 1)


def test_retire_restore_drop(blobs):
    store = blobs.instance
    hexd, placement = published(store, b"to be deleted")
    retired = store.retire(hexd, placement)
    assert retired is not None
    retired.restore()
    assert store.stat(hexd, placement) == len(b"to be deleted")
    store.retire(hexd, placement).drop()
    assert store.stat(hexd, placement) is None and hexd not in stored_digests(store)


@pytest.mark.parametrize("recorded", [True, False])
def test_recovery_after_a_crash_mid_deletion(blobs, recorded):
    store = blobs.instance
    hexd, placement = published(store, b"interrupted")
    assert store.retire(hexd, placement) is not None  # then the process died: neither restored nor dropped
    assert store.recover_retired(lambda h: placement if recorded and h == hexd else None) == 1
    assert (store.stat(hexd, placement) is not None) == recorded
    assert store.recover_retired(lambda h: placement) == 0


def test_listing_and_deleting_blobs(blobs):
    store = blobs.instance
    blobs_in = dict(published(store, bytes([i]) * (i + 1)) for i in range(5))
    listed = {f.digest or f.name: f for f in store.iter_blobs() if not f.temporary}
    assert set(listed) == set(blobs_in)
    assert all(f.changed_at <= time.time() + 1 and f.size > 0 for f in listed.values())
    victim = sorted(blobs_in)[0]
    store.delete_blob(listed[victim].name)
    assert store.stat(victim, blobs_in[victim]) is None and victim not in stored_digests(store)


def test_one_writer_per_upload(blobs):
    """A second writer waits for the first; a non-waiting open answers None meanwhile."""
    store = blobs.instance
    upload = new_upload(store)
    order: list[str] = []
    inside = threading.Event()
    release = threading.Event()

    def first():
        with store.open_upload(upload, received=0):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second():
        inside.wait(10)
        with store.open_upload(upload, received=0):
            order.append("second in")

    t1, t2 = threading.Thread(target=first), threading.Thread(target=second)
    t1.start()
    t2.start()
    inside.wait(10)
    with store.try_open_upload(upload) as d:
        assert d is None
    time.sleep(0.2)
    release.set()
    t1.join(10)
    t2.join(10)
    assert order == ["first in", "first out", "second in"]
    with store.try_open_upload(upload) as d:
        assert d is not None


def test_a_non_waiting_open_is_refused_while_another_thread_writes(blobs):
    store = blobs.instance
    upload = new_upload(store)
    inside, release = threading.Event(), threading.Event()

    def holder():
        with store.open_upload(upload, received=0):
            inside.set()
            release.wait(10)

    th = threading.Thread(target=holder)
    th.start()
    try:
        assert inside.wait(10)
        t0 = time.monotonic()
        with pytest.raises(BlockingIOError):
            with store.open_upload(upload, received=0, wait=False):
                pytest.fail("opened while another writer held the upload")
        assert time.monotonic() - t0 < 1.0  # refused at once, not after a wait
    finally:
        release.set()
        th.join(10)
    with store.open_upload(upload, received=0, wait=False) as d:  # free again
        d.write(0, memoryview(b"mine"))
        with pytest.raises(BlockingIOError):  # and this writer excludes a non-waiting second one
            with store.open_upload(upload, received=4, wait=False):
                pass


def test_missing_acknowledged_data_is_an_error(blobs):
    store = blobs.instance
    upload = new_upload(store)
    store.discard_upload(upload)
    with pytest.raises(ServerException):
        with store.open_upload(upload, received=10):
            pass
    with store.open_upload(upload, received=0) as d:  # nothing acknowledged: an empty start
        assert d.size() == 0


def _read_blob(store, hexd: str, size: int, placement: str) -> bytes:
    with store.open(hexd, size, placement) as r:
        return r.read()


def _publish_in(store, data: bytes) -> tuple[str, str]:
    return published(store, data)


def test_another_process_shares_the_data(blobs):
    hexd, placement = published(blobs.instance, b"shared")
    assert blobs.in_other_process(_read_blob, hexd, 6, placement) == b"shared"
    theirs, where = blobs.in_other_process(_publish_in, b"from elsewhere")
    assert _read_blob(blobs.instance, theirs, len(b"from elsewhere"), where) == b"from elsewhere"


def _hold_upload(store, upload: str, seconds: float) -> str:
    with store.open_upload(upload, received=0) as d:
        d.write(0, memoryview(b"held"))
        time.sleep(seconds)
    return "released"


def test_one_writer_per_upload_across_processes(blobs):
    import concurrent.futures

    store = blobs.instance
    upload = new_upload(store)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        held = ex.submit(blobs.in_other_process, _hold_upload, upload, 2.0)
        deadline = time.time() + 20
        while time.time() < deadline:  # wait until the other process holds it
            with store.try_open_upload(upload) as d:
                if d is None:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the other process never held the upload")
        with store.open_upload(upload, received=0) as d:  # waits for the other writer
            assert d.size() == 4
        assert held.result(30) == "released"


def test_a_non_waiting_open_is_refused_while_another_process_writes(blobs):
    import concurrent.futures

    store = blobs.instance
    upload = new_upload(store)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        held = ex.submit(blobs.in_other_process, _hold_upload, upload, 1.5)
        deadline = time.time() + 20
        while time.time() < deadline:
            with store.try_open_upload(upload) as d:
                if d is None:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the other process never held the upload")
        with pytest.raises(BlockingIOError):
            with store.open_upload(upload, received=0, wait=False):
                pass
        assert held.result(30) == "released"
    with store.open_upload(upload, received=4, wait=False) as d:
        assert d.size() == 4


def test_presigned_urls_are_optional(blobs):
    hexd, placement = published(blobs.instance, b"x")
    url = blobs.instance.presigned_url(hexd, 60, placement)
    assert url is None or url.startswith(("http://", "https://"))
