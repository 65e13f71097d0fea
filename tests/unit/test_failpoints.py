"""Failpoints kill the process only when armed through the environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from csi_disk.failpoints import ENV_VAR, _armed

SCRIPT = (
    "from csi_disk.failpoints import failpoint\nfailpoint('stage:after-format')\nprint('alive')\n"
)


def run_script(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if value is not None:
        env[ENV_VAR] = value
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )


def test_armed_point_kills_with_sigkill() -> None:
    result = run_script("publish:after-bind, stage:after-format")
    assert result.returncode == -signal.SIGKILL
    assert "alive" not in result.stdout


def test_unset_variable_leaves_the_process_alive() -> None:
    result = run_script(None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alive"


def test_other_points_do_not_fire() -> None:
    result = run_script("stage:after-format-not,stage:after")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alive"


def test_names_are_split_on_commas_and_trimmed() -> None:
    assert _armed(" a , b,,c ") == frozenset({"a", "b", "c"})
    assert _armed("") == frozenset()
