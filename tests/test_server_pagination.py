"""botocore's paginators against a real server: ListImages, DescribeImages and
DescribeRepositories walk every item exactly once, also while images are being pushed."""

from __future__ import annotations

import itertools
import json
import threading

import pytest
from server_fixtures import KEY_B, push_layer, repo_name, unique_bytes


@pytest.fixture(scope="module")
def ecr_server(ecr_server_per_backend):
    """This module runs on both backend pairs."""
    return ecr_server_per_backend


pytestmark = pytest.mark.timeout(180)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
N_IMAGES = 25


@pytest.fixture
def ecr(ecr_server):
    return ecr_server.client()


class Repo:
    """A repository with one config and one layer; images differ only by a note."""

    def __init__(self, ecr) -> None:
        self.ecr = ecr
        self.name = repo_name("pages")
        ecr.create_repository(repositoryName=self.name)
        self.config = b'{"os": "linux"}'
        self.config_digest = push_layer(ecr, self.name, self.config)
        self.layer = unique_bytes(1200)
        self.layer_digest = push_layer(ecr, self.name, self.layer)
        self._notes = itertools.count()

    def push(self, *tags: str, ecr=None) -> str:
        """Put a new image (with each of ``tags``) through ``ecr`` (default: the repo's client)."""
        ecr = ecr or self.ecr
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": len(self.config), "digest": self.config_digest},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(self.layer), "digest": self.layer_digest}],
            "note": f"{next(self._notes)}-{unique_bytes(4).hex()}",
        })
        if not tags:
            return ecr.put_image(repositoryName=self.name, imageManifest=manifest)["image"]["imageId"]["imageDigest"]
        digest = None
        for tag in tags:
            digest = ecr.put_image(repositoryName=self.name, imageManifest=manifest,
                                        imageTag=tag)["image"]["imageId"]["imageDigest"]
        return digest

    def delete(self) -> None:
        self.ecr.delete_repository(repositoryName=self.name, force=True)


@pytest.fixture
def images(ecr):
    """25 images: most with one tag, every fifth with two, every seventh untagged.
    Answers (repo, the expected ListImages pairs, the digests)."""
    repo = Repo(ecr)
    pairs: set[tuple[str, str | None]] = set()
    digests: set[str] = set()
    for i in range(N_IMAGES):
        tags = () if i % 7 == 3 else ((f"t{i}", f"t{i}-extra") if i % 5 == 0 else (f"t{i}",))
        digest = repo.push(*tags)
        digests.add(digest)
        pairs.update((digest, t) for t in tags) if tags else pairs.add((digest, None))
    yield repo, pairs, digests
    repo.delete()


def _pairs(ids) -> list[tuple[str, str | None]]:
    return [(i["imageDigest"], i.get("imageTag")) for i in ids]


@pytest.mark.parametrize("page_size", [1, 4, 7, 100])
def test_list_images_paginator(ecr, images, page_size):
    repo, expected, _ = images
    pages = list(ecr.get_paginator("list_images").paginate(
        repositoryName=repo.name, PaginationConfig={"PageSize": page_size}))
    walked = [p for page in pages for p in _pairs(page["imageIds"])]
    assert len(walked) == len(set(walked)), "an image id came twice"
    assert set(walked) == expected
    assert all(len(page["imageIds"]) <= page_size for page in pages)
    assert len(pages) == max(1, -(-len(expected) // page_size))
    assert "nextToken" not in pages[-1]


def test_list_images_paginator_with_filter_and_resume(ecr, images):
    repo, expected, _ = images
    tagged = {p for p in expected if p[1] is not None}
    paginator = ecr.get_paginator("list_images")
    walked = [p for page in paginator.paginate(repositoryName=repo.name, filter={"tagStatus": "TAGGED"},
                                               PaginationConfig={"PageSize": 4})
              for p in _pairs(page["imageIds"])]
    assert len(walked) == len(set(walked)) and set(walked) == tagged

    # MaxItems stops early with a token; StartingToken resumes where it stopped.
    first = paginator.paginate(repositoryName=repo.name,
                               PaginationConfig={"PageSize": 3, "MaxItems": 10}).build_full_result()
    assert len(first["imageIds"]) == 10 and first.get("NextToken")
    rest = paginator.paginate(repositoryName=repo.name,
                              PaginationConfig={"PageSize": 3, "StartingToken": first["NextToken"]}).build_full_result()
    both = _pairs(first["imageIds"]) + _pairs(rest["imageIds"])
    assert len(both) == len(set(both)) and set(both) == expected


@pytest.mark.parametrize("page_size", [1, 4, 10])
def test_describe_images_paginator(ecr, images, page_size):
    repo, _, digests = images
    pages = list(ecr.get_paginator("describe_images").paginate(
        repositoryName=repo.name, PaginationConfig={"PageSize": page_size}))
    walked = [d["imageDigest"] for page in pages for d in page["imageDetails"]]
    assert len(walked) == len(set(walked)) == len(digests)
    assert set(walked) == digests
    assert all(len(page["imageDetails"]) <= page_size for page in pages)
    untagged = [d for page in pages for d in page["imageDetails"] if "imageTags" not in d]
    assert len(untagged) == sum(1 for i in range(N_IMAGES) if i % 7 == 3)


def test_paginators_stable_while_images_are_pushed(ecr, images):
    """New images land anywhere in digest order between pages: everything that existed before
    the walk comes exactly once, nothing comes twice."""
    repo, expected, digests = images
    pushed_during: list[str] = []

    walked: list[tuple[str, str | None]] = []
    for i, page in enumerate(ecr.get_paginator("list_images").paginate(
            repositoryName=repo.name, PaginationConfig={"PageSize": 3})):
        walked += _pairs(page["imageIds"])
        pushed_during.append(repo.push(f"during-list-{i}"))
        pushed_during.append(repo.push())  # untagged too
    assert len(walked) == len(set(walked)), "an image id came twice"
    assert expected <= set(walked), f"missed: {expected - set(walked)}"
    assert {digest for digest, _ in set(walked) - expected} <= set(pushed_during)

    before = digests | set(pushed_during)
    described: list[str] = []
    for i, page in enumerate(ecr.get_paginator("describe_images").paginate(
            repositoryName=repo.name, PaginationConfig={"PageSize": 4})):
        described += [d["imageDigest"] for d in page["imageDetails"]]
        repo.push(f"during-describe-{i}")
    assert len(described) == len(set(described))
    assert before <= set(described)


def test_paginators_while_another_thread_pushes(ecr_server, images):
    """The same with a real concurrent pusher (its own client and connection)."""
    repo, expected, _ = images
    walker, pusher = ecr_server.client(), ecr_server.client()
    stop = threading.Event()
    errors: list[BaseException] = []

    def push_until_stopped() -> None:
        try:
            n = 0
            while not stop.is_set() and n < 200:
                repo.push(f"bg-{n}", ecr=pusher)
                n += 1
        except BaseException as e:  # reported by the test below
            errors.append(e)

    thread = threading.Thread(target=push_until_stopped)
    thread.start()
    try:
        for _ in range(3):
            walked = [p for page in walker.get_paginator("list_images").paginate(
                repositoryName=repo.name, PaginationConfig={"PageSize": 2}) for p in _pairs(page["imageIds"])]
            assert len(walked) == len(set(walked))
            assert expected <= set(walked)
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors


def test_describe_repositories_paginator(ecr_server):
    # Registry B's key: a registry the other tests hardly use.
    ecr = ecr_server.client(KEY_B)
    names = {repo_name("walk") for _ in range(N_IMAGES)}
    for name in names:
        ecr.create_repository(repositoryName=name)
    try:
        for page_size in (1, 4, 9):
            created_during: set[str] = set()
            walked: list[str] = []
            pages = ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": page_size})
            for number, page in enumerate(pages):
                assert len(page["repositories"]) <= page_size
                walked += [r["repositoryName"] for r in page["repositories"]]
                # Names made during the walk mostly sort after its cursor: made on every page,
                # they would keep the walk going; on its first pages, they come up later in it.
                if number < 6:
                    extra = repo_name("walk-during")
                    ecr.create_repository(repositoryName=extra)
                    created_during.add(extra)
            assert len(walked) == len(set(walked)), "a repository came twice"
            assert names <= set(walked)
            for name in created_during:
                ecr.delete_repository(repositoryName=name)
    finally:
        for name in names:
            ecr.delete_repository(repositoryName=name)
