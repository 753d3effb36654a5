"""``python -m ecrstore.cli``: the ``ecrstore`` command."""

import sys

from .main import main

sys.exit(main())
