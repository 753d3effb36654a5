"""The scanning area of a real Store on a temporary directory: scan states, ECR's limits and
errors, scan on push, the registry's and repositories' scanning configurations, scans
interrupted by a closed store or a killed process, and the mapping of Trivy and Grype reports
to ECR's findings."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from storeutil import open_store, push

from ecrstore import scanning
from ecrstore.errors import (
    ImageNotFoundException,
    InvalidParameterException,
    LimitExceededException,
    RepositoryNotFoundException,
    ScanNotFoundException,
    UnsupportedImageTypeException,
)
from ecrstore.models import ImageIdentifier, ImageScanningConfiguration
from ecrstore.scan_models import (
    Attribute,
    ImageScanFinding,
    ImageScanStatus,
    RegistryScanningConfiguration,
    RegistryScanningRule,
    ScanningRepositoryFilter,
    ScanReport,
)
from ecrstore.scanning import ScannerError
from ecrstore.transfer.scan_reports import parse_report

pytestmark = pytest.mark.timeout(60)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
REGISTRY = "000000000000"

# A Trivy report (``trivy image --format json``, schema 2): three packages' vulnerabilities.
TRIVY = {
    "SchemaVersion": 2, "CreatedAt": "2024-05-01T10:00:00Z", "ArtifactName": "layout",
    "ArtifactType": "container_image",
    "Results": [
        {"Target": "layout (debian 12.5)", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": [
            {"VulnerabilityID": "CVE-2023-4911", "PkgName": "libc6", "InstalledVersion": "2.36-9+deb12u1",
             "FixedVersion": "2.36-9+deb12u3", "Severity": "HIGH", "Title": "glibc: buffer overflow in ld.so",
             "Description": "A buffer overflow was discovered in the GNU C Library's dynamic loader.",
             "PrimaryURL": "https://avd.aquasec.com/nvd/cve-2023-4911",
             "References": ["https://access.redhat.com/security/cve/CVE-2023-4911"],
             "CVSS": {"nvd": {"V3Vector": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", "V3Score": 7.8},
                      "redhat": {"V3Vector": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", "V3Score": 7.8}}},
            {"VulnerabilityID": "CVE-2011-3374", "PkgName": "apt", "InstalledVersion": "2.6.1",
             "Severity": "LOW", "Title": "It was found that apt-key in apt does not correctly validate",
             "References": ["https://people.canonical.com/~ubuntu-security/cve/2011/CVE-2011-3374.html"],
             "CVSS": {"nvd": {"V2Vector": "AV:N/AC:M/Au:N/C:N/I:P/A:N", "V2Score": 4.3}}},
            {"VulnerabilityID": "TEMP-0841856-B18BAF", "PkgName": "bash", "InstalledVersion": "5.2.15-2+b2",
             "Severity": "UNKNOWN"},
        ]},
        {"Target": "app/requirements.txt", "Class": "lang-pkgs", "Type": "pip"},
    ],
}

# A Grype report (``grype -o json``) with one match and its database's build time.
GRYPE = {
    "matches": [
        {"vulnerability": {"id": "GHSA-j8r2-6x86-q33q", "dataSource": "https://github.com/advisories/GHSA-j8r2-6x86-q33q",
                           "namespace": "github:language:python", "severity": "Medium",
                           "urls": ["https://github.com/advisories/GHSA-j8r2-6x86-q33q"],
                           "description": "Unintended leak of Proxy-Authorization header in requests",
                           "cvss": [{"version": "3.1", "vector": "CVSS:3.1/AV:N/AC:H/PR:H/UI:R/S:U/C:H/I:N/A:N",
                                     "metrics": {"baseScore": 4.4}}],
                           "fix": {"versions": ["2.31.0"], "state": "fixed"}},
         "relatedVulnerabilities": [{"id": "CVE-2023-32681", "description": "Requests leaks Proxy-Authorization",
                                     "cvss": [{"version": "2.0", "vector": "AV:N/AC:M/Au:N/C:P/I:N/A:N",
                                               "metrics": {"baseScore": 4.3}}]}],
         "artifact": {"name": "requests", "version": "2.25.1", "type": "python"}},
        {"vulnerability": {"id": "CVE-2005-2541", "severity": "Negligible", "urls": []},
         "artifact": {"name": "tar", "version": "1.34+dfsg-1.2"}},
    ],
    "source": {"type": "image"},
    "descriptor": {"name": "grype", "version": "0.74.0", "db": {"built": "2024-04-30T01:30:00Z"}},
}


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "store")
    yield s
    s.close()


def push_image(store, repo: str, *, tag: str | None = "v1", config_type: str = IMAGE_CONFIG,
               nonce: str = "") -> str:
    """Push a one-layer OCI image; its digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": nonce or repo}).encode()
    layer = (repo + nonce).encode() * 50
    c, lay = push(store, repo, config), push(store, repo, layer)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": config_type, "digest": c, "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": lay,
                                       "size": len(layer)}]})
    return store.put_image(repo, manifest, image_tag=tag).image.image_id.image_digest


def wait_status(store, repo: str, ident: ImageIdentifier, *, leave: str = "IN_PROGRESS", seconds: float = 20):
    deadline = time.monotonic() + seconds
    while True:
        res = store.scanning.describe_image_scan_findings(repo, ident)
        if res.image_scan_status.status != leave or time.monotonic() > deadline:
            return res
        time.sleep(0.02)


def report(*severities: str) -> ScanReport:
    return ScanReport(tuple(ImageScanFinding(f"CVE-2024-{i:04d}", s, f"finding {i}", f"https://example.test/{i}",
                                             (Attribute("package_name", f"pkg{i}"),))
                            for i, s in enumerate(severities)), 1_700_000_000.0)


TAG = ImageIdentifier(image_tag="v1")


# --- states ------------------------------------------------------------------------------


def test_without_a_scanner_a_scan_fails_saying_so(store):
    store.create_repository("app")
    digest = push_image(store, "app")
    started = store.scanning.start_image_scan("app", TAG)
    assert started.image_id == ImageIdentifier(digest, "v1")
    assert started.image_scan_status.status == "FAILED"
    assert "No scanner is configured" in started.image_scan_status.description
    found = store.scanning.describe_image_scan_findings("app", ImageIdentifier(digest))
    assert found.image_scan_status == started.image_scan_status and found.image_scan_findings is None
    detail = store.describe_images("app").image_details[0]
    assert detail.image_scan_status == started.image_scan_status and detail.image_scan_findings_summary is None


def test_a_scan_runs_in_the_background_and_completes_with_the_runners_findings(store):
    store.create_repository("app")
    digest = push_image(store, "app")
    seen, release = [], threading.Event()

    def runner(target):
        seen.append(target)
        release.wait(10)
        return report("LOW", "CRITICAL", "HIGH", "LOW")

    store.scanning.configure(runner)
    assert store.scanning.start_image_scan("app", TAG).image_scan_status.status == "IN_PROGRESS"
    assert store.describe_images("app").image_details[0].image_scan_status.status == "IN_PROGRESS"
    release.set()
    res = wait_status(store, "app", TAG)
    assert seen[0].image_digest == digest and seen[0].repository_name == "app" and seen[0].registry_id == REGISTRY
    assert res.image_scan_status == ImageScanStatus("COMPLETE", scanning.COMPLETED)
    findings = res.image_scan_findings
    assert findings.finding_severity_counts == {"CRITICAL": 1, "HIGH": 1, "LOW": 2}
    assert [f.severity for f in findings.findings] == ["CRITICAL", "HIGH", "LOW", "LOW"]  # most severe first
    assert findings.vulnerability_source_updated_at == 1_700_000_000.0
    assert findings.findings[0].attributes == (Attribute("package_name", "pkg1"),)
    summary = store.describe_images("app").image_details[0].image_scan_findings_summary
    assert summary.finding_severity_counts == findings.finding_severity_counts
    assert summary.image_scan_completed_at == findings.image_scan_completed_at


def test_findings_are_paged(store):
    store.create_repository("app")
    push_image(store, "app")
    store.scanning.configure(lambda target: report(*["MEDIUM"] * 7))
    store.scanning.start_image_scan("app", TAG)
    wait_status(store, "app", TAG)
    names, token, pages = [], None, 0
    while True:
        res = store.scanning.describe_image_scan_findings("app", TAG, max_results=3, next_token=token)
        names += [f.name for f in res.image_scan_findings.findings]
        assert res.image_scan_findings.finding_severity_counts == {"MEDIUM": 7}  # of all, on every page
        pages += 1
        token = res.next_token
        if token is None:
            break
    assert pages == 3 and names == sorted(names) and len(set(names)) == 7
    with pytest.raises(InvalidParameterException, match="'nextToken' failed to satisfy constraint: 'Invalid token'"):
        store.scanning.describe_image_scan_findings("app", TAG, next_token="bm90IGEgdG9rZW4=")
    with pytest.raises(InvalidParameterException, match="maxResults"):
        store.scanning.describe_image_scan_findings("app", TAG, max_results=0)


@pytest.mark.parametrize("failure, description", [
    (ScannerError("The scanner exited with status 2."), "The scanner exited with status 2."),
    (RuntimeError("boom"), "The scanner failed unexpectedly: RuntimeError: boom"),
])
def test_a_failing_runner_fails_the_scan_with_its_description(store, failure, description):
    store.create_repository("app")
    push_image(store, "app")

    def runner(target):
        raise failure

    store.scanning.configure(runner)
    store.scanning.start_image_scan("app", TAG)
    res = wait_status(store, "app", TAG)
    assert res.image_scan_status == ImageScanStatus("FAILED", description)
    assert res.image_scan_findings is None


# --- limits and errors -------------------------------------------------------------------


def test_scans_past_the_queue_bound_fail_saying_so(store, monkeypatch):
    monkeypatch.setattr(scanning, "MAX_QUEUED_SCANS", 1)
    store.create_repository("app")
    push_image(store, "app", tag="a", nonce="a")
    push_image(store, "app", tag="b", nonce="b")
    release = threading.Event()
    store.scanning.configure(lambda target: release.wait(10) and report("LOW"))
    assert store.scanning.start_image_scan("app", ImageIdentifier(image_tag="a")).image_scan_status.status == \
        "IN_PROGRESS"
    full = store.scanning.start_image_scan("app", ImageIdentifier(image_tag="b")).image_scan_status
    assert full == ImageScanStatus("FAILED", "The scanner's queue is full (1 scans waiting), so the image was not "
                                             "scanned.")
    release.set()
    assert wait_status(store, "app", ImageIdentifier(image_tag="a")).image_scan_status.status == "COMPLETE"
    deadline = time.monotonic() + 10
    while True:  # the slot is free again once the first scan is written
        status = store.scanning.start_image_scan("app", ImageIdentifier(image_tag="b")).image_scan_status.status
        if status == "IN_PROGRESS" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == "IN_PROGRESS"



def test_one_scan_per_image_per_day_and_a_failed_one_does_not_count(store, monkeypatch):
    store.create_repository("app")
    push_image(store, "app")
    store.scanning.start_image_scan("app", TAG)  # no scanner: FAILED, so it may be retried
    store.scanning.configure(lambda target: report("LOW"))
    store.scanning.start_image_scan("app", TAG)
    assert wait_status(store, "app", TAG).image_scan_status.status == "COMPLETE"
    with pytest.raises(LimitExceededException) as e:
        store.scanning.start_image_scan("app", TAG)
    assert e.value.message == "The scan quota per image has been exceeded. Wait and try again."
    assert wait_status(store, "app", TAG).image_scan_status.status == "COMPLETE"  # unchanged
    monkeypatch.setattr(scanning, "SCAN_INTERVAL", 0.0)  # as if a day had passed
    assert store.scanning.start_image_scan("app", TAG).image_scan_status.status == "IN_PROGRESS"


def test_errors_name_what_is_missing(store):
    store.create_repository("app")
    digest = push_image(store, "app")
    with pytest.raises(RepositoryNotFoundException, match="'nope' does not exist in the registry with id"):
        store.scanning.start_image_scan("nope", TAG)
    with pytest.raises(ImageNotFoundException, match="imageTag=v9"):
        store.scanning.start_image_scan("app", ImageIdentifier(image_tag="v9"))
    with pytest.raises(InvalidParameterException):
        store.scanning.start_image_scan("app", ImageIdentifier())
    with pytest.raises(InvalidParameterException, match="imageId"):
        store.scanning.start_image_scan("app", "v1")  # type: ignore[arg-type]
    with pytest.raises(ScanNotFoundException) as e:
        store.scanning.describe_image_scan_findings("app", TAG)
    assert e.value.message == ("Image scan does not exist for the image with '{imageDigest:'null', imageTag:'v1'}' "
                               f"in the repository with name 'app' in the registry with id '{REGISTRY}'")
    with pytest.raises(ScanNotFoundException, match=f"imageDigest:'{digest}', imageTag:'null'"):
        store.scanning.describe_image_scan_findings("app", ImageIdentifier(digest))


def test_manifest_lists_and_artifacts_cannot_be_scanned(store):
    store.create_repository("app")
    child = push_image(store, "app", tag=None)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": 1, "platform": {"architecture": "amd64", "os": "linux"}}]})
    store.put_image("app", index, image_tag="multi")
    with pytest.raises(UnsupportedImageTypeException, match="is a manifest list"):
        store.scanning.start_image_scan("app", ImageIdentifier(image_tag="multi"))
    push_image(store, "app", tag="chart", config_type="application/vnd.cncf.helm.config.v1+json", nonce="helm")
    with pytest.raises(UnsupportedImageTypeException, match="not a container image"):
        store.scanning.start_image_scan("app", ImageIdentifier(image_tag="chart"))


def test_a_scan_is_for_one_push_of_the_image(store):
    store.create_repository("app")
    digest = push_image(store, "app")
    store.scanning.start_image_scan("app", TAG)
    manifest = store.get_manifest("app", "v1").manifest.decode()
    store.batch_delete_image("app", [ImageIdentifier(digest)])
    store.put_image("app", manifest, image_tag="v1")  # the same image pushed again has no scan yet
    with pytest.raises(ScanNotFoundException):
        store.scanning.describe_image_scan_findings("app", TAG)
    assert store.describe_images("app").image_details[0].image_scan_status is None


# --- scan on push ------------------------------------------------------------------------


def test_a_repository_with_scan_on_push_scans_each_new_image_once(store):
    calls = []
    store.scanning.configure(lambda target: calls.append(target.image_digest) or report("HIGH"))
    store.create_repository("onpush", image_scanning_configuration=ImageScanningConfiguration(True))
    store.create_repository("manual")
    digest = push_image(store, "onpush")
    push_image(store, "manual")
    assert wait_status(store, "onpush", TAG).image_scan_status.status == "COMPLETE"
    with pytest.raises(ScanNotFoundException):
        store.scanning.describe_image_scan_findings("manual", TAG)
    manifest = store.get_manifest("onpush", "v1").manifest.decode()
    store.put_image("onpush", manifest, image_tag="v2")  # a new tag is not a new image
    time.sleep(0.2)
    assert calls == [digest]


def test_a_registry_rule_scans_matching_repositories_on_push(store):
    store.scanning.configure(lambda target: report("LOW"))
    store.scanning.put_registry_scanning_configuration(scan_type="BASIC", rules=[
        RegistryScanningRule("SCAN_ON_PUSH", (ScanningRepositoryFilter("team/*"),))])
    store.create_repository("team/api")
    store.create_repository("other")
    push_image(store, "team/api")
    push_image(store, "other")
    assert wait_status(store, "team/api", TAG).image_scan_status.status == "COMPLETE"
    with pytest.raises(ScanNotFoundException):
        store.scanning.describe_image_scan_findings("other", TAG)


# --- configurations ----------------------------------------------------------------------


def test_registry_configuration_round_trips_and_applies_to_repositories(store):
    got = store.scanning.get_registry_scanning_configuration()
    assert got.registry_id == REGISTRY and got.scanning_configuration == RegistryScanningConfiguration()
    rules = [RegistryScanningRule("CONTINUOUS_SCAN", [ScanningRepositoryFilter("prod*")]),
             RegistryScanningRule("SCAN_ON_PUSH", [ScanningRepositoryFilter("*"), ScanningRepositoryFilter("dev*")])]
    put = store.scanning.put_registry_scanning_configuration(scan_type="ENHANCED", rules=rules)
    assert put.registry_scanning_configuration.scan_type == "ENHANCED"
    assert store.scanning.get_registry_scanning_configuration().scanning_configuration == \
        put.registry_scanning_configuration
    for name in ("prod-api", "dev-api"):
        store.create_repository(name)
    res = store.scanning.batch_get_repository_scanning_configuration(["prod-api", "dev-api", "gone"])
    prod, dev = res.scanning_configurations
    assert (prod.scan_frequency, prod.applied_scan_filters) == ("CONTINUOUS_SCAN", (ScanningRepositoryFilter("prod*"),))
    assert prod.repository_arn == f"arn:aws:ecr:us-east-1:{REGISTRY}:repository/prod-api"
    assert (dev.scan_frequency, dev.scan_on_push) == ("SCAN_ON_PUSH", True)
    assert dev.applied_scan_filters == (ScanningRepositoryFilter("*"), ScanningRepositoryFilter("dev*"))
    assert [(f.repository_name, f.failure_code) for f in res.failures] == [("gone", "REPOSITORY_NOT_FOUND")]
    store.scanning.put_registry_scanning_configuration(scan_type="BASIC", rules=[])
    own = store.scanning.batch_get_repository_scanning_configuration(["dev-api"]).scanning_configurations[0]
    assert (own.scan_frequency, own.scan_on_push, own.applied_scan_filters) == ("MANUAL", False, ())


@pytest.mark.parametrize("scan_type, rules, message", [
    ("FULL", [], "Member must satisfy enum value set: [BASIC, ENHANCED]"),
    ("BASIC", [RegistryScanningRule("CONTINUOUS_SCAN", [])], "the BASIC scan type supports"),
    ("ENHANCED", [RegistryScanningRule("MANUAL", [])], "the ENHANCED scan type supports"),
    ("BASIC", [RegistryScanningRule("HOURLY", [])], "scanFrequency"),
    ("ENHANCED", [RegistryScanningRule("SCAN_ON_PUSH", []), RegistryScanningRule("SCAN_ON_PUSH", [])],
     "only one rule may have the scan frequency SCAN_ON_PUSH"),
    ("ENHANCED", [RegistryScanningRule("SCAN_ON_PUSH", [])] * 3, "length less than or equal to 2"),
    ("BASIC", [RegistryScanningRule("SCAN_ON_PUSH", [ScanningRepositoryFilter("Bad_Name")])],
     "Member must satisfy regular expression pattern"),
    ("BASIC", [RegistryScanningRule("SCAN_ON_PUSH", [ScanningRepositoryFilter("a", "PREFIX")])], "[WILDCARD]"),
    ("BASIC", [RegistryScanningRule("SCAN_ON_PUSH", [ScanningRepositoryFilter("a")] * 101)],
     "length less than or equal to 100"),
])
def test_registry_configuration_is_validated_and_nothing_changes(store, scan_type, rules, message):
    with pytest.raises(InvalidParameterException) as e:
        store.scanning.put_registry_scanning_configuration(scan_type=scan_type, rules=rules)
    assert message in e.value.message and e.value.message.startswith("Invalid parameter at '")
    assert store.scanning.get_registry_scanning_configuration().scanning_configuration.rules == ()


def test_filters_match_the_models_pattern_in_linear_time(store):
    import random
    import re

    from ecrstore.scanning_rules import FILTER_PATTERN, FILTER_RE

    model = re.compile(FILTER_PATTERN)
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice("ab*._-/A") for _ in range(rng.randint(1, 9)))
        assert bool(FILTER_RE.fullmatch(text)) == bool(model.fullmatch(text)), text
    started = time.monotonic()
    with pytest.raises(InvalidParameterException, match="regular expression pattern"):
        store.scanning.put_registry_scanning_configuration(rules=[
            RegistryScanningRule("SCAN_ON_PUSH", [ScanningRepositoryFilter("a" * 254 + "A")])])
    assert time.monotonic() - started < 1  # the model's own pattern takes minutes on this


def test_repository_names_are_validated(store):
    with pytest.raises(InvalidParameterException, match="length less than or equal to 25"):
        store.scanning.batch_get_repository_scanning_configuration([f"r{i:02d}" for i in range(26)])
    with pytest.raises(InvalidParameterException, match="regular expression"):
        store.scanning.batch_get_repository_scanning_configuration(["UPPER"])


# --- interruption ------------------------------------------------------------------------


def test_a_scan_cut_off_by_close_reads_as_interrupted_and_may_be_restarted(tmp_path):
    store = open_store(tmp_path / "store")
    store.create_repository("app")
    push_image(store, "app")
    started = threading.Event()
    store.scanning.configure(lambda target: started.set() or time.sleep(30))
    store.scanning.start_image_scan("app", TAG)
    assert started.wait(10)
    store.close()
    with open_store(tmp_path / "store") as again:
        status = again.scanning.describe_image_scan_findings("app", TAG).image_scan_status
        assert status == ImageScanStatus("FAILED", scanning.INTERRUPTED)
        assert again.scanning.recover() == 1 and again.scanning.recover() == 0
        again.scanning.configure(lambda target: report("LOW"))
        again.scanning.start_image_scan("app", TAG)
        assert wait_status(again, "app", TAG).image_scan_status.status == "COMPLETE"


def test_a_scan_of_a_killed_process_reads_as_interrupted(tmp_path):
    path = tmp_path / "store"
    with open_store(path) as store:
        store.create_repository("app")
        push_image(store, "app")
    script = textwrap.dedent(f"""
        import sys, threading, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from storeutil import open_store
        from ecrstore.models import ImageIdentifier
        store = open_store({str(path)!r})
        store.scanning.configure(lambda target: time.sleep(60))
        print(store.scanning.start_image_scan("app", ImageIdentifier(image_tag="v1")).image_scan_status.status,
              flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "IN_PROGRESS"
        with open_store(path) as store:  # the owner is alive: still in progress
            assert store.scanning.describe_image_scan_findings("app", TAG).image_scan_status.status == "IN_PROGRESS"
    finally:
        child.kill()
        child.wait(10)
    with open_store(path) as store:
        assert store.scanning.describe_image_scan_findings("app", TAG).image_scan_status == \
            ImageScanStatus("FAILED", scanning.INTERRUPTED)
        assert store.describe_images("app").image_details[0].image_scan_status.status == "FAILED"


# --- reports -----------------------------------------------------------------------------


def test_a_trivy_report_maps_to_ecr_findings():
    got = parse_report(json.dumps(TRIVY).encode())
    assert got.vulnerability_source_updated_at is None  # Trivy's JSON does not say
    glibc, apt, bash = got.findings
    assert glibc == ImageScanFinding(
        "CVE-2023-4911", "HIGH", "A buffer overflow was discovered in the GNU C Library's dynamic loader.",
        "https://avd.aquasec.com/nvd/cve-2023-4911",
        (Attribute("package_name", "libc6"), Attribute("package_version", "2.36-9+deb12u1"),
         Attribute("fixed_in_version", "2.36-9+deb12u3"),
         Attribute("CVSS3_VECTOR", "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"), Attribute("CVSS3_SCORE", "7.8")))
    assert (apt.severity, apt.description, apt.uri) == (
        "LOW", "It was found that apt-key in apt does not correctly validate",
        "https://people.canonical.com/~ubuntu-security/cve/2011/CVE-2011-3374.html")
    assert ("CVSS2_SCORE", "4.3") in [(a.key, a.value) for a in apt.attributes]
    assert (bash.severity, bash.description, bash.uri) == ("UNDEFINED", None, None)


def test_a_grype_report_maps_to_ecr_findings():
    got = parse_report(json.dumps(GRYPE).encode())
    assert got.vulnerability_source_updated_at == 1714440600.0  # descriptor.db.built
    requests_, tar = got.findings
    assert requests_ == ImageScanFinding(
        "GHSA-j8r2-6x86-q33q", "MEDIUM", "Unintended leak of Proxy-Authorization header in requests",
        "https://github.com/advisories/GHSA-j8r2-6x86-q33q",
        (Attribute("package_name", "requests"), Attribute("package_version", "2.25.1"),
         Attribute("fixed_in_version", "2.31.0"),
         Attribute("CVSS3_VECTOR", "CVSS:3.1/AV:N/AC:H/PR:H/UI:R/S:U/C:H/I:N/A:N"), Attribute("CVSS3_SCORE", "4.4"),
         Attribute("CVSS2_VECTOR", "AV:N/AC:M/Au:N/C:P/I:N/A:N"), Attribute("CVSS2_SCORE", "4.3")))
    assert (tar.severity, tar.description, tar.uri) == ("INFORMATIONAL", None, None)
    newer = {**GRYPE, "descriptor": {"name": "grype", "db": {"status": {"built": "2024-04-30T01:30:00Z"}}}}
    assert parse_report(json.dumps(newer).encode()).vulnerability_source_updated_at == 1714440600.0


def test_empty_reports_have_no_findings():
    assert parse_report(b'{"SchemaVersion": 2, "ArtifactName": "x"}').findings == ()
    assert parse_report(b'{"matches": [], "descriptor": {"name": "grype"}}').findings == ()


@pytest.mark.parametrize("output, words", [
    (b"Segmentation fault", "not JSON"),
    (b"[1, 2]", "neither a Trivy nor a Grype"),
    (b'{"vulnerabilities": []}', "neither a Trivy nor a Grype"),
    (b'{"matches": [{"artifact": {}}]}', "malformed"),
    (b'{"Results": [{"Vulnerabilities": [{"PkgName": "x"}]}]}', "malformed"),
])
def test_other_output_is_refused_never_guessed_at(output, words):
    with pytest.raises(ScannerError) as e:
        parse_report(output)
    assert words in e.value.description
