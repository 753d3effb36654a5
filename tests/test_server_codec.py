"""The JSON codec owns HTTP statuses and error bodies; the engine's errors carry none. The
codec, the configuration and the preparation helpers import without the server extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecrstore import errors
from ecrstore.server.awsjson.codec import STATUS_BY_CODE, error_body, http_status

ROOT = Path(__file__).resolve().parent.parent


def test_status_table_names_real_codes_only():
    assert set(STATUS_BY_CODE) <= set(errors.BY_CODE)


@pytest.mark.parametrize("cls, status", [
    (errors.ServerException, 500), (errors.HashStateError, 500), (errors.AccessDeniedException, 403),
    (errors.InvalidSignatureException, 403), (errors.RequestTimeoutException, 408),
    (errors.RepositoryNotFoundException, 400), (errors.InvalidParameterException, 400),
])
def test_http_status(cls, status):
    assert http_status(cls("x")) == status


def test_errors_carry_no_http_status():
    for cls in errors.BY_CODE.values():
        assert not hasattr(cls, "status") and not hasattr(cls, "to_wire"), cls


def test_error_body_has_the_modeled_fields_under_their_wire_names():
    error = errors.KmsException("no key", kms_error="KMS.Disabled")
    assert error_body(error) == {"__type": "KmsException", "message": "no key", "kmsError": "KMS.Disabled"}
    assert error_body(errors.UploadNotFoundException("gone")) == {"__type": "UploadNotFoundException",
                                                                  "message": "gone"}


_WITHOUT_EXTRA = r"""
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("uvicorn", "orjson", "pybase64", "botocore"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
from ecrstore import models
from ecrstore.server import (CredentialsFileError, ServerConfig, prepare_credentials, prepare_store, serve,
                             usage_hint, missing_packages)
from ecrstore.server.awsjson.codec import to_wire
result = models.UploadLayerPartResult("000000000000", "r", "u", 3)
try:
    from ecrstore.server import EcrApp
    app = "imported"
except ModuleNotFoundError as e:
    app = e.name
print(json.dumps({"wire": to_wire(result), "app": app,
                  "loaded": sorted(m for m in ("uvicorn", "orjson", "pybase64", "botocore") if m in sys.modules)}))
"""


def test_codec_and_serve_helpers_import_without_the_server_extra():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _WITHOUT_EXTRA], capture_output=True, text=True, env=env,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["wire"] == {"registryId": "000000000000", "repositoryName": "r", "uploadId": "u",
                              "lastByteReceived": 3}
    assert answer["app"] == "orjson"  # the JSON app itself needs the extra, and says which package
    assert answer["loaded"] == []


def test_missing_packages_is_empty_here():
    from ecrstore.server import missing_packages

    assert missing_packages() == []


def test_every_export_resolves():
    import ecrstore.server as server

    for name in server.__all__:
        assert getattr(server, name) is not None, name
    with pytest.raises(AttributeError):
        server.no_such_name  # noqa: B018
