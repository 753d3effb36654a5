"""Crash safety: a writer process SIGKILLed at any instant leaves a store that opens cleanly and
keeps every effect it acknowledged.

The writer (tests/crash_writer.py) runs a deterministic random plan on a durable store —
several uploads interleaved, parts of KiB to MiB, exact re-sends of parts, one content in two
repositories (linked, not copied) and twice in one (LayerAlreadyExists), a repository deleted
with force and purged — and prints ``BEGIN``/``ACK`` lines around every call. After the kill
the parent reopens the store and checks:

* every listed layer has a blob file of the recorded size whose sha256 is its digest, and is
  AVAILABLE in its repository; no layer appears that no acknowledged (or in-flight) call made;
* every acknowledged effect is there: repositories, completed layers (size and content), and
  each unfinished upload's record holds at least the acknowledged bytes, with a sha256 midstate
  that covers exactly its bytes;
* each unfinished upload continues from its last acknowledged byte (re-synchronising through
  InvalidLayerPart's ``last_valid_byte_received`` when the killed call had applied one more
  part) and completes with the digest of the full data, finalised from the stored midstate
  (the data file is never re-hashed);
* ``purge(grace=0)`` reclaims every leftover (upload files without records, blob files without
  records, trash), after which ``verify()`` is clean and the counts match the acknowledged state.

The parent kills the writer at random instants, on one store through many runs and on a fresh
store per run; the writer also kills itself at named steps (after a part's ``pwrite`` or
``fdatasync``, after a completion's ``link``/``rename``, before and after an index commit, inside
purge's move to trash) so that each window is hit for certain. Two more tests kill a process
while it creates a store and while it holds an upload's lock, and one kills a writer streaming
chunks into uploads (OCI bodies, some abandoned, some parts between them) at random instants.

Seeds are fixed, so a failure names the seed that reproduces the plan; the kill instant itself
depends on timing. SIGKILL ends the process, not the kernel: written data stays in the page
cache. These tests therefore prove safety against process crashes. What ``durable=True`` adds
on top — fdatasync/fsync before each index commit, so that an OS crash or power loss keeps the
same guarantees — cannot be produced by a test and is not proven here.
"""

from __future__ import annotations

import collections
import dataclasses
import fcntl
import hashlib
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from crash_writer import (
    HOLD_DATA,
    HOLD_SPLIT,
    MAX_PART,
    MIN_PART,
    REPOS,
    SCRATCH,
    SETTINGS,
    LayerSpec,
    Op,
    Plan,
    content,
    digest,
    make_plan,
    stream_content,
)
from storeutil import digest_of, read_layer

from ecrstore import Sha256, Store, errors
from ecrstore import uploads as uploads_module

WRITER = str(Path(__file__).with_name("crash_writer.py"))
ALL_REPOS = (*REPOS, SCRATCH)


# --- the writer process ----------------------------------------------------------------------


@dataclasses.dataclass
class WriterRun:
    lines: list[str]
    killed: bool


def run_writer(path: Path, seed: int, *, delay: float | None = None, at_op: tuple[int, float] | None = None,
               die_at: tuple[int, str] | None = None) -> WriterRun:
    """Run the writer's plan for ``seed`` on ``path`` and SIGKILL it ``delay`` seconds after it
    reported READY, or ``at_op[1]`` seconds after it began call ``at_op[0]`` (neither: let it
    finish, or die at its own ``die_at`` point)."""
    args = [sys.executable, WRITER, "run", str(path), str(seed)]
    if die_at is not None:
        args += [str(die_at[0]), die_at[1]]
    err_path = path.parent / f"writer-{seed}.err"
    lines: list[str] = []
    ready, reached = threading.Event(), threading.Event()
    target = None if at_op is None else f"BEGIN {at_op[0]} "
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err)

    def read() -> None:
        for raw in proc.stdout:
            if not raw.endswith(b"\n"):
                break  # cut by the kill (cannot happen with one write(2) per line; never acknowledged)
            line = raw.decode().rstrip("\n")
            lines.append(line)
            if line == "READY":
                ready.set()
            elif target is not None and line.startswith(target):
                reached.set()
        ready.set()
        reached.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(60), f"seed {seed}: the writer never became ready"
        if delay is not None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        elif at_op is not None:
            assert reached.wait(60), f"seed {seed}: the writer never reached call {at_op[0]}"
            time.sleep(at_op[1])
            proc.send_signal(signal.SIGKILL)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(60)
    proc.stdout.close()
    stderr = err_path.read_text(errors="replace")
    err_path.unlink()
    killed = rc == -signal.SIGKILL
    assert killed or (rc == 0 and lines[-1:] == ["DONE"]), (
        f"seed {seed}: the writer failed by itself (exit {rc}); last lines {lines[-3:]}\n{stderr}")
    return WriterRun(lines, killed)


# --- what the writer acknowledged ------------------------------------------------------------


@dataclasses.dataclass
class UploadState:
    spec: LayerSpec
    uid: str | None = None
    acked_last: int = -1
    outcome: str | None = None  # "done" | "already"
    dropped: bool = False  # its repository was deleted with force


@dataclasses.dataclass
class Replay:
    """The acknowledged effects of one writer run, in order, and the call in flight (if any)."""

    plan: Plan
    uploads: dict[int, UploadState]
    repos: dict[str, bool]  # repository -> exists, after its last acknowledged create/delete
    events: list[tuple[str, str, str]]  # ("layer"|"delete", repo, digest), acknowledged order
    inflight: Op | None
    purged: bool
    finished: bool

    def inflight_is(self, kind: str, *, key: int | None = None, repo: str | None = None) -> bool:
        op = self.inflight
        return (op is not None and op.kind == kind and (key is None or op.key == key)
                and (repo is None or op.repo == repo))

    def describe(self) -> str:
        if self.finished:
            return "the plan ran to its end"
        op = self.inflight
        if op is None:
            return "killed between calls"
        where = f" part {op.part}" if op.kind == "part" else ""
        return f"killed in {op.kind} {op.repo or ''}{f' layer {op.key}' if op.key >= 0 else ''}{where}"


def replay(plan: Plan, lines: list[str]) -> Replay:
    ups = {k: UploadState(spec) for k, spec in plan.layers.items()}
    repos: dict[str, bool] = {}
    events: list[tuple[str, str, str]] = []
    inflight: int | None = None
    purged = finished = False
    for line in lines:
        tok = line.split()
        if tok[0] == "BEGIN":
            assert inflight is None, lines
            inflight = int(tok[1])
        elif tok[0] == "ACK":
            i = int(tok[1])
            assert i == inflight, lines
            inflight = None
            op = plan.ops[i]
            if op.kind == "create":
                repos[op.repo] = True
            elif op.kind == "initiate":
                ups[op.key].uid = tok[3]
            elif op.kind == "part":
                u = ups[op.key]
                assert tok[3] == u.uid and int(tok[4]) == u.spec.parts[op.part][1], line
                u.acked_last = max(u.acked_last, int(tok[4]))
            elif op.kind == "complete":
                u = ups[op.key]
                u.outcome = tok[3]
                assert tok[4] == digest(u.spec.cid), line
                events.append(("layer", u.spec.repo, tok[4]))
            elif op.kind == "delete":
                repos[op.repo] = False
                for u in ups.values():
                    if u.spec.repo == op.repo:
                        u.dropped = True
                events.append(("delete", op.repo, ""))
            elif op.kind == "purge":
                purged = True
        elif tok[0] == "DONE":
            finished = True
    return Replay(plan, ups, repos, events, None if inflight is None else plan.ops[inflight], purged, finished)


# --- checking a store after a kill -----------------------------------------------------------


def blob_path(root: Path, dg: str) -> Path:
    return root / "blobs" / "sha256" / dg[7:9] / dg[7:]


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def repositories(store: Store) -> set[str]:
    return {r.repository_name for r in store.describe_repositories(max_results=1000).repositories}


def listed_layers(store: Store) -> dict[tuple[str, str], int]:
    return {(name, d): size for name in repositories(store) for d, size in store.list_layers(name)}


def availability(store: Store, repo: str, dg: str) -> tuple[str | None, int | None]:
    res = store.batch_check_layer_availability(repo, [dg])
    if res.layers:
        return res.layers[0].layer_availability, res.layers[0].layer_size
    return None, None


class Checker:
    """Checks one store through a series of writer runs, remembering what must persist."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.expected: dict[tuple[str, str], int] = {}  # (repo, digest) -> size: must be AVAILABLE
        self.repos: dict[str, bool] = {r: False for r in ALL_REPOS}
        self.known: dict[str, int] = {}  # digest -> content id, of everything a plan may upload
        self.seen: collections.Counter[str] = collections.Counter()

    def check(self, seed: int, plan: Plan, run: WriterRun) -> None:
        r = replay(plan, run.lines)
        ctx = f"seed {seed} ({r.describe()})"
        self.seen[r.inflight.kind if r.inflight else ("finished" if r.finished else "between calls")] += 1
        for spec in plan.layers.values():
            self.known[digest(spec.cid)] = spec.cid
        rng = random.Random(f"parent-{seed}")
        rehashed: list[tuple] = []
        real_hash_file = uploads_module.hash_file

        def counting_hash_file(*args, **kwargs):
            rehashed.append(args[1:3])
            return real_hash_file(*args, **kwargs)

        uploads_module.hash_file = counting_hash_file
        try:
            with Store(self.path, **SETTINGS) as store:
                self._check_repositories(store, r, ctx)
                self._apply_acknowledged(r)
                self._check_listed(store, r, ctx, after_crash=True)
                self._check_upload_records(store, r, ctx)
                self._finish_uploads(store, r, rng, ctx)
                assert not rehashed, f"{ctx}: an upload was re-hashed from its data file {rehashed}; " \
                                     "the stored midstate should have covered its bytes"
                self._check_listed(store, r, ctx, after_crash=False)
                self._check_purged(store, r, ctx)
        finally:
            uploads_module.hash_file = real_hash_file
        # An upload nobody knows (an initiate killed after its commit) is reclaimed as idle by a
        # store with a tiny TTL, so that the next run starts from a known state.
        with Store(self.path, **{**SETTINGS, "upload_ttl": 1e-6}) as store:
            store.purge(grace=0)
            assert store.stats().uploads_in_progress == 0, ctx
        assert os.listdir(self.path / "uploads") == [], ctx

    def _check_repositories(self, store: Store, r: Replay, ctx: str) -> None:
        actual = repositories(store)
        assert actual <= set(ALL_REPOS), f"{ctx}: unexpected repositories {actual}"
        for name in ALL_REPOS:
            want = r.repos.get(name, self.repos[name])
            if not (r.inflight_is("create", repo=name) or r.inflight_is("delete", repo=name)):
                assert (name in actual) == want, (
                    f"{ctx}: repository {name} exists={name in actual}, acknowledged {want}")
            self.repos[name] = name in actual

    def _apply_acknowledged(self, r: Replay) -> None:
        for kind, repo, dg in r.events:
            if kind == "layer":
                self.expected[(repo, dg)] = len(content(self.known[dg]))
            else:
                self.expected = {k: v for k, v in self.expected.items() if k[0] != repo}
        for name in ALL_REPOS:  # a repository deleted by the call in flight
            if not self.repos[name]:
                self.expected = {k: v for k, v in self.expected.items() if k[0] != name}

    def _check_listed(self, store: Store, r: Replay, ctx: str, *, after_crash: bool) -> None:
        """Every listed layer is sound (blob of the recorded size hashing to its digest, and
        AVAILABLE); the acknowledged ones are all there; others only from the call in flight."""
        listed = listed_layers(store)
        hashes: dict[str, str] = {}
        for (repo, dg), size in listed.items():
            assert dg in self.known, f"{ctx}: {repo} lists {dg}, which no writer uploaded"
            assert size == len(content(self.known[dg])), f"{ctx}: {repo} {dg} listed with size {size}"
            path = blob_path(self.path, dg)
            assert path.is_file() and path.stat().st_size == size, f"{ctx}: blob of {dg} missing or of the wrong size"
            if dg not in hashes:
                hashes[dg] = file_sha256(path)
            assert hashes[dg] == dg, f"{ctx}: the blob of {dg} hashes to {hashes[dg]}"
        for repo in {k[0] for k in listed}:
            digests = [dg for (rp, dg) in listed if rp == repo]
            for i in range(0, len(digests), 100):
                res = store.batch_check_layer_availability(repo, digests[i:i + 100])
                assert res.failures == (), f"{ctx}: {res.failures}"
                for layer in res.layers:
                    assert (layer.layer_availability, layer.layer_size) == (
                        "AVAILABLE", listed[(repo, layer.layer_digest)]), f"{ctx}: {repo} {layer}"
        missing = set(self.expected) - set(listed)
        assert not missing, f"{ctx}: acknowledged layers are gone: {sorted(missing)}"
        extra = set(listed) - set(self.expected)
        if after_crash and r.inflight_is("complete"):
            spec = r.plan.layers[r.inflight.key]
            extra.discard((spec.repo, digest(spec.cid)))  # the killed completion had committed
        assert not extra, f"{ctx}: layers no acknowledged call made: {sorted(extra)}"
        for (repo, dg), size in listed.items():
            self.expected[(repo, dg)] = size

    def _check_upload_records(self, store: Store, r: Replay, ctx: str) -> None:
        """Each unfinished upload holds at least its acknowledged bytes, exactly as sent, with a
        midstate covering exactly them; it is ahead only by the part the killed call applied."""
        for u in r.uploads.values():
            if u.uid is None or u.outcome is not None or u.dropped or not self.repos[u.spec.repo]:
                continue
            with store._index.read() as t:
                rec = t.get_upload(uuid.UUID(u.uid).bytes)
            if rec is None:
                assert r.inflight_is("complete", key=u.spec.key), f"{ctx}: the record of upload {u.uid} is gone"
                continue
            data = content(u.spec.cid)
            last = rec.received - 1
            assert last >= u.acked_last, f"{ctx}: upload {u.uid} holds bytes to {last}, acknowledged {u.acked_last}"
            if last > u.acked_last:
                assert r.inflight_is("part", key=u.spec.key) and last == u.spec.parts[r.inflight.part][1], (
                    f"{ctx}: upload {u.uid} is at byte {last}, acknowledged {u.acked_last}")
            state = Sha256.from_state(rec.state) if rec.state else Sha256()
            assert state.nbytes == rec.received, (
                f"{ctx}: upload {u.uid}: midstate of {state.nbytes} bytes, {rec.received} received")
            assert state.digest() == hashlib.sha256(data[:rec.received]).digest(), (
                f"{ctx}: upload {u.uid}: wrong midstate")
            with open(self.path / "uploads" / uuid.UUID(u.uid).hex, "rb") as f:
                assert f.read(rec.received) == data[:rec.received], f"{ctx}: upload {u.uid}: acknowledged bytes differ"

    def _finish_uploads(self, store: Store, r: Replay, rng: random.Random, ctx: str) -> None:
        """Continue every unfinished upload from its last acknowledged byte and complete it."""
        for u in r.uploads.values():
            if u.uid is None or u.outcome is not None or u.dropped or not self.repos[u.spec.repo]:
                continue
            repo, data, dg = u.spec.repo, content(u.spec.cid), digest(u.spec.cid)
            pos, resynced = u.acked_last + 1, False
            while pos < len(data):
                n = int(math.exp(rng.uniform(math.log(MIN_PART), math.log(MAX_PART))))
                end = min(len(data), pos + n) - 1
                try:
                    got = store.upload_layer_part(repo, u.uid, pos, end, memoryview(data)[pos:end + 1])
                except errors.InvalidLayerPartException as e:
                    # Allowed once: the killed call had applied its part; continue after it.
                    assert not resynced and r.inflight_is("part", key=u.spec.key), f"{ctx}: {e!r}"
                    assert e.last_valid_byte_received == u.spec.parts[r.inflight.part][1], (
                        f"{ctx}: lastValidByteReceived {e.last_valid_byte_received}")
                    pos, resynced = e.last_valid_byte_received + 1, True
                    continue
                assert got.last_byte_received == end, f"{ctx}: {got}"
                pos = end + 1
            before = availability(store, repo, dg)[0]
            try:
                done = store.complete_layer_upload(repo, u.uid, [dg])
                assert done.layer_digest == dg and before != "AVAILABLE", f"{ctx}: {done}, before: {before}"
            except errors.LayerAlreadyExistsException:
                assert before == "AVAILABLE", f"{ctx}: LayerAlreadyExists for {dg} in {repo}, which was {before}"
            except errors.UploadNotFoundException:
                assert r.inflight_is("complete", key=u.spec.key), f"{ctx}: upload {u.uid} of {repo} is gone"
            assert availability(store, repo, dg) == ("AVAILABLE", len(data)), ctx
            assert read_layer(store, repo, dg) == data, f"{ctx}: {repo} {dg} reads other bytes"
            self.expected[(repo, dg)] = len(data)

    def _check_purged(self, store: Store, r: Replay, ctx: str) -> None:
        """purge(grace=0) reclaims every leftover; then nothing is orphaned and verify is clean."""
        with store._index.read() as t:
            unlinked = [dg.hex() for dg, _ in t.iter_blobs() if not t.blob_is_linked(dg)]
        if r.purged:
            assert not unlinked, f"{ctx}: blobs of the deleted repository survived the acknowledged purge"
        root = self.path
        with store._index.read() as t:
            leftovers = {
                "upload files": sum(t.get_upload(uuid.UUID(hex=name).bytes) is None
                                    for name in os.listdir(root / "uploads")),
                "blob files": sum(p.name.startswith(".") or t.get_blob(bytes.fromhex(p.name)) is None
                                  for d in (root / "blobs" / "sha256").iterdir() for p in d.iterdir()),
                "trash": len(os.listdir(root / "trash")),
            }
        store.purge(grace=0)
        assert os.listdir(root / "trash") == [], f"{ctx}: trash left after purge"
        st = store.stats()
        with store._index.read() as t:
            for name in os.listdir(root / "uploads"):
                assert t.get_upload(uuid.UUID(hex=name).bytes) is not None, (
                    f"{ctx}: upload file {name} without a record")
            blob_files = [p for d in (root / "blobs" / "sha256").iterdir() for p in d.iterdir()]
            for p in blob_files:
                assert not p.name.startswith("."), f"{ctx}: temporary blob file {p.name} left after purge"
                assert t.get_blob(bytes.fromhex(p.name)) is not None, f"{ctx}: blob file {p.name} without a record"
            records = [(uid, rec) for uid, rec in t.uploads_idle_since(time.time() + 1)]
        for uid, rec in records:
            if rec.received:
                assert (root / "uploads" / uuid.UUID(bytes=uid).hex).is_file(), (
                    f"{ctx}: upload {uid.hex()} lost its file")
        report = store.verify()
        assert report.ok, f"{ctx}: {report.mismatches}"
        assert len(blob_files) == st.blobs == report.checked == len({dg for _, dg in self.expected}), ctx
        assert st.layers == len(self.expected), ctx
        assert st.uploads_in_progress == 0 or (st.uploads_in_progress == 1 and r.inflight_is("initiate")), (
            f"{ctx}: {st.uploads_in_progress} uploads left")
        for kind, n in leftovers.items():
            if n:
                self.seen[f"orphan {kind}"] += 1

    def summary(self) -> str:
        return ", ".join(f"{k}: {n}" for k, n in sorted(self.seen.items()))


def kill_schedule(seed: int, plan: Plan) -> dict:
    """How the parent kills run ``seed``: after a delay from READY (1 ms to about the length of
    a whole run, log-uniform), or 0-3 ms after the writer began a chosen call."""
    rng = random.Random(f"kill-{seed}")
    if rng.random() < 0.5:
        return {"delay": math.exp(rng.uniform(math.log(0.001), math.log(0.15)))}
    return {"at_op": (rng.randrange(len(plan.ops)), rng.uniform(0, 0.003))}


def finish(checker: Checker, killed: int, runs: int) -> None:
    print(f"\n{runs} runs, {killed} killed mid-plan; {checker.summary()}")
    assert killed >= runs // 2, f"only {killed} of {runs} runs were killed before their end"


# --- the tests -------------------------------------------------------------------------------


def test_random_kills_on_one_accumulating_store(tmp_path):
    """40 runs on one store: state accumulates (layers recur across runs and repositories),
    and every earlier acknowledged effect must survive every later kill."""
    checker = Checker(tmp_path / "s")
    killed = 0
    for i in range(40):
        seed = 7100 + i
        plan = make_plan(seed)
        run = run_writer(checker.path, seed, **({} if i == 0 else kill_schedule(seed, plan)))
        killed += run.killed
        checker.check(seed, plan, run)
    finish(checker, killed, 40)


def test_random_kills_on_fresh_stores(tmp_path):
    """30 runs, each on a store the writer creates."""
    killed = 0
    checkers = []
    for i in range(30):
        seed = 9100 + i
        plan = make_plan(seed)
        checker = Checker(tmp_path / f"s{i}")
        run = run_writer(checker.path, seed, **kill_schedule(seed, plan))
        killed += run.killed
        checker.check(seed, plan, run)
        checkers.append(checker)
        shutil.rmtree(checker.path)
    merged = Checker(tmp_path)
    for c in checkers:
        merged.seen.update(c.seen)
    finish(merged, killed, 30)


DETERMINISTIC_SEED = 4242


def _first(plan: Plan, kind: str, pred=lambda op: True) -> int:
    return next(i for i, op in enumerate(plan.ops) if op.kind == kind and pred(op))


@pytest.mark.parametrize(
    "kind, point",
    [
        ("initiate", "precommit"),
        ("initiate", "commit"),
        ("part", "pwrite"),
        ("part", "fdatasync"),
        ("part", "precommit"),
        ("part", "commit"),
        ("complete", "link"),
        ("complete", "rename"),
        ("complete", "precommit"),
        ("complete", "commit"),
        ("delete", "commit"),
        ("purge", "rename"),
        ("purge", "commit"),
    ],
)
def test_kill_at_each_step_of_the_commit_protocol(tmp_path, kind, point):
    """The writer kills itself at a named step inside a call (data written, synced, renamed,
    committed...): the same checks as the random kills, each window hit for certain."""
    plan = make_plan(DETERMINISTIC_SEED)
    if kind == "part":  # a part after the first, so that continuing means resuming a midstate
        at = _first(plan, "part", lambda op: op.part == 1)
    else:
        at = _first(plan, kind)
    checker = Checker(tmp_path / "s")
    run = run_writer(checker.path, DETERMINISTIC_SEED, die_at=(at, point))
    assert run.killed and not any(line.startswith(f"ACK {at} ") for line in run.lines), run.lines[-3:]
    assert replay(plan, run.lines).inflight == plan.ops[at]
    checker.check(DETERMINISTIC_SEED, plan, run)


def test_kill_while_the_store_is_being_created(tmp_path):
    """A process killed while it creates a store (at its 60th mkdir, amid the fan-out
    directories) leaves a directory that opens as a working store."""
    path = tmp_path / "s"
    rc = subprocess.run([sys.executable, WRITER, "create", str(path), "60"], timeout=60).returncode
    assert rc == -signal.SIGKILL, "the writer was not killed while creating the store"
    fanout = path / "blobs" / "sha256"
    missing = {f"{i:02x}" for i in range(256)} - (set(os.listdir(fanout)) if fanout.is_dir() else set())
    with Store(path, **SETTINGS) as store:
        store.create_repository("app")
        # a layer whose digest falls in a fan-out directory the killed process had not made
        wanted = missing or {"00"}
        data = next(d for d in (n.to_bytes(4, "big") for n in range(100_000)) if digest_of(d)[7:9] in wanted)
        up = store.initiate_layer_upload("app").upload_id
        store.upload_layer_part("app", up, 0, len(data) - 1, data)
        assert store.complete_layer_upload("app", up, [digest_of(data)]).layer_digest == digest_of(data)
        assert read_layer(store, "app", digest_of(data)) == data
        assert store.verify().ok


@pytest.mark.parametrize("where", ["part", "complete"])
def test_killed_lock_holder_releases_the_upload(tmp_path, where):
    """A writer SIGKILLed while it holds an upload's flock (mid-part, with half its bytes
    written; or mid-completion) does not wedge the upload: a call of another process that was
    waiting for the lock proceeds as soon as the holder dies, and the upload completes."""
    path = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, WRITER, f"hold-{where}", str(path)], stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline().decode().split()
        assert line[:1] == ["HOLDING"], line
        uid = line[1]
        data_file = path / "uploads" / uuid.UUID(uid).hex
        with open(data_file, "rb") as f:
            with pytest.raises(BlockingIOError):
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the writer holds the upload's lock
        with Store(path, **SETTINGS) as store:
            result: list = []

            def call():
                try:
                    if where == "part":  # shorter than the killed writer's part: its leftovers must go
                        result.append(store.upload_layer_part(
                            "app", uid, HOLD_SPLIT, HOLD_SPLIT + 1023, HOLD_DATA[HOLD_SPLIT:HOLD_SPLIT + 1024]
                        ).last_byte_received)
                    else:
                        result.append(store.complete_layer_upload("app", uid, [digest_of(HOLD_DATA)]).layer_digest)
                except Exception as e:  # reported through result, checked below
                    result.append(e)

            waiter = threading.Thread(target=call, daemon=True)
            waiter.start()
            waiter.join(0.5)
            assert waiter.is_alive(), f"the call did not wait for the writer's lock: {result}"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
            killed_at = time.monotonic()
            waiter.join(30)
            assert not waiter.is_alive(), "the lock of the killed writer was never released"
            assert time.monotonic() - killed_at < 5
            if where == "part":
                assert result == [HOLD_SPLIT + 1023]
                assert data_file.stat().st_size == HOLD_SPLIT + 1024  # the killed writer's bytes were cut
                rest = HOLD_DATA[HOLD_SPLIT + 1024:]
                res = store.upload_layer_part("app", uid, HOLD_SPLIT + 1024, len(HOLD_DATA) - 1, rest)
                assert res.last_byte_received == len(HOLD_DATA) - 1
                result[:] = [store.complete_layer_upload("app", uid, [digest_of(HOLD_DATA)]).layer_digest]
            assert result == [digest_of(HOLD_DATA)]
            assert read_layer(store, "app", digest_of(HOLD_DATA)) == HOLD_DATA
            store.purge(grace=0)
            assert store.verify().ok
            st = store.stats()
            assert (st.layers, st.blobs, st.uploads_in_progress) == (1, 1, 0)
            assert os.listdir(path / "uploads") == [] and os.listdir(path / "trash") == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# --- streamed appends ------------------------------------------------------------------------


@dataclasses.dataclass
class StreamReplay:
    """What one run of the writer's stream mode reported."""

    at: int | None = None  # the upload's length when the run began
    acked: int | None = None  # the last acknowledged length
    pending: int | None = None  # the length a commit (or part) in flight would make
    completing: bool = False
    done: str | None = None


def run_stream_writer(path: Path, upload_id: str, cid: int, seed: int, delay: float | None) -> WriterRun:
    """Run the stream mode and SIGKILL it ``delay`` seconds after READY (None: let it finish)."""
    args = [sys.executable, WRITER, "stream", str(path), upload_id, str(cid), str(seed)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for raw in proc.stdout:
            if raw.endswith(b"\n"):
                lines.append(raw.decode().rstrip("\n"))
                if lines[-1] == "READY":
                    ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(60), "the stream writer never became ready"
        if delay is not None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(60)
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    killed = rc == -signal.SIGKILL
    assert killed or (rc == 0 and lines[-1:] and lines[-1].startswith("DONE ")), (
        f"seed {seed}: the stream writer failed by itself (exit {rc}); last lines {lines[-3:]}\n{stderr}")
    return WriterRun(lines, killed)


def replay_stream(lines: list[str]) -> StreamReplay:
    r = StreamReplay()
    for line in lines:
        tok = line.split()
        if tok[0] == "AT":
            r.at = r.acked = int(tok[1])
        elif tok[0] == "BEGIN":
            r.pending = int(tok[1])
        elif tok[0] == "ACK":
            assert int(tok[1]) == r.pending, lines
            r.acked, r.pending = r.pending, None
        elif tok[0] == "COMPLETE":
            r.completing = True
        elif tok[0] == "DONE":
            r.done = tok[1]
    return r


def test_random_kills_of_a_streaming_writer(tmp_path):
    """15 runs of a writer streaming chunks (1 byte to 16 KiB) into one upload after another,
    each SIGKILLed at a random instant, then one let finish. After each kill the upload holds
    exactly an acknowledged length (or the one the commit in flight made), its bytes as sent and
    a midstate covering exactly them; the next run continues from that length without reading
    the upload again (the writer refuses to); every completed layer reads back as sent."""
    path = tmp_path / "s"
    with Store(path, **SETTINGS) as store:
        store.create_repository("app")
        up = store.initiate_layer_upload("app").upload_id
    rng = random.Random("stream-kills")
    cid = length = killed = ahead = 0
    completed: list[str] = []
    for i in range(16):
        delay = math.exp(rng.uniform(math.log(0.0005), math.log(0.1))) if i < 15 else None
        run = run_stream_writer(path, up, cid, 500 + i, delay)
        killed += run.killed
        r = replay_stream(run.lines)
        payload = stream_content(cid)
        ctx = f"run {i}, content {cid} ({'killed' if run.killed else 'finished'} after {run.lines[-2:]})"
        assert r.at in (None, length), f"{ctx}: began at {r.at}, the upload was at {length}"
        with Store(path, **SETTINGS) as store:
            with store._index.read() as t:
                rec = t.get_upload(uuid.UUID(up).bytes)
            if rec is not None:
                allowed = {length if r.acked is None else r.acked} | ({r.pending} - {None})
                assert rec.received in allowed, f"{ctx}: the upload holds {rec.received} bytes, not one of {allowed}"
                state = Sha256.from_state(rec.state) if rec.state else Sha256()
                assert state.nbytes == rec.received, ctx
                assert state.digest() == hashlib.sha256(payload[:rec.received]).digest(), f"{ctx}: wrong midstate"
                with open(path / "uploads" / uuid.UUID(up).hex, "rb") as f:
                    assert f.read(rec.received) == payload[:rec.received], f"{ctx}: acknowledged bytes differ"
                ahead += rec.received != length and rec.received == r.pending
                length = rec.received
            else:  # consumed by the completion
                assert r.completing, f"{ctx}: the upload is gone"
                assert r.done in (None, digest_of(payload)), ctx
                assert read_layer(store, "app", digest_of(payload)) == payload, ctx
                completed.append(digest_of(payload))
                cid, length = cid + 1, 0
                up = store.initiate_layer_upload("app").upload_id
    assert not run.killed and completed and killed >= 10, (killed, completed)
    with Store(path, **{**SETTINGS, "upload_ttl": 1e-6}) as store:
        assert sorted(d for d, _ in store.list_layers("app")) == sorted(completed)
        store.purge(grace=0)
        assert store.verify().ok
        assert os.listdir(path / "uploads") == [] and os.listdir(path / "trash") == []
    print(f"\n16 streaming runs, {killed} killed, {ahead} with the commit in flight applied, "
          f"{len(completed)} layers completed")
