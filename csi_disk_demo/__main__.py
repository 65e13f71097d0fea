"""``python -m csi_disk_demo``: the same as ``csi-disk-demo``."""

import sys

from csi_disk_demo.demo import main

sys.exit(main())
