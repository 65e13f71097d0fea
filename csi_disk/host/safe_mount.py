"""Format only what is blank, check before mounting, grow to the disk: the node's policy for
putting a disk's filesystem on a staging path, over the host port.

A device is formatted only when a fresh probe finds nothing on it (no filesystem, no
partition table, no other signature); a different filesystem than requested is an error,
never a reason to reformat. An existing ext filesystem is repaired by fsck where that is
safe and grown to its disk before it is mounted (a disk restored from a snapshot or resized
while detached is larger than its filesystem); any filesystem is grown once mounted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from csi_disk.errors import DriverError, FailedPrecondition
from csi_disk.failpoints import failpoint
from csi_disk.fstypes import EXT_FS_TYPES, serves
from csi_disk.host.filesystems import Probe
from csi_disk.host.port import Host
from csi_disk.quoting import quote

log = logging.getLogger(__name__)


class SafeFormatAndMount:
    """The format/fsck/grow decisions around one mount(8), never destroying data."""

    def __init__(self, host: Host) -> None:
        self._host = host

    def mount(
        self,
        disk_id: str,
        device: Path,
        target: Path,
        *,
        fstype: str,
        flags: Sequence[str],
        mkfs_options: Sequence[str],
        read_only: bool,
        omit_fsck: bool,
        check_target: Callable[[], None],
    ) -> None:
        """Mount the disk's filesystem at ``target``, creating ``fstype`` first only when
        the device is blank. ``read_only``: the capability's access mode is read-only, so
        nothing may write to the filesystem, fsck included. ``check_target`` runs right
        before mount(8), to check the path once more as late as possible."""
        found = self._host.probe(device)
        fresh = False
        if found.is_blank:
            log.info("disk %s (%s) is blank: creating %s", disk_id, device, fstype)
            self._host.format(device, fstype, mkfs_options)
            failpoint("stage:after-format")
            fresh = True
        else:
            fstype = existing_fstype(disk_id, found, fstype)
        if not fresh:
            read_only = read_only or "ro" in flags
            self._check(disk_id, device, fstype, read_only=read_only, omit=omit_fsck)
            if fstype in EXT_FS_TYPES and "ro" not in flags:
                self._grow_unmounted_ext(disk_id, device, fstype)
        options = list(flags)
        if fstype == "xfs" and "nouuid" not in options:
            options.append("nouuid")  # clones of one snapshot share a UUID
        check_target()
        self._host.mount(device, target, fstype, options)
        failpoint("stage:after-mount")
        log.info("disk %s staged: %s on %s (%s)", disk_id, device, quote(target), fstype)
        if not fresh and "ro" not in options:
            failpoint("stage:before-grow")
            self.grow(disk_id, device, target, fstype)

    def grow(self, disk_id: str, device: Path, mount_path: Path, fstype: str) -> None:
        """Grow a mounted filesystem to its disk (resized while detached); never fatal: the
        volume is usable as it is, and a later stage or expansion grows it again."""
        try:
            self._host.grow(device, mount_path, fstype)
        except DriverError as err:
            log.warning("could not grow %s on disk %s: %s", fstype, disk_id, err.message)

    def _check(
        self, disk_id: str, device: Path, fstype: str, *, read_only: bool, omit: bool
    ) -> None:
        """Let fsck repair an unmounted filesystem, unless the StorageClass said not to
        (``omitfsck``) or the volume is read-only: a read-only volume must come back
        exactly as it was, and repairing writes to it."""
        if omit:
            log.info("disk %s: not checking %s (omitfsck)", disk_id, fstype)
        elif read_only:
            log.info("disk %s: not checking %s, the capability is read-only", disk_id, fstype)
        else:
            self._host.fsck(device, fstype)

    def _grow_unmounted_ext(self, disk_id: str, device: Path, fstype: str) -> None:
        """Grow an ext filesystem smaller than its disk (restored or resized while detached)
        before mounting: offline growth needs no capability beyond the device, and the
        check ``resize2fs`` demands first runs on a filesystem nobody is using."""
        try:
            if self._host.ext_size(device) >= self._host.device_size(device):
                return
            log.info("disk %s: growing %s to its disk before mounting", disk_id, fstype)
            self._host.grow(device, None, fstype)
        except DriverError as err:  # the volume is usable; a later stage or expand retries
            log.warning("could not grow %s on disk %s: %s", fstype, disk_id, err.message)


def existing_fstype(disk_id: str, found: Probe, wanted: str) -> str:
    """The filesystem to mount an already formatted disk with; never a reason to format."""
    if found.ambivalent or found.pttype or not found.fstype:
        raise FailedPrecondition(
            f"disk {disk_id} holds {found.describe()}, not a {wanted} filesystem; "
            "it is left untouched"
        )
    if serves(found.fstype, wanted):
        return found.fstype
    raise FailedPrecondition(
        f"disk {disk_id} already holds a {found.fstype} filesystem but {wanted} was "
        "requested; it is never reformatted"
    )
