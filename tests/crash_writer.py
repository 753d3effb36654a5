"""The writer process of the crash tests (tests/test_store_crash.py).

It runs a deterministic random sequence of store calls on a durable store and reports each one
on stdout, one line written and flushed per event::

    READY                         the store is open
    BEGIN <i> <kind>              call number <i> of the plan is about to be made
    ACK <i> <kind> <result...>    call <i> returned (its effect is acknowledged)
    DONE                          the plan ran to its end

so a parent that SIGKILLs it at any instant knows which effects were acknowledged and which
call (at most one) was in flight. The plan and the layer contents are pure functions of the
seed (:func:`make_plan`, :func:`content`): the parent rebuilds them to check acknowledged
effects and to finish interrupted uploads with the same bytes.

Usage::

    crash_writer.py run <store> <seed> [<op index> <point>]
    crash_writer.py hold-part <store>       block inside a part, holding the upload's flock
    crash_writer.py hold-complete <store>   block inside a completion, holding it too
    crash_writer.py create <store> <n>      die at the n-th mkdir while creating a store
    crash_writer.py stream <store> <upload> <cid> <seed>
                                            stream content <cid> into the upload from wherever it is

With ``<op index> <point>`` the writer kills itself with SIGKILL at a named step inside that
call (see :data:`POINTS`) instead of waiting for the parent's random kill.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass

from storeutil import SMALL

from ecrstore import Store, errors
from ecrstore import uploads as uploads_module
from ecrstore.blobs.local import LocalUploadData
from ecrstore.index.lmdb import LmdbIndex

REPOS = ("app", "mirror", "lib/base")
SCRATCH = "scratch"  # created, filled, deleted and purged inside one plan: exercises trash/
MIN_PART = SMALL["min_part_size"]
MAX_PART = 2 * 2**20
MAX_LAYER = 3 * 2**20
#: Small minimum part so layers have many parts; parts of KiB to MiB so that a kill lands in
#: hashing, writing, fdatasync and the index commit alike.
SETTINGS = dict(SMALL, max_part_size=MAX_PART, durable=True)
#: Content ids below this are shared by every plan (layers recur across runs on one store);
#: each plan's scratch layer has a content id of its own above it.
POOL = 48
SCRATCH_CID = 1_000_000


@dataclass(frozen=True)
class LayerSpec:
    key: int
    repo: str
    cid: int
    parts: tuple[tuple[int, int], ...]  # inclusive byte ranges; all but the last >= MIN_PART


@dataclass(frozen=True)
class Op:
    kind: str  # create | initiate | part | complete | delete | purge
    repo: str = ""
    key: int = -1
    part: int = -1  # index into the layer's parts


@dataclass(frozen=True)
class Plan:
    seed: int
    layers: dict[int, LayerSpec]
    ops: tuple[Op, ...]


@functools.lru_cache(maxsize=24)
def content(cid: int) -> bytes:
    """The bytes of content ``cid``: 1 byte to 3 MiB, some below the minimum part size."""
    rng = random.Random(f"content-{cid}")
    if rng.random() < 0.15:
        size = rng.randint(1, MIN_PART - 1)
    else:
        size = int(math.exp(rng.uniform(math.log(MIN_PART), math.log(MAX_LAYER))))
    return rng.randbytes(size)


@functools.cache
def digest(cid: int) -> str:
    return "sha256:" + hashlib.sha256(content(cid)).hexdigest()


def split(size: int, rng: random.Random) -> tuple[tuple[int, int], ...]:
    parts, pos = [], 0
    while pos < size:
        n = min(size - pos, int(math.exp(rng.uniform(math.log(MIN_PART), math.log(1.5 * 2**20)))))
        parts.append((pos, pos + n - 1))
        pos += n
    return tuple(parts)


def make_plan(seed: int, *, scratch: bool = True) -> Plan:
    """Creates, then 5-9 interleaved uploads (at most three open at once), some parts re-sent
    exactly; layer 1 has layer 0's content in another repository (linked without a copy) and
    layer 2 has it in the same repository (LayerAlreadyExists). Optionally a scratch cycle:
    create, push, delete with force, purge."""
    rng = random.Random(seed)
    layers: list[LayerSpec] = []
    for k in range(rng.randint(5, 9)):
        if k == 1:
            repo, cid = rng.choice([r for r in REPOS if r != layers[0].repo]), layers[0].cid
        elif k == 2:
            repo, cid = layers[0].repo, layers[0].cid
        else:
            repo, cid = rng.choice(REPOS), rng.randrange(POOL)
        layers.append(LayerSpec(k, repo, cid, split(len(content(cid)), rng)))
    ops = [Op("create", r) for r in REPOS]
    pending, active, nxt = list(layers), [], {}
    while pending or active:
        if pending and (not active or (len(active) < 3 and rng.random() < 0.35)):
            spec = pending.pop(0)
            active.append(spec)
            nxt[spec.key] = 0
            ops.append(Op("initiate", spec.repo, spec.key))
            continue
        spec = rng.choice(active)
        i = nxt[spec.key]
        if i < len(spec.parts):
            ops.append(Op("part", spec.repo, spec.key, i))
            if rng.random() < 0.15:
                ops.append(Op("part", spec.repo, spec.key, i))  # a client's retry of that part
            nxt[spec.key] = i + 1
        else:
            ops.append(Op("complete", spec.repo, spec.key))
            active.remove(spec)
    if scratch:
        cid = SCRATCH_CID + seed
        spec = LayerSpec(len(layers), SCRATCH, cid, split(len(content(cid)), rng))
        layers.append(spec)
        cycle = [Op("create", SCRATCH), Op("initiate", SCRATCH, spec.key)]
        cycle += [Op("part", SCRATCH, spec.key, i) for i in range(len(spec.parts))]
        cycle += [Op("complete", SCRATCH, spec.key), Op("delete", SCRATCH), Op("purge")]
        at = rng.randint(len(REPOS), len(ops))
        ops[at:at] = cycle
    return Plan(seed, {s.key: s for s in layers}, tuple(ops))


def emit(line: str) -> None:
    # One write(2) per line, well under PIPE_BUF: a kill never leaves half a line behind.
    os.write(1, (line + "\n").encode())


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


#: Named steps inside a call, hooked at the system calls the engine makes and at the index's
#: write transaction, not at its private functions: (owner, attribute, die before or after it).
POINTS = {
    "precommit": (LmdbIndex, "write", "before"),  # files done, the index not yet written
    "commit": (LmdbIndex, "write", "after"),  # committed, not yet acknowledged
    "pwrite": (os, "pwrite", "after"),  # some of a part's bytes written, not synced
    "fdatasync": (os, "fdatasync", "after"),  # a part's data durable, not committed
    "link": (os, "link", "after"),  # completion: the data file has a temporary second name
    "rename": (os, "rename", "after"),  # the blob name given (completion), or a blob moved to trash/ (purge)
}
_armed = False


def install(point: str) -> None:
    owner, name, when = POINTS[point]
    real = getattr(owner, name)

    def hooked(*args, **kwargs):
        if _armed and when == "before":
            die()
        result = real(*args, **kwargs)
        if _armed:
            die()
        return result

    setattr(owner, name, hooked)


def run(path: str, seed: int, die_at: tuple[int, str] | None = None) -> None:
    global _armed
    plan = make_plan(seed)
    if die_at is not None:
        install(die_at[1])
    store = Store(path, **SETTINGS)
    emit("READY")
    uids: dict[int, str] = {}
    for i, op in enumerate(plan.ops):
        emit(f"BEGIN {i} {op.kind}")
        _armed = die_at is not None and die_at[0] == i
        spec = plan.layers.get(op.key)
        if op.kind == "create":
            try:
                store.create_repository(op.repo)
                res = "created"
            except errors.RepositoryAlreadyExistsException:
                res = "exists"
        elif op.kind == "initiate":
            uids[op.key] = res = store.initiate_layer_upload(spec.repo).upload_id
        elif op.kind == "part":
            first, last = spec.parts[op.part]
            data = memoryview(content(spec.cid))[first:last + 1]
            got = store.upload_layer_part(spec.repo, uids[op.key], first, last, data).last_byte_received
            assert got == last, (got, last)
            res = f"{uids[op.key]} {last}"
        elif op.kind == "complete":
            try:
                got = store.complete_layer_upload(spec.repo, uids[op.key], [digest(spec.cid)]).layer_digest
                assert got == digest(spec.cid), got
                res = f"done {got}"
            except errors.LayerAlreadyExistsException:
                res = f"already {digest(spec.cid)}"
        elif op.kind == "delete":
            store.delete_repository(op.repo, force=True)
            res = "deleted"
        else:
            store.purge(grace=0)
            res = "purged"
        _armed = False
        emit(f"ACK {i} {op.kind} {res}")
    store.close()
    emit("DONE")


#: The layer the hold modes upload: two parts; the process blocks inside the second.
HOLD_DATA = random.Random("hold").randbytes(5000)
HOLD_SPLIT = 2048


def hold(path: str, where: str) -> None:
    """Block forever inside a call that holds the upload's flock, after reporting the upload:
    in the second part with half its bytes written, or in the completion."""
    import fcntl

    store = Store(path, **SETTINGS)
    store.create_repository("app")
    uid = store.initiate_layer_upload("app").upload_id
    store.upload_layer_part("app", uid, 0, HOLD_SPLIT - 1, HOLD_DATA[:HOLD_SPLIT])

    def block() -> None:
        emit(f"HOLDING {uid}")
        while True:
            time.sleep(60)

    if where == "part":
        real_pwrite = os.pwrite

        def pwrite_half(fd, data, offset):
            view = memoryview(data)
            real_pwrite(fd, view[: len(view) // 2], offset)  # leaves unacknowledged bytes behind
            block()

        os.pwrite = pwrite_half
        store.upload_layer_part("app", uid, HOLD_SPLIT, len(HOLD_DATA) - 1, HOLD_DATA[HOLD_SPLIT:])
    else:
        store.upload_layer_part("app", uid, HOLD_SPLIT, len(HOLD_DATA) - 1, HOLD_DATA[HOLD_SPLIT:])
        real_flock = fcntl.flock

        def flock_then_block(fd, op):
            real_flock(fd, op)
            if op == fcntl.LOCK_EX:
                block()

        fcntl.flock = flock_then_block
        store.complete_layer_upload("app", uid, ["sha256:" + hashlib.sha256(HOLD_DATA).hexdigest()])
    raise AssertionError("the blocked call returned")


@functools.lru_cache(maxsize=4)
def stream_content(cid: int) -> bytes:
    """The bytes the stream mode uploads as content ``cid``: 1 to 2 MiB."""
    rng = random.Random(f"stream-{cid}")
    return rng.randbytes(rng.randint(2**20, 2 * 2**20))


def stream(path: str, upload_id: str, cid: int, seed: int) -> None:
    """Send :func:`stream_content` into ``upload_id`` (of ``app``) from its current length:
    streamed bodies of 1 to 40 chunks of 1 byte to 16 KiB, one in ten abandoned (closed
    without commit) and one in ten sent as an UploadLayerPart instead, then complete it. Reports::

        READY / AT <length>           the store is open; the upload's length at the start
        BEGIN <end>, ACK <end>        around a commit (or a part) that makes the length <end>
        ABANDON <end>                 a body of bytes up to <end> closed without commit
        COMPLETE, DONE <digest>       around the completion
    """

    def reread(*args, **kwargs):
        raise AssertionError("an upload's bytes were read again: its stored midstate should cover them")

    uploads_module.hash_file = reread  # resuming and completing use the midstate in the index
    LocalUploadData.hash_range = reread
    rng = random.Random(seed)
    payload = stream_content(cid)
    store = Store(path, **SETTINGS)
    emit("READY")
    pos = store.upload_status("app", upload_id)
    emit(f"AT {pos}")
    while pos < len(payload):
        sizes = [int(math.exp(rng.uniform(0, math.log(16 * 1024)))) for _ in range(rng.randint(1, 40))]
        how = rng.random()
        if how < 0.1:
            end = min(len(payload), pos + sum(sizes), pos + MAX_PART)
            emit(f"BEGIN {end}")
            got = store.upload_layer_part("app", upload_id, pos, end - 1, memoryview(payload)[pos:end])
            assert got.last_byte_received == end - 1, got
            emit(f"ACK {end}")
            pos = end
            continue
        with store.open_upload_stream("app", upload_id, first_byte=pos) as body:
            end = pos
            while sizes and end < len(payload):
                group = [sizes.pop() for _ in range(min(len(sizes), rng.randint(1, 3)))]
                chunks = []
                for size in group:
                    chunks.append(payload[end:end + size])
                    end += len(chunks[-1])
                body.write(chunks)
            abandoned = how < 0.2
            if abandoned:
                emit(f"ABANDON {end}")
            else:
                emit(f"BEGIN {end}")
                assert body.commit() == end
                emit(f"ACK {end}")
        if abandoned:  # closed without commit: nothing of it acknowledged
            assert store.upload_status("app", upload_id) == pos
        else:
            pos = end
    emit("COMPLETE")
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    got = store.complete_layer_upload("app", upload_id, [digest], part_minimum=False).layer_digest
    emit(f"DONE {got}")
    store.close()


def main(argv: list[str]) -> None:
    mode, path, *rest = argv
    if mode == "run":
        run(path, int(rest[0]), (int(rest[1]), rest[2]) if len(rest) == 3 else None)
    elif mode == "create":
        calls, n = 0, int(rest[0])
        real_mkdir = os.mkdir  # under pathlib.Path.mkdir and os.makedirs alike

        def mkdir(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == n:
                die()
            return real_mkdir(*args, **kwargs)

        os.mkdir = mkdir
        Store(path, **SETTINGS)
    elif mode == "stream":
        stream(path, rest[0], int(rest[1]), int(rest[2]))
    elif mode in ("hold-part", "hold-complete"):
        hold(path, mode.removeprefix("hold-"))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
