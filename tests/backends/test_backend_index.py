"""The index contract (ecrstore.index.base), checked against every index backend."""

from __future__ import annotations

import functools
import hashlib
import threading

import pytest

from ecrstore.errors import InvalidParameterException, ServerException
from ecrstore.index.records import BlobRecord, ImageRecord, LinkRecord, RepoRecord, UploadRecord


def dg(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


def uid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def repo(t, registry: str = "111111111111", name: str = "app") -> RepoRecord:
    rec = RepoRecord(id=t.next_repo_id(), registry_id=registry, name=name, created_at=1.0)
    t.put_repo(rec)
    return rec


# --- repositories ------------------------------------------------------------------------------


def test_repositories_round_trip_in_name_order_per_registry(index):
    ix = index.instance
    made = ix.write(lambda t: [repo(t, "111111111111", n) for n in ("b", "a/c", "a")]
                    + [repo(t, "222222222222", "a")])
    with ix.read() as t:
        assert t.get_repo("111111111111", "a/c") == made[1]
        assert t.get_repo("333333333333", "a") is None
        assert [r.name for r in t.iter_repos("111111111111")] == ["a", "a/c", "b"]
        assert [r.name for r in t.iter_repos("111111111111", after="a")] == ["a/c", "b"]
        assert [r.registry_id for r in t.iter_repos("222222222222")] == ["222222222222"]
        assert t.counts().repositories == 4
    ix.write(lambda t: t.delete_repo(made[0]))
    with ix.read() as t:
        assert t.get_repo("111111111111", "b") is None


def test_repository_ids_are_never_reused(index):
    ix = index.instance
    first = ix.write(lambda t: repo(t))
    ix.write(lambda t: t.delete_repo(first))
    second = ix.write(lambda t: repo(t))
    assert second.id > first.id


def test_registry_links_never_reveal_another_registry(index):
    ix = index.instance

    def setup(t):
        a, b = repo(t, "111111111111"), repo(t, "222222222222")
        t.put_link(a.id, dg(1), LinkRecord(1, 1.0))
        t.put_link(b.id, dg(2), LinkRecord(1, 1.0))

    ix.write(setup)
    with ix.read() as t:
        assert t.registry_links("111111111111", [dg(1), dg(2), dg(3)]) == {dg(1)}
        assert t.registry_links("222222222222", [dg(1), dg(2)]) == {dg(2)}
        assert t.registry_links("111111111111", []) == set()


# --- uploads -----------------------------------------------------------------------------------


def test_uploads_are_found_by_id_repository_and_idleness(index):
    ix = index.instance
    r = ix.write(lambda t: repo(t))
    recs = {n: UploadRecord(r.id, created=float(n), updated=float(n), state=bytes([n]) * 3) for n in (3, 1, 2)}
    ix.write(lambda t: [t.put_upload(uid(n), rec) for n, rec in recs.items()])
    with ix.read() as t:
        assert t.get_upload(uid(2)) == recs[2]
        assert t.get_upload(uid(9)) is None
        assert [u for u, _ in t.uploads_idle_since(2.5)] == [uid(1), uid(2)]
        assert [u for u, _ in t.uploads_idle_since(10, limit=1)] == [uid(1)]
        assert sorted(t.repo_upload_ids(r.id)) == [uid(1), uid(2), uid(3)]
        assert dict(t.iter_uploads()) == {uid(n): rec for n, rec in recs.items()}
    newer = UploadRecord(r.id, created=1.0, updated=50.0, received=7, parts=1)
    ix.write(lambda t: t.put_upload(uid(1), newer, old=recs[1]))
    with ix.read() as t:
        assert t.get_upload(uid(1)) == newer
        assert [u for u, _ in t.uploads_idle_since(10)] == [uid(2), uid(3)]  # moved in the expiry order
    ix.write(lambda t: t.delete_upload(uid(2), recs[2]))
    with ix.read() as t:
        assert t.get_upload(uid(2)) is None and uid(2) not in t.repo_upload_ids(r.id)
        assert t.counts().uploads == 2


# --- blobs and links ---------------------------------------------------------------------------


def test_blobs_and_links(index):
    ix = index.instance

    def setup(t):
        a, b = repo(t, name="a"), repo(t, name="b")
        t.put_blob(dg(1), BlobRecord(10, 1.0))
        t.put_blob(dg(2), BlobRecord(20, 2.0))
        t.put_link(a.id, dg(1), LinkRecord(10, 1.0))
        t.put_link(b.id, dg(1), LinkRecord(10, 1.5, "application/x"))
        return a, b

    a, b = ix.write(setup)
    with ix.read() as t:
        assert t.get_blob(dg(1)) == BlobRecord(10, 1.0) and t.get_blob(dg(3)) is None
        assert dict(t.iter_blobs()) == {dg(1): BlobRecord(10, 1.0), dg(2): BlobRecord(20, 2.0)}
        assert sorted(t.blob_link_repos(dg(1))) == sorted([a.id, b.id])
        assert t.blob_is_linked(dg(1)) and not t.blob_is_linked(dg(2))
        assert t.get_link(b.id, dg(1)) == LinkRecord(10, 1.5, "application/x")
        assert t.get_links(b.id, [dg(1), dg(2)]) == {dg(1): (10, "application/x")}
        assert t.get_links(b.id, []) == {}
        assert list(t.iter_links(a.id)) == [(dg(1), LinkRecord(10, 1.0))]
        assert sorted((r, d) for r, d, _ in t.iter_all_links()) == sorted([(a.id, dg(1)), (b.id, dg(1))])
        counts = t.counts()
        assert (counts.blobs, counts.links) == (2, 2)
    ix.write(lambda t: (t.delete_link(a.id, dg(1)), t.delete_link(b.id, dg(1)), t.delete_blob(dg(2))))
    with ix.read() as t:
        assert not t.blob_is_linked(dg(1)) and t.get_blob(dg(2)) is None and t.get_link(a.id, dg(1)) is None


# --- images and tags ---------------------------------------------------------------------------


def test_images_tags_and_references(index):
    ix = index.instance
    r = ix.write(lambda t: repo(t))
    img = ImageRecord(5.0, 30, "application/vnd.oci.image.manifest.v1+json", "", b'{"x":1}')

    def setup(t):
        for n in (3, 1, 2):
            t.put_image(r.id, dg(n), img)
        t.put_tag(r.id, "v1", dg(1))
        t.put_tag(r.id, "latest", dg(1))
        t.add_layer_ref(r.id, dg(10), dg(1), "application/x")
        t.add_image_ref(r.id, dg(2), dg(3))

    ix.write(setup)
    order = sorted([dg(1), dg(2), dg(3)])
    with ix.read() as t:
        assert t.get_image(r.id, dg(1)) == img
        assert t.get_image(r.id, dg(1), with_manifest=False).size == 30
        assert t.get_image(r.id, dg(9)) is None
        assert t.image_count(r.id) == 3
        assert list(t.iter_image_digests(r.id)) == order
        assert list(t.iter_image_digests(r.id, order[1])) == order[1:]
        assert list(t.iter_image_digests(r.id, order[1], inclusive=False)) == order[2:]
        assert t.get_tag(r.id, "v1") == dg(1) and t.get_tag(r.id, "nope") is None
        assert t.image_tags(r.id, dg(1)) == ["latest", "v1"]
        assert t.layer_is_referenced(r.id, dg(10)) and not t.layer_is_referenced(r.id, dg(11))
        assert t.image_is_referenced(r.id, dg(2)) and not t.image_is_referenced(r.id, dg(3))
    ix.write(lambda t: (t.delete_tag(r.id, "v1", dg(1)), t.delete_layer_ref(r.id, dg(10), dg(1)),
                        t.delete_image_ref(r.id, dg(2), dg(3)), t.delete_image(r.id, dg(3))))
    with ix.read() as t:
        assert t.image_tags(r.id, dg(1)) == ["latest"]
        assert not t.layer_is_referenced(r.id, dg(10)) and not t.image_is_referenced(r.id, dg(2))
        assert t.image_count(r.id) == 2


def test_a_tag_survives_any_utf8(index):
    ix = index.instance
    r = ix.write(lambda t: repo(t))
    tag = "ünïcödé-" + "x" * 100
    ix.write(lambda t: (t.put_image(r.id, dg(1), ImageRecord(1.0, 1, "m", "", b"{}")), t.put_tag(r.id, tag, dg(1))))
    with ix.read() as t:
        assert t.image_tags(r.id, dg(1)) == [tag] and t.get_tag(r.id, tag) == dg(1)


def test_tags_iterate_in_utf8_byte_order_after_a_tag(index):
    ix = index.instance
    a, b = ix.write(lambda t: (repo(t, name="a"), repo(t, name="b")))
    tags = {"b": 1, "a": 2, "A": 3, "a-b": 4, "a.b": 5, "ab": 6, "ä": 7, "z": 8, "_": 9, "0": 10, "a\u00ff": 11}

    def setup(t):
        for tag, n in tags.items():
            t.put_image(a.id, dg(n), ImageRecord(1.0, 1, "m", "", b"{}"))
            t.put_tag(a.id, tag, dg(n))
        t.put_image(b.id, dg(99), ImageRecord(1.0, 1, "m", "", b"{}"))
        t.put_tag(b.id, "0-in-b", dg(99))  # sorts among a's tags: never listed with them

    ix.write(setup)
    order = sorted(tags, key=str.encode)
    with ix.read() as t:
        assert list(t.iter_tags(a.id)) == [(tag, dg(tags[tag])) for tag in order]
        for i, after in enumerate(order):
            assert [tag for tag, _ in t.iter_tags(a.id, after)] == order[i + 1:]
        assert [tag for tag, _ in t.iter_tags(a.id, "a0")] == [tag for tag in order if tag.encode() > b"a0"]
        assert list(t.iter_tags(b.id)) == [("0-in-b", dg(99))]
        assert list(t.iter_tags(b.id, "0-in-b")) == []
        assert list(t.iter_tags(a.id + b.id + 1)) == []
    ix.write(lambda t: t.delete_tag(a.id, "ab", dg(tags["ab"])))
    with ix.read() as t:
        assert [tag for tag, _ in t.iter_tags(a.id, "a.b")] == [tag for tag in order if tag.encode() > b"a.b"
                                                                   and tag != "ab"]


def test_referrers_are_kept_per_repository_and_subject(index):
    ix = index.instance
    a, b = ix.write(lambda t: (repo(t, name="a"), repo(t, name="b")))
    subject, other = dg(1), dg(2)  # neither is stored as an image: a subject need not be

    def setup(t):
        for n in (12, 10, 11):
            t.add_referrer(a.id, subject, dg(n))
        t.add_referrer(a.id, subject, dg(10))  # added twice: listed once
        t.add_referrer(a.id, other, dg(13))
        t.add_referrer(b.id, subject, dg(14))
        return t.referrers(a.id, subject)  # a write sees its own additions

    assert ix.write(setup) == sorted([dg(10), dg(11), dg(12)])
    with ix.read() as t:
        assert t.referrers(a.id, subject) == sorted([dg(10), dg(11), dg(12)])
        assert t.referrers(a.id, other) == [dg(13)]
        assert t.referrers(b.id, subject) == [dg(14)]
        assert t.referrers(b.id, other) == [] and t.referrers(a.id, dg(3)) == []
    ix.write(lambda t: (t.delete_referrer(a.id, subject, dg(11)), t.delete_referrer(a.id, subject, dg(99))))
    with ix.read() as t:
        assert t.referrers(a.id, subject) == sorted([dg(10), dg(12)])
        assert t.referrers(b.id, subject) == [dg(14)]


# --- control-plane documents -------------------------------------------------------------------


def test_documents_are_kept_per_kind_in_key_order(index):
    ix = index.instance

    def setup(t):
        t.put_doc("policy", "b", b"2")
        t.put_doc("policy", "a/\u00e9", b"1")
        t.put_doc("policy", "a", b"0")
        t.put_doc("policyx", "a", b"other kind")  # a kind that extends another shares nothing
        t.put_doc("rule", "a", b"r")
        return t.get_doc("policy", "a")  # a write sees its own puts

    assert ix.write(setup) == b"0"
    with ix.read() as t:
        assert list(t.iter_docs("policy")) == [("a", b"0"), ("a/\u00e9", b"1"), ("b", b"2")]
        assert list(t.iter_docs("policy", "a/")) == [("a/\u00e9", b"1")]
        assert list(t.iter_docs("policyx")) == [("a", b"other kind")]
        assert t.get_doc("rule", "a") == b"r" and t.get_doc("rule", "b") is None
    assert ix.write(lambda t: (t.put_doc("policy", "a", b"new"), t.delete_doc("policy", "b"),
                               t.delete_doc("policy", "missing"))) == (None, True, False)
    with ix.read() as t:
        assert list(t.iter_docs("policy")) == [("a", b"new"), ("a/\u00e9", b"1")]
        assert list(t.iter_docs("none")) == []


# --- the transaction contract ------------------------------------------------------------------


def test_a_failed_write_changes_nothing_and_propagates(index):
    ix = index.instance

    def fails(t):
        repo(t, name="ghost")
        t.put_blob(dg(1), BlobRecord(1, 1.0))
        raise InvalidParameterException("no")

    with pytest.raises(InvalidParameterException):
        ix.write(fails)
    with ix.read() as t:
        assert t.get_repo("111111111111", "ghost") is None and t.get_blob(dg(1)) is None


def test_a_write_answers_what_its_function_returns(index):
    assert index.instance.write(lambda t: 42) == 42


def test_a_read_is_a_snapshot(index):
    ix = index.instance
    ix.write(lambda t: t.put_blob(dg(1), BlobRecord(1, 1.0)))
    with ix.read() as t:
        ix.write(lambda w: (w.put_blob(dg(2), BlobRecord(2, 2.0)), w.delete_blob(dg(1))))
        assert t.get_blob(dg(1)) == BlobRecord(1, 1.0) and t.get_blob(dg(2)) is None
    with ix.read() as t:
        assert t.get_blob(dg(1)) is None and t.get_blob(dg(2)) == BlobRecord(2, 2.0)


def test_writes_are_visible_to_their_own_transaction(index):
    def fn(t):
        t.put_blob(dg(1), BlobRecord(1, 1.0))
        return t.get_blob(dg(1))

    assert index.instance.write(fn) == BlobRecord(1, 1.0)


def test_concurrent_read_modify_writes_lose_nothing(index):
    """Checks made inside a write hold at commit: racing increments all count."""
    ix = index.instance
    r = ix.write(lambda t: repo(t))
    threads, rounds = 4, 50

    def bump(t):
        cur = t.get_upload(uid(1))
        n = 0 if cur is None else cur.parts
        t.put_upload(uid(1), UploadRecord(r.id, 1.0, 1.0, parts=n + 1), old=cur)

    def worker():
        for _ in range(rounds):
            ix.write(bump)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join(60)
    with ix.read() as t:
        assert t.get_upload(uid(1)).parts == threads * rounds


def _read_then_write(ix, digest: bytes) -> BlobRecord | None:
    with ix.read() as t:
        seen = t.get_blob(digest)
    ix.write(lambda t: t.put_blob(dg(2), BlobRecord(2, 1.0)))
    return seen


def test_another_process_sees_commits_and_its_commits_are_seen(index):
    ix = index.instance
    ix.write(lambda t: t.put_blob(dg(1), BlobRecord(1, 1.0)))
    assert index.in_other_process(_read_then_write, dg(1)) == BlobRecord(1, 1.0)
    with ix.read() as t:
        assert t.get_blob(dg(2)) == BlobRecord(2, 1.0)


def _read_only_attempt(ix, digest: bytes) -> tuple[bool, BlobRecord | None, str]:
    with ix.read() as t:
        seen = t.get_blob(digest)
    try:
        ix.write(lambda t: t.put_blob(dg(2), BlobRecord(2, 1.0)))
    except ServerException as e:
        return ix.read_only, seen, type(e).__name__
    return ix.read_only, seen, "written"


def test_a_read_only_handle_reads_and_refuses_writes(index):
    ix = index.instance
    ix.write(lambda t: t.put_blob(dg(1), BlobRecord(1, 1.0)))
    index.reopen = functools.partial(index.reopen, read_only=True)
    assert index.in_other_process(_read_only_attempt, dg(1)) == (True, BlobRecord(1, 1.0), "ServerException")
    with ix.read() as t:
        assert t.get_blob(dg(2)) is None


def test_close_is_idempotent(index):
    index.instance.close()
    index.instance.close()
