"""The OCI distribution API front end (``/v2/``): routes, streamed blob bodies, OCI errors."""
