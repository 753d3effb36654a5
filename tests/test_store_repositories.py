"""Repository operations of the engine: create, describe (with pagination), delete."""

from __future__ import annotations

import pytest
from storeutil import open_store, push, stored_uploads

from ecrstore import EncryptionConfiguration, Store, Tag, errors


@pytest.fixture
def store(tmp_path, backends):
    with open_store(tmp_path / "store", **backends) as s:
        yield s


def test_create_returns_ecr_shaped_repository(store):
    repo = store.create_repository("team/app")
    assert repo.repository_name == "team/app"
    assert repo.registry_id == "000000000000"
    assert repo.repository_arn == "arn:aws:ecr:us-east-1:000000000000:repository/team/app"
    assert repo.repository_uri.endswith("/team/app")
    assert repo.repository_uri.startswith("000000000000.dkr.ecr.us-east-1.")
    assert repo.image_tag_mutability == "MUTABLE"
    assert repo.encryption_configuration.encryption_type == "AES256"
    assert repo.image_scanning_configuration.scan_on_push is False
    assert repo.created_at > 0


@pytest.mark.parametrize(
    "name",
    ["a", "A-b", "-ab", "ab-", "a..b", "a/", "/ab", "a//b", "ab_", "a___b", "x" * 257, "ab c", "ab:c"],
)
def test_invalid_names_are_refused(store, name):
    with pytest.raises(errors.InvalidParameterException) as ei:
        store.create_repository(name)
    assert "repositoryName" in ei.value.message
    assert store.describe_repositories().repositories == ()


@pytest.mark.parametrize("name", ["ab", "a-b", "a--b", "a.b", "a_b", "a__b", "a/b/c", "0a", "x" * 256])
def test_valid_names_are_accepted(store, name):
    assert store.create_repository(name).repository_name == name


def test_duplicate_name_in_same_registry(store):
    store.create_repository("app")
    with pytest.raises(errors.RepositoryAlreadyExistsException) as ei:
        store.create_repository("app")
    assert ei.value.message == "The repository with name 'app' already exists in the registry with id '000000000000'"
    # another registry is another namespace
    assert store.create_repository("app", registry_id="111111111111").registry_id == "111111111111"


@pytest.mark.parametrize("registry", ["1234", "12345678901a", "", 123456789012])
def test_bad_registry_id(store, registry):
    with pytest.raises(errors.InvalidParameterException):
        store.create_repository("app", registry_id=registry)


def test_options_are_validated_and_kept(store):
    with pytest.raises(errors.InvalidParameterException):
        store.create_repository("app", image_tag_mutability="SOMETIMES")
    with pytest.raises(errors.InvalidParameterException):
        store.create_repository("app", encryption_configuration=EncryptionConfiguration("ROT13"))
    with pytest.raises(errors.InvalidParameterException):
        store.create_repository("app", encryption_configuration=EncryptionConfiguration("AES256", "k"))
    with pytest.raises(errors.TooManyTagsException):
        store.create_repository("app", tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    with pytest.raises(errors.InvalidTagParameterException):
        store.create_repository("app", tags=[Tag("", "v")])
    assert store.describe_repositories().repositories == ()
    repo = store.create_repository(
        "app", image_tag_mutability="IMMUTABLE",
        encryption_configuration=EncryptionConfiguration("KMS", "arn:aws:kms:us-east-1:000000000000:key/x"),
        tags=[Tag("team", "core")],
    )
    assert repo.image_tag_mutability == "IMMUTABLE"
    assert repo.encryption_configuration.kms_key.endswith("key/x")


def test_describe_named_and_missing(store):
    store.create_repository("one")
    store.create_repository("two")
    got = store.describe_repositories(repository_names=["two", "one"]).repositories
    assert [r.repository_name for r in got] == ["two", "one"]
    with pytest.raises(errors.RepositoryNotFoundException) as ei:
        store.describe_repositories(repository_names=["one", "three"])
    assert "'three'" in ei.value.message
    with pytest.raises(errors.InvalidParameterException):
        store.describe_repositories(repository_names=["one"], max_results=5)


def test_describe_pagination_walks_everything_once(store):
    names = sorted(f"repo-{i:03d}" for i in range(23))
    for n in reversed(names):
        store.create_repository(n)
    seen, token, pages = [], None, 0
    while True:
        page = store.describe_repositories(max_results=5, next_token=token)
        seen += [r.repository_name for r in page.repositories]
        pages += 1
        token = page.next_token
        if token is None:
            break
    assert seen == names and pages == 5
    assert store.describe_repositories().next_token is None
    with pytest.raises(errors.InvalidParameterException):
        store.describe_repositories(next_token="not-a-token")
    with pytest.raises(errors.InvalidParameterException):
        store.describe_repositories(max_results=0)


def test_delete_removes_links_and_uploads(store, tmp_path):
    store.create_repository("app")
    push(store, "app", b"x" * 3000)
    pending = store.initiate_layer_upload("app").upload_id
    store.upload_layer_part("app", pending, 0, 9, b"0123456789")
    deleted = store.delete_repository("app")
    assert deleted.repository_name == "app"
    with pytest.raises(errors.RepositoryNotFoundException):
        store.delete_repository("app")
    # re-created under the same name: nothing of the old one is visible
    store.create_repository("app")
    with pytest.raises(errors.UploadNotFoundException):
        store.upload_layer_part("app", pending, 10, 19, b"0123456789")
    assert list(store.list_layers("app")) == []
    assert store.stats().uploads_in_progress == 0
    assert stored_uploads(store) == []


def test_per_registry_quotas(tmp_path):
    with Store(tmp_path / "s", max_repositories_per_registry=3, max_uploads_per_registry=2) as s:
        for n in ("a1", "a2", "a3"):
            s.create_repository(n)
        with pytest.raises(errors.LimitExceededException, match="maximum of 3 repositories"):
            s.create_repository("a4")
        s.create_repository("b1", registry_id="222222222222")  # another tenant is not affected
        s.delete_repository("a3")
        s.create_repository("a4")
        first = s.initiate_layer_upload("a1").upload_id
        s.initiate_layer_upload("a2")
        with pytest.raises(errors.LimitExceededException, match="maximum of 2 uploads"):
            s.initiate_layer_upload("a1")
        s.initiate_layer_upload("b1", registry_id="222222222222")
        s.abort_upload(first)
        s.initiate_layer_upload("a1")
        s.delete_repository("a2")  # its upload goes with it
        s.initiate_layer_upload("a4")
    # the counts survive reopening, and are rebuilt for a store that never kept them
    with Store(tmp_path / "s", max_repositories_per_registry=3, max_uploads_per_registry=2) as s:
        with pytest.raises(errors.LimitExceededException):
            s.initiate_layer_upload("a1")
        with s._index.read() as t:
            assert (t.count_repos("000000000000"), t.count_uploads("000000000000")) == (2, 2)
        def forget(t):
            t._t.delete(b"registry_counts", db=t._db["meta"])
            for k in (b"R000000000000", b"U000000000000", b"R222222222222", b"U222222222222"):
                t._t.delete(k, db=t._db["counts"])
        s._index.write(forget)
    with Store(tmp_path / "s") as s:
        with s._index.read() as t:
            assert (t.count_repos("000000000000"), t.count_uploads("000000000000")) == (2, 2)
            assert (t.count_repos("222222222222"), t.count_uploads("222222222222")) == (1, 1)
