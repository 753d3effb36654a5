"""boto3 against a real ``ecrstore serve --scanner``: scans run a real scanner program over the
image's exported OCI layout and their findings come back through DescribeImageScanFindings and
DescribeImages; failing, hanging and silent scanners; no scanner at all; scan on push; every
scanning operation's errors; a scan cut off by a killed server."""

from __future__ import annotations

import json
import signal
import sys
import time

import pytest
from botocore.exceptions import ClientError
from server_fixtures import KEY_A, KEY_OTHER_REGISTRY, REGISTRY_A, push_layer, repo_name, start_server, unique_bytes
from test_scanning import GRYPE, TRIVY

pytestmark = pytest.mark.timeout(180)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

#: The scanner the server runs: it checks that the layout it is given holds the image (its
#: index, manifest, config and every layer, at their sizes), then behaves as the image's
#: config asks (``scan_mode``): a Trivy report naming the manifest it read, a Grype report, a
#: failure, garbage, or a hang.
SCANNER = '''
import json, os, sys, time
layout = sys.argv[1]
assert json.load(open(os.path.join(layout, "oci-layout")))["imageLayoutVersion"] == "1.0.0"
index = json.load(open(os.path.join(layout, "index.json")))
top = index["manifests"][0]
def blob(digest):
    return os.path.join(layout, "blobs", *digest.split(":"))
manifest = json.load(open(blob(top["digest"])))
for layer in manifest["layers"]:
    assert os.path.getsize(blob(layer["digest"])) == layer["size"], layer
config = json.load(open(blob(manifest["config"]["digest"])))
mode = config.get("scan_mode", "trivy")
if mode == "fail":
    print("FATAL: vulnerability database download failed", file=sys.stderr)
    sys.exit(3)
if mode == "hang":
    time.sleep(120)
if mode == "garbage":
    print("Scanning... done")
    sys.exit(0)
report = json.loads(REPORTS[mode])
if mode == "trivy":
    report["Results"][0]["Vulnerabilities"][2]["Title"] = "read " + top["digest"]
print(json.dumps(report))
'''


@pytest.fixture(scope="module")
def scan_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scan-server")
    script = tmp / "scanner.py"
    script.write_text(f"REPORTS = {json.dumps({'trivy': json.dumps(TRIVY), 'grype': json.dumps(GRYPE)})}\n" + SCANNER)
    server = start_server(tmp, keys=[KEY_A, KEY_OTHER_REGISTRY],
                          extra=["--scanner", f"{sys.executable} {script} {{layout}}", "--scanner-timeout", "3"])
    yield server
    server.stop()


@pytest.fixture
def ecr(scan_server):
    return scan_server.client()


def make_repo(ecr, prefix: str = "scan", **kw) -> str:
    name = repo_name(prefix)
    ecr.create_repository(repositoryName=name, **kw)
    return name


def push_image(ecr, repo: str, mode: str = "trivy", tag: str | None = "v1") -> str:
    config = json.dumps({"architecture": "amd64", "os": "linux", "scan_mode": mode,
                         "nonce": unique_bytes(8).hex()}).encode()
    layer = unique_bytes(3000)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                   "digest": push_layer(ecr, repo, config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": len(layer),
                    "digest": push_layer(ecr, repo, layer)}],
    })
    kw = {"imageTag": tag} if tag else {}
    return ecr.put_image(repositoryName=repo, imageManifest=manifest, **kw)["image"]["imageId"]["imageDigest"]


def wait_scan(ecr, repo: str, image_id: dict, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        try:
            res = ecr.describe_image_scan_findings(repositoryName=repo, imageId=image_id)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ScanNotFoundException" or time.monotonic() > deadline:
                raise
        else:
            if res["imageScanStatus"]["status"] != "IN_PROGRESS" or time.monotonic() > deadline:
                return res
        time.sleep(0.1)


def error_of(call, *args, **kw) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        call(*args, **kw)
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def test_a_trivy_scan_of_the_exported_image(ecr):
    repo = make_repo(ecr)
    digest = push_image(ecr, repo, "trivy")
    started = ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "v1"})
    assert started["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert started["registryId"] == REGISTRY_A and started["imageScanStatus"]["status"] == "IN_PROGRESS"
    res = wait_scan(ecr, repo, {"imageTag": "v1"})
    assert res["imageScanStatus"] == {"status": "COMPLETE", "description": "The scan was completed successfully."}
    findings = res["imageScanFindings"]
    assert findings["findingSeverityCounts"] == {"HIGH": 1, "LOW": 1, "UNDEFINED": 1}
    assert [f["name"] for f in findings["findings"]] == ["CVE-2023-4911", "CVE-2011-3374", "TEMP-0841856-B18BAF"]
    glibc = findings["findings"][0]
    assert glibc["uri"] == "https://avd.aquasec.com/nvd/cve-2023-4911" and glibc["severity"] == "HIGH"
    assert {"key": "package_name", "value": "libc6"} in glibc["attributes"]
    assert findings["findings"][2]["description"] == f"read {digest}"  # the scanner read this image's layout
    assert "vulnerabilitySourceUpdatedAt" not in findings
    detail = ecr.describe_images(repositoryName=repo)["imageDetails"][0]
    assert detail["imageScanStatus"]["status"] == "COMPLETE"
    assert detail["imageScanFindingsSummary"]["findingSeverityCounts"] == findings["findingSeverityCounts"]
    pages = ecr.get_paginator("describe_image_scan_findings").paginate(
        repositoryName=repo, imageId={"imageDigest": digest}, PaginationConfig={"PageSize": 1})
    assert [f["name"] for page in pages for f in page["imageScanFindings"]["findings"]] == \
        [f["name"] for f in findings["findings"]]
    code, message = error_of(ecr.start_image_scan, repositoryName=repo, imageId={"imageDigest": digest})
    assert (code, message) == ("LimitExceededException",
                               "The scan quota per image has been exceeded. Wait and try again.")


def test_a_grype_scan(ecr):
    repo = make_repo(ecr)
    push_image(ecr, repo, "grype")
    ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "v1"})
    findings = wait_scan(ecr, repo, {"imageTag": "v1"})["imageScanFindings"]
    assert findings["findingSeverityCounts"] == {"MEDIUM": 1, "INFORMATIONAL": 1}
    assert findings["vulnerabilitySourceUpdatedAt"].timestamp() == 1714440600.0
    first = findings["findings"][0]
    assert first["name"] == "GHSA-j8r2-6x86-q33q"
    assert {"key": "fixed_in_version", "value": "2.31.0"} in first["attributes"]


@pytest.mark.parametrize("mode, description", [
    ("fail", "The scanner exited with status 3: FATAL: vulnerability database download failed."),
    ("garbage", "The scanner's output is not JSON"),
    ("hang", "The scanner did not finish within 3 seconds."),
])
def test_a_failing_scanner_fails_the_scan_saying_why(ecr, mode, description):
    repo = make_repo(ecr)
    push_image(ecr, repo, mode)
    ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "v1"})
    res = wait_scan(ecr, repo, {"imageTag": "v1"})
    assert res["imageScanStatus"]["status"] == "FAILED"
    assert res["imageScanStatus"]["description"].startswith(description)
    assert "imageScanFindings" not in res


def test_without_a_scanner_scans_fail_saying_so(ecr_server):
    ecr = ecr_server.client()
    repo = make_repo(ecr, "noscanner")
    try:
        push_image(ecr, repo)
        status = ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "v1"})["imageScanStatus"]
        assert status["status"] == "FAILED" and "No scanner is configured" in status["description"]
        assert wait_scan(ecr, repo, {"imageTag": "v1"})["imageScanStatus"] == status
    finally:
        ecr.delete_repository(repositoryName=repo, force=True)


def test_scan_on_push_by_repository_and_by_registry_rule(ecr):
    flagged = make_repo(ecr, imageScanningConfiguration={"scanOnPush": True})
    push_image(ecr, flagged)
    assert wait_scan(ecr, flagged, {"imageTag": "v1"})["imageScanStatus"]["status"] == "COMPLETE"
    prefix = repo_name("rule")
    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[
        {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": f"{prefix}-*", "filterType": "WILDCARD"}]}])
    try:
        matched, other = make_repo(ecr, f"{prefix}-x"), make_repo(ecr)
        push_image(ecr, matched)
        push_image(ecr, other)
        assert wait_scan(ecr, matched, {"imageTag": "v1"})["imageScanStatus"]["status"] == "COMPLETE"
        assert error_of(ecr.describe_image_scan_findings, repositoryName=other,
                        imageId={"imageTag": "v1"})[0] == "ScanNotFoundException"
        got = ecr.batch_get_repository_scanning_configuration(repositoryNames=[matched, flagged, "missing-repo"])
        by_name = {c["repositoryName"]: c for c in got["scanningConfigurations"]}
        assert by_name[matched]["scanFrequency"] == "SCAN_ON_PUSH"
        assert by_name[matched]["appliedScanFilters"] == [{"filter": f"{prefix}-*", "filterType": "WILDCARD"}]
        assert by_name[flagged]["scanOnPush"] is True and by_name[flagged]["appliedScanFilters"] == []
        assert got["failures"][0]["repositoryName"] == "missing-repo"
        assert got["failures"][0]["failureCode"] == "REPOSITORY_NOT_FOUND"
        config = ecr.get_registry_scanning_configuration()
        assert config["registryId"] == REGISTRY_A and config["scanningConfiguration"]["scanType"] == "BASIC"
    finally:
        ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[])


def test_a_v2_push_is_scanned_on_push(scan_server, ecr):
    from oci_http import Registry, login_password

    repo = make_repo(ecr, imageScanningConfiguration={"scanOnPush": True})
    digest, _ = Registry(scan_server.port, login_password(ecr)).push_image(repo, "v1")
    res = wait_scan(ecr, repo, {"imageDigest": digest})
    assert res["imageScanStatus"]["status"] == "COMPLETE"  # the config has no scan_mode: a Trivy report
    assert res["imageScanFindings"]["findings"][2]["description"] == f"read {digest}"


def test_every_operations_errors(scan_server, ecr):
    raw = scan_server.client(parameter_validation=False)  # lets out-of-model values reach the server
    repo = make_repo(ecr)
    digest = push_image(ecr, repo)
    code, message = error_of(ecr.start_image_scan, repositoryName="no-such-repo", imageId={"imageTag": "v1"})
    assert code == "RepositoryNotFoundException" and "'no-such-repo' does not exist" in message
    code, message = error_of(ecr.start_image_scan, repositoryName=repo, imageId={"imageTag": "nope"})
    assert code == "ImageNotFoundException" and "imageTag=nope" in message
    code, _ = error_of(raw.start_image_scan, repositoryName=repo, imageId={})
    assert code == "InvalidParameterException"
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1}]})
    ecr.put_image(repositoryName=repo, imageManifest=index, imageTag="multi")
    code, message = error_of(ecr.start_image_scan, repositoryName=repo, imageId={"imageTag": "multi"})
    assert code == "UnsupportedImageTypeException" and "manifest list" in message

    code, message = error_of(ecr.describe_image_scan_findings, repositoryName=repo, imageId={"imageTag": "v1"})
    assert (code, message) == ("ScanNotFoundException", (
        f"Image scan does not exist for the image with '{{imageDigest:'null', imageTag:'v1'}}' in the repository "
        f"with name '{repo}' in the registry with id '{REGISTRY_A}'"))
    assert error_of(ecr.describe_image_scan_findings, repositoryName=repo,
                    imageId={"imageTag": "gone"})[0] == "ImageNotFoundException"
    code, message = error_of(raw.describe_image_scan_findings, repositoryName=repo, imageId={"imageTag": "v1"},
                             maxResults=0)
    assert code == "InvalidParameterException" and "maxResults" in message
    code, message = error_of(raw.describe_image_scan_findings, repositoryName=repo, imageId={"imageTag": "v1"},
                             nextToken="garbage")
    assert (code, message) == ("InvalidParameterException",
                               "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid token'")

    code, message = error_of(ecr.put_registry_scanning_configuration, scanType="BASIC", rules=[
        {"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}])
    assert code == "InvalidParameterException" and "BASIC scan type supports" in message
    code, message = error_of(raw.put_registry_scanning_configuration, scanType="BASIC", rules=[
        {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "UPPER", "filterType": "WILDCARD"}]}])
    assert code == "InvalidParameterException" and "regular expression pattern" in message
    code, _ = error_of(raw.put_registry_scanning_configuration, scanType="SUPER")
    assert code == "InvalidParameterException"
    assert ecr.get_registry_scanning_configuration()["scanningConfiguration"]["rules"] == []  # unchanged

    code, message = error_of(raw.batch_get_repository_scanning_configuration,
                             repositoryNames=[f"r{i:02d}" for i in range(26)])
    assert code == "InvalidParameterException" and "25" in message
    assert error_of(raw.batch_get_repository_scanning_configuration, repositoryNames="one")[0] == \
        "InvalidParameterException"


def test_registries_do_not_see_each_others_scans(scan_server, ecr):
    repo = make_repo(ecr)
    push_image(ecr, repo)
    other = scan_server.client(KEY_OTHER_REGISTRY)
    assert error_of(other.start_image_scan, repositoryName=repo,
                    imageId={"imageTag": "v1"})[0] == "RepositoryNotFoundException"
    assert other.get_registry_scanning_configuration()["registryId"] != REGISTRY_A
    code, _ = error_of(other.start_image_scan, registryId=REGISTRY_A, repositoryName=repo, imageId={"imageTag": "v1"})
    assert code == "AccessDeniedException"


def test_a_scan_cut_off_by_a_killed_server_is_failed_when_it_restarts(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text("import time\ntime.sleep(120)\n")
    scanner = ["--scanner", f"{sys.executable} {script} {{layout}}"]
    server = start_server(tmp_path / "a", keys=[KEY_A], extra=scanner)
    try:
        ecr = server.client()
        repo = make_repo(ecr)
        push_image(ecr, repo)
        assert ecr.start_image_scan(repositoryName=repo,
                                    imageId={"imageTag": "v1"})["imageScanStatus"]["status"] == "IN_PROGRESS"
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
    finally:
        server.stop()
    again = start_server(tmp_path / "b", keys=[KEY_A], extra=scanner, store=server.store)
    try:
        ecr = again.client()
        status = ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": "v1"})["imageScanStatus"]
        assert status["status"] == "FAILED" and "interrupted" in status["description"]
        assert "now FAILED" in again.log()  # rewritten as it started, not only answered so
    finally:
        again.stop()


def test_the_scanner_option_is_checked(tmp_path):
    import subprocess

    run = subprocess.run([sys.executable, "-m", "ecrstore.cli", "serve", "--store", str(tmp_path / "s"),
                          "--no-auth", "--port", "0", "--scanner", "trivy image --input"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "{layout}" in run.stderr
