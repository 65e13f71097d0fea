"""Feature acceptance: controller handlers over the real EcsCloud, node on real loop devices.

The node integration fixtures are reused as they are: one emulator with block devices.
"""

from __future__ import annotations

from tests.integration.node.conftest import (  # noqa: F401 - fixtures used by name
    cloud,
    kubelet,
    make_node,
    node_emulator,
    waiter,
)
