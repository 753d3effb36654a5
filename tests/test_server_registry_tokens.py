"""Login passwords (GetAuthorizationToken → docker login → /v2/ Basic credentials): issued,
verified without shared state, refused when forged, expired, revoked or malformed."""

from __future__ import annotations

import base64

import pytest

from ecrstore.errors import AccessDeniedException, InvalidParameterException
from ecrstore.server.auth.credentials import Credential
from ecrstore.server.auth.registry_tokens import TOKEN_TTL, InvalidToken, RegistryTokens, basic_password
from ecrstore.server.awsjson.login import Logins

KEY = Credential("AKIAAAAAAAAAAAAAAAAA", "secret-one", "111111111111")
OTHER = Credential("AKIABBBBBBBBBBBBBBBB", "secret-two", "222222222222")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tokens(creds=(KEY, OTHER), clock=None) -> RegistryTokens:
    return RegistryTokens({c.access_key_id: c for c in creds}, clock=clock or Clock())


def test_a_password_names_its_key_and_registry_and_expires_in_12_hours():
    clock = Clock()
    t = tokens(clock=clock)
    password, expires = t.issue(KEY)
    assert expires == clock.now + TOKEN_TTL == clock.now + 12 * 3600
    login = t.verify(password)
    assert (login.access_key_id, login.registry_id, login.expires_at) == (KEY.access_key_id, "111111111111", expires)


def test_another_worker_with_the_same_credentials_file_verifies_it():
    password, _ = tokens().issue(OTHER)
    assert tokens().verify(password).registry_id == "222222222222"  # a separate instance: no shared state


def test_an_expired_password_is_refused():
    clock = Clock()
    t = tokens(clock=clock)
    password, expires = t.issue(KEY)
    clock.now = expires
    with pytest.raises(InvalidToken, match="expired"):
        t.verify(password)


def test_a_revoked_key_invalidates_its_passwords():
    password, _ = tokens().issue(KEY)
    with pytest.raises(InvalidToken):
        tokens(creds=(OTHER,)).verify(password)


def test_a_changed_secret_invalidates_the_passwords_it_signed():
    password, _ = tokens().issue(KEY)
    rotated = Credential(KEY.access_key_id, "another-secret", KEY.registry_id)
    with pytest.raises(InvalidToken):
        tokens(creds=(rotated,)).verify(password)


def _swap_payload(password: str, **changes) -> str:
    import orjson

    prefix, payload, mac = password.split(".")
    fields = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    fields.update(changes)
    forged = base64.urlsafe_b64encode(orjson.dumps(fields)).rstrip(b"=").decode()
    return f"{prefix}.{forged}.{mac}"


@pytest.mark.parametrize("changes", [{"r": "222222222222"}, {"e": 9_999_999_999}, {"k": OTHER.access_key_id}])
def test_a_payload_changed_under_its_signature_is_refused(changes):
    password, _ = tokens().issue(KEY)
    with pytest.raises(InvalidToken):
        tokens().verify(_swap_payload(password, **changes))


def test_every_one_byte_change_is_refused():
    password, _ = tokens().issue(KEY)
    t = tokens()
    for i in range(len(password)):
        for replacement in {"A", "-", "."} - {password[i]}:
            forged = password[:i] + replacement + password[i + 1:]
            with pytest.raises(InvalidToken):
                t.verify(forged)


@pytest.mark.parametrize("text", ["", "ecr1", "ecr1..", "ecr1.e30.", "ecr2.e30.AAAA", "ecr1.!!!.AAAA",
                                  "ecr1.W10.AAAA", "x" * 5000])
def test_malformed_passwords_are_refused_with_invalid_token(text):
    with pytest.raises(InvalidToken):
        tokens().verify(text)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_credentials_of_user_aws():
    assert basic_password(_basic("AWS", "pw:with:colons")) == "pw:with:colons"
    assert basic_password("basic " + base64.b64encode(b"AWS:x").decode()) == "x"


@pytest.mark.parametrize("header", [None, "", "Bearer abc", _basic("root", "pw"), "Basic !!!", "Basic " + "A" * 5000,
                                    "Basic " + base64.b64encode(b"no-colon").decode()])
def test_anything_else_is_no_password(header):
    assert basic_password(header) is None


def test_get_authorization_token_answers_docker_login_material():
    t = tokens()
    result = Logins(t, "000000000000").get_authorization_token(credential=KEY, proxy_endpoint="http://h:5000",
                                                               registry_id=KEY.registry_id)
    (data,) = result.authorization_data
    user, _, password = base64.b64decode(data.authorization_token).decode().partition(":")
    assert user == "AWS" and t.verify(password).registry_id == KEY.registry_id
    assert data.proxy_endpoint == "http://h:5000"
    assert data.expires_at == t.verify(password).expires_at


def test_get_authorization_token_refuses_another_registry():
    with pytest.raises(AccessDeniedException, match="222222222222"):
        Logins(tokens(), "000000000000").get_authorization_token(
            credential=KEY, proxy_endpoint="http://h", registry_id=KEY.registry_id, registry_ids=["222222222222"])


@pytest.mark.parametrize("ids", [[], ["1"], ["111111111111"] * 11])
def test_get_authorization_token_validates_registry_ids(ids):
    with pytest.raises(InvalidParameterException):
        Logins(tokens(), "000000000000").get_authorization_token(
            credential=KEY, proxy_endpoint="http://h", registry_id=KEY.registry_id, registry_ids=ids)


def test_without_authentication_any_registry_gets_a_login():
    result = Logins(None, "000000000000").get_authorization_token(
        credential=None, proxy_endpoint="http://h", registry_ids=["333333333333", "444444444444"])
    assert [d.proxy_endpoint for d in result.authorization_data] == ["http://h", "http://h"]
