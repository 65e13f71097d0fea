"""Named crash points for crash-consistency tests.

``failpoint(name)`` kills the process with SIGKILL when ``name`` is listed in the
environment variable ``CSI_DISK_FAILPOINTS`` (comma-separated), so a test can stop the
plugin exactly between two steps, restart it, and check that the next call converges.
The variable is read once at import: unless it is set the calls are inert and cost one
set lookup. Never set it on a real node.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "CSI_DISK_FAILPOINTS"


def _armed(text: str) -> frozenset[str]:
    return frozenset(name.strip() for name in text.split(",") if name.strip())


ARMED: frozenset[str] = _armed(os.environ.get(ENV_VAR, ""))


def failpoint(name: str) -> None:
    """Die at once, as ``kill -9`` would, when ``name`` is armed; otherwise do nothing."""
    if name in ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
