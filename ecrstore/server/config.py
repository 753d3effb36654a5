"""Server settings: one picklable value handed to every worker process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..limits import DEFAULT_PULL_THROUGH_REFRESH, DEFAULT_SCANNER_TIMEOUT

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ServerConfig"]

MiB = 2**20

#: A max-size part (20,971,520 bytes) is 27,962,028 characters of base64; with the JSON around
#: it a legitimate UploadLayerPart body stays below this, anything larger is refused unread.
DEFAULT_MAX_BODY_BYTES = 29_000_000


@dataclass(frozen=True)
class ServerConfig:
    """Everything a worker needs to build its app.

    ``store_options`` are keyword arguments for :class:`ecrstore.Store` (``registry_id``,
    ``part_size``, ``min_part_size``, ``max_part_size``, ``upload_ttl``, ``durable``).
    ``credentials_file`` is None only with ``auth=False`` (any or no signature accepted).
    ``fail_upload_parts`` is a fault hook for tests: each worker answers its first N successful
    UploadLayerPart calls with a 500 *after* the part was stored. Keep it 0 in production.
    """

    store_path: str
    store_options: dict[str, Any] = field(default_factory=dict)
    auth: bool = True
    credentials_file: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: Longest wait for the next chunk of a request body, and for the whole body (seconds).
    body_idle_timeout: float = 60.0
    body_total_timeout: float = 900.0
    #: Longest time one ``/v2/`` blob body may take in all (a multi-GiB layer in one PUT).
    blob_total_timeout: float = 6 * 3600.0
    #: Threads per worker running store calls (hashing and disk I/O release the GIL).
    threads: int = 16
    #: How long GetDownloadUrlForLayer's URLs stay valid (seconds).
    download_url_ttl: float = 3600.0
    #: A request's line and headers: at most this many bytes (431 above), arriving within
    #: this many seconds (408 after; a connection that sent nothing is closed).
    max_head_bytes: int = 64 * 1024
    head_timeout: float = 10.0
    #: Connections one worker serves at once; requests past it are answered 503 at once.
    max_connections: int = 256
    #: Request-body bytes one worker holds in memory at once, over all its requests; a request
    #: that would go past it is answered ThrottlingException (clients retry) and closed.
    max_buffered_bytes: int = 512 * MiB
    #: Seconds between purges of uploads idle past the store's TTL (0: never).
    purge_interval: float = 600.0
    #: Seconds between expiry runs of the repositories' lifecycle policies (0: never).
    lifecycle_interval: float = 3600.0
    #: The registry's URL as clients reach it (``http://host:port``): GetAuthorizationToken's
    #: proxyEndpoint and the host of every repositoryUri. None: the Host each request came to.
    public_url: str | None = None
    #: ``/v2/`` pushes to a repository that does not exist create it (ECR refuses them unless
    #: a repository creation template says otherwise).
    create_on_push: bool = False
    #: The pull-through cache's upstream secrets (JSON: secret ARN -> {"username",
    #: "accessToken"}, mode 0600); None: rules can name no credentialArn.
    upstream_secrets: str | None = None
    #: Seconds a pull-through cache serves a tag before asking its upstream again (0: never).
    pull_through_refresh: float = DEFAULT_PULL_THROUGH_REFRESH
    fail_upload_parts: int = 0
    #: The vulnerability scanner's command line, with ``{layout}`` where the image's exported
    #: OCI layout goes (``ecrstore.transfer.scanner``); None: no scanner (scans end FAILED).
    scanner_command: str | None = None
    #: How long one run of the scanner may take (seconds).
    scanner_timeout: float = DEFAULT_SCANNER_TIMEOUT

    def __post_init__(self) -> None:
        if self.auth and not self.credentials_file:
            raise ValueError("auth=True needs a credentials_file")
        if self.max_body_bytes <= 0 or self.threads <= 0:
            raise ValueError("max_body_bytes and threads must be positive")
        if self.body_idle_timeout <= 0 or self.body_total_timeout <= 0 or self.blob_total_timeout <= 0:
            raise ValueError("body timeouts must be positive")
        if self.download_url_ttl <= 0:
            raise ValueError("download_url_ttl must be positive")
        if self.max_head_bytes < 1024 or self.head_timeout <= 0 or self.max_connections <= 0:
            raise ValueError("max_head_bytes must be >= 1024, head_timeout and max_connections positive")
        if self.max_buffered_bytes < self.max_body_bytes:
            raise ValueError("max_buffered_bytes must hold at least one body of max_body_bytes")
        if self.purge_interval < 0:
            raise ValueError("purge_interval must not be negative")
        if self.lifecycle_interval < 0 or self.pull_through_refresh < 0:
            raise ValueError("lifecycle_interval and pull_through_refresh must not be negative")
        if self.scanner_timeout <= 0:
            raise ValueError("scanner_timeout must be positive")

    @property
    def region(self) -> str:
        """The region signatures must be scoped to (the store's)."""
        from ..limits import DEFAULT_REGION

        return str(self.store_options.get("region", DEFAULT_REGION))
