"""Shared test configuration and fixtures.

Hypothesis profiles: ``dev`` (the default) explores with fresh random examples; ``ci`` is
derandomized and has no deadline, so a CI run is reproducible and does not fail on a slow
machine. ``HYPOTHESIS_PROFILE`` chooses one (.ci/run sets ``ci``).
"""

import os

from hypothesis import settings

#: Shared fixtures: real backend services and the backend pairs (tests/backend_services.py), a
#: session-wide ECR server and credentials files (tests/server_fixtures.py).
pytest_plugins = ["backend_services", "server_fixtures"]

settings.register_profile("dev", max_examples=100)
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
