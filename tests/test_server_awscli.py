"""The AWS CLI (awscli from PyPI) against a real server: a smoke flow of the layer API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from server_fixtures import KEY_A, digest_of, repo_name, unique_bytes

pytestmark = pytest.mark.timeout(300)


def aws_executable() -> str:
    candidate = Path(sys.executable).parent / "aws"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("aws")
    if not found:
        pytest.skip("the AWS CLI is not installed (pip install awscli)")
    return found


@pytest.fixture
def aws(ecr_server, tmp_path):
    executable = aws_executable()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": KEY_A[0],
        "AWS_SECRET_ACCESS_KEY": KEY_A[1],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_PAGER": "",
    })

    def run(*args: str, endpoint: bool = True, check: bool = True) -> subprocess.CompletedProcess:
        argv = [executable, "ecr", *args, "--output", "json"]
        if endpoint:
            argv += ["--endpoint-url", ecr_server.endpoint]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    run.env = env
    return run


def test_aws_cli_layer_flow(aws, tmp_path, ecr_server):
    repo = repo_name("cli/smoke")
    created = json.loads(aws("create-repository", "--repository-name", repo).stdout)["repository"]
    assert created["repositoryName"] == repo and created["registryId"] == KEY_A[2]

    data = unique_bytes(1500)
    upload = json.loads(aws("initiate-layer-upload", "--repository-name", repo).stdout)
    assert upload["partSize"] == 1024
    offset = 0
    for i, chunk in enumerate((data[:1024], data[1024:])):
        part_file = tmp_path / f"part{i}"
        part_file.write_bytes(chunk)
        result = json.loads(aws("upload-layer-part", "--repository-name", repo, "--upload-id", upload["uploadId"],
                                "--part-first-byte", str(offset), "--part-last-byte", str(offset + len(chunk) - 1),
                                "--layer-part-blob", f"fileb://{part_file}").stdout)
        offset += len(chunk)
        assert result["lastByteReceived"] == offset - 1
    done = json.loads(aws("complete-layer-upload", "--repository-name", repo, "--upload-id", upload["uploadId"],
                          "--layer-digests", digest_of(data)).stdout)
    assert done["layerDigest"] == digest_of(data)

    # The endpoint from the environment, as the server's start-up hint suggests.
    aws.env["AWS_ENDPOINT_URL_ECR"] = ecr_server.endpoint
    check = json.loads(aws("batch-check-layer-availability", "--repository-name", repo,
                           "--layer-digests", digest_of(data), endpoint=False).stdout)
    assert check["layers"][0]["layerAvailability"] == "AVAILABLE" and check["layers"][0]["layerSize"] == 1500

    listed = json.loads(aws("describe-repositories", "--repository-names", repo).stdout)["repositories"]
    assert [r["repositoryName"] for r in listed] == [repo]

    failed = aws("describe-repositories", "--repository-names", repo_name("absent"), check=False)
    assert failed.returncode != 0 and "RepositoryNotFoundException" in failed.stderr

    aws("delete-repository", "--repository-name", repo, "--force")
