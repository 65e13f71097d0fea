"""Independent tools (findmnt, losetup, blkid) to check what the node service did."""

from __future__ import annotations

import subprocess
from pathlib import Path

from csi_disk_emulator.process import EmulatorInfo


def disk_file(info: EmulatorInfo, disk_id: str) -> Path:
    return info.state_dir / "disks" / f"{disk_id}.img"


def tool(*argv: str, check: bool = True) -> str:
    """Run an independent tool and return its stdout."""
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} failed ({result.returncode}): {result.stderr}")
    return result.stdout.strip()


def findmnt(path: Path) -> dict[str, str]:
    """findmnt's view of the mount at exactly ``path`` ({} when nothing is mounted there)."""
    out = tool(
        "findmnt",
        "--mountpoint",
        str(path),
        "-n",
        "-P",
        "-o",
        "SOURCE,FSTYPE,OPTIONS,MAJ:MIN",
        check=False,
    )
    if not out:
        return {}
    last = out.splitlines()[-1]
    fields = {}
    for part in last.split('" '):
        key, _, value = part.partition('="')
        fields[key.strip()] = value.rstrip('"')
    return fields


def loops_of(info: EmulatorInfo, disk_id: str) -> list[str]:
    """Loop devices backed by the disk's file, as ``losetup -j`` reports them."""
    out = tool("losetup", "-j", str(disk_file(info, disk_id)))
    return [line.split(":", 1)[0] for line in out.splitlines() if line]


def blkid(device: Path | str) -> dict[str, str]:
    out = tool("blkid", "-p", "-o", "export", str(device), check=False)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
