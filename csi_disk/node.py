"""CSI Node: make an attached disk usable by pods on this instance.

Every call starts from what the host and the cloud show now (mountinfo, blkid, sysfs,
DescribeDisks) instead of from anything remembered, so a plugin killed between two steps
converges on the kubelet's next call, and a device is formatted only when a fresh probe
finds it blank.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from csi_disk import capabilities, tokens, topology
from csi_disk.attach import Attacher
from csi_disk.attachable import attachable_categories
from csi_disk.capabilities import published_serial
from csi_disk.cloud.port import Cloud
from csi_disk.cloud.quotas import background
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk.deadlines import Deadline
from csi_disk.errors import (
    Aborted,
    AlreadyExists,
    DriverError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from csi_disk.failpoints import failpoint
from csi_disk.fstypes import check_fs_type, serves
from csi_disk.host import devices, filesystems
from csi_disk.host.bounded import BoundedCalls
from csi_disk.host.linux import LinuxHost
from csi_disk.host.mounts import Mount
from csi_disk.host.paths import (
    ImpossiblePath,
    create_file_inside,
    make_dirs_inside,
    resolve_inside,
    validate_target_path,
)
from csi_disk.host.port import Host
from csi_disk.host.safe_mount import SafeFormatAndMount
from csi_disk.locks import InFlight
from csi_disk.mount_flags import check_mount_flags
from csi_disk.parameters import OMIT_FSCK_KEY
from csi_disk.quoting import quote
from csi_disk.volume_ids import (
    check_id,
    has_control_chars,
    is_disk_id,
    validate_volume_id,
)

log = logging.getLogger(__name__)

RPC = csi_pb2.NodeServiceCapability.RPC
AccessMode = csi_pb2.VolumeCapability.AccessMode

DEFAULT_MAX_VOLUMES = 15  # what the upstream driver reports when ECS does not say
# How often the node looks again at how many disks its instance takes (one DescribeDisks,
# the instance type's quantity being cached): disks attached by others change it.
FACTS_REFRESH = 3600.0
MKFS_OPTIONS_KEY = "mkfsOptions"
# Flags that belong to one mount point and so are reapplied on each bind mount; the rest
# (data=, context=, nouuid, ...) belong to the filesystem and were set when staging.
_PER_MOUNT_FLAGS = frozenset(
    {"nosuid", "nodev", "noexec", "noatime", "relatime", "nodiratime", "strictatime"}
)
# Controller attach mode without a serial in publish_context: no ControllerPublish
# attached the disk, so it is either there already or not coming; udev gets this long.
UNPUBLISHED_DEVICE_GRACE = 2.0


@dataclass(frozen=True)
class _Request:
    """A checked volume capability."""

    block: bool
    fstype: str
    flags: list[str]
    read_only: bool
    single_writer: bool = False  # SINGLE_NODE_SINGLE_WRITER: one publication at a time


def _check_capability(
    capability: csi_pb2.VolumeCapability, field: str = "volume_capability"
) -> _Request:
    """Validate a capability with the controller's own rules, then say what to do.

    Multi-node modes reach a node only for multi-attach disks; ``capabilities.check``
    still refuses them for mounts, since two nodes mounting one ext4/xfs corrupt it.
    """
    capabilities.check(capability, multi_attach=True, field=field)
    read_only = capability.access_mode.mode in capabilities.READ_ONLY_MODES
    single = capability.access_mode.mode == AccessMode.SINGLE_NODE_SINGLE_WRITER
    if capability.WhichOneof("access_type") == "block":
        return _Request(block=True, fstype="", flags=[], read_only=read_only, single_writer=single)
    fstype = check_fs_type(capability.mount.fs_type, f"{field}.mount.fs_type")
    flags = check_mount_flags(capability.mount.mount_flags)
    return _Request(
        block=False, fstype=fstype, flags=flags, read_only=read_only, single_writer=single
    )


def _require_capability(request: Any) -> _Request:
    if not request.HasField("volume_capability"):
        raise InvalidArgument("volume_capability is required")
    return _check_capability(request.volume_capability)


def _remove_if_empty(path: Path) -> None:
    """Remove a directory the driver made; a missing one is done, a busy one stays."""
    try:
        path.rmdir()
    except FileNotFoundError:
        return
    except OSError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EBUSY, errno.EEXIST):
            log.warning("leaving %s in place: %s", quote(path), err.strerror)
            return
        if err.errno == errno.ENOTDIR:
            # The path is a file (a block publication's), or a parent is not a directory,
            # so nothing can be at the path.
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                path.unlink()
            return
        raise


def unmanaged_disk_count(cloud: Cloud, instance_id: str) -> int:
    """Disks attached to the instance that no CSI volume created (system disk included)."""
    count = 0
    token = ""
    while True:
        page = cloud.find_disks(instance_id=instance_id, page_token=token)
        count += sum(
            1
            for d in page.items
            if d.attached_to(instance_id) and tokens.VOLUME_NAME_TAG not in d.tags
        )
        token = page.next_token
        if not token:
            return count


def max_volumes(config: Config, cloud: Cloud | None, instance_id: str, instance_type: str) -> int:
    """How many more volumes this node can take: the instance type's quota minus what the
    driver does not manage. Never 0, which CSI reads as "no limit"."""
    if config.max_volumes_per_node > 0:
        return config.max_volumes_per_node
    if cloud is None:
        return DEFAULT_MAX_VOLUMES
    quantity = cloud.instance_disk_quantity(instance_type) or DEFAULT_MAX_VOLUMES
    free = quantity - unmanaged_disk_count(cloud, instance_id)
    if free < 1:
        log.warning(
            "instance %s (%s) has no free disk slot (%d allowed); reporting 1",
            instance_id,
            instance_type,
            quantity,
        )
        return 1
    return free


class NodeService(csi_pb2_grpc.NodeServicer):
    """The CSI Node service for one ECS instance."""

    def __init__(
        self,
        config: Config,
        *,
        instance_id: str,
        zone: str,
        region: str = "",
        max_volumes_per_node: int = DEFAULT_MAX_VOLUMES,
        attacher: Attacher | None = None,
        host: Host | None = None,
        device_timeout: float = 60.0,
        stats_timeout: float = 10.0,
        disk_types: tuple[str, ...] = (),
    ) -> None:
        if config.attach_mode == "node" and attacher is None:
            raise ValueError("node attach mode needs an attacher (a cloud client)")
        self.config = config
        self.instance_id = instance_id
        self.zone = zone
        self.region = region
        self.disk_types = disk_types  # the categories this instance type attaches
        self._info = self._node_info(max_volumes_per_node)
        self._closed = threading.Event()
        self._attacher = attacher if config.attach_mode == "node" else None
        self._host: Host = host or LinuxHost(config.device_root)
        self._mounter = SafeFormatAndMount(self._host)
        self._device_timeout = device_timeout
        self._stats_timeout = stats_timeout
        self._locks = InFlight()
        # NodeGetVolumeStats looks at the volume's path in a thread it may abandon: a hung
        # filesystem can block even the stat() that finds what is mounted there.
        self._stat_calls = BoundedCalls("volume stats")

    @classmethod
    def from_metadata(
        cls,
        config: Config,
        metadata: Any,
        cloud: Cloud | None,
        waiter: DiskWaiter | None,
        *,
        region: str = "",
        host: Host | None = None,
        attacher: Attacher | None = None,
    ) -> NodeService:
        """Resolve who this node is once, at start: NodeGetInfo then makes no calls.

        ``attacher`` shares the controller's per-instance attach queue when one process
        serves both, so the two never race ECS's one-attach-at-a-time limit.
        """
        instance_id = config.node_id or metadata.instance_id()
        zone = metadata.zone_id()
        region = region or metadata.region_id()
        if config.attach_mode != "node":
            attacher = None
        elif attacher is None:
            if cloud is None or waiter is None:
                raise ValueError("node attach mode needs a cloud client and a waiter")
            attacher = Attacher(cloud, waiter, config)
        instance_type = metadata.instance_type() if cloud is not None else ""
        limit = config.max_volumes_per_node
        if limit <= 0:
            limit = max_volumes(config, cloud, instance_id, instance_type)
        disk_types = attachable_categories(cloud, zone, instance_type, config.disk_categories)
        service = cls(
            config,
            instance_id=instance_id,
            zone=zone,
            region=region,
            max_volumes_per_node=limit,
            attacher=attacher,
            host=host,
            disk_types=disk_types,
        )
        if config.max_volumes_per_node <= 0 and cloud is not None:
            service.refresh_in_background(
                lambda: max_volumes(config, cloud, instance_id, instance_type), FACTS_REFRESH
            )
        return service

    @property
    def max_volumes_per_node(self) -> int:
        return self._info.max_volumes_per_node

    def _node_info(self, max_volumes_per_node: int) -> csi_pb2.NodeGetInfoResponse:
        return csi_pb2.NodeGetInfoResponse(
            node_id=self.instance_id,
            max_volumes_per_node=max_volumes_per_node,
            accessible_topology=csi_pb2.Topology(
                segments=topology.node_segments(
                    self.zone, self.region, self.instance_id, self.disk_types
                )
            ),
        )

    def refresh_in_background(self, look: Callable[[], int], every: float) -> None:
        """Ask ``look`` for the volume limit every ``every`` seconds on a thread of its own:
        NodeGetInfo answers from the last answer and never waits for ECS."""

        def run() -> None:
            while not self._closed.wait(every):
                try:
                    with background():  # after any call a CSI request waits for
                        limit = look()
                except Exception as err:  # keep the last answer; look again next time
                    log.warning("could not look again at this node's volume limit: %s", err)
                    continue
                if limit != self.max_volumes_per_node:
                    log.info(
                        "volume limit of this node: %d (was %d)", limit, self.max_volumes_per_node
                    )
                    self._info = self._node_info(limit)

        threading.Thread(target=run, name="node-facts", daemon=True).start()

    def close(self) -> None:
        """Stop looking again at the node's facts."""
        self._closed.set()

    @property
    def node_id(self) -> str:
        return self.instance_id

    def deadline(self, context: grpc.ServicerContext | None) -> Deadline:
        """The call's deadline: its caller's, never past --operation-timeout."""
        return Deadline.of(context, self.config.operation_timeout)

    def _path(self, text: str, field: str, *, leaf_link_ok: bool = False) -> Path:
        """A caller's path, checked as text and then for links that lead out of the
        kubelet directory (mkdir, mount(8) and open(2) would follow them)."""
        path = validate_target_path(text, self.config.kubelet_dir, field)
        resolve_inside(path, self.config.kubelet_dir, field, leaf_link_ok=leaf_link_ok)
        return path

    @staticmethod
    def _volume_id_at(volume_id: str, volume_path: str) -> str:
        """The volume id of a stats or expand call, once both fields are present."""
        check_id(volume_id, "volume_id")
        if not volume_path:
            raise InvalidArgument("volume_path is required")
        if has_control_chars(volume_path):
            raise InvalidArgument("volume_path contains control characters")
        return validate_volume_id(volume_id)

    def _volume_path(self, text: str, disk_id: str) -> Path:
        """The volume_path of a stats or expand call. Only a path in the kubelet directory
        can hold a volume this plugin published; any other (csi-sanity sends ``some/path``)
        holds none, the spec's NOT_FOUND, answered without looking at that path."""
        try:
            return self._path(text, "volume_path")
        except InvalidArgument as err:
            raise NotFound(f"volume {disk_id} does not exist there: {err.message}") from None

    def _recheck(self, path: Path, field: str) -> None:
        """Check ``path`` again right before mount(8) uses it, so a link swapped in since
        the first check has only the few microseconds until mount(8) resolves it."""
        resolve_inside(path, self.config.kubelet_dir, field)

    # --- info ---------------------------------------------------------------------------

    def NodeGetInfo(
        self, request: csi_pb2.NodeGetInfoRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetInfoResponse:
        """Built from the facts gathered at start (and looked at again in the background),
        never from a call to ECS or the metadata service."""
        return self._info

    def NodeGetCapabilities(
        self, request: csi_pb2.NodeGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetCapabilitiesResponse:
        kinds = (
            RPC.STAGE_UNSTAGE_VOLUME,
            RPC.GET_VOLUME_STATS,
            RPC.VOLUME_CONDITION,
            RPC.SINGLE_NODE_MULTI_WRITER,
            RPC.EXPAND_VOLUME,
        )
        return csi_pb2.NodeGetCapabilitiesResponse(
            capabilities=[csi_pb2.NodeServiceCapability(rpc=RPC(type=k)) for k in kinds]
        )

    # --- stage --------------------------------------------------------------------------

    def NodeStageVolume(
        self, request: csi_pb2.NodeStageVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeStageVolumeResponse:
        deadline = self.deadline(context)
        check_id(request.volume_id, "volume_id")
        staging = self._path(request.staging_target_path, "staging_target_path")
        wanted = _require_capability(request)
        mkfs_options: list[str] = []
        if not wanted.block:
            text = request.volume_context.get(MKFS_OPTIONS_KEY, "")
            mkfs_options = filesystems.parse_mkfs_options(text, wanted.fstype) if text else []
        omit = request.volume_context.get(OMIT_FSCK_KEY, "").strip().lower()
        omit_fsck = omit in ("true", "yes", "1")
        disk_id = validate_volume_id(request.volume_id)
        serial = published_serial(request.publish_context)
        with self._locks.hold(disk_id):
            if wanted.block:
                self._check_unstaged(disk_id, staging)
            device = self._attached_device(disk_id, serial, deadline)
            if not wanted.block:
                self._stage_filesystem(
                    disk_id, device, staging, wanted, mkfs_options, omit_fsck=omit_fsck
                )
        return csi_pb2.NodeStageVolumeResponse()

    def _check_unstaged(self, disk_id: str, staging: Path) -> None:
        """A block volume is staged by attaching alone, so its staging path stays empty; a
        filesystem mounted there was staged by an earlier call with a mount capability."""
        existing = self._host.find_mount(staging)
        if existing is not None:
            raise AlreadyExists(
                f"{quote(staging)} already holds a {existing.fstype} mount: disk {disk_id} "
                "cannot be staged there as a block volume"
            )

    def _attached_device(self, disk_id: str, serial: str, deadline: Deadline) -> Path:
        """Attach (node attach mode) and find the disk's device, checked by its serial."""
        if self._attacher is not None:
            self._attacher.attach(disk_id, self.instance_id, deadline)
            failpoint("stage:after-attach")
            device = self._host.wait_for_device(disk_id, deadline.within(self._device_timeout))
        else:
            device = self._host.find_device(disk_id)
            if device is None:
                timeout = self._device_timeout
                if not serial:
                    timeout = min(timeout, UNPUBLISHED_DEVICE_GRACE)
                try:
                    device = self._host.wait_for_device(disk_id, deadline.within(timeout))
                except DriverError as err:
                    if deadline.expired:
                        raise  # the caller's time ran out, not the device's
                    raise FailedPrecondition(
                        f"disk {disk_id} is not attached to this node ({err.message})"
                    ) from err
        if self._host.device_number(device) is None:
            raise FailedPrecondition(f"{device} for disk {disk_id} is not a block device")
        found = self._host.serial_of(device)
        if serial and found is not None and devices.serial_for(found) != devices.serial_for(serial):
            raise FailedPrecondition(
                f"{device} has serial {quote(found)}, not the {quote(serial)} the controller "
                "reported"
            )
        return device

    def _stage_filesystem(
        self,
        disk_id: str,
        device: Path,
        staging: Path,
        wanted: _Request,
        mkfs_options: list[str],
        *,
        omit_fsck: bool = False,
    ) -> None:
        existing = self._host.find_mount(staging)
        if existing is not None:
            self._check_staged(disk_id, device, staging, existing, wanted)
            if not existing.read_only:
                # A plugin killed between mounting and growing leaves a mounted filesystem
                # smaller than its disk; growing is a no-op when it already fills it.
                self._mounter.grow(disk_id, device, staging, existing.fstype)
            return
        if staging.exists() and not staging.is_dir():
            raise FailedPrecondition(
                f"staging_target_path {quote(staging)} exists and is not a directory"
            )
        self._refuse_raw_block_user(disk_id, device)
        make_dirs_inside(staging, self.config.kubelet_dir, "staging_target_path")
        self._mounter.mount(
            disk_id,
            device,
            staging,
            fstype=wanted.fstype,
            flags=wanted.flags,
            mkfs_options=mkfs_options,
            read_only=wanted.read_only,
            omit_fsck=omit_fsck,
            check_target=lambda: self._recheck(staging, "staging_target_path"),
        )

    def _refuse_raw_block_user(self, disk_id: str, device: Path) -> None:
        """A disk published as a raw block volume holds whatever its user wrote, with or
        without a signature blkid knows: staging it as a filesystem could format it."""
        rdev = self._host.device_number(device)
        if rdev is None:
            return
        own = (os.major(rdev), os.minor(rdev))
        mounts = self._host.mounts_of_device(device)
        raw = [m.mount_point for m in mounts if (m.major, m.minor) != own]
        if raw:
            raise AlreadyExists(
                f"disk {disk_id} is published as a block volume at {quote(raw[0])}: it "
                "cannot be staged as a filesystem"
            )

    def _check_staged(
        self, disk_id: str, device: Path, staging: Path, existing: Mount, wanted: _Request
    ) -> None:
        rdev = self._host.device_number(device)
        if rdev is None or (existing.major, existing.minor) != (os.major(rdev), os.minor(rdev)):
            raise AlreadyExists(
                f"{quote(staging)} already holds another device ({quote(existing.source)}), "
                f"not disk {disk_id}"
            )
        if not serves(existing.fstype, wanted.fstype):
            raise AlreadyExists(
                f"disk {disk_id} is staged as {existing.fstype}, not {wanted.fstype}"
            )
        if existing.read_only and "ro" not in wanted.flags:
            raise AlreadyExists(f"disk {disk_id} is staged read-only at {quote(staging)}")

    def NodeUnstageVolume(
        self, request: csi_pb2.NodeUnstageVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeUnstageVolumeResponse:
        deadline = self.deadline(context)
        disk_id = check_id(request.volume_id, "volume_id")
        try:
            staging = self._path(request.staging_target_path, "staging_target_path")
        except ImpossiblePath:
            return csi_pb2.NodeUnstageVolumeResponse()  # no file has that path: nothing there
        if not is_disk_id(disk_id):
            return csi_pb2.NodeUnstageVolumeResponse()  # names no disk: never staged here
        with self._locks.hold(disk_id):
            if self._host.find_mount(staging) is not None:
                self._host.unmount(staging)
                if self._host.find_mount(staging) is not None:
                    raise FailedPrecondition(
                        f"{quote(staging)} is still mounted after unmounting it"
                    )
                failpoint("unstage:after-unmount")
            _remove_if_empty(staging)
            if self._attacher is not None:
                device = self._host.find_device(disk_id)
                if device is not None:
                    busy = self._host.mounts_of_device(device)
                    if busy:
                        where = quote(busy[0].mount_point)
                        more = f" and {len(busy) - 1} more" if len(busy) > 1 else ""
                        raise FailedPrecondition(
                            f"disk {disk_id} is still mounted at {where}{more}; not detaching it"
                        )
                failpoint("unstage:before-detach")
                self._attacher.detach(disk_id, self.instance_id, deadline)
        return csi_pb2.NodeUnstageVolumeResponse()

    # --- publish ------------------------------------------------------------------------

    def NodePublishVolume(
        self, request: csi_pb2.NodePublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodePublishVolumeResponse:
        check_id(request.volume_id, "volume_id")
        target = self._path(request.target_path, "target_path")
        wanted = _require_capability(request)
        if not request.staging_target_path:
            # The spec's code when STAGE_UNSTAGE_VOLUME is advertised and the path is unset.
            raise FailedPrecondition("staging_target_path is required: volumes are staged first")
        staging = self._path(request.staging_target_path, "staging_target_path")
        disk_id = validate_volume_id(request.volume_id)
        read_only = request.readonly or wanted.read_only
        with self._locks.hold(disk_id):
            if wanted.single_writer:
                self._refuse_second_publication(disk_id, staging, target)
            if wanted.block:
                self._publish_block(disk_id, target, read_only)
            else:
                flags = [f for f in wanted.flags if f in _PER_MOUNT_FLAGS]
                self._publish_mount(disk_id, staging, target, read_only, flags)
        return csi_pb2.NodePublishVolumeResponse()

    def _refuse_second_publication(self, disk_id: str, staging: Path, target: Path) -> None:
        """SINGLE_NODE_SINGLE_WRITER: published at another target already is the spec's
        FAILED_PRECONDITION (the same target is a repeat, answered as before)."""
        device = self._host.find_device(disk_id)
        if device is None:
            return
        ours = {os.path.realpath(staging), os.path.realpath(target)}
        elsewhere = sorted(
            m.mount_point
            for m in self._host.mounts_of_device(device)
            if os.path.realpath(m.mount_point) not in ours
        )
        if elsewhere:
            raise FailedPrecondition(
                f"disk {disk_id} is single-writer and already published at "
                f"{quote(elsewhere[0])}"
            )

    def _publish_mount(
        self, disk_id: str, staging: Path, target: Path, read_only: bool, flags: list[str]
    ) -> None:
        source = self._host.find_mount(staging)
        if source is None:
            raise FailedPrecondition(f"disk {disk_id} is not staged at {quote(staging)}")
        existing = self._host.find_mount(target)
        if existing is not None:
            same = (existing.major, existing.minor, existing.root) == (
                source.major,
                source.minor,
                source.root,
            )
            if not same:
                raise AlreadyExists(
                    f"{quote(target)} already holds another mount ({quote(existing.source)})"
                )
            if existing.read_only != read_only:
                state = "read-only" if existing.read_only else "read-write"
                raise AlreadyExists(f"{quote(target)} is already published {state}")
            return
        if target.exists() and not target.is_dir():
            raise FailedPrecondition(f"target_path {quote(target)} exists and is not a directory")
        make_dirs_inside(target, self.config.kubelet_dir, "target_path")
        failpoint("publish:after-mkdir")
        self._recheck(staging, "staging_target_path")
        self._recheck(target, "target_path")
        self._host.bind_mount(staging, target, read_only, flags)
        failpoint("publish:after-bind")
        suffix = " (read-only)" if read_only else ""
        log.info("disk %s published at %s%s", disk_id, quote(target), suffix)

    def _publish_block(self, disk_id: str, target: Path, read_only: bool) -> None:
        device = self._host.find_device(disk_id)
        if device is None:
            raise FailedPrecondition(f"disk {disk_id} is not attached to this node")
        rdev = self._host.device_number(device)
        if self._host.find_mount(target) is not None:
            if rdev is None or self._host.device_number(target) != rdev:
                raise AlreadyExists(f"{quote(target)} already holds another device")
            return
        if target.is_dir():
            _remove_if_empty(target)  # the kubelet may have made a directory; a file is wanted
            if target.exists():
                raise FailedPrecondition(f"target_path {quote(target)} is a non-empty directory")
        create_file_inside(target, self.config.kubelet_dir, "target_path")
        self._recheck(target, "target_path")
        self._host.bind_mount(device, target, read_only, [])
        log.info(
            "disk %s (%s) published as a block device at %s", disk_id, device, quote(target)
        )

    def NodeUnpublishVolume(
        self, request: csi_pb2.NodeUnpublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeUnpublishVolumeResponse:
        disk_id = check_id(request.volume_id, "volume_id")
        try:
            target = self._path(request.target_path, "target_path", leaf_link_ok=True)
        except ImpossiblePath:
            return csi_pb2.NodeUnpublishVolumeResponse()  # no file has that path: nothing there
        if not is_disk_id(disk_id):
            return csi_pb2.NodeUnpublishVolumeResponse()  # names no disk: never published here
        with self._locks.hold(disk_id):
            if target.is_symlink():
                # Never made by the driver; unmounting through it would unmount wherever
                # it points, so only the link goes.
                target.unlink()
                return csi_pb2.NodeUnpublishVolumeResponse()
            if self._host.find_mount(target) is not None:
                self._host.unmount(target)
                if self._host.find_mount(target) is not None:
                    raise FailedPrecondition(
                        f"{quote(target)} is still mounted after unmounting it"
                    )
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                target.unlink(missing_ok=True)
            else:
                _remove_if_empty(target)
        return csi_pb2.NodeUnpublishVolumeResponse()

    # --- stats and expansion ------------------------------------------------------------

    def NodeGetVolumeStats(
        self, request: csi_pb2.NodeGetVolumeStatsRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetVolumeStatsResponse:
        deadline = self.deadline(context)
        disk_id = self._volume_id_at(request.volume_id, request.volume_path)
        text = request.volume_path
        # Everything below touches the path, and a hung filesystem can block any of it.
        return self._stat_calls.run(
            f"{disk_id} at {text}",
            lambda: self._volume_stats(disk_id, text, deadline),
            deadline.within(self._stats_timeout),
        )

    def _volume_stats(
        self, disk_id: str, text: str, deadline: Deadline
    ) -> csi_pb2.NodeGetVolumeStatsResponse:
        path = self._volume_path(text, disk_id)
        if not path.exists():
            raise NotFound(f"volume path {quote(path)} does not exist")
        Usage = csi_pb2.VolumeUsage
        block_rdev = self._host.device_number(path)
        mounted = self._host.find_mount(path) if block_rdev is None else None
        if block_rdev is None and mounted is None:
            return csi_pb2.NodeGetVolumeStatsResponse(
                volume_condition=csi_pb2.VolumeCondition(
                    abnormal=True, message=f"{quote(path)} is not mounted any more"
                )
            )
        there = block_rdev
        if mounted is not None:
            there = os.makedev(mounted.major, mounted.minor)
        device = self._host.find_device(disk_id)
        if device is None:
            return csi_pb2.NodeGetVolumeStatsResponse(
                volume_condition=csi_pb2.VolumeCondition(
                    abnormal=True, message=f"disk {disk_id} is not attached to this node"
                )
            )
        rdev = self._host.device_number(device)
        if rdev is not None and rdev != there:
            # The spec's NOT_FOUND: the volume does not exist on this path (another does).
            raise NotFound(f"volume {disk_id} is not the volume at {quote(path)}")
        if block_rdev is not None:
            size = self._host.device_size(path)
            return csi_pb2.NodeGetVolumeStatsResponse(
                usage=[Usage(unit=Usage.BYTES, total=size)],
                volume_condition=csi_pb2.VolumeCondition(abnormal=False, message="ok"),
            )
        got = self._host.stats(path, deadline.within(self._stats_timeout))
        return csi_pb2.NodeGetVolumeStatsResponse(
            usage=[
                Usage(
                    unit=Usage.BYTES,
                    total=got.total_bytes,
                    available=got.available_bytes,
                    used=got.used_bytes,
                ),
                Usage(
                    unit=Usage.INODES,
                    total=got.total_inodes,
                    available=got.available_inodes,
                    used=got.used_inodes,
                ),
            ],
            volume_condition=csi_pb2.VolumeCondition(abnormal=False, message="ok"),
        )

    def NodeExpandVolume(
        self, request: csi_pb2.NodeExpandVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeExpandVolumeResponse:
        """Let the kernel see the grown disk, then grow the filesystem online.

        A device still at its old size means the cloud resize has not reached this
        instance yet: ABORTED, so the kubelet retries instead of recording success.
        """
        disk_id = self._volume_id_at(request.volume_id, request.volume_path)
        volume_path = self._volume_path(request.volume_path, disk_id)
        staging = (
            self._path(request.staging_target_path, "staging_target_path")
            if request.staging_target_path
            else None
        )
        required = request.capacity_range.required_bytes
        with self._locks.hold(disk_id):
            device = self._host.find_device(disk_id)
            if device is None:
                raise NotFound(f"disk {disk_id} is not attached to this node")
            self._host.rescan(device)
            size = self._host.device_size(device)
            if required and size < required:
                raise Aborted(
                    f"disk {disk_id} shows {size} bytes on {device}, not yet the "
                    f"{required} requested; the resize has not reached the node"
                )
            if request.HasField("volume_capability"):
                block = request.volume_capability.WhichOneof("access_type") == "block"
            else:
                block = self._host.device_number(volume_path) is not None
            if block:
                return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=size)
            for mount_path in (staging, volume_path):
                mounted = self._host.find_mount(mount_path) if mount_path else None
                if mount_path is not None and mounted is not None:
                    break
            else:
                raise NotFound(f"volume {disk_id} is not mounted at {quote(volume_path)}")
            self._host.grow(device, mount_path, mounted.fstype)
            log.info("disk %s: %s grown to fill %d bytes", disk_id, mounted.fstype, size)
            return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=size)
