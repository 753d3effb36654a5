"""Many ``ecrstore serve`` nodes on one PostgreSQL index and one SeaweedFS bucket, any of them
killable at any moment.

Three nodes run in network namespaces of their own, each with its own address on a private
link this module makes (plain loopback ports where the machine cannot make namespaces: the
output says so). SeaweedFS listens on the link's host address, PostgreSQL on a Unix socket
every namespace reaches. Clients are boto3 in this process, spreading each push over the
nodes: every part of a layer, its completion and the image's PutImage go to different nodes.

* ``test_an_upload_survives_the_death_of_its_node``: part 1 on node A, A SIGKILLed, part 2 on
  node B, completion on node C; the layer is whole.
* ``test_two_nodes_completing_one_digest_store_one_object``: completions of the same bytes on
  two nodes at once leave one S3 object (and one blob record) behind, every round.
* ``test_random_kills_lose_nothing_acknowledged``: pushers push layers and images round-robin
  while a killer SIGKILLs and restarts random nodes and another process runs GC (grace 0) and
  purge (grace 0) on the same store, back to back. A call cut by a kill is retried on another
  node, re-synchronising as a client of ECR would (InvalidLayerPart's lastValidByteReceived,
  LayerAlreadyExists, ImageAlreadyExists). Images are pulled from other nodes as they land.
  Afterwards every acknowledged image lists on every node and every layer of it downloads
  byte-exact through GetDownloadUrlForLayer's presigned S3 URL: 0 acknowledged bytes lost.

Bounded: the kill run lasts ``DURATION`` seconds plus at most ``FINISH`` for pushers to finish
the image they are on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import netns
import pytest
import seaweed_server
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from server_fixtures import KEY_A, REGISTRY_A, answers_within, digest_of

pytestmark = pytest.mark.timeout(600)

PORT = 5000
MIB = 2**20
DURATION = 30.0
FINISH = 60.0
LAYER_MEDIA = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CONFIG_MEDIA = "application/vnd.docker.container.image.v1+json"
MANIFEST_MEDIA = "application/vnd.docker.distribution.manifest.v2+json"
#: What a client sees of a node that is down or was killed mid-call.
NODE_DOWN = (BotoCoreError, ConnectionError, OSError)


@dataclass
class Node:
    """One ``ecrstore serve`` process (``prefix``: the words running it in its namespace)."""

    name: str
    host: str
    port: int
    prefix: list[str]
    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None
    kills: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.prefix + self.args, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
        if not answers_within(self.process, self.host, self.port, timeout, self.log, self.name):
            self.kill()
            raise RuntimeError(f"{self.name} did not answer within {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the node (its whole process group), as a machine dying would."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
            self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self):
        config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=3, read_timeout=60)
        return boto3.client("ecr", region_name="us-east-1", endpoint_url=self.endpoint,
                            aws_access_key_id=KEY_A[0], aws_secret_access_key=KEY_A[1], config=config)

    def log(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Cluster:
    nodes: list[Node]
    index: str
    blobs: str
    seaweed: seaweed_server.SeaweedServer
    bucket: str
    prefix: str
    env: dict[str, str]
    clients: dict[str, object] = field(default_factory=dict)

    def client(self, node: Node):
        # One boto3 client per node and thread: clients are not shared between threads.
        key = f"{node.name}-{threading.get_ident()}"
        if key not in self.clients:
            self.clients[key] = node.client()
        return self.clients[key]

    def layer_objects(self) -> dict[str, list[str]]:
        """Layer objects in the bucket by the digest their marker names (placement list)."""
        s3 = self.seaweed.client()
        found: dict[str, list[str]] = {}
        base = f"{self.prefix}/layers/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
            for obj in page.get("Contents", ()):
                placement, _, marker = obj["Key"][len(base):].partition(".sha256-")
                if marker:
                    found.setdefault(marker, []).append(placement)
        return found


@contextlib.contextmanager
def _addresses(n: int) -> Iterator[tuple[str, list[tuple[list[str], str]]]]:
    """(the address SeaweedFS listens on, [(command prefix, address)] per node)."""
    reason = netns.unavailable_reason()
    if reason is None:
        with netns.private_link(n) as link:
            print(f"\nnodes in network namespaces on a private link: {[ip for _, ip in link.nodes]}")
            yield link.host_ip, [(link.exec_prefix(ns), ip) for ns, ip in link.nodes]
        return
    print(f"\nnetwork namespaces are unavailable ({reason}): the nodes listen on loopback ports instead")
    yield "127.0.0.1", [([], "127.0.0.1") for _ in range(n)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_server) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("scale-out")
    with _addresses(3) as (s3_host, places):
        seaweed = seaweed_server.start(ip=s3_host)
        try:
            bucket, prefix = seaweed.new_bucket(), "registry"
            index, blobs = postgres_server.new_database(), f"s3://{bucket}/{prefix}"
            creds = root / "credentials"
            creds.write_text(f"{KEY_A[0]} {KEY_A[1]} {KEY_A[2]}\n")
            creds.chmod(0o600)
            env = {**os.environ, **seaweed.env()}
            nodes = []
            for i, (prefix_words, ip) in enumerate(places):
                port = PORT if prefix_words else _free_port()
                store = root / f"node{i}"
                args = [sys.executable, "-m", "ecrstore.cli", "--log-level", "warning", "serve",
                        "--store", str(store), "--index", index, "--blobs", blobs, "--host", ip,
                        "--port", str(port), "--workers", "1", "--credentials", str(creds),
                        "--registry-id", REGISTRY_A]
                nodes.append(Node(f"node{i}", ip, port, prefix_words, args, env, root / f"node{i}.log"))
            for node in nodes:
                node.start()
            cluster = Cluster(nodes, index, blobs, seaweed, bucket, prefix, env)
            yield cluster
        finally:
            for node in locals().get("nodes", []):
                node.stop()
            seaweed.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a client that outlives nodes ------------------------------------------------------------


class Pusher:
    """Pushes over every node; a call cut by a dead node goes to the next one."""

    def __init__(self, cluster: Cluster, repo: str, seed: int) -> None:
        self.cluster, self.repo, self.rng = cluster, repo, random.Random(seed)
        self.turn = seed
        self.retried = 0
        self.unlinked = 0  # completed layers GC unlinked before their image was put

    def call(self, op: str, **kw):
        """``op`` on the next node, moving on while nodes are down (bounded)."""
        deadline = time.monotonic() + 90
        while True:
            node = self.cluster.nodes[self.turn % len(self.cluster.nodes)]
            self.turn += 1
            try:
                return getattr(self.cluster.client(node), op)(**kw), False
            except ClientError:
                raise  # the service answered: never retried (a 5xx is a failure of the test)
            except NODE_DOWN as e:
                failure = e
            self.retried += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{op} failed on every node for 90 s: {failure!r}")
            time.sleep(0.2)

    def retrying(self, op: str, **kw):
        """(result, whether an earlier attempt may have taken effect): retries are re-sends."""
        before = self.retried
        result, _ = self.call(op, **kw)
        return result, self.retried > before

    def push_layer(self, data: bytes, part: int) -> str:
        digest = digest_of(data)
        up = self.call("initiate_layer_upload", repositoryName=self.repo)[0]["uploadId"]
        pos = 0
        while pos < len(data):
            end = min(len(data), pos + part) - 1
            try:
                self.retrying("upload_layer_part", repositoryName=self.repo, uploadId=up, partFirstByte=pos,
                              partLastByte=end, layerPartBlob=data[pos:end + 1])
            except ClientError as e:
                # A cut attempt that had applied the part: the service says where it stands.
                if e.response["Error"]["Code"] != "InvalidLayerPartException":
                    raise
                last = e.response["lastValidByteReceived"]
                assert last == end, f"upload {up} is at byte {last}, the part ended at {end}"
            pos = end + 1
        try:
            done, _ = self.retrying("complete_layer_upload", repositoryName=self.repo, uploadId=up,
                                    layerDigests=[digest])
            assert done["layerDigest"] == digest
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code not in ("LayerAlreadyExistsException", "UploadNotFoundException"):
                raise
            # A cut completion that had committed. The layer is there unless GC, run without a
            # grace period, unlinked it already (no image holds it yet): PutImage then answers
            # LayersNotFound and the layers are pushed again.
            check, _ = self.retrying("batch_check_layer_availability", repositoryName=self.repo,
                                     layerDigests=[digest])
            if [x["layerAvailability"] for x in check["layers"]] != ["AVAILABLE"]:
                self.unlinked += 1
        return digest

    def put_image(self, manifest: str, tag: str) -> None:
        try:
            self.retrying("put_image", repositoryName=self.repo, imageManifest=manifest, imageTag=tag)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ImageAlreadyExistsException":
                raise  # a cut PutImage that had committed answers ImageAlreadyExists on its re-send


def manifest_of(config: tuple[str, int], layers: list[tuple[str, int]]) -> str:
    return json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_MEDIA,
        "config": {"mediaType": CONFIG_MEDIA, "size": config[1], "digest": config[0]},
        "layers": [{"mediaType": LAYER_MEDIA, "size": n, "digest": d} for d, n in layers],
    })


def download(pusher: Pusher, digest: str) -> bytes:
    """The layer's bytes through a node's GetDownloadUrlForLayer: a presigned S3 GET."""
    got, _ = pusher.call("get_download_url_for_layer", repositoryName=pusher.repo, layerDigest=digest)
    with urllib.request.urlopen(got["downloadUrl"], timeout=60) as r:
        return r.read()


# --- the tests -------------------------------------------------------------------------------


def test_an_upload_survives_the_death_of_its_node(cluster):
    a, b, c = cluster.nodes
    repo = "survivor"
    cluster.client(a).create_repository(repositoryName=repo)
    data = random.Random(1).randbytes(5 * MIB + 12345)
    up = cluster.client(a).initiate_layer_upload(repositoryName=repo)["uploadId"]
    cluster.client(a).upload_layer_part(repositoryName=repo, uploadId=up, partFirstByte=0,
                                        partLastByte=5 * MIB - 1, layerPartBlob=data[:5 * MIB])
    a.kill()
    got = cluster.client(b).upload_layer_part(repositoryName=repo, uploadId=up, partFirstByte=5 * MIB,
                                              partLastByte=len(data) - 1, layerPartBlob=data[5 * MIB:])
    assert got["lastByteReceived"] == len(data) - 1
    done = cluster.client(c).complete_layer_upload(repositoryName=repo, uploadId=up, layerDigests=[digest_of(data)])
    assert done["layerDigest"] == digest_of(data)
    a.start()
    pusher = Pusher(cluster, repo, 0)
    config = b'{"survivor": true}'
    pusher.put_image(manifest_of((pusher.push_layer(config, MIB), len(config)), [(digest_of(data), len(data))]), "v1")
    assert download(pusher, digest_of(data)) == data


def _complete_together(start: threading.Barrier, results: list, node: Node, repo: str, up: str, digest: str) -> None:
    client = node.client()
    start.wait(10)
    results.append(client.complete_layer_upload(repositoryName=repo, uploadId=up, layerDigests=[digest])["layerDigest"])


def test_two_nodes_completing_one_digest_store_one_object(cluster):
    a, b, _ = cluster.nodes
    for repo in ("twin-a", "twin-b"):
        cluster.client(a).create_repository(repositoryName=repo)
    for round_ in range(4):
        data = random.Random(f"twin-{round_}").randbytes(5 * MIB + 1000 + 100 * round_)
        start, results, threads = threading.Barrier(2), [], []
        for node, repo in ((a, "twin-a"), (b, "twin-b")):
            client = cluster.client(node)
            up = client.initiate_layer_upload(repositoryName=repo)["uploadId"]
            for first in (0, 5 * MIB):
                last = min(len(data), first + 5 * MIB) - 1
                client.upload_layer_part(repositoryName=repo, uploadId=up, partFirstByte=first,
                                         partLastByte=last, layerPartBlob=data[first:last + 1])
            threads.append(threading.Thread(target=_complete_together,
                                            args=(start, results, node, repo, up, digest_of(data))))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [digest_of(data)] * 2
        assert len(cluster.layer_objects()[digest_of(data)[7:]]) == 1, f"round {round_}: two objects stored"


def test_random_kills_lose_nothing_acknowledged(cluster, tmp_path):
    repos = [f"kill-{i}" for i in range(3)]
    for repo in repos:
        cluster.client(cluster.nodes[0]).create_repository(repositoryName=repo)
    stop_at = time.monotonic() + DURATION
    acked: dict[tuple[str, str], tuple[str, list[tuple[str, bytes]]]] = {}  # (repo, tag) -> (manifest, blobs)
    failures: list[BaseException] = []
    pulls, unlinked = [0], [0]

    def pusher_loop(i: int) -> None:
        pusher = Pusher(cluster, repos[i], seed=100 + i)
        rng, n = pusher.rng, 0
        try:
            while time.monotonic() < stop_at:
                n += 1
                blobs = [rng.randbytes(rng.choice([2_000, 40_000, 5 * MIB + rng.randrange(2 * MIB)]))
                         for _ in range(rng.randrange(1, 3))]
                config = json.dumps({"pusher": i, "n": n}).encode()
                for _ in range(20):  # GC (grace 0) may unlink a layer before its image holds it
                    pushed = [(pusher.push_layer(b, 5 * MIB), len(b)) for b in blobs]
                    manifest = manifest_of((pusher.push_layer(config, MIB), len(config)), pushed)
                    try:
                        pusher.put_image(manifest, f"n{n}")
                        break
                    except ClientError as e:
                        if e.response["Error"]["Code"] != "LayersNotFoundException":
                            raise
                else:
                    raise AssertionError("PutImage never found its layers")
                acked[(pusher.repo, f"n{n}")] = (manifest, [(digest_of(b), b) for b in [config, *blobs]])
                if rng.random() < 0.5:  # pulled back through other nodes at once
                    got, _ = pusher.call("batch_get_image", repositoryName=pusher.repo,
                                         imageIds=[{"imageTag": f"n{n}"}])
                    assert [img["imageManifest"] for img in got["images"]] == [manifest]
                    digest, data = rng.choice(acked[(pusher.repo, f"n{n}")][1])
                    assert download(pusher, digest) == data
                    pulls[0] += 1
        except BaseException as e:  # surfaced by the test
            failures.append(e)
        unlinked[0] += pusher.unlinked

    def killer() -> None:
        rng = random.Random(7)
        while time.monotonic() < stop_at:
            time.sleep(rng.uniform(1.5, 4.0))
            node = rng.choice(cluster.nodes)
            node.kill()
            time.sleep(rng.uniform(0.2, 1.0))
            try:
                node.start()
            except BaseException as e:
                failures.append(e)
                return

    node_dir = ["--store", str(tmp_path / "maintenance"), "--index", cluster.index, "--blobs", cluster.blobs]
    subprocess.run([sys.executable, "-m", "ecrstore.cli", "init", *node_dir], env=cluster.env, check=True,
                   capture_output=True, timeout=120)

    def maintenance() -> None:
        runs = 0
        while time.monotonic() < stop_at:
            # purge's grace is what tells a fresh upload (its S3 data made, its record not yet
            # committed) from an orphan: 0 would be asking it to abort uploads being initiated.
            for command in (["gc", "--grace", "0"], ["purge", "--grace", "3"]):
                done = subprocess.run([sys.executable, "-m", "ecrstore.cli", *command, *node_dir],
                                      env=cluster.env, capture_output=True, text=True, timeout=120)
                if done.returncode != 0:
                    failures.append(AssertionError(f"ecrstore {command[0]} failed: {done.stderr[-2000:]}"))
                    return
                runs += 1
        maintenance_runs.append(runs)

    maintenance_runs: list[int] = []
    threads = [threading.Thread(target=pusher_loop, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=killer), threading.Thread(target=maintenance)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DURATION + FINISH + 120)
    assert not any(t.is_alive() for t in threads), "a worker of the test did not finish in time"
    assert not failures, failures + [n.log() for n in cluster.nodes]
    kills = sum(n.kills for n in cluster.nodes)
    total = sum(len(b) for _, blobs in acked.values() for _, b in blobs)
    print(f"{len(acked)} images ({total / MIB:.1f} MiB) acknowledged, {kills} node kills, {pulls[0]} pulls "
          f"during the run, maintenance runs: {maintenance_runs}, layers unlinked by GC before their image: "
          f"{unlinked[0]}")
    assert kills >= 5 and len(acked) >= 6 and maintenance_runs and maintenance_runs[0] >= 2

    # Every acknowledged image on every node; every byte of it through a presigned URL.
    verified = 0
    for node in cluster.nodes:
        client = cluster.client(node)
        for (repo, tag), (manifest, _) in acked.items():
            got = client.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag}])
            assert [img["imageManifest"] for img in got["images"]] == [manifest], (node.name, repo, tag)
    checker = Pusher(cluster, "", 0)
    for (repo, _), (_, blobs) in acked.items():
        checker.repo = repo
        for digest, data in blobs:
            got = download(checker, digest)
            assert hashlib.sha256(got).hexdigest() == digest[7:] and got == data, (repo, digest)
            verified += len(got)
    assert verified == total
