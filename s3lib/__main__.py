"""``python -m s3lib`` runs the ``s3`` command."""

import sys

from .cli import main

sys.exit(main())
