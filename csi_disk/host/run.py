"""The one place the node runs host programs (mkfs, mount, blkid, ...).

Every call goes through ``run`` so that argument lists are the only form (never a shell),
timeouts are always set, and failures become domain errors whose messages name the program
and what it printed on stderr, but never its environment.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from csi_disk.errors import DeadlineExceeded, Internal, Unavailable

log = logging.getLogger(__name__)

# Children get a fixed, minimal environment: parseable (C locale) output, and no cloud
# credentials that the driver itself may hold in its own environment.
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STDERR_LIMIT = 400


@dataclass(frozen=True)
class Result:
    """What a finished program returned."""

    returncode: int
    stdout: str
    stderr: str


class CommandFailed(Internal):
    """A program ran and exited non-zero; callers that understand the code can inspect it."""

    def __init__(self, program: str, returncode: int, stderr: str) -> None:
        detail = trim(stderr)
        message = f"{program} failed with exit code {returncode}"
        if detail:
            message += f": {detail}"
        super().__init__(message)
        self.program = program
        self.returncode = returncode
        self.stderr = stderr


def trim(text: str, limit: int = STDERR_LIMIT) -> str:
    """One line of at most ``limit`` characters, so messages stay readable in events."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 3] + "..."
    return flat


def child_environment() -> dict[str, str]:
    """PATH and a C locale only: output stays parseable and secrets stay with us."""
    return {"PATH": os.environ.get("PATH") or _DEFAULT_PATH, "LC_ALL": "C", "LANG": "C"}


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    check: bool = True,
    input: str | None = None,
) -> Result:
    """Run ``argv`` and return its output as text.

    Raises Unavailable when the program is missing, DeadlineExceeded when it outlives
    ``timeout`` (it is killed), and CommandFailed on a non-zero exit when ``check``.
    """
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ValueError("run needs a program to run")
    program = PurePath(args[0]).name
    log.debug("running %s", program)
    try:
        completed = subprocess.run(
            args,
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
            env=child_environment(),
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise Unavailable(f"{program} is not installed on this host") from exc
    except PermissionError as exc:
        raise Unavailable(f"{program} cannot be executed on this host") from exc
    except subprocess.TimeoutExpired as exc:
        raise DeadlineExceeded(f"{program} did not finish within {timeout:g}s") from exc
    result = Result(completed.returncode, completed.stdout, completed.stderr)
    if check and result.returncode != 0:
        raise CommandFailed(program, result.returncode, result.stderr)
    return result
