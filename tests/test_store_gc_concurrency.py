"""Online GC racing pushers: nothing an image references, or an upload is about to reference,
is ever deleted.

Pusher threads upload layers (some byte-identical across pushers, so completions race blob
deletions), put images referencing them, and delete images to make garbage; GC runs at the
same time, back to back with a 0.2 s grace period from another thread, and with no grace period
at all from another process. The run is
bounded in time. Afterwards every image still listed must pull completely and verify.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import random
import threading
import time

from storeutil import SMALL, open_store

from ecrstore import ImageIdentifier, Store, errors
from ecrstore.manifest import DOCKER_MANIFEST

DURATION = 6.0
#: Each step is a network round trip on (postgresql, s3), so an image takes far longer to push:
#: a longer run, and pauses between GC runs (grace 0 / 0.2 s) long enough for images to land.
DURATION_REMOTE = 15.0
PAUSES = {"local": (0.3, 0.0), "remote": (1.0, 0.2)}


def _gc_process(path: str, backends: dict, stop_at: float, pause: float, out) -> None:
    runs = 0
    with Store(path, **SMALL, **backends) as s:
        while time.time() < stop_at:
            s.gc(grace=0)  # no grace at all: fresh layers may go before an image holds them
            runs += 1
            time.sleep(pause)
    out.put(runs)


def _push_blob(store: Store, data: bytes) -> str:
    up = store.initiate_layer_upload("app").upload_id
    for off in range(0, len(data), 1024):
        chunk = data[off:off + 1024]
        store.upload_layer_part("app", up, off, off + len(chunk) - 1, chunk)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        return store.complete_layer_upload("app", up, [digest]).layer_digest
    except errors.LayerAlreadyExistsException:
        return digest


def _pusher(store: Store, seed: int, stop_at: float, stats: dict, failures: list) -> None:
    rng = random.Random(seed)
    n = 0
    try:
        while time.time() < stop_at:
            n += 1
            shared = rng.random() < 0.5  # the same bytes as the other pusher's
            blobs = {
                "config": json.dumps({"pusher": 0 if shared else seed, "n": n % 7}).encode(),
                "layers": [bytes([i, n % 5 if shared else seed]) * (600 + 300 * i) for i in range(2)],
            }
            for _ in range(20):
                cfg = _push_blob(store, blobs["config"])
                layers = [_push_blob(store, b) for b in blobs["layers"]]
                manifest = json.dumps({
                    "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                               "size": len(blobs["config"]), "digest": cfg},
                    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                "size": len(b), "digest": d} for b, d in zip(blobs["layers"], layers, strict=True)],
                })
                try:
                    store.put_image("app", manifest, image_tag=f"p{seed}-{n}")
                    stats["tags"].add(f"p{seed}-{n}")
                    break
                except errors.LayersNotFoundException:
                    stats["retries"] += 1  # GC (no grace) unlinked a layer before the image held it
                except errors.ImageAlreadyExistsException:
                    break
            if rng.random() < 0.4 and f"p{seed}-{n}" in stats["tags"]:
                res = store.batch_delete_image("app", [ImageIdentifier(image_tag=f"p{seed}-{n}")])
                assert not res.failures, res.failures
                stats["tags"].discard(f"p{seed}-{n}")
            if rng.random() < 0.3:
                _push_blob(store, rng.randbytes(700))  # garbage: never referenced
    except Exception as e:  # surfaced by the test
        failures.append(e)


def test_gc_races_pushers_without_losing_referenced_content(tmp_path, backends):
    """On (postgresql, s3) the GC process is another node of the same store."""
    path = str(tmp_path / "store")
    store = open_store(path, **backends)
    store.create_repository("app")
    duration = DURATION_REMOTE if backends else DURATION
    process_pause, thread_pause = PAUSES["remote" if backends else "local"]
    stop_at = time.time() + duration
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_gc_process, args=(path, backends, stop_at, process_pause, out))
    proc.start()
    stats = {"tags": set(), "retries": 0}
    failures: list = []
    gc_runs = [0]

    def gc_thread():
        while time.time() < stop_at:
            store.gc(grace=0.2)
            gc_runs[0] += 1
            time.sleep(thread_pause)

    threads = [threading.Thread(target=_pusher, args=(store, seed, stop_at, stats, failures)) for seed in (1, 2)]
    threads.append(threading.Thread(target=gc_thread))
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 60)
    proc.join(60)
    assert not failures, failures
    assert proc.exitcode == 0 and out.get(timeout=5) > 0 and gc_runs[0] > 0
    print(f"gc runs: {gc_runs[0]} here, pushes: {stats}")
    assert len(stats["tags"]) > 5, stats

    # Every image still listed pulls completely and verifies.
    listed = store.describe_images("app", max_results=1000).image_details
    assert {t for d in listed for t in d.image_tags or ()} == stats["tags"]
    for detail in listed:
        (img,) = store.batch_get_image("app", [ImageIdentifier(detail.image_digest)]).images
        doc = json.loads(img.image_manifest)
        for desc in [doc["config"], *doc["layers"]]:
            with store.open_layer("app", desc["digest"]) as rd:
                data = rd.read()
            assert len(data) == desc["size"]
            assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"]
    store.gc(grace=0)
    assert store.verify().ok
    st = store.stats()
    referenced = {d for detail in listed for d in _refs(store, detail.image_digest)}
    assert st.layers == len(referenced) and st.blobs == len(referenced)
    store.close()


def _refs(store: Store, digest: str) -> list[str]:
    (img,) = store.batch_get_image("app", [ImageIdentifier(digest)]).images
    doc = json.loads(img.image_manifest)
    return [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]
