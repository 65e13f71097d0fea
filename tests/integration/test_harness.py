"""The suite's own rule: with CI=true a root-only test that cannot run fails, never skips.

Checked from outside: pytest runs the root-only modules in a child whose PATH lacks
findmnt, as on a CI runner without util-linux, and every one of their tests must end as a
failure or error. A session fixture that skipped before the check ran once turned all of
integration/node and features/ into skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(120)

# What root_unavailable_reason looks for, less findmnt.
TOOLS = ("losetup", "mount", "umount", "blkid", "mkfs.ext4", "mkfs.xfs")
ROOT_ONLY = ("tests/integration/features", "tests/integration/node", "tests/integration/host")


def test_root_only_tests_fail_in_ci_when_a_tool_is_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found is not None:
            (bin_dir / tool).symlink_to(found)
    report = tmp_path / "report.xml"
    env = {**os.environ, "CI": "true", "PATH": str(bin_dir)}
    env.pop("PYTEST_ADDOPTS", None)
    argv = [sys.executable, "-m", "pytest", *ROOT_ONLY, "-p", "no:cacheprovider", "-q"]
    result = subprocess.run(
        [*argv, f"--junitxml={report}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode != 0, result.stdout[-3000:]
    cases = ET.parse(report).getroot().iter("testcase")  # noqa: S314 - the child's own report
    outcomes: dict[str, str] = {}
    for case in cases:
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        outcomes[f"{case.get('classname')}.{case.get('name')}"] = ",".join(sorted(kinds)) or "pass"
    assert len(outcomes) >= 24, result.stdout[-3000:]
    wrong = {name: kind for name, kind in outcomes.items() if kind not in ("failure", "error")}
    assert not wrong, f"root-only tests that did not fail in CI without findmnt: {wrong}"
    assert "needs findmnt on PATH" in result.stdout
