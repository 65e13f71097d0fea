"""The real programs configuration is checked against: ``csi-disk serve`` and the Go tools
``.ci/go`` pins (kubectl, the CSI sidecars), each asked what it accepts rather than trusted
from a list written down beside the configuration."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO_ROOT

# An option line of a --help text: argparse and pflag print `  -v, --v`, Go's flag `  -v`.
_OPTION_LINE = re.compile(r"^\s+(?:-\w, )?--?([a-z0-9][a-z0-9-]*)", re.MULTILINE)


def help_options(text: str) -> set[str]:
    """Option names (without dashes) a --help text lists, one option per line."""
    return set(_OPTION_LINE.findall(text))


@functools.cache
def serve_flags() -> frozenset[str]:
    """The flags ``csi-disk serve --help`` lists, with their dashes."""
    shown = subprocess.run(
        [sys.executable, "-m", "csi_disk", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},  # one option per line
    )
    return frozenset(f"--{name}" for name in help_options(shown.stdout) if len(name) > 1)


def serve_env(flag: str) -> str:
    """The environment variable that sets a serve flag (``--attach-mode`` ->
    ``CSI_DISK_ATTACH_MODE``)."""
    return "CSI_DISK_" + flag.removeprefix("--").replace("-", "_").upper()


@functools.cache
def go_tool_bin(tool: str) -> Path:
    """The bin folder of a tool .ci/go pins, built first if this machine has not yet (minutes,
    once; .ci/setup builds them all)."""
    built = subprocess.run(
        ["bash", str(REPO_ROOT / ".ci/go/build"), tool],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        reason = f"cannot build {tool}: {built.stderr.strip()[-2000:]}"
        if "no Go toolchain" in built.stderr and not IN_CI:
            pytest.skip(reason)
        pytest.fail(reason)
    return Path(built.stdout.strip().splitlines()[-1])


def go_tool_version(tool: str, module: str) -> str:
    """The version .ci/go/<tool>/go.mod pins ``module`` at."""
    go_mod = (REPO_ROOT / ".ci/go" / tool / "go.mod").read_text(encoding="utf-8")
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod, re.MULTILINE)
    assert found, f".ci/go/{tool}/go.mod does not require {module}"
    return found.group(1)
