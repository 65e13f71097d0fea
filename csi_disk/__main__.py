"""``python -m csi_disk`` is the same as the ``csi-disk`` command."""

import sys

from csi_disk.cli import main

sys.exit(main())
