"""``ecrstore serve``: ECR's HTTP API over a store.

The server package is imported only here and only when the command runs (or its help is
shown), so the other commands work without the ``server`` extra; without it this command says
which package is missing and how to install it. Defaults the server owns (body limits,
timeouts, threads, URL lifetime) come from :class:`ecrstore.server.ServerConfig`: an option not
given is not passed on.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
import sys
import urllib.parse
from types import ModuleType
from typing import Any

from .common import (
    ENGINE_DEFAULTS,
    EXIT_FAILURE,
    EXIT_OK,
    SERVE_DEFAULTS,
    CliError,
    add_global_options,
    human_bytes,
    non_negative_int,
    parse_size,
    port_number,
    positive_int,
    seconds_arg,
    store_options,
)

__all__ = ["add_commands"]

log = logging.getLogger("ecrstore.cli")

#: What ``pip install 'ecrstore[server]'`` adds; an ImportError of anything else is a bug.
_SERVER_EXTRA = frozenset({"uvicorn", "orjson", "pybase64", "botocore"})
#: serve's option (its argparse dest) -> the ServerConfig field it sets.
_CONFIG_FIELDS = {
    "max_body_size": "max_body_bytes",
    "body_timeout": "body_idle_timeout",
    "body_total_timeout": "body_total_timeout",
    "max_header_size": "max_head_bytes",
    "head_timeout": "head_timeout",
    "max_connections": "max_connections",
    "max_buffered": "max_buffered_bytes",
    "purge_interval": "purge_interval",
    "lifecycle_interval": "lifecycle_interval",
    "pull_through_refresh": "pull_through_refresh",
    "threads": "threads",
    "download_url_ttl": "download_url_ttl",
    "scanner_timeout": "scanner_timeout",
}


def _load_server() -> ModuleType:
    try:
        # The runner imports uvicorn only once it starts serving: too late for a clear message.
        import uvicorn  # noqa: F401

        from .. import server
    except ImportError as e:
        missing = (e.name or "").partition(".")[0]
        if missing not in _SERVER_EXTRA:
            raise
        raise CliError(f"ecrstore serve needs the server extra ({missing} is not installed)",
                       hint="install it with: pip install 'ecrstore[server]'") from e
    return server


def _check_address(host: str, port: int) -> None:
    """Bind the address once and let it go, so that a port in use (or an address this host
    does not have) is one line and exit status 1 before any worker starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise CliError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
        try:
            sock.bind(address)
        except OSError as e:
            raise CliError(f"cannot listen on {host}:{port}: {(e.strerror or str(e)).lower()}") from e


def _public_url(text: str) -> str:
    """``--public-url``: an http(s) URL of a host (and port), nothing after it."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") \
            or parts.query or parts.fragment:
        raise CliError(f"--public-url must be http(s)://host[:port], not {text!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _upstream_secrets(path: str | None) -> str | None:
    """``--upstream-secrets``: checked here (readable, private, well-formed), read by each worker."""
    if path is None:
        return None
    from ..server.oci.upstream import SecretsFileError, load_secrets

    try:
        load_secrets(path)
    except SecretsFileError as e:
        raise CliError(str(e)) from e
    return os.path.abspath(path)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM (exit 0 after a graceful stop). Creates the store if needed;
    without --credentials or --no-auth uses (and on first start creates and prints) the key
    pair in <store>/credentials."""
    server = _load_server()
    from ..server import prepare_credentials, prepare_store, usage_hint

    _check_address(args.host, args.port)
    public_url = _public_url(args.public_url) if args.public_url else server.endpoint_url(args.host, args.port)
    options = {**store_options(args), "registry_host": urllib.parse.urlsplit(public_url).netloc}
    prepare_store(args.store, options)
    credentials_file = None
    if not args.no_auth:
        try:
            credentials_file, creds, created = prepare_credentials(
                args.store, args.credentials, options.get("registry_id", ENGINE_DEFAULTS["registry_id"]))
        except server.CredentialsFileError as e:
            raise CliError(str(e)) from e
        if not args.credentials:
            print(usage_hint(credentials_file, next(iter(creds.values())), args.host, args.port, created,
                             public_url), file=sys.stderr, end="")
    else:
        log.warning("authentication is off (--no-auth): any client can use this server")
    if args.fail_next_upload_parts:
        log.warning("testing hook on: the first %d UploadLayerPart call(s) per worker will answer 500",
                    args.fail_next_upload_parts)
    if args.scanner is not None:
        from ..transfer.scanner import parse_command

        try:
            parse_command(args.scanner)
        except ValueError as e:
            raise CliError(f"--scanner: {e}") from e
    given = {field: getattr(args, dest) for dest, field in _CONFIG_FIELDS.items() if getattr(args, dest) is not None}
    config = server.ServerConfig(
        store_path=os.path.abspath(args.store),
        store_options=options,
        auth=not args.no_auth,
        credentials_file=os.path.abspath(credentials_file) if credentials_file else None,
        fail_upload_parts=args.fail_next_upload_parts,
        public_url=public_url,
        create_on_push=args.create_on_push,
        upstream_secrets=_upstream_secrets(args.upstream_secrets),
        scanner_command=args.scanner,
        **given,
    )
    status = server.serve(config, host=args.host, port=args.port, workers=args.workers,
                          log_level=args.log_level, access_log=not args.no_access_log)
    return EXIT_OK if status == 0 else EXIT_FAILURE


class _ServerDefaultsHelp(argparse.HelpFormatter):
    """Adds the server's own default to the help of each option it owns, importing the
    server only when serve's help is shown."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        field = _CONFIG_FIELDS.get(action.dest)
        if text is None or text == argparse.SUPPRESS or field is None:
            return text
        return f"{text} (default: {_config_default(field)})".replace("%", "%%")


def _config_default(field: str) -> str:
    try:
        config = _load_server().ServerConfig
    except CliError:
        return "the server's; needs the server extra"
    value = next(f.default for f in dataclasses.fields(config) if f.name == field)
    return f"{value:,}" if isinstance(value, int) else str(value)


def add_commands(commands: Any) -> None:
    """Register ``serve`` on the main parser's subparsers."""
    p = commands.add_parser(
        "serve", help="serve ECR's API (AWS JSON 1.1) over HTTP", formatter_class=_ServerDefaultsHelp,
        description="Serve the store over ECR's HTTP API for boto3, the AWS CLI and other AWS SDKs. "
                    "Without --credentials or --no-auth, the key pair in <store>/credentials is used "
                    "(created on first start and printed to stderr). Needs the server extra: "
                    "pip install 'ecrstore[server]'.")
    add_global_options(p, json_output=False)
    p.add_argument("--host", default=SERVE_DEFAULTS["host"],
                   help=f"address to listen on (default: {SERVE_DEFAULTS['host']})")
    p.add_argument("--port", type=port_number, default=SERVE_DEFAULTS["port"],
                   help=f"TCP port, 0 for any free one (default: {SERVE_DEFAULTS['port']})")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                   help="worker processes, each with its own store handle (default: number of CPUs)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--credentials", metavar="FILE",
                      help="credentials file: 'ACCESS_KEY_ID SECRET_ACCESS_KEY REGISTRY_ID' per line, # comments")
    auth.add_argument("--no-auth", action="store_true",
                      help="accept requests with any or no signature (local experiments only)")
    p.add_argument("--public-url", metavar="URL",
                   help="the registry's URL as clients reach it (http(s)://host[:port]): what repositoryUri and "
                        "GetAuthorizationToken's proxyEndpoint report (default: the address listened on)")
    p.add_argument("--create-on-push", action="store_true",
                   help="let /v2/ pushes create missing repositories (ECR refuses them unless a repository "
                        "creation template allows it)")
    p.add_argument("--upstream-secrets", metavar="FILE",
                   help="pull-through cache secrets: a JSON object mapping each credentialArn to "
                        '{"username": ..., "accessToken": ...} (mode 0600)')
    p.add_argument("--pull-through-refresh", type=seconds_arg(zero_ok=True), metavar="SECONDS",
                   help="seconds a pull-through cache serves a tag before asking its upstream whether it "
                        "moved (0: never)")
    p.add_argument("--part-size", type=parse_size, metavar="SIZE",
                   help="part size InitiateLayerUpload suggests "
                        f"(default: {human_bytes(ENGINE_DEFAULTS['part_size'])})")
    p.add_argument("--min-part-size", type=parse_size, metavar="SIZE",
                   help="smallest part allowed except the last "
                        f"(default: {human_bytes(ENGINE_DEFAULTS['min_part_size'])})")
    p.add_argument("--max-part-size", type=parse_size, metavar="SIZE",
                   help=f"largest part allowed (default: {human_bytes(ENGINE_DEFAULTS['max_part_size'])})")
    p.add_argument("--upload-ttl", type=positive_int, metavar="SECONDS",
                   help=f"an upload expires this long after its last part (default: {ENGINE_DEFAULTS['upload_ttl']})")
    p.add_argument("--max-repositories", type=positive_int, metavar="N", dest="max_repositories_per_registry",
                   help=f"repositories per registry (default: {ENGINE_DEFAULTS['max_repositories']:,})")
    p.add_argument("--max-uploads", type=positive_int, metavar="N", dest="max_uploads_per_registry",
                   help=f"uploads in progress per registry (default: {ENGINE_DEFAULTS['max_uploads']:,})")
    p.add_argument("--no-durable", action="store_true",
                   help="skip fsync (faster; a crash may lose recent writes)")
    p.add_argument("--max-body-size", type=parse_size, metavar="SIZE",
                   help="largest request body accepted, in bytes (a max-size part in base64 fits)")
    p.add_argument("--body-timeout", type=seconds_arg(zero_ok=False), metavar="SECONDS",
                   help="answer 408 when a request body stalls this long")
    p.add_argument("--body-total-timeout", type=seconds_arg(zero_ok=False), metavar="SECONDS",
                   help="answer 408 when a whole request body takes longer than this")
    p.add_argument("--max-header-size", type=parse_size, metavar="SIZE",
                   help="largest request line and headers; 431 above it")
    p.add_argument("--head-timeout", type=seconds_arg(zero_ok=False), metavar="SECONDS",
                   help="time for a request's line and headers to arrive; 408 after it")
    p.add_argument("--max-connections", type=positive_int, metavar="N",
                   help="connections one worker serves at once; 503 past it")
    p.add_argument("--max-buffered", type=parse_size, metavar="SIZE",
                   help="request-body bytes one worker holds at once; ThrottlingException past it")
    p.add_argument("--purge-interval", type=seconds_arg(zero_ok=True), metavar="SECONDS",
                   help="seconds between purges of uploads idle past their TTL (0: never)")
    p.add_argument("--lifecycle-interval", type=seconds_arg(zero_ok=True), metavar="SECONDS",
                   help="seconds between runs of the repositories' lifecycle policies (0: never)")
    p.add_argument("--threads", type=positive_int, help="threads per worker running store calls")
    p.add_argument("--download-url-ttl", type=seconds_arg(zero_ok=False), metavar="SECONDS",
                   help="how long GetDownloadUrlForLayer's URLs stay valid")
    p.add_argument("--scanner", metavar="COMMAND",
                   help="vulnerability scanner run for each image scan, {layout} standing for the image's exported "
                        "OCI layout; its stdout is read as a Trivy or Grype JSON report, e.g. "
                        "'trivy image --quiet --format json --input {layout}' (default: none, scans end FAILED)")
    p.add_argument("--scanner-timeout", type=seconds_arg(zero_ok=False), metavar="SECONDS",
                   help="how long one scanner run may take before its scan is FAILED")
    p.add_argument("--no-access-log", action="store_true", help="do not log one line per request")
    # Fault injection for the test suite: each worker stores its first N layer parts but
    # answers them with a 500 ServerException. Not for users, so not in --help.
    p.add_argument("--fail-next-upload-parts", type=non_negative_int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)
