"""Policy documents: validation as ECR validates them, IAM evaluation, and the policies area of
a real Store (stored documents, authorization decisions, registry permissions)."""

from __future__ import annotations

import json

import pytest

from ecrstore import Store
from ecrstore import policy as p
from ecrstore.errors import (
    InvalidParameterException,
    RegistryPolicyNotFoundException,
    RepositoryNotFoundException,
    RepositoryPolicyNotFoundException,
)

pytestmark = pytest.mark.timeout(60)

A, B, C = "111111111111", "222222222222", "333333333333"
USER_B = f"arn:aws:iam::{B}:user/AKIAUSERB"
REPO_ARN = f"arn:aws:ecr:us-east-1:{A}:repository/app"
REPO_MESSAGE = "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided'"
REGISTRY_MESSAGE = "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid registry policy provided'"


def doc(*statements: dict, version: str = "2012-10-17") -> dict:
    return {"Version": version, "Statement": list(statements)}


def allow(principal, action, **extra) -> dict:
    return {"Effect": "Allow", "Principal": principal, "Action": action, **extra}


def deny(principal, action, **extra) -> dict:
    return {"Effect": "Deny", "Principal": principal, "Action": action, **extra}


def text(d: dict) -> str:
    return json.dumps(d)


def decide(d: dict, action: str = "ecr:BatchGetImage", account: str = B, arn: str | None = USER_B,
           resource: str = REPO_ARN) -> str:
    return p.evaluate(p.parse(text(d)), account, arn, action, resource)


# --- validation ---------------------------------------------------------------------------------

VALID = [
    doc(allow("*", "ecr:*")),
    doc(allow({"AWS": B}, ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]), version="2008-10-17"),
    {"Version": "2012-10-17", "Id": "x", "Statement": allow({"AWS": [f"arn:aws:iam::{B}:root", C]}, "ecr:Batch*")},
    doc(allow({"AWS": USER_B}, "*"), deny("*", "ecr:Delete*")),
    doc(allow({"Service": "codebuild.amazonaws.com"}, "ecr:BatchGetImage")),
    doc({"Effect": "Allow", "NotPrincipal": {"AWS": C}, "NotAction": "ecr:PutImage"}),
    doc(allow("*", "ECR:batchgetimage", Resource="*")),
    doc(allow("*", "ecr:PutImage", NotResource=[REPO_ARN])),
    doc(allow("*", "ecr:Get?ownloadUrlForLayer", Sid="one"), allow("*", "ecr:ListImages", Sid="two")),
    doc(allow("*", "ecr:ReplicateImage")),  # permission-only actions exist
    doc(allow("*", "ecr:BatchGetImage", Condition={"StringEquals": {"aws:PrincipalAccount": [B, C]},
                                                   "ForAnyValue:StringLikeIfExists": {"aws:TagKeys": "x*"}})),
]


@pytest.mark.parametrize("d", VALID)
def test_valid_repository_policies_are_accepted(d):
    assert p.parse(text(d)) == d


INVALID = [
    ("", "not JSON"),
    ("[]", "JSON object"),
    ('{"Version": "2012-10-17", "Statement": []}', "Statement"),
    (text({"Statement": [allow("*", "ecr:*")]}), "Version"),
    (text(doc(allow("*", "ecr:*"), version="2020-01-01")), "Version"),
    (text({**doc(allow("*", "ecr:*")), "Extra": 1}), "unknown policy element"),
    (text(doc({"Effect": "Maybe", "Principal": "*", "Action": "ecr:*"})), "Effect"),
    (text(doc({"Effect": "Allow", "Action": "ecr:*"})), "Principal or NotPrincipal"),
    (text(doc({"Effect": "Allow", "Principal": "*", "NotPrincipal": "*", "Action": "ecr:*"})), "both"),
    (text(doc({"Effect": "Allow", "Principal": "*"})), "Action or NotAction"),
    (text(doc(allow("*", "ecr:*", NotAction="ecr:PutImage"))), "both"),
    (text(doc(allow("*", "s3:GetObject"))), "not an ecr: action"),
    (text(doc(allow("*", "ecr:FlyToTheMoon"))), "not an ECR action"),
    (text(doc(allow("*", "ecr:Nothing*"))), "not an ECR action"),
    (text(doc(allow("*", []))), "non-empty"),
    (text(doc(allow("*", [5]))), "non-empty"),
    (text(doc(allow({"AWS": "bob"}, "ecr:*"))), "account id or an IAM ARN"),
    (text(doc(allow({"Federated": "x"}, "ecr:*"))), "principal type"),
    (text(doc(allow("everyone", "ecr:*"))), "'*' or an object"),
    (text(doc(allow("*", "ecr:*", Resource="bucket"))), "an ARN"),
    (text(doc(allow("*", "ecr:*", Sid="s"), allow("*", "ecr:*", Sid="s"))), "duplicate Sid"),
    (text(doc(allow("*", "ecr:*", Sid=3))), "Sid"),
    (text(doc(allow("*", "ecr:*", Condition={"StringSortOf": {"aws:PrincipalAccount": B}}))), "operator"),
    (text(doc(allow("*", "ecr:*", Condition={"StringEquals": {}}))), "condition keys"),
    (text(doc(allow("*", "ecr:*", Condition={"StringEquals": {"aws:PrincipalAccount": {"x": 1}}}))), "values"),
    (text(doc(allow("*", "ecr:*", Condition=[]))), "operators"),
    (text(doc({**allow("*", "ecr:*"), "Surprise": True})), "unknown element"),
]


@pytest.mark.parametrize(("policy_text", "reason"), INVALID)
def test_invalid_repository_policies_are_refused_with_ecr_message(policy_text, reason):
    with pytest.raises(InvalidParameterException) as e:
        p.parse(policy_text)
    assert e.value.code == "InvalidParameterException" and e.value.message == REPO_MESSAGE
    assert isinstance(e.value.__cause__, p.PolicyError) and reason in str(e.value.__cause__)


def test_size_limit_and_type():
    padded = text(doc(allow("*", "ecr:*"))) + " " * (p.MAX_POLICY_CHARS - len(text(doc(allow("*", "ecr:*")))))
    assert p.parse(padded)  # exactly at the limit
    with pytest.raises(InvalidParameterException, match="less than or equal to 10240"):
        p.parse(padded + " ")
    with pytest.raises(InvalidParameterException, match="must be a string"):
        p.parse(None)


def test_registry_policies_may_grant_only_registry_actions():
    for ok in (doc(allow({"AWS": B}, ["ecr:ReplicateImage", "ecr:CreateRepository"])),
               doc(allow({"AWS": B}, "ecr:BatchImportUpstreamImage", Resource=f"arn:aws:ecr:us-east-1:{A}:*")),
               doc(allow({"AWS": B}, "ecr:*")), doc(allow({"AWS": B}, "ecr:Replicate*"))):
        assert p.parse(text(ok), registry=True) == ok
    for bad in (doc(allow({"AWS": B}, "ecr:BatchGetImage")), doc(allow({"AWS": B}, "ecr:Describe*"))):
        with pytest.raises(InvalidParameterException) as e:
            p.parse(text(bad), registry=True)
        assert e.value.message == REGISTRY_MESSAGE
        p.parse(text(bad))  # a valid repository policy all the same


# --- evaluation --------------------------------------------------------------------------------


def test_no_statement_is_not_applicable_and_allow_needs_a_match():
    assert decide(doc(allow({"AWS": C}, "ecr:*"))) == "NotApplicable"
    assert decide(doc(allow({"AWS": B}, "ecr:PutImage"))) == "NotApplicable"
    assert decide(doc(allow({"AWS": B}, "ecr:BatchGetImage"))) == "Allow"


@pytest.mark.parametrize("principal", ["*", {"AWS": "*"}, {"AWS": B}, {"AWS": f"arn:aws:iam::{B}:root"},
                                       {"AWS": USER_B}, {"AWS": [C, B]}])
def test_principals_that_name_the_caller(principal):
    assert decide(doc(allow(principal, "ecr:BatchGetImage"))) == "Allow"


@pytest.mark.parametrize("principal", [{"AWS": C}, {"AWS": f"arn:aws:iam::{B}:user/someone-else"},
                                       {"AWS": f"arn:aws:iam::{C}:root"}, {"Service": "ecr.amazonaws.com"}])
def test_principals_that_do_not(principal):
    assert decide(doc(allow(principal, "ecr:BatchGetImage"))) == "NotApplicable"


def test_the_account_itself_matches_root_but_not_a_user_arn():
    d = doc(allow({"AWS": USER_B}, "ecr:*"))
    assert decide(d, arn=None) == "NotApplicable"
    assert decide(doc(allow({"AWS": f"arn:aws:iam::{B}:root"}, "ecr:*")), arn=None) == "Allow"


def test_explicit_deny_beats_allow_in_any_order():
    for statements in ((allow("*", "ecr:*"), deny({"AWS": B}, "ecr:BatchGetImage")),
                       (deny({"AWS": B}, "ecr:BatchGetImage"), allow("*", "ecr:*"))):
        assert decide(doc(*statements)) == "Deny"
        assert decide(doc(*statements), action="ecr:ListImages") == "Allow"
        assert decide(doc(*statements), account=C, arn=None) == "Allow"


def test_not_principal_and_not_action():
    d = doc({"Effect": "Deny", "NotPrincipal": {"AWS": B}, "Action": "ecr:*"}, allow("*", "ecr:*"))
    assert decide(d) == "Allow"
    assert decide(d, account=C, arn=None) == "Deny"
    d = doc({"Effect": "Allow", "Principal": {"AWS": B}, "NotAction": ["ecr:PutImage", "ecr:Delete*"]})
    assert decide(d, action="ecr:BatchGetImage") == "Allow"
    assert decide(d, action="ecr:PutImage") == "NotApplicable"
    assert decide(d, action="ecr:DeleteRepository") == "NotApplicable"


@pytest.mark.parametrize(("pattern", "action", "hit"), [
    ("ecr:*", "ecr:PutImage", True), ("*", "ecr:PutImage", True), ("ECR:PUTIMAGE", "ecr:PutImage", True),
    ("ecr:Batch*", "ecr:BatchGetImage", True), ("ecr:Batch*", "ecr:GetDownloadUrlForLayer", False),
    ("ecr:Put?mage", "ecr:PutImage", True), ("ecr:Put?mage", "ecr:PutImmage", False),
    ("ecr:PutImage", "ecr:PutImageTagMutability", False), ("ecr:*Image", "ecr:PutImageTagMutability", False),
])
def test_action_wildcards_are_case_insensitive(pattern, action, hit):
    assert p.matches_action(pattern, action) is hit


def test_resource_and_not_resource():
    other = f"arn:aws:ecr:us-east-1:{A}:repository/other"
    d = doc(allow("*", "ecr:*", Resource=f"arn:aws:ecr:*:{A}:repository/app*"))
    assert decide(d) == "Allow" and decide(d, resource=other) == "NotApplicable"
    d = doc(allow("*", "ecr:*", NotResource=REPO_ARN))
    assert decide(d) == "NotApplicable" and decide(d, resource=other) == "Allow"
    upper = REPO_ARN.replace("/app", "/APP")
    assert decide(doc(allow("*", "ecr:*", Resource=upper))) == "NotApplicable"  # ARNs: case-sensitive


@pytest.mark.parametrize(("condition", "hit"), [
    ({"StringEquals": {"aws:PrincipalAccount": B}}, True),
    ({"StringEquals": {"aws:principalaccount": [C, B]}}, True),
    ({"StringEquals": {"aws:PrincipalAccount": C}}, False),
    ({"StringNotEquals": {"aws:SourceAccount": C}}, True),
    ({"StringNotEquals": {"aws:SourceAccount": B}}, False),
    ({"StringLike": {"aws:PrincipalArn": f"arn:aws:iam::{B}:user/*"}}, True),
    ({"StringNotLike": {"aws:PrincipalArn": f"arn:aws:iam::{B}:user/*"}}, False),
    ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::2222*:user/AKIA*"}}, True),
    ({"ArnEquals": {"aws:PrincipalArn": USER_B}}, True),
    ({"ArnNotEquals": {"aws:PrincipalArn": USER_B}}, False),
    ({"StringEqualsIgnoreCase": {"aws:PrincipalArn": USER_B.upper()}}, True),
    ({"StringEquals": {"aws:PrincipalAccount": B}, "ArnLike": {"aws:PrincipalArn": "*:user/nobody"}}, False),
])
def test_supported_conditions(condition, hit):
    assert decide(doc(allow("*", "ecr:*", Condition=condition))) == ("Allow" if hit else "NotApplicable")
    assert decide(doc(deny("*", "ecr:*", Condition=condition))) == ("Deny" if hit else "NotApplicable")


@pytest.mark.parametrize("condition", [
    {"StringEquals": {"aws:SourceIp": "10.0.0.1"}},
    {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"StringEqualsIfExists": {"aws:PrincipalAccount": B}},
    {"ForAnyValue:StringEquals": {"aws:PrincipalAccount": B}},
    {"StringEquals": {"aws:PrincipalAccount": B}, "Bool": {"aws:SecureTransport": "true"}},
])
def test_unsupported_conditions_fail_closed(condition):
    assert decide(doc(allow("*", "ecr:*", Condition=condition))) == "NotApplicable"
    assert decide(doc(allow("*", "ecr:*"), deny("*", "ecr:*", Condition=condition))) == "Deny"


# --- the policies area of a store --------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "store", registry_id=A) as s:
        s.create_repository("app")
        yield s


def test_repository_policy_round_trip_keeps_the_text(store):
    t = json.dumps(doc(allow({"AWS": B}, "ecr:BatchGetImage")), indent=4)
    with pytest.raises(RepositoryPolicyNotFoundException, match=f"repository with name 'app' in the registry "
                       f"with id '{A}'"):
        store.policies.get_repository_policy("app")
    assert store.policies.set_repository_policy("app", t).policy_text == t
    got = store.policies.get_repository_policy("app")
    assert (got.registry_id, got.repository_name, got.policy_text) == (A, "app", t)
    assert store.policies.delete_repository_policy("app").policy_text == t
    with pytest.raises(RepositoryPolicyNotFoundException):
        store.policies.delete_repository_policy("app")


def test_repository_policy_errors_change_nothing(store):
    good = text(doc(allow({"AWS": B}, "ecr:*")))
    store.policies.set_repository_policy("app", good)
    with pytest.raises(InvalidParameterException):
        store.policies.set_repository_policy("app", "{")
    with pytest.raises(RepositoryNotFoundException, match=f"'nope' does not exist in the registry with id '{A}'"):
        store.policies.set_repository_policy("nope", good)
    with pytest.raises(InvalidParameterException, match="repositoryName"):
        store.policies.get_repository_policy("No")
    with pytest.raises(InvalidParameterException, match="force"):
        store.policies.set_repository_policy("app", good, force="yes")  # type: ignore[arg-type]
    assert store.policies.get_repository_policy("app").policy_text == good


def test_a_policy_locking_out_its_owner_needs_force(store):
    lockout = text(doc(allow("*", "ecr:*"), deny("*", "ecr:SetRepositoryPolicy")))
    with pytest.raises(InvalidParameterException, match="prevent you from setting a policy in the future"):
        store.policies.set_repository_policy("app", lockout)
    with pytest.raises(RepositoryPolicyNotFoundException):
        store.policies.get_repository_policy("app")
    store.policies.set_repository_policy("app", text(doc(deny({"AWS": C}, "ecr:SetRepositoryPolicy"))))
    store.policies.set_repository_policy("app", lockout, force=True)
    assert store.policies.get_repository_policy("app").policy_text == lockout


def test_the_policy_goes_with_its_repository(store):
    store.policies.set_repository_policy("app", text(doc(allow({"AWS": B}, "ecr:*"))))
    store.delete_repository("app")
    store.create_repository("app")
    with pytest.raises(RepositoryPolicyNotFoundException):
        store.policies.get_repository_policy("app")


def test_registry_policy_round_trip(store):
    with pytest.raises(RegistryPolicyNotFoundException, match=f"registry with id '{A}'"):
        store.policies.get_registry_policy()
    with pytest.raises(RegistryPolicyNotFoundException):
        store.policies.delete_registry_policy()
    t = text(doc(allow({"AWS": B}, ["ecr:ReplicateImage", "ecr:CreateRepository"])))
    assert store.policies.put_registry_policy(t).policy_text == t
    with pytest.raises(InvalidParameterException) as e:
        store.policies.put_registry_policy(text(doc(allow({"AWS": B}, "ecr:PutImage"))))
    assert e.value.message == REGISTRY_MESSAGE
    got = store.policies.get_registry_policy()
    assert (got.registry_id, got.policy_text) == (A, t)
    other = store.policies.put_registry_policy(t, registry_id=C)
    assert other.registry_id == C
    assert store.policies.delete_registry_policy().policy_text == t
    assert store.policies.get_registry_policy(registry_id=C).policy_text == t


def test_registry_permits(store):
    assert store.policies.registry_permits(A, A, "ecr:ReplicateImage")  # the owner
    assert not store.policies.registry_permits(A, B, "ecr:ReplicateImage")  # no policy
    store.policies.put_registry_policy(text(doc(
        allow({"AWS": f"arn:aws:iam::{B}:root"}, ["ecr:ReplicateImage", "ecr:CreateRepository"],
              Resource=f"arn:aws:ecr:us-east-1:{A}:repository/*"))))
    assert store.policies.registry_permits(A, B, "ecr:ReplicateImage")
    assert store.policies.registry_permits(A, B, "ecr:CreateRepository", repository_name="prod/app")
    assert not store.policies.registry_permits(A, B, "ecr:BatchImportUpstreamImage")
    assert not store.policies.registry_permits(A, C, "ecr:ReplicateImage")
    assert not store.policies.registry_permits(C, B, "ecr:ReplicateImage")


def test_authorize(store):
    pol = store.policies
    assert pol.authorize(A, "app", "ecr:PutImage", principal_account=A) == "Allow"  # owner, no policy
    assert pol.authorize(A, "app", "ecr:BatchGetImage", principal_account=B) == "ImplicitDeny"
    pol.set_repository_policy("app", text(doc(allow({"AWS": B}, "ecr:BatchGetImage"),
                                              deny({"AWS": f"arn:aws:iam::{A}:user/AKIAINTERN"}, "ecr:PutImage"))))
    assert pol.authorize(A, "app", "ecr:BatchGetImage", principal_account=B, principal_arn=USER_B) == "Allow"
    assert pol.authorize(A, "app", "ecr:PutImage", principal_account=B, principal_arn=USER_B) == "ImplicitDeny"
    assert pol.authorize(A, "app", "ecr:PutImage", principal_account=A,
                         principal_arn=f"arn:aws:iam::{A}:user/AKIAINTERN") == "ExplicitDeny"
    assert pol.authorize(A, "app", "ecr:PutImage", principal_account=A,
                         principal_arn=f"arn:aws:iam::{A}:user/AKIAOTHER") == "Allow"
    for name in (None, "missing", "Not A Name"):
        assert pol.authorize(A, name, "ecr:BatchGetImage", principal_account=B) == "ImplicitDeny"
        assert pol.authorize(A, name, "ecr:BatchGetImage", principal_account=A) == "Allow"
    pol.set_repository_policy("app", text(doc(allow("*", "ecr:*"))))
    assert pol.authorize(A, "app", "ecr:CreateRepository", principal_account=B) == "ImplicitDeny"
    assert pol.authorize(A, "app", "ecr:DeleteRepositoryPolicy", principal_account=B) == "Allow"
