"""``python -m csi_disk.emulator``: the same as ``csi-disk emulator``."""

import sys

from csi_disk.emulator.cli import main

sys.exit(main())
