"""What only the S3 blob backend has to get right: the steps of a completion are separate S3
requests, and a node can die between any two of them."""

from __future__ import annotations

import hashlib

import pytest
from conftest import BLOBS
from test_backend_blobs import new_upload, write


@pytest.fixture
def s3(request, tmp_path):
    return BLOBS["s3"](request, tmp_path)


@pytest.mark.parametrize("size", [1 << 10, (5 << 20) + 3])
def test_a_completion_cut_short_after_s3_completed_is_finished_by_the_next(s3, size):
    """A node that sent the tail and completed the multipart upload, then died before writing
    anything else, leaves a state whose tail is pending and no multipart upload: the next
    publish (on another handle, as another node) recognises the object and answers it."""
    store = s3.instance
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    upload = new_upload(store)
    whole = len(data) - len(data) % (5 << 20)  # whole parts, then a tail
    with store.open_upload(upload, received=0) as d:
        d.write(0, memoryview(data[:whole]))
    with store.open_upload(upload, received=whole) as d:
        d.write(whole, memoryview(data[whole:]))
    state = store._load(upload, None)
    assert state.tail_len == len(data) - whole
    key = store.layer_key(upload)
    tail = data[state.tail_start:]
    etag = store.bucket.upload_part(key, state.s3_id, len(state.parts) + 1, tail)
    state.parts.append((len(state.parts) + 1, len(tail), etag))
    store.bucket.complete_multipart(key, state)  # ... and the node dies here

    other = s3.reopen()
    try:
        hexd = hashlib.sha256(data).hexdigest()
        placement = other.publish(upload, hexd)
        with other.open(hexd, len(data), placement) as r:
            assert r.read() == data
    finally:
        other.lock_index.close()


def test_a_tail_part_refused_for_another_reason_is_still_an_error(s3):
    """Only the finished object excuses a refused tail: an upload aborted behind the engine's
    back (its bytes are gone) fails the publish instead of answering a placement."""
    store = s3.instance
    upload = new_upload(store)
    write(store, upload, b"short tail")
    state = store._load(upload, None)
    store.bucket.abort_multipart(store.layer_key(upload), state.s3_id)
    with pytest.raises(Exception) as e:
        store.publish(upload, hashlib.sha256(b"short tail").hexdigest())
    assert store.bucket.size_of(store.layer_key(upload)) is None, e.value
