"""Random sequences of repository and layer operations checked against a model of ECR's rules.

The model (``Model`` below) is a few dictionaries and the rules of the ECR contract
(spec sections 2-4): repository names and registries, upload ownership, strictly contiguous
parts with the exact re-send of the last part accepted again, completion's check order
(RepositoryNotFound, UploadNotFound, EmptyUpload, LayerPartTooSmall, InvalidLayer,
LayerAlreadyExists) and which outcomes consume an upload, per-repository availability over
content stored once (UNAVAILABLE where another repository of the same registry holds a layer;
registries are tenants), and reclaiming by purge. Every answer of the store is compared with the
model's: results, the exact error class, and ``last_valid_byte_received``. After every step
the store's counts (repositories, layers, blobs, bytes, uploads in progress), its repository
listing and every repository's layer list must equal the model's.

Small settings (minimum part 64 bytes, part size 128, maximum part 512) and layers of tens to
a few thousand bytes keep the sequences fast; ``durable=False`` because durability is not what
is tested here (see test_store_crash.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import re
import shutil
import tempfile

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ecrstore import Store, errors

MIN_PART, PART_SIZE, MAX_PART = 64, 128, 512
#: Stores live on tmpfs when there is one: creating and removing a store's 256 fan-out
#: directories per example costs far more on a disk file system, and sync is not tested here.
SCRATCH_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
DEFAULT_REGISTRY = "000000000000"
OTHER_REGISTRY = "111111111111"

# The spec's rules, written out independently of ecrstore.validate.
NAME_RE = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
REGISTRY_RE = re.compile(r"[0-9]{12}")
UPLOAD_ID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DIGEST_RE = re.compile(r"([a-zA-Z0-9_+.-]+):([a-fA-F0-9]+)")

VALID_NAMES = ("app", "team/app", "a-b", "x.y_z", "ab", "a__b/c--d")
INVALID_NAMES = ("a", "A-b", "-ab", "a//b", "ab_", "x" * 257, "ab c", "")
NAMES = VALID_NAMES * 4 + INVALID_NAMES  # mostly valid, so that repositories collide
REGISTRIES = (None, None, None, DEFAULT_REGISTRY, OTHER_REGISTRY, "12345")  # None: the default

#: Contents uploads aim at, so that layers recur in one repository and across repositories.
POOL = tuple(random.Random(f"pool-{i}").randbytes(n) for i, n in enumerate((1, 2, 63, 64, 200, 700, 1500)))
SIZES = st.one_of(st.sampled_from([1, MIN_PART - 1, MIN_PART, MIN_PART + 1, PART_SIZE, MAX_PART]),
                  st.integers(1, MAX_PART))


def some_bytes(data, n: int) -> bytes:
    """``n`` arbitrary bytes from one drawn seed: a few choices, not ``n``, so that long
    sequences of steps fit in Hypothesis's choice buffer."""
    return random.Random(data.draw(st.integers(0, 2**32 - 1), label="bytes seed")).randbytes(n)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def name_ok(name: object) -> bool:
    return isinstance(name, str) and 2 <= len(name) <= 256 and NAME_RE.fullmatch(name) is not None


def registry_ok(registry: object) -> bool:
    return registry is None or (isinstance(registry, str) and REGISTRY_RE.fullmatch(registry) is not None)


def sha256_key(text: str) -> str | None:
    """The normalised ``sha256:<hex>`` a digest string names, or None when it names no
    sha256 content (another algorithm, a short hex) — it must match the pattern already."""
    m = DIGEST_RE.fullmatch(text)
    if m and m.group(1).lower() == "sha256" and len(m.group(2)) == 64:
        return "sha256:" + m.group(2).lower()
    return None


# --- the model ---------------------------------------------------------------------------------


@dataclasses.dataclass
class ModelUpload:
    repo: tuple[str, str]  # (registry, name)
    target: bytes  # the content the generator aims at (parts may diverge from it)
    data: bytearray = dataclasses.field(default_factory=bytearray)
    sizes: list[int] = dataclasses.field(default_factory=list)
    last: tuple[int, int, bytes] | None = None  # the most recent accepted part


class Model:
    def __init__(self) -> None:
        self.repos: set[tuple[str, str]] = set()
        self.layers: dict[tuple[str, str], dict[str, bytes]] = {}  # repo -> digest -> bytes
        self.blobs: dict[str, bytes] = {}  # stored contents: linked anywhere, or not yet purged
        self.uploads: dict[str, ModelUpload] = {}  # live uploads

    @staticmethod
    def key(registry: str | None, name: str) -> tuple[str, str]:
        return (registry or DEFAULT_REGISTRY, name)

    def repo_error(self, registry, name) -> type[errors.EcrError] | None:
        if not registry_ok(registry) or not name_ok(name):
            return errors.InvalidParameterException
        if self.key(registry, name) not in self.repos:
            return errors.RepositoryNotFoundException
        return None

    def upload_of(self, registry, name, upload_id) -> ModelUpload | None:
        u = self.uploads.get(upload_id)
        return u if u is not None and u.repo == self.key(registry, name) else None

    def drop_repo(self, repo: tuple[str, str]) -> None:
        self.repos.discard(repo)
        self.layers.pop(repo, None)  # the links go; the blobs stay until purge
        self.uploads = {uid: u for uid, u in self.uploads.items() if u.repo != repo}


# --- the machine -------------------------------------------------------------------------------


def raises_exactly(cls: type[Exception], fn, *args, **kwargs) -> Exception:
    try:
        result = fn(*args, **kwargs)
    except Exception as e:  # compared with the model's expectation right here
        assert type(e) is cls, f"expected {cls.__name__}, got {e!r}"
        return e
    raise AssertionError(f"expected {cls.__name__}, got the result {result!r}")


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ecrstore-stateful-", dir=SCRATCH_DIR)
        self.store = Store(self.dir, part_size=PART_SIZE, min_part_size=MIN_PART, max_part_size=MAX_PART,
                           durable=False)
        self.model = Model()
        self.issued: list[str] = []  # every upload id the store handed out, live or not

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- drawing arguments ---------------------------------------------------------------

    def live(self) -> list[str]:
        """Live uploads in the order they were issued (their ids are random: never sort them,
        or the same choices would pick other uploads on a replay)."""
        return [uid for uid in self.issued if uid in self.model.uploads]

    def draw_repo(self, data, existing: int = 2) -> tuple[str | None, str]:
        """A (registry, name): an existing repository ``existing`` times as often as any other."""
        choices = [st.tuples(st.sampled_from(REGISTRIES), st.sampled_from(NAMES))]
        if self.model.repos:
            choices = [st.sampled_from(sorted(self.model.repos))] * existing + choices
        return data.draw(st.one_of(*choices), label="repository")

    def draw_upload(self, data, *, with_parts: bool = False) -> str:
        """Mostly a live upload (one holding parts, if asked and there is one); else a finished
        one, an unknown id or a malformed one."""
        choices = [st.uuids(version=4).map(str), st.just("not-an-upload-id")]
        if self.issued:
            choices.insert(0, st.sampled_from(self.issued))
        live = [uid for uid in self.live() if self.model.uploads[uid].last or not with_parts]
        if live:
            choices = [st.sampled_from(live)] * 8 + choices
        return data.draw(st.one_of(*choices), label="upload id")

    def draw_repo_for(self, data, upload_id: str) -> tuple[str | None, str]:
        """Mostly the upload's own repository; sometimes another (or a missing, or an invalid) one."""
        u = self.model.uploads.get(upload_id)
        if u is not None and data.draw(st.integers(0, 9), label="own repository?") < 8:
            return u.repo
        return self.draw_repo(data)

    def draw_digest_text(self, data, content: bytes | None) -> str:
        """A layerDigests / layerDigest member: right, upper-case, wrong, other algorithms,
        another stored content, malformed."""
        known = sorted(set(self.model.blobs) | {sha256(c) for c in POOL})
        opts = [
            st.sampled_from(known),
            st.sampled_from(known),
            st.integers(0, 2**256 - 1).map(lambda i: f"sha256:{i:064x}"),
            st.sampled_from(["sha512:" + "ab" * 64, "md5:abcd", "sha256:abcd", "sha256:" + "0" * 64]),
            st.sampled_from(["sha256", "sha256:xyz", "", ":abcd", "sha256:" + "g" * 64, "sha 256:ab"]),
        ]
        if content is not None:
            right = sha256(content)
            opts = [st.sampled_from([right, "sha256:" + right[7:].upper(), "sha512:" + right[7:]])] * 3 + opts
        return data.draw(st.one_of(*opts), label="digest")

    # --- repositories --------------------------------------------------------------------

    @initialize(names=st.lists(st.tuples(st.sampled_from((None, OTHER_REGISTRY)), st.sampled_from(VALID_NAMES)),
                               min_size=1, max_size=3, unique=True))
    def some_repositories(self, names):
        for registry, name in names:
            self.create(registry, name)

    @rule(data=st.data())
    def create_repository(self, data):
        self.create(*self.draw_repo(data))

    def create(self, registry, name):
        m = self.model
        if not registry_ok(registry) or not name_ok(name):
            e = raises_exactly(errors.InvalidParameterException, self.store.create_repository, name,
                               registry_id=registry)
            assert "registryId" in e.message or "repositoryName" in e.message, e.message
        elif m.key(registry, name) in m.repos:
            raises_exactly(errors.RepositoryAlreadyExistsException, self.store.create_repository, name,
                           registry_id=registry)
        else:
            repo = self.store.create_repository(name, registry_id=registry)
            assert (repo.registry_id, repo.repository_name) == m.key(registry, name)
            m.repos.add(m.key(registry, name))

    @rule(data=st.data(), force=st.booleans())
    def delete_repository(self, data, force):
        # Mostly a missing or invalid one: deleting an existing repository wipes the state the
        # other rules build on, so it is kept to about a quarter of the deletions.
        registry, name = self.draw_repo(data, existing=0 if data.draw(st.integers(0, 3), label="hit?") else 1)
        err = self.model.repo_error(registry, name)
        if err:
            raises_exactly(err, self.store.delete_repository, name, registry_id=registry, force=force)
        else:
            # No images are ever put, so force changes nothing here.
            repo = self.store.delete_repository(name, registry_id=registry, force=force)
            assert (repo.registry_id, repo.repository_name) == self.model.key(registry, name)
            self.model.drop_repo(self.model.key(registry, name))

    # --- uploads -------------------------------------------------------------------------

    @rule(data=st.data(), aim=st.sampled_from(range(len(POOL))))
    def initiate_layer_upload(self, data, aim):
        self.initiate(*self.draw_repo(data, existing=6), aim)

    def initiate(self, registry, name, aim) -> str | None:
        err = self.model.repo_error(registry, name)
        if err:
            raises_exactly(err, self.store.initiate_layer_upload, name, registry_id=registry)
            return None
        res = self.store.initiate_layer_upload(name, registry_id=registry)
        assert res.part_size == PART_SIZE and UPLOAD_ID_RE.fullmatch(res.upload_id)
        assert res.upload_id not in self.issued
        self.issued.append(res.upload_id)
        self.model.uploads[res.upload_id] = ModelUpload(self.model.key(registry, name), POOL[aim])
        return res.upload_id

    @precondition(lambda self: self.model.repos)
    @rule(data=st.data(), aim=st.sampled_from(range(len(POOL))))
    def push_layer(self, data, aim):
        """A whole push of a pooled content to an existing repository (initiate, parts of at
        least the minimum size, completion): builds the layers the other rules look at, the
        same content in several repositories, and LayerAlreadyExists."""
        registry, name = data.draw(st.sampled_from(sorted(self.model.repos)), label="repository")
        upload_id = self.initiate(registry, name, aim)
        content, pos = POOL[aim], 0
        while pos < len(content):
            n = data.draw(st.integers(MIN_PART, MAX_PART), label="part size")
            blob = content[pos:pos + n]
            self.check_part(registry, name, upload_id, pos, pos + len(blob) - 1, blob, "push")
            pos += len(blob)
        self.complete(upload_id, registry, name, [sha256(content)])

    @precondition(lambda self: self.model.uploads)
    @rule(data=st.data())
    def upload_next_part(self, data):
        """The common case: the next part of a live upload, in its own repository."""
        upload_id = data.draw(st.sampled_from(self.live()), label="upload id")
        u = self.model.uploads[upload_id]
        self.check_part(*u.repo, upload_id, *self.draw_part(data, u, "next"), "next")

    @precondition(lambda self: any(u.last for u in self.model.uploads.values()))
    @rule(data=st.data(), kind=st.sampled_from(["resend", "resend", "resend_other"]))
    def resend_last_part(self, data, kind):
        """A client's retry of the last part of a live upload: the same bytes are accepted again
        and change nothing; other bytes for that range are refused."""
        upload_id = data.draw(st.sampled_from([uid for uid in self.live() if self.model.uploads[uid].last]),
                              label="upload id")
        u = self.model.uploads[upload_id]
        self.check_part(*u.repo, upload_id, *self.draw_part(data, u, kind), kind)

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), kind=st.sampled_from([
        "resend", "resend", "resend_other", "gap", "overlap", "mismatch", "backwards",
        "empty", "oversized", "negative",
    ]))
    def upload_layer_part(self, data, kind):
        upload_id = self.draw_upload(data, with_parts=kind in ("resend", "resend_other", "overlap"))
        registry, name = self.draw_repo_for(data, upload_id)
        self.check_part(registry, name, upload_id, *self.draw_part(data, self.model.uploads.get(upload_id), kind), kind)

    def check_part(self, registry, name, upload_id, first, last, blob, kind):
        expected = self.part_outcome(registry, name, upload_id, first, last, blob)
        if isinstance(expected, int):
            event(f"part {kind}: accepted")
            res = self.store.upload_layer_part(name, upload_id, first, last, blob, registry_id=registry)
            assert (res.registry_id, res.repository_name, res.upload_id, res.last_byte_received) == (
                *self.model.key(registry, name), upload_id, expected)
            return
        cls, lvbr = expected
        event(f"part {kind}: {cls.__name__}")
        e = raises_exactly(cls, self.store.upload_layer_part, name, upload_id, first, last, blob, registry_id=registry)
        if cls is errors.InvalidLayerPartException:
            assert (e.registry_id, e.repository_name, e.upload_id, e.last_valid_byte_received) == (
                *self.model.key(registry, name), upload_id, lvbr)

    def draw_part(self, data, u: ModelUpload | None, kind: str) -> tuple[int, int, bytes]:
        received = len(u.data) if u is not None else 0
        if u is None or kind == "next" or (kind in ("resend", "resend_other") and u.last is None):
            n = data.draw(SIZES, label="part size")
            if u is not None and received < len(u.target) and data.draw(st.integers(0, 9), label="aim") < 8:
                blob = u.target[received:received + n]  # towards a pooled content
            else:
                blob = some_bytes(data, n)
            return received, received + len(blob) - 1, blob
        if kind == "resend":
            return u.last
        if kind == "resend_other":
            first, last, blob = u.last
            i = data.draw(st.integers(0, len(blob) - 1), label="changed byte")
            return first, last, blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1:]
        n = data.draw(SIZES, label="part size")
        blob = some_bytes(data, n)
        if kind == "gap":
            first = received + data.draw(st.integers(1, 100), label="gap")
        elif kind == "overlap" and received:
            first = received - data.draw(st.integers(1, received), label="overlap")
        elif kind == "mismatch":
            delta = data.draw(st.integers(-n + 1, 50).filter(lambda d: d != 0), label="range error")
            return received, received + n - 1 + delta, blob
        elif kind == "backwards":
            return received + n, received + n - data.draw(st.integers(1, 5), label="back"), blob
        elif kind == "empty":
            return received, received, b""
        elif kind == "oversized":
            blob = some_bytes(data, MAX_PART + data.draw(st.integers(1, 100), label="excess"))
            return received, received + len(blob) - 1, blob
        elif kind == "negative":
            return -1, n - 2, blob
        else:
            first = received
        return first, first + n - 1, blob

    def part_outcome(self, registry, name, upload_id, first, last, blob):
        """The model's answer: lastByteReceived, or (error class, lastValidByteReceived)."""
        m = self.model
        if not UPLOAD_ID_RE.fullmatch(upload_id) or first < 0 or last < 0 or len(blob) > MAX_PART:
            return errors.InvalidParameterException, None
        err = m.repo_error(registry, name)
        if err:
            return err, None
        u = m.upload_of(registry, name, upload_id)
        if u is None:
            return errors.UploadNotFoundException, None
        received = len(u.data)
        if u.last == (first, last, bytes(blob)):
            return received - 1  # the exact re-send of the last part: accepted again, no change
        if not blob or last < first or len(blob) != last - first + 1 or first != received:
            return errors.InvalidLayerPartException, (received - 1 if received else None)
        u.data += blob
        u.sizes.append(len(blob))
        u.last = (first, last, bytes(blob))
        return last

    @precondition(lambda self: self.model.uploads)
    @rule(data=st.data())
    def complete_with_its_digest(self, data):
        """The common case: a live upload completed in its own repository with well-formed
        digests, mostly including its own (and otherwise: InvalidLayer)."""
        upload_id = data.draw(st.sampled_from(self.live()), label="upload id")
        u = self.model.uploads[upload_id]
        right = sha256(bytes(u.data))
        others = st.one_of(
            st.sampled_from(sorted(set(self.model.blobs) | {sha256(c) for c in POOL})),
            st.integers(0, 2**256 - 1).map(lambda i: f"sha256:{i:064x}"),
            st.sampled_from(["sha512:" + right[7:], "sha256:" + right[7:15], "md5:" + right[7:39]]),
        )
        digests = data.draw(st.lists(others, max_size=2), label="other digests")
        if not digests or data.draw(st.integers(0, 3), label="its own?"):
            digests.append(right)
        self.complete(upload_id, *u.repo, data.draw(st.permutations(digests), label="order"))

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def complete_layer_upload(self, data):
        upload_id = self.draw_upload(data)
        registry, name = self.draw_repo_for(data, upload_id)
        u = self.model.uploads.get(upload_id)
        content = bytes(u.data) if u is not None and u.data else None
        count = data.draw(st.one_of(st.integers(1, 3), st.sampled_from([0, 101])), label="digest count")
        if count == 101:
            digests = [sha256(content or b"x")] * 101
        else:
            digests = [self.draw_digest_text(data, content) for _ in range(count)]
        self.complete(upload_id, registry, name, digests)

    def complete(self, upload_id, registry, name, digests):
        expected = self.complete_outcome(registry, name, upload_id, digests)
        event(f"complete: {expected.__name__ if isinstance(expected, type) else 'completed'}")
        if isinstance(expected, str):
            res = self.store.complete_layer_upload(name, upload_id, digests, registry_id=registry)
            assert (res.registry_id, res.repository_name, res.upload_id, res.layer_digest) == (
                *self.model.key(registry, name), upload_id, expected)
        else:
            raises_exactly(expected, self.store.complete_layer_upload, name, upload_id, digests, registry_id=registry)

    def complete_outcome(self, registry, name, upload_id, digests):
        """The model's answer in the service's check order: the digest, or an error class."""
        m = self.model
        if (not isinstance(upload_id, str) or not UPLOAD_ID_RE.fullmatch(upload_id) or not 1 <= len(digests) <= 100
                or not all(DIGEST_RE.fullmatch(d) for d in digests)):
            return errors.InvalidParameterException
        err = m.repo_error(registry, name)
        if err:
            return err
        u = m.upload_of(registry, name, upload_id)
        if u is None:
            return errors.UploadNotFoundException
        if not u.sizes:
            return errors.EmptyUploadException
        if any(size < MIN_PART for size in u.sizes[:-1]):
            return errors.LayerPartTooSmallException
        computed = sha256(bytes(u.data))
        if computed not in {sha256_key(d) for d in digests}:
            return errors.InvalidLayerException
        repo = m.key(registry, name)
        del m.uploads[upload_id]  # success and LayerAlreadyExists both consume the upload
        layers = m.layers.setdefault(repo, {})
        if computed in layers:
            return errors.LayerAlreadyExistsException
        layers[computed] = m.blobs.setdefault(computed, bytes(u.data))
        return computed

    # --- layers --------------------------------------------------------------------------

    @rule(data=st.data())
    def batch_check_layer_availability(self, data):
        registry, name = self.draw_repo(data, existing=4)
        shape = data.draw(st.sampled_from(["items"] * 6 + ["none", "too many", "too long"]), label="request")
        if shape == "items":
            n = data.draw(st.integers(1, 5), label="count")
            digests = [self.draw_digest_text(data, None) for _ in range(n)]
            held = sorted(self.model.layers.get(self.model.key(registry, name), {}))
            if held:
                digests += data.draw(st.lists(st.sampled_from(held), min_size=1, max_size=3), label="held digests")
            digests = data.draw(st.permutations(digests), label="order")
        else:
            digests = {"none": [], "too many": [sha256(b"")] * 101, "too long": ["sha256:" + "a" * 1000]}[shape]
        if shape != "items":  # layerDigests is 1..100 strings of at most 1000 characters
            err = errors.InvalidParameterException
        else:
            err = self.model.repo_error(registry, name)
        if err:
            raises_exactly(err, self.store.batch_check_layer_availability, name, digests, registry_id=registry)
            return
        res = self.store.batch_check_layer_availability(name, digests, registry_id=registry)
        reg = self.model.key(registry, name)[0]
        here = self.model.layers.get((reg, name), {})
        # held by another repository of this registry; registries are tenants, so content only
        # other registries hold (or no repository: awaiting purge) is simply missing
        elsewhere = {dg for (r, _), layers in self.model.layers.items() if r == reg for dg in layers}
        want_layers, want_failures = [], []
        for text in digests:
            key = sha256_key(text) if DIGEST_RE.fullmatch(text) else None
            if not DIGEST_RE.fullmatch(text):
                want_failures.append((text, "InvalidLayerDigest"))
            elif key in here:
                want_layers.append((key, "AVAILABLE", len(here[key]), None))
            elif key in elsewhere:
                want_layers.append((key, "UNAVAILABLE", None, None))
            else:
                want_failures.append((text, "MissingLayerDigest"))
        got_layers = [(layer.layer_digest, layer.layer_availability, layer.layer_size, layer.media_type)
                      for layer in res.layers]
        got_failures = [(f.layer_digest, f.failure_code) for f in res.failures]
        assert (got_layers, got_failures) == (want_layers, want_failures)
        for item in want_layers + want_failures:
            event(f"batch check: {item[1]}")
        assert all(f.failure_reason for f in res.failures)

    @rule(data=st.data())
    def open_layer(self, data):
        registry, name = self.draw_repo(data, existing=4)
        held = self.model.layers.get(self.model.key(registry, name), {})
        choices = [st.none()] + ([st.sampled_from(sorted(held))] * 2 if held else [])
        text = data.draw(st.one_of(*choices), label="held layer") or self.draw_digest_text(data, None)
        if not DIGEST_RE.fullmatch(text):
            err = errors.InvalidParameterException
        else:
            err = self.model.repo_error(registry, name)
            if err is None and sha256_key(text) not in held:
                err = errors.LayersNotFoundException
        if err:
            raises_exactly(err, self.store.open_layer, name, text, registry_id=registry)
            return
        with self.store.open_layer(name, text, registry_id=registry) as rd:
            content = held[sha256_key(text)]
            assert (rd.digest, rd.size) == (sha256_key(text), len(content))
            assert rd.read() == content

    @rule()
    def purge(self):
        m = self.model
        linked = {dg for layers in m.layers.values() for dg in layers}
        doomed = {dg: b for dg, b in m.blobs.items() if dg not in linked}
        report = self.store.purge(grace=0)
        assert (report.uploads_removed, report.blobs_removed, report.orphans_removed, report.bytes_freed) == (
            0, len(doomed), 0, sum(len(b) for b in doomed.values()))
        m.blobs = {dg: b for dg, b in m.blobs.items() if dg in linked}

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def counts_match(self):
        m = self.model
        st_ = self.store.stats()
        links = [(repo, dg, len(b)) for repo, layers in m.layers.items() for dg, b in layers.items()]
        assert (st_.repositories, st_.layers, st_.blobs, st_.uploads_in_progress) == (
            len(m.repos), len(links), len(m.blobs), len(m.uploads))
        assert st_.blob_bytes == sum(len(b) for b in m.blobs.values())
        assert st_.linked_bytes == sum(size for _, _, size in links)

    @invariant()
    def listings_match(self):
        m = self.model
        for registry in (DEFAULT_REGISTRY, OTHER_REGISTRY):
            names = [r.repository_name for r in self.store.describe_repositories(
                registry_id=registry, max_results=1000).repositories]
            assert names == sorted(n for reg, n in m.repos if reg == registry)
        for registry, name in m.repos:
            layers = list(self.store.list_layers(name, registry_id=registry))
            assert layers == sorted((dg, len(b)) for dg, b in m.layers.get((registry, name), {}).items())


StoreMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
test_store_against_the_model = StoreMachine.TestCase
