"""What the control plane costs: PutImage with replication, lifecycle expiry, policy checks.

Each figure has its reference measured in the same run, on the same store:

- PutImage (durable) into a repository a replication rule covers, against PutImage into one no
  rule covers, alternating runs in fresh stores (replication puts the image in a second
  registry: about two PutImages' worth of index commits, no byte copied);
- a lifecycle run expiring all but the newest 100 of N images (evaluation, then one write
  transaction that re-checks every image), against BatchDeleteImage deleting the same images
  by digest in batches of 100; the preview of the same policy alone;
- ``Policies.authorize`` for another registry's caller (a 20-statement policy whose last
  statement allows), against ``Store.get_manifest`` (one index snapshot).

Run: ``python benchmarks/bench_control.py [--images 5000] [--runs 2]``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, parser, print_machine, print_table, write_json
from bench_images import manifests

from ecrstore import ImageIdentifier, Store
from ecrstore.models import DeleteReplication, ReplicationConfiguration, ReplicationDestination, ReplicationRule

A, B = "111111111111", "222222222222"
REGION = "us-east-1"
KEEP = 100


def _replicating_store(root: Path, texts_for: int) -> tuple[Store, list[str]]:
    store = Store(root, registry_id=A, region=REGION)
    store.create_repository("bench")
    store.policies.put_registry_policy(json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:root"},
        "Action": ["ecr:ReplicateImage", "ecr:CreateRepository"]}]}), registry_id=B)
    return store, manifests(store, "bench", texts_for)


def push_rate(root: Path, n: int, replicate: bool) -> float:
    store, texts = _replicating_store(root, n)
    try:
        if replicate:
            store.replication.put_replication_configuration(ReplicationConfiguration((ReplicationRule(
                (ReplicationDestination(REGION, B),), None, DeleteReplication(False)),)))
        t0 = time.perf_counter()
        for i, text in enumerate(texts):
            store.put_image("bench", text, image_tag=f"v{i}")
        rate = n / (time.perf_counter() - t0)
        if replicate:  # the last push is in registry B too
            assert store.get_manifest("bench", f"v{n - 1}", registry_id=B).manifest == texts[-1].encode()
        return rate
    finally:
        store.close()


def lifecycle_times(root: Path, n: int) -> dict[str, float]:
    policy = json.dumps({"rules": [{"rulePriority": 1, "selection": {
        "tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP}, "action": {"type": "expire"}}]})
    out: dict[str, float] = {}
    root.mkdir(parents=True, exist_ok=True)
    for kind in ("delete", "lifecycle"):
        with Store(root / kind, durable=True) as store:
            store.create_repository("bench")
            texts = manifests(store, "bench", n)
            digests = [store.put_image("bench", t, image_tag=f"v{i}").image.image_id.image_digest
                       for i, t in enumerate(texts)]
            if kind == "delete":  # the oldest n - KEEP, as the policy selects them
                t0 = time.perf_counter()
                doomed = digests[:-KEEP]
                for i in range(0, len(doomed), 100):
                    res = store.batch_delete_image("bench", [ImageIdentifier(d) for d in doomed[i:i + 100]])
                    assert not res.failures
                out["batch_delete_s"] = time.perf_counter() - t0
            else:
                store.lifecycle.put_lifecycle_policy("bench", policy)
                t0 = time.perf_counter()
                preview = store.lifecycle.start_lifecycle_policy_preview("bench")
                out["preview_s"] = time.perf_counter() - t0
                assert preview.status in ("COMPLETE", "IN_PROGRESS")
                t0 = time.perf_counter()
                report = store.lifecycle.run(repository_name="bench")
                out["lifecycle_run_s"] = time.perf_counter() - t0
                assert sum(len(r.expired) for r in report.repositories) == n - KEEP
    return out


def policy_check(root: Path) -> dict[str, float]:
    with Store(root, registry_id=A, region=REGION) as store:
        store.create_repository("bench")
        text = manifests(store, "bench", 1)[0]
        store.put_image("bench", text, image_tag="v1")
        statements = [{"Sid": f"s{i}", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{300000000000 + i}:root"},
                       "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]} for i in range(19)]
        statements.append({"Sid": "b", "Effect": "Allow", "Principal": {"AWS": B}, "Action": "ecr:Batch*"})
        store.policies.set_repository_policy("bench", json.dumps({"Version": "2012-10-17", "Statement": statements}))
        checks, reads = [], []
        for _ in range(3000):
            t0 = time.perf_counter()
            decision = store.policies.authorize(A, "bench", "ecr:BatchGetImage", principal_account=B)
            checks.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.get_manifest("bench", "v1")
            reads.append(time.perf_counter() - t0)
        assert decision == "Allow"
    return {"authorize_us": statistics.median(checks) * 1e6, "get_manifest_us": statistics.median(reads) * 1e6}


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--pushes", type=int, default=1000)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--dir", default=None)
    args = p.parse_args()
    info = machine_info()
    print_machine(info)
    root = Path(tempfile.mkdtemp(prefix="ecrstore-bench-control-", dir=args.dir))
    results: dict[str, float] = {}
    try:
        plain, replicated = [], []
        for run in range(args.runs):  # alternating, each in a fresh store
            plain.append(push_rate(root / f"plain{run}", args.pushes, replicate=False))
            replicated.append(push_rate(root / f"repl{run}", args.pushes, replicate=True))
        results["put_image_per_s"] = statistics.median(plain)
        results["put_image_replicated_per_s"] = statistics.median(replicated)
        results.update(lifecycle_times(root / "lifecycle", args.images))
        results.update(policy_check(root / "policy"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    expired = args.images - KEEP
    rows = [
        (f"PutImage, durable, no rule (reference; median of {args.runs})", f"{results['put_image_per_s']:,.0f} /s", ""),
        ("PutImage replicated to another registry", f"{results['put_image_replicated_per_s']:,.0f} /s",
         f"{results['put_image_replicated_per_s'] / results['put_image_per_s']:.2f} x no rule"),
        (f"BatchDeleteImage of {expired:,} by digest, batches of 100 (reference)",
         f"{results['batch_delete_s']:.2f} s", f"{expired / results['batch_delete_s']:,.0f} images/s"),
        (f"lifecycle run expiring {expired:,} of {args.images:,}", f"{results['lifecycle_run_s']:.2f} s",
         f"{results['lifecycle_run_s'] / results['batch_delete_s']:.2f} x BatchDeleteImage"),
        ("lifecycle preview of the same policy", f"{results['preview_s']:.2f} s", ""),
        ("get_manifest, one snapshot (reference)", f"{results['get_manifest_us']:.1f} µs", ""),
        ("authorize, another registry, 20-statement policy", f"{results['authorize_us']:.1f} µs",
         f"{results['authorize_us'] / results['get_manifest_us']:.2f} x get_manifest"),
    ]
    print_table(("workload", "result", "ratio"), rows)
    path = write_json("bench_control", {"machine": info, "results": results, "settings": vars(args)})
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
