"""Filesystem probing, creation, checking, growing and usage.

The rule that protects data: a device is formatted only when a fresh low-level probe finds
nothing on it (no filesystem, no partition table, no other signature). A different
filesystem than requested is the caller's error to report, never a reason to reformat.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from csi_disk.errors import FailedPrecondition, InvalidArgument, NotFound
from csi_disk.fstypes import DEFAULT_FS_TYPE, check_fs_type
from csi_disk.host.bounded import BoundedCalls
from csi_disk.host.run import CommandFailed, run, trim
from csi_disk.quoting import quote

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 60.0
MKFS_TIMEOUT = 600.0
FSCK_TIMEOUT = 1800.0
GROW_TIMEOUT = 600.0

# blkid exit codes (blkid(8)).
_BLKID_NOTHING_FOUND = 2
_BLKID_AMBIVALENT = 8


@dataclass(frozen=True)
class Probe:
    """What ``blkid -p`` found on a device."""

    type: str = ""  # TYPE: a filesystem, swap, LVM2_member, crypto_LUKS, ...
    usage: str = ""  # USAGE: filesystem, raid, crypto, other
    pttype: str = ""  # PTTYPE: a partition table (dos, gpt)
    ambivalent: bool = False  # several signatures: there is data, we do not know which

    @property
    def fstype(self) -> str:
        """The filesystem type, or "" when the signature is not a filesystem."""
        return self.type if self.usage in ("filesystem", "") else ""

    @property
    def is_blank(self) -> bool:
        return not (self.type or self.pttype or self.ambivalent)

    def describe(self) -> str:
        if self.ambivalent:
            return "several conflicting signatures"
        parts = []
        if self.type:
            parts.append(f"a {self.type} signature" + (f" ({self.usage})" if self.usage else ""))
        if self.pttype:
            parts.append(f"a {self.pttype} partition table")
        return " and ".join(parts) or "nothing"


def parse_blkid_export(text: str) -> dict[str, str]:
    """Parse ``blkid -o export`` KEY=value lines (values are backslash-escaped)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            values[key.strip()] = re.sub(r"\\(.)", r"\1", value)
    return values


def probe(device: Path | str, *, timeout: float = PROBE_TIMEOUT) -> Probe:
    """Probe ``device`` directly (not from the blkid cache) for any signature."""
    result = run(["blkid", "-p", "-o", "export", os.fspath(device)], timeout=timeout, check=False)
    if result.returncode == _BLKID_NOTHING_FOUND:
        return Probe()
    if result.returncode == _BLKID_AMBIVALENT or "ambivalent" in result.stderr.lower():
        return Probe(ambivalent=True)
    if result.returncode != 0:
        raise CommandFailed("blkid", result.returncode, result.stderr)
    values = parse_blkid_export(result.stdout)
    return Probe(
        type=values.get("TYPE", ""),
        usage=values.get("USAGE", ""),
        pttype=values.get("PTTYPE", ""),
    )


# mkfs options a StorageClass may set, per family; every one of them takes a value.
_EXT_OPTIONS = frozenset({"-b", "-i", "-I", "-N", "-T", "-O", "-E", "-m", "-L", "-J"})
_XFS_OPTIONS = frozenset({"-b", "-d", "-i", "-l", "-n", "-m", "-L", "-s"})
_FORBIDDEN = set(";|&$`<>\\\n\r\t'\"")


def _allowed_options(fstype: str) -> frozenset[str]:
    return _XFS_OPTIONS if check_fs_type(fstype, "filesystem") == "xfs" else _EXT_OPTIONS


def _check_value(flag: str, value: str) -> None:
    if not value or value.startswith("-"):
        raise InvalidArgument(f"mkfsOptions: {flag} needs a value")
    bad = _FORBIDDEN.intersection(value)
    if bad or any(ord(c) < 32 for c in value):
        raise InvalidArgument(f"mkfsOptions: {quote(value)} contains a forbidden character")
    if "/" in value:
        raise InvalidArgument(f"mkfsOptions: {quote(value)} names a path, which is not allowed")


def parse_mkfs_options(text: str, fstype: str) -> list[str]:
    """Split ``text`` into mkfs arguments, each checked against the allow-list.

    Values may follow their flag (``-b 4096``) or be attached (``-m0``); the result always
    has them as separate words.
    """
    allowed = _allowed_options(fstype)
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidArgument(f"mkfsOptions cannot be parsed: {exc}") from exc
    result: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        flag, value = word[:2], word[2:]
        if flag not in allowed or not word.startswith("-"):
            raise InvalidArgument(f"mkfsOptions: {quote(word)} is not allowed for {fstype}")
        if not value:
            if i + 1 >= len(words):
                raise InvalidArgument(f"mkfsOptions: {flag} needs a value")
            i += 1
            value = words[i]
        _check_value(flag, value)
        result += [flag, value]
        i += 1
    return result


@functools.cache
def _mke2fs_supports(feature: str) -> bool:
    """Whether this mke2fs knows ``feature`` (a dry run on a scratch file)."""
    with tempfile.NamedTemporaryFile(prefix="csi-disk-mke2fs-") as scratch:
        scratch.truncate(16 * 1024 * 1024)
        result = run(
            ["mke2fs", "-n", "-F", "-q", "-O", f"^{feature}", scratch.name],
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    return result.returncode == 0


@functools.cache
def _mkfs_xfs_usage() -> str:
    """mkfs.xfs prints its usage (every option name it knows) when given no device."""
    result = run(["mkfs.xfs"], timeout=PROBE_TIMEOUT, check=False)
    return result.stdout + result.stderr


# Features newer than the kernels still common on nodes: leaving them on makes a disk that
# a node with an older kernel refuses to mount after the pod moves.
_EXT_FEATURES_OFF = ("metadata_csum_seed", "orphan_file")
_XFS_PINNED = {"-m": ("bigtime=0", "inobtcount=0"), "-i": ("nrext64=0",)}


def _merge_joined(ours: Sequence[str], flag: str, theirs: Sequence[str]) -> list[str]:
    """Combine our comma list for ``flag`` with the caller's, theirs last so it wins."""
    if not ours and not theirs:
        return []
    return [flag, ",".join([*ours, *theirs])]


def _split_user(options: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for flag, value in zip(options[::2], options[1::2], strict=True):
        found.setdefault(flag, []).append(value)
    return found


def ext_mkfs_argv(fstype: str, device: str, options: Sequence[str]) -> list[str]:
    user = _split_user(options)
    user_features = {f.lstrip("^") for v in user.get("-O", []) for f in v.split(",")}
    features_off = [
        f"^{f}" for f in _EXT_FEATURES_OFF if f not in user_features and _mke2fs_supports(f)
    ]
    argv = [f"mkfs.{fstype}", "-F", "-m0"]
    argv += _merge_joined(
        ["lazy_itable_init=1", "lazy_journal_init=1", "nodiscard"], "-E", user.pop("-E", [])
    )
    argv += _merge_joined(features_off, "-O", user.pop("-O", []))
    for flag, values in user.items():
        for value in values:
            argv += [flag, value]
    return [*argv, device]


def xfs_mkfs_argv(device: str, options: Sequence[str]) -> list[str]:
    user = _split_user(options)
    usage = _mkfs_xfs_usage()
    argv = ["mkfs.xfs", "-f", "-K"]
    for flag, pinned in _XFS_PINNED.items():
        given = user.pop(flag, [])
        given_keys = {kv.split("=")[0] for v in given for kv in v.split(",")}
        ours = [
            kv
            for kv in pinned
            if kv.split("=")[0] not in given_keys and re.search(rf"\b{kv.split('=')[0]}=", usage)
        ]
        argv += _merge_joined(ours, flag, given)
    for flag, values in user.items():
        for value in values:
            argv += [flag, value]
    return [*argv, device]


def format(
    device: Path | str,
    fstype: str = DEFAULT_FS_TYPE,
    options: Sequence[str] = (),
    *,
    timeout: float = MKFS_TIMEOUT,
) -> None:
    """Create ``fstype`` on ``device``, only if it is blank.

    ``options`` come from ``parse_mkfs_options``; they are checked again here so that no
    caller can hand mkfs an unchecked word.
    """
    chosen = check_fs_type(fstype, "filesystem")
    options = parse_mkfs_options(shlex.join(options), chosen)
    found = probe(device)
    if not found.is_blank:
        raise FailedPrecondition(f"refusing to format {device}: it holds {found.describe()}")
    dev = os.fspath(device)
    argv = xfs_mkfs_argv(dev, options) if chosen == "xfs" else ext_mkfs_argv(chosen, dev, options)
    log.info("creating %s on %s", chosen, dev)
    run(argv, timeout=timeout)


# e2fsck exit bits (e2fsck(8)).
_FSCK_CORRECTED = 1
_FSCK_REBOOT = 2
_FSCK_UNCORRECTED = 4


def fsck(device: Path | str, fstype: str, *, timeout: float = FSCK_TIMEOUT) -> int:
    """Repair what is safe to repair before mounting; returns e2fsck's exit code.

    Only for unmounted ext filesystems: xfs checks its log on mount and has no safe
    automatic repair.
    """
    if check_fs_type(fstype, "filesystem") == "xfs":
        return 0
    result = run(["e2fsck", "-p", os.fspath(device)], timeout=timeout, check=False)
    code = result.returncode
    if code >= _FSCK_UNCORRECTED:
        raise FailedPrecondition(
            f"e2fsck found problems on {device} it cannot repair safely (exit code {code}): "
            f"{trim(result.stderr or result.stdout)}"
        )
    if code & _FSCK_REBOOT:
        log.warning("e2fsck corrected errors on %s and asks for a reboot", device)
    elif code & _FSCK_CORRECTED:
        log.info("e2fsck corrected errors on %s", device)
    return code


def grow(
    device: Path | str,
    mount_path: Path | str | None,
    fstype: str,
    *,
    timeout: float = GROW_TIMEOUT,
) -> None:
    """Grow the filesystem to fill the device.

    ext grows online through the device (or offline after a forced check); xfs only
    grows while mounted.
    """
    chosen = check_fs_type(fstype, "filesystem")
    if chosen == "xfs":
        if mount_path is None:
            raise FailedPrecondition(f"xfs on {device} can only grow while mounted")
        run(["xfs_growfs", os.fspath(mount_path)], timeout=timeout)
        return
    if mount_path is None:
        result = run(["e2fsck", "-f", "-p", os.fspath(device)], timeout=timeout, check=False)
        if result.returncode >= _FSCK_UNCORRECTED:
            raise FailedPrecondition(
                f"e2fsck refuses {device} before resizing (exit code {result.returncode}): "
                f"{trim(result.stderr or result.stdout)}"
            )
    try:
        run(["resize2fs", os.fspath(device)], timeout=timeout)
    except CommandFailed as exc:
        if mount_path is not None and "permission denied" in exc.stderr.lower():
            raise FailedPrecondition(
                f"resize2fs may not grow {device} while mounted: online ext resize needs "
                "CAP_SYS_RESOURCE (run the node plugin privileged)"
            ) from exc
        raise


def ext_size_bytes(device: Path | str, *, timeout: float = FSCK_TIMEOUT) -> int:
    """The size an ext2/3/4 filesystem spans, read from its superblock (``dumpe2fs -h``).

    Staging compares it with the device to grow a filesystem while it is still unmounted,
    which needs no more than the device itself (online growth needs CAP_SYS_RESOURCE).
    """
    out = run(["dumpe2fs", "-h", os.fspath(device)], timeout=timeout).stdout
    fields = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in out.splitlines())
        if value
    )
    try:
        return int(fields["Block count"]) * int(fields["Block size"])
    except (KeyError, ValueError) as exc:
        raise FailedPrecondition(f"cannot read the ext superblock of {device}") from exc


@dataclass(frozen=True)
class VolumeStats:
    """Usage of a mounted volume (or only the size, for a raw block volume)."""

    total_bytes: int
    available_bytes: int = 0
    used_bytes: int = 0
    total_inodes: int = 0
    available_inodes: int = 0
    used_inodes: int = 0


# statvfs calls in flight: a hung device parks one thread per path, never more.
_STATVFS = BoundedCalls("statvfs")


def stats(path: Path | str, timeout: float = 10.0) -> VolumeStats:
    """statvfs ``path`` in a worker thread, so a hung device cannot hang the caller."""
    try:
        got = _STATVFS.run(os.fspath(path), lambda: os.statvfs(path), timeout)
    except FileNotFoundError:
        raise NotFound(f"volume path {quote(path)} does not exist") from None
    return VolumeStats(
        total_bytes=got.f_blocks * got.f_frsize,
        available_bytes=got.f_bavail * got.f_frsize,
        used_bytes=(got.f_blocks - got.f_bfree) * got.f_frsize,
        total_inodes=got.f_files,
        available_inodes=got.f_favail,
        used_inodes=got.f_files - got.f_ffree,
    )


def block_stats(device: Path | str) -> VolumeStats:
    """A raw block volume reports its size only."""
    from csi_disk.host.devices import device_size_bytes

    return VolumeStats(total_bytes=device_size_bytes(device))
