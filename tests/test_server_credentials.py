"""The credentials file: parsing, errors, and the file ``serve`` creates in a store."""

from __future__ import annotations

import os
import re
import stat
import threading

import pytest

from ecrstore.server.auth.credentials import (
    CredentialsFileError,
    ensure_credentials_file,
    format_credentials,
    generate_credential,
    load_credentials,
    parse_credentials,
)


def test_parse_with_comments_and_blank_lines():
    creds = parse_credentials(
        "# keys\n\nAKIAAAAAAAAAAAAAAAAA secret/one+x 111111111111  # first\n"
        "   AKIDBBBB   s2   222222222222\n"
    )
    assert set(creds) == {"AKIAAAAAAAAAAAAAAAAA", "AKIDBBBB"}
    assert creds["AKIAAAAAAAAAAAAAAAAA"].secret_access_key == "secret/one+x"
    assert creds["AKIDBBBB"].registry_id == "222222222222"


@pytest.mark.parametrize("line, reason", [
    ("AKIDAAAA secret", "expected 'ACCESS_KEY_ID SECRET_ACCESS_KEY REGISTRY_ID'"),
    ("AKIDAAAA secret 12345", "registry id must be 12 digits"),
    ("AK/D secret 111111111111", "access key id"),
    ("AKIDAAAA secret 111111111111 extra", "got 4 field"),
])
def test_malformed_lines_name_file_and_line(line, reason):
    with pytest.raises(CredentialsFileError, match=re.escape(reason)) as e:
        parse_credentials(f"# header\n{line}\n", "creds.txt")
    assert "creds.txt:2" in str(e.value)


def test_duplicate_key_is_an_error():
    with pytest.raises(CredentialsFileError, match="appears twice"):
        parse_credentials("AKIDAAAA a 111111111111\nAKIDAAAA b 222222222222\n")


def test_secret_never_in_repr_or_errors():
    cred = parse_credentials("AKIDAAAA topsecretvalue 111111111111")["AKIDAAAA"]
    assert "topsecretvalue" not in repr(cred)
    with pytest.raises(CredentialsFileError) as e:
        parse_credentials("AKIDAAAA topsecretvalue 1111")
    assert "topsecretvalue" not in str(e.value)


def test_load_missing_and_empty_files(tmp_path):
    with pytest.raises(CredentialsFileError, match="cannot read"):
        load_credentials(tmp_path / "absent")
    (tmp_path / "empty").write_text("# nothing\n")
    (tmp_path / "empty").chmod(0o600)
    with pytest.raises(CredentialsFileError, match="no access key"):
        load_credentials(tmp_path / "empty")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_file_others_may_read_is_refused(tmp_path, mode):
    path = tmp_path / "credentials"
    path.write_text("AKIDAAAA topsecretvalue 111111111111\n")
    path.chmod(mode)
    with pytest.raises(CredentialsFileError, match="chmod 600"):
        load_credentials(path)
    path.chmod(0o600)
    assert list(load_credentials(path)) == ["AKIDAAAA"]


def test_the_source_follows_the_file(tmp_path):
    import os
    import time

    from ecrstore.server.auth.credentials import CredentialsSource

    path = tmp_path / "credentials"
    path.write_text("AKIDAAAA secret1 111111111111\nAKIDBBBB secret2 222222222222\n")
    path.chmod(0o600)
    source = CredentialsSource(path, interval=0.0)
    assert set(source.current()) == {"AKIDAAAA", "AKIDBBBB"}
    path.write_text("AKIDAAAA secret1 111111111111\n")  # a key removed
    os.utime(path, ns=(time.time_ns() + 10**9,) * 2)
    assert set(source.current()) == {"AKIDAAAA"}
    path.write_text("broken line\n")  # a half-saved edit: the last good keys stay
    os.utime(path, ns=(time.time_ns() + 2 * 10**9,) * 2)
    assert set(source.current()) == {"AKIDAAAA"}
    path.unlink()  # the file removed: every key is revoked
    assert dict(source.current()) == {}


def test_generated_keys_look_like_aws_keys():
    cred = generate_credential("123456789012")
    assert re.fullmatch(r"AKIA[A-Z2-7]{16}", cred.access_key_id)
    assert re.fullmatch(r"[A-Za-z0-9+/]{40}", cred.secret_access_key)
    assert cred.registry_id == "123456789012"
    assert generate_credential("123456789012") != cred
    with pytest.raises(ValueError):
        generate_credential("12")


def test_format_round_trips():
    creds = {c.access_key_id: c for c in (generate_credential("111111111111"), generate_credential("222222222222"))}
    assert parse_credentials(format_credentials(creds)) == creds


def test_ensure_creates_a_private_file_once(tmp_path):
    path = tmp_path / "credentials"
    creds, created = ensure_credentials_file(path, "000000000000")
    assert created
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, created_again = ensure_credentials_file(path, "000000000000")
    assert not created_again and again == creds
    assert [p.name for p in tmp_path.iterdir()] == ["credentials"]  # no temporary left behind


def test_concurrent_creation_agrees_on_one_key(tmp_path):
    path = tmp_path / "credentials"
    results = []
    barrier = threading.Barrier(8)

    def create():
        barrier.wait()
        results.append(ensure_credentials_file(path, "000000000000"))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(created for _, created in results) == 1
    assert len({tuple(creds) for creds, _ in results}) == 1
    assert load_credentials(path) == results[0][0]
