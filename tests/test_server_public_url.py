"""``serve --public-url``: the address clients are told to use, in repositoryUri and in
GetAuthorizationToken's proxyEndpoint (and, by default, the address listened on)."""

from __future__ import annotations

from server_fixtures import KEY_A, repo_name, start_server


def test_repository_uri_and_proxy_endpoint_follow_the_public_url(tmp_path):
    server = start_server(tmp_path, keys=[KEY_A], extra=["--public-url", "https://10.1.2.3:8443/"])
    try:
        client = server.client()
        name = repo_name("public")
        repo = client.create_repository(repositoryName=name)["repository"]
        assert repo["repositoryUri"] == f"10.1.2.3:8443/{name}"
        described = client.describe_repositories(repositoryNames=[name])["repositories"][0]
        assert described["repositoryUri"] == f"10.1.2.3:8443/{name}"
        (login,) = client.get_authorization_token()["authorizationData"]
        assert login["proxyEndpoint"] == "https://10.1.2.3:8443"
    finally:
        server.stop()


def test_by_default_they_name_the_address_listened_on(tmp_path):
    server = start_server(tmp_path, keys=[KEY_A])
    try:
        client = server.client()
        name = repo_name("default")
        assert client.create_repository(repositoryName=name)["repository"]["repositoryUri"] == (
            f"127.0.0.1:{server.port}/{name}")
        assert client.get_authorization_token()["authorizationData"][0]["proxyEndpoint"] == server.endpoint
    finally:
        server.stop()
