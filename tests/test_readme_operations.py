"""The README's table of ECR's operations says what the server answers, and the server keeps it:
every operation of botocore's ECR model is in the table once, those marked answered are the
operation table's, and each of the others answers UnknownOperationException from a real
``ecrstore serve``."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
import pytest
from botocore.exceptions import ClientError

from ecrstore.server.awsjson.operations import OPERATIONS

README = Path(__file__).resolve().parent.parent / "README.md"
MODEL = botocore.session.get_session().get_service_model("ecr")


def table() -> dict[str, str]:
    """Operation -> ``yes``/``no``, from the rows under "### ECR's operations"."""
    text = README.read_text()
    section = text.split("### ECR's operations", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \|", section, flags=re.M)
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "an operation is listed twice"
    return dict(rows)


def test_the_table_lists_every_operation_of_the_model_once():
    assert set(table()) == set(MODEL.operation_names)
    assert len(MODEL.operation_names) == 62


def test_the_answered_operations_are_the_servers():
    rows = table()
    assert {name for name, answered in rows.items() if answered == "yes"} == set(OPERATIONS)
    assert set(rows.values()) <= {"yes", "no"}
    count = re.search(r"ecrstore answers (\d+) of the (\d+) operations", README.read_text())
    assert count is not None and (int(count[1]), int(count[2])) == (len(OPERATIONS), len(MODEL.operation_names))


@pytest.mark.parametrize("operation", sorted(set(MODEL.operation_names) - set(OPERATIONS)))
def test_an_operation_left_out_answers_unknown_operation(ecr_server, operation):
    client = ecr_server.client(parameter_validation=False)
    method = getattr(client, botocore.xform_name(operation))
    with pytest.raises(ClientError) as caught:
        method()
    error = caught.value.response["Error"]
    assert error["Code"] == "UnknownOperationException"
    assert error["Message"] == f"Operation '{operation}' is not supported by this endpoint."
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
