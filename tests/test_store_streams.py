"""Streamed upload appends (the OCI bodies' path into an upload): chunks of any size, written
back to back and hashed as they arrive; one writer at a time, refused at once; durable before
acknowledged and given back when not committed; resumable by another process from the midstate
in the index; mixed with UploadLayerPart; checked again at commit against purges and repository
deletion; bounded by the layer size limit."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
import uuid

import pytest
from storeutil import child_env, digest_of, open_store, random_bytes, read_layer, upload_bytes, upload_data_class

from ecrstore import Store, errors


@pytest.fixture
def store(tmp_path, backends):
    with open_store(tmp_path / "store", **backends) as s:
        s.create_repository("app")
        yield s


def stream(store, up: str, chunks, repo: str = "app", first: int | None = None, **kw) -> int:
    """One streamed body of ``chunks`` (one write per chunk), committed; the upload's length."""
    with store.open_upload_stream(repo, up, first_byte=first, **kw) as s:
        for chunk in chunks:
            s.write([chunk])
        return s.commit()


def pieces(payload: bytes, size: int) -> list[bytes]:
    return [payload[i:i + size] for i in range(0, len(payload), size)]


def run_child(script: str, options: dict[str, str], *args: object) -> str:
    """Run ``script`` in another Python process importing this ecrstore, on the backends
    ``options`` name (``CHILD_STORE`` opens the store); its stdout."""
    done = subprocess.run([sys.executable, "-c", CHILD_STORE + script, *map(str, args)], env=child_env(options),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_streamed_chunks_are_exactly_the_layer(store):
    payload = random_bytes(70_000, seed=1)
    up = store.initiate_layer_upload("app").upload_id
    with store.open_upload_stream("app", up) as s:
        s.write([payload[:1], bytearray(payload[1:1000]), memoryview(payload)[1000:1001]])
        s.write([])
        s.write([payload[1001:30_000]])
        s.write([payload[30_000:], b""])
        assert s.commit() == len(payload)
    assert store.upload_status("app", up) == len(payload)
    assert upload_bytes(store, up) == payload
    done = store.complete_layer_upload("app", up, [digest_of(payload)], part_minimum=False)
    assert done.layer_digest == digest_of(payload)
    assert read_layer(store, "app", done.layer_digest) == payload
    (layer,) = store.batch_check_layer_availability("app", [done.layer_digest]).layers
    assert (layer.layer_availability, layer.layer_size) == ("AVAILABLE", len(payload))


def test_one_stream_may_commit_several_times(store):
    """Each commit acknowledges what was written since the one before; what follows the last
    is given back at close."""
    payload = random_bytes(5000, seed=2)
    up = store.initiate_layer_upload("app").upload_id
    with store.open_upload_stream("app", up) as s:
        s.write([payload[:2000]])
        assert s.commit() == 2000
        s.write([payload[2000:]])
        assert s.commit() == 5000
        assert s.commit() == 5000
        s.write([b"not acknowledged"])
    assert store.upload_status("app", up) == 5000
    assert upload_bytes(store, up) == payload
    (info,) = store.list_uploads()
    assert info.parts == 2
    assert store.complete_layer_upload("app", up, [digest_of(payload)], part_minimum=False).layer_digest == \
        digest_of(payload)


def test_a_closed_stream_refuses_writes_and_commits(store):
    """After close the stream's descriptor may name another upload's file: nothing may reach it."""
    first, second = (store.initiate_layer_upload("app").upload_id for _ in range(2))
    s = store.open_upload_stream("app", first)
    s.write([b"abc"])
    s.commit()
    s.close()
    assert stream(store, second, [b"mine"]) == 4
    with store.open_upload_stream("app", second) as other:  # likely reuses the closed descriptor
        for call in (lambda: s.write([b"XXXXXXXX"]), s.commit):
            with pytest.raises(errors.ServerException):
                call()
        other.write([b"!"])
        other.commit()
    assert (upload_bytes(store, first), upload_bytes(store, second)) == (b"abc", b"mine!")
    assert store.complete_layer_upload("app", second, [digest_of(b"mine!")], part_minimum=False).layer_digest == \
        digest_of(b"mine!")


def test_close_waits_for_a_write_running_in_another_thread(store, monkeypatch):
    """A request cancelled mid-write closes its stream from another thread: the close waits,
    and the write's bytes are given back, not left behind or written after the close."""
    up = store.initiate_layer_upload("app").upload_id
    stream(store, up, [b"kept"])
    inside, release = threading.Event(), threading.Event()
    data_class = upload_data_class(store)
    real_append = data_class.append

    def slow_append(self, offset, chunks):
        inside.set()
        release.wait(10)
        real_append(self, offset, chunks)

    monkeypatch.setattr(data_class, "append", slow_append)
    s = store.open_upload_stream("app", up)
    writer = threading.Thread(target=s.write, args=([b"late bytes"],))
    writer.start()
    assert inside.wait(10)
    closer = threading.Thread(target=s.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive(), "close did not wait for the write in progress"
    release.set()
    writer.join(10)
    closer.join(10)
    assert store.upload_status("app", up) == 4 and upload_bytes(store, up) == b"kept"


def test_a_stream_must_start_at_the_uploads_length(store):
    up = store.initiate_layer_upload("app").upload_id
    with pytest.raises(errors.InvalidLayerPartException) as ei:
        store.open_upload_stream("app", up, first_byte=5)
    assert ei.value.last_valid_byte_received is None  # nothing received yet
    assert stream(store, up, [random_bytes(100)], first=0) == 100
    for first in (0, 50, 99, 101, 10**9):
        with pytest.raises(errors.InvalidLayerPartException) as ei:
            store.open_upload_stream("app", up, first_byte=first)
        e = ei.value
        assert (e.last_valid_byte_received, e.upload_id, e.repository_name) == (99, up, "app")
    for bad in (-1, True, 1.5, "100"):
        with pytest.raises(errors.InvalidParameterException):
            store.open_upload_stream("app", up, first_byte=bad)
    assert stream(store, up, [b"x"], first=100) == 101
    assert store.upload_status("app", up) == 101


def test_opening_a_stream_checks_repository_and_upload(store, backends):
    store.create_repository("other")
    up = store.initiate_layer_upload("app").upload_id
    with pytest.raises(errors.RepositoryNotFoundException):
        store.open_upload_stream("nope", up)
    for repo, upload in (("other", up), ("app", str(uuid.uuid4()))):
        with pytest.raises(errors.UploadNotFoundException):
            store.open_upload_stream(repo, upload)
        with pytest.raises(errors.UploadNotFoundException):
            store.upload_status(repo, upload)
    with pytest.raises(errors.InvalidParameterException):
        store.open_upload_stream("app", "not-an-upload-id")
    store.close()
    with Store(store.path, read_only=True, **backends) as ro:
        assert ro.upload_status("app", up) == 0
        with pytest.raises(errors.ServerException):
            ro.open_upload_stream("app", up)


#: How a child script opens the store: the path in argv[1], the backends from the environment.
CHILD_STORE = """
import os
from ecrstore import Store

def open_child_store(path):
    return Store(path, index=os.environ.get("ECRSTORE_INDEX"), blobs=os.environ.get("ECRSTORE_BLOBS"))
"""

_OPEN_SECOND = """
import sys, time
from ecrstore import errors
with open_child_store(sys.argv[1]) as store:
    t0 = time.monotonic()
    try:
        store.open_upload_stream("app", sys.argv[2])
    except errors.InvalidLayerPartException as e:
        print(type(e).__name__, e.last_valid_byte_received, round(time.monotonic() - t0, 3))
"""


def test_a_second_stream_is_refused_at_once(store, backends):
    up = store.initiate_layer_upload("app").upload_id
    stream(store, up, [b"abcd"])
    with store.open_upload_stream("app", up) as s:
        s.write([b"efgh"])
        t0 = time.monotonic()
        with pytest.raises(errors.InvalidLayerPartException) as ei:
            store.open_upload_stream("app", up)
        assert time.monotonic() - t0 < 1.0
        assert ei.value.last_valid_byte_received == 3
        name, last, took = run_child(_OPEN_SECOND, backends, store.path, up).split()
        assert (name, last) == ("InvalidLayerPartException", "3") and float(took) < 1.0
        assert s.commit() == 8
    assert stream(store, up, [b"ij"]) == 10  # free again once closed


def test_a_json_part_waits_for_an_open_stream(store):
    up = store.initiate_layer_upload("app").upload_id
    result: list = []

    def part():
        try:
            result.append(store.upload_layer_part("app", up, 0, 3, b"abcd").last_byte_received)
        except errors.EcrError as e:
            result.append(e)

    with store.open_upload_stream("app", up) as s:
        waiter = threading.Thread(target=part)
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive(), f"the part did not wait for the stream: {result}"
        s.write([b"wxyz"])
        s.commit()
    waiter.join(10)
    (e,) = result  # it then saw the stream's bytes: byte 0 is no longer the next one
    assert isinstance(e, errors.InvalidLayerPartException) and e.last_valid_byte_received == 3


def test_closing_without_commit_leaves_the_upload_as_it_was(store):
    payload = random_bytes(6000, seed=3)
    up = store.initiate_layer_upload("app").upload_id
    assert stream(store, up, pieces(payload[:3000], 700)) == 3000
    (before,) = store.list_uploads()
    with store.open_upload_stream("app", up) as s:
        s.write([b"\xff" * 5000])
    with pytest.raises(RuntimeError):
        with store.open_upload_stream("app", up) as s:
            s.write([b"\xee" * 100])
            raise RuntimeError("the body was cut")
    s.close()  # idempotent
    assert store.upload_status("app", up) == 3000
    (after,) = store.list_uploads()
    assert (after.received, after.parts, after.updated_at) == (before.received, before.parts, before.updated_at)
    assert upload_bytes(store, up) == payload[:3000]  # what the stream wrote was given back
    with store.open_upload_stream("app", up, first_byte=3000) as s:
        assert s.offset == 3000
        s.write([payload[3000:]])
        s.commit()
    assert store.complete_layer_upload("app", up, [digest_of(payload)], part_minimum=False).layer_digest == \
        digest_of(payload)
    assert read_layer(store, "app", digest_of(payload)) == payload


def test_chunks_of_any_size_complete_without_the_part_minimum(tmp_path, backends):
    mib = 2**20
    with Store(tmp_path / "s", part_size=mib, min_part_size=mib, max_part_size=2 * mib, **backends) as store:
        store.create_repository("app")
        payload = random_bytes(10_000, seed=4)
        shapes = {"one byte at a time": [1] * 40, "odd sizes": [7, 1, 333, 4096, 2], "a small body first": [5000]}
        for name, sizes in shapes.items():
            up = store.initiate_layer_upload("app").upload_id
            pos = 0
            for size in sizes:  # each size a body of its own, every one below the minimum part
                pos = stream(store, up, [payload[pos:pos + size]])
            pos = stream(store, up, pieces(payload[pos:], 1000))
            assert pos == len(payload), name
            with pytest.raises(errors.LayerPartTooSmallException):
                store.complete_layer_upload("app", up, [digest_of(payload)])  # the JSON API's rule
            done = store.complete_layer_upload("app", up, [digest_of(payload)], part_minimum=False)
            assert done.layer_digest == digest_of(payload), name
            store.delete_layer("app", done.layer_digest)
        up = store.initiate_layer_upload("app").upload_id  # one body: the last part may be small
        stream(store, up, pieces(payload, 1))
        assert store.complete_layer_upload("app", up, [digest_of(payload)]).layer_digest == digest_of(payload)
        assert read_layer(store, "app", digest_of(payload)) == payload


def test_small_bodies_coalesce_into_object_store_parts(tmp_path, backends):
    """``/v2/`` chunks far below S3's 5 MiB part minimum, and one body longer than a streamed
    part, make exactly the layer; on S3 they travel as parts of at least 5 MiB."""
    mib = 2**20
    sizes = [300_000, 1, 4 * mib, 2 * mib + 5, 9 * mib, 77]
    payload = random_bytes(sum(sizes), seed=8)
    with Store(tmp_path / "s", **backends) as store:
        store.create_repository("app")
        up = store.initiate_layer_upload("app").upload_id
        pos = 0
        for size in sizes:
            pos = stream(store, up, pieces(payload[pos:pos + size], 100_000))
        assert pos == len(payload) == store.upload_status("app", up)
        if backends:
            state = store._blobs.bucket.get_state(store._blobs.state_key(uuid.UUID(up).hex))
            assert len(state.parts) >= 2 and all(size >= 5 * mib for _, size, _ in state.parts)
            assert state.tail_start == sum(size for _, size, _ in state.parts)
            assert state.tail_start + state.tail_object[1] == len(payload)
        done = store.complete_layer_upload("app", up, [digest_of(payload)], part_minimum=False)
        assert done.layer_digest == digest_of(payload)
        assert read_layer(store, "app", done.layer_digest) == payload


def test_an_empty_commit_changes_nothing(store):
    up = store.initiate_layer_upload("app").upload_id
    assert stream(store, up, []) == 0
    assert stream(store, up, [b"", b""]) == 0
    (info,) = store.list_uploads()
    assert (info.received, info.parts) == (0, 0)
    with pytest.raises(errors.EmptyUploadException):
        store.complete_layer_upload("app", up, [digest_of(b"")], part_minimum=False)
    stream(store, up, [b"abc"])
    (before,) = store.list_uploads()
    assert stream(store, up, []) == 3
    assert store.list_uploads() == (before,)
    assert store.complete_layer_upload("app", up, [digest_of(b"abc")], part_minimum=False).layer_digest == \
        digest_of(b"abc")


def test_a_committed_stream_survives_reopening_the_store(tmp_path, backends):
    payload = random_bytes(9000, seed=5)
    with open_store(tmp_path / "s", **backends) as store:
        store.create_repository("app")
        up = store.initiate_layer_upload("app").upload_id
        stream(store, up, pieces(payload[:4000], 333))
    with open_store(tmp_path / "s", **backends) as store:
        assert store.upload_status("app", up) == 4000
        assert stream(store, up, pieces(payload[4000:], 512), first=4000) == 9000
    with open_store(tmp_path / "s", **backends) as store:
        assert store.complete_layer_upload("app", up, [digest_of(payload)], part_minimum=False).layer_digest == \
            digest_of(payload)
        assert read_layer(store, "app", digest_of(payload)) == payload


_CONTINUE = """
import random, sys
from ecrstore import uploads
from ecrstore.blobs.local import LocalUploadData
from ecrstore.blobs.s3 import S3UploadData

def reread(*args, **kwargs):
    raise AssertionError("the upload's earlier bytes were read again")

uploads.hash_file = reread
LocalUploadData.hash_range = S3UploadData.hash_range = reread
path, up, n, seed, first = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
payload = random.Random(seed).randbytes(n)
with open_child_store(path) as store, store.open_upload_stream("app", up, first_byte=first) as s:
    for i in range(first, n, 777):
        s.write([payload[i:i + 777]])
    s.commit()
    s.close()
    digest = "sha256:" + __import__("hashlib").sha256(payload).hexdigest()
    print(store.complete_layer_upload("app", up, [digest], part_minimum=False).layer_digest)
"""


def test_another_process_continues_from_the_stored_midstate(store, backends):
    """The midstate is in the index: another process resumes the upload and completes it
    without reading the bytes this one wrote."""
    payload = random_bytes(50_000, seed=6)
    up = store.initiate_layer_upload("app").upload_id
    stream(store, up, pieces(payload[:20_000], 4096))
    assert upload_bytes(store, up) == payload[:20_000]
    assert run_child(_CONTINUE, backends, store.path, up, len(payload), 6, 20_000) == digest_of(payload)
    assert read_layer(store, "app", digest_of(payload)) == payload


def test_a_stream_is_usable_from_another_thread(store):
    payload = random_bytes(4000, seed=7)
    up = store.initiate_layer_upload("app").upload_id
    s = store.open_upload_stream("app", up)
    answers: list = []

    def body():
        for chunk in pieces(payload, 300):
            s.write([chunk])
        answers.append(s.commit())
        s.close()

    worker = threading.Thread(target=body)
    worker.start()
    worker.join(30)
    assert answers == [4000]
    assert store.complete_layer_upload("app", up, [digest_of(payload)], part_minimum=False).layer_digest == \
        digest_of(payload)


def test_json_parts_and_streams_continue_each_other(store):
    payload = random_bytes(7000, seed=8)
    up = store.initiate_layer_upload("app").upload_id
    assert store.upload_layer_part("app", up, 0, 1023, payload[:1024]).last_byte_received == 1023
    assert stream(store, up, pieces(payload[1024:3000], 100), first=1024) == 3000
    with pytest.raises(errors.InvalidLayerPartException) as ei:
        store.upload_layer_part("app", up, 1024, 2047, payload[1024:2048])
    assert ei.value.last_valid_byte_received == 2999
    assert store.upload_layer_part("app", up, 3000, 4999, payload[3000:5000]).last_byte_received == 4999
    assert stream(store, up, [payload[5000:]]) == 7000
    assert store.complete_layer_upload("app", up, [digest_of(payload)], part_minimum=False).layer_digest == \
        digest_of(payload)
    assert read_layer(store, "app", digest_of(payload)) == payload


def test_a_stream_whose_upload_went_away_acknowledges_nothing(store):
    """Commit re-checks the upload: its repository deleted (or deleted and made again), or its
    record gone, and the commit raises UploadNotFound."""
    for repo in ("deleted", "made-again", "record-removed"):
        store.create_repository(repo)
        up = store.initiate_layer_upload(repo).upload_id
        stream(store, up, [b"kept"], repo=repo)
        with store.open_upload_stream(repo, up) as s:
            s.write([b"never acknowledged"])
            if repo == "record-removed":  # as a purge that took the upload just before would
                uid = uuid.UUID(up).bytes
                store._index.write(lambda t, uid=uid: t.delete_upload(uid, t.get_upload(uid)))
            else:
                store.delete_repository(repo, force=True)
                if repo == "made-again":
                    store.create_repository(repo)
            with pytest.raises(errors.UploadNotFoundException):
                s.commit()
        if repo == "deleted":
            with pytest.raises(errors.RepositoryNotFoundException):
                store.upload_status(repo, up)
        else:
            with pytest.raises(errors.UploadNotFoundException):
                store.upload_status(repo, up)
        assert store.list_uploads(repository_name="app") == ()
        assert [u.upload_id for u in store.list_uploads()] == []


def test_abort_waits_for_an_open_stream(store):
    up = store.initiate_layer_upload("app").upload_id
    result: list = []
    with store.open_upload_stream("app", up) as s:
        waiter = threading.Thread(target=lambda: result.append(store.abort_upload(up)))
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive() and result == []
        s.write([b"abcdef"])
        s.commit()
    waiter.join(10)
    assert [(info.upload_id, info.received) for info in result] == [(up, 6)]
    with pytest.raises(errors.UploadNotFoundException):
        store.upload_status("app", up)


def test_purge_leaves_an_upload_a_stream_is_writing(store):
    up = store.initiate_layer_upload("app").upload_id
    with store.open_upload_stream("app", up) as s:
        s.write([b"abc"])
        assert store.purge(grace=0, uploads_idle=0).uploads_removed == 0
        assert s.commit() == 3
    assert store.upload_status("app", up) == 3


def test_streams_stop_at_the_layer_size_limit(store, monkeypatch):
    from ecrstore import uploads

    monkeypatch.setattr(uploads, "MAX_LAYER_BYTES", 5000)
    up = store.initiate_layer_upload("app").upload_id
    stream(store, up, [random_bytes(4000)])
    with store.open_upload_stream("app", up) as s:
        s.write([b"a" * 500])
        with pytest.raises(errors.LimitExceededException):
            s.write([b"b" * 250, b"c" * 251])
        assert s.offset == 4500
        assert s.commit() == 4500  # what came before the refused write is kept
    assert upload_bytes(store, up) == random_bytes(4000) + b"a" * 500
    assert stream(store, up, [b"d" * 500]) == 5000
    with store.open_upload_stream("app", up) as s:
        with pytest.raises(errors.LimitExceededException):
            s.write([b"e"])
    with pytest.raises(errors.LimitExceededException):
        store.upload_layer_part("app", up, 5000, 5000, b"e")
    assert store.upload_status("app", up) == 5000
    whole = random_bytes(4000) + b"a" * 500 + b"d" * 500
    assert store.complete_layer_upload("app", up, [digest_of(whole)], part_minimum=False).layer_digest == \
        digest_of(whole)


def test_a_failed_write_leaves_the_stream_only_closable(tmp_path, monkeypatch, backends):
    """The sha256 runs while the bytes are written: after a write fails, nothing may commit
    a midstate that covers bytes the file does not hold."""
    from ecrstore.errors import ServerException

    store = Store(tmp_path / "s", **backends)
    store.create_repository("ab")
    upload = store.initiate_layer_upload("ab").upload_id
    with store.open_upload_stream("ab", upload) as stream:
        stream.write([b"kept"])
        stream.commit()

        def fail(self, offset, chunks):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(upload_data_class(store), "append", fail)
        with pytest.raises(ServerException, match="No space left"):
            stream.write([b"lost"])
        with pytest.raises(ServerException, match="can only be closed"):
            stream.commit()
    monkeypatch.undo()
    assert store.upload_status("ab", upload) == 4
    with store.open_upload_stream("ab", upload) as stream:
        stream.write([b"more"])
        stream.commit()
    digest = "sha256:" + hashlib.sha256(b"keptmore").hexdigest()
    assert store.complete_layer_upload("ab", upload, [digest], part_minimum=False).layer_digest == digest
    store.close()
