"""ECR's limits and the engine's defaults, each named once.

Every module that enforces or advertises one of these imports it from here (the CLI and the
server take their defaults from here too), so a limit cannot drift between two spellings.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_GC_GRACE", "DEFAULT_PART_BYTES", "DEFAULT_PURGE_GRACE", "DEFAULT_REGION", "DEFAULT_REGISTRY_ID",
    "DEFAULT_UPLOAD_TTL",
    "MAX_IMAGES_PER_REPOSITORY", "MAX_LAYERS_PER_IMAGE", "MAX_LAYER_BYTES", "MAX_MANIFEST_CHARS",
    "MAX_PARTS", "MAX_PART_BYTES", "MAX_REPOSITORIES_PER_REGISTRY", "MAX_UPLOADS_PER_REGISTRY",
    "MAX_REPOSITORY_TAGS", "MAX_TAG_KEY_CHARS", "MAX_TAG_VALUE_CHARS", "MAX_TAGS_PER_IMAGE", "MAX_TAG_CHARS",
    "MIN_PART_BYTES",
    "MAX_RESULTS", "DEFAULT_PAGE", "MAX_REFERRER_RESULTS", "DEFAULT_SCANNER_TIMEOUT",
    "DEFAULT_PULL_THROUGH_REFRESH",
]

#: The registry (account) calls address when they name none.
DEFAULT_REGISTRY_ID = "000000000000"
#: The region named in repository ARNs and URIs.
DEFAULT_REGION = "us-east-1"

#: ECR's layer part rules: every part but the last at least MIN, none above MAX (the service
#: model's bound for ``layerPartBlob``); InitiateLayerUpload advises DEFAULT.
MIN_PART_BYTES = 5 * 2**20
DEFAULT_PART_BYTES = 10 * 2**20
MAX_PART_BYTES = 20 * 2**20
#: Parts per upload, and the largest layer (ECR's quotas).
MAX_PARTS = 4200
MAX_LAYER_BYTES = 52_000 * 2**20
#: Seconds an upload may stay idle before it answers UploadNotFound and purge reclaims it.
DEFAULT_UPLOAD_TTL = 24 * 3600.0
#: Maintenance: gc leaves layers linked this recently (their image may still be coming);
#: purge leaves unreferenced files this young (a completion may be placing them).
DEFAULT_GC_GRACE = 24 * 3600.0
DEFAULT_PURGE_GRACE = 3600.0

#: PutImage: the manifest's size in characters, the layers of an image, tags per image.
MAX_MANIFEST_CHARS = 4_194_304
MAX_LAYERS_PER_IMAGE = 127
MAX_TAGS_PER_IMAGE = 1000
#: An image tag's length in characters.
MAX_TAG_CHARS = 300
MAX_IMAGES_PER_REPOSITORY = 10_000
#: Per-registry quotas: repositories (ECR's own quota), and uploads in progress at once (so
#: one tenant cannot fill the disk with abandoned uploads for every other).
MAX_REPOSITORIES_PER_REGISTRY = 100_000
MAX_UPLOADS_PER_REGISTRY = 10_000
#: Resource tags of a repository, and the characters of a tag's key and of its value.
MAX_REPOSITORY_TAGS = 50
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256

#: Pagination: the largest maxResults, and the page size when none is asked for.
MAX_RESULTS = 1000
DEFAULT_PAGE = 100
#: ListImageReferrers' largest page (its own bound for maxResults), also its default page.
MAX_REFERRER_RESULTS = 50

#: How long one run of the configured vulnerability scanner may take (seconds).
DEFAULT_SCANNER_TIMEOUT = 600.0
#: How long a pull-through cache serves a tag before asking its upstream again (ECR's 24 h).
DEFAULT_PULL_THROUGH_REFRESH = 24 * 3600.0
