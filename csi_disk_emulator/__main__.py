"""``python -m csi_disk_emulator``: the same as ``csi-disk-emulator``."""

import sys

from csi_disk_emulator.cli import main

sys.exit(main())
