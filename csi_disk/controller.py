"""CSI Controller: create, delete, attach, detach, list and describe ECS disks.

Handlers validate, take an in-flight lock, call the cloud port and shape the reply. They
raise ``csi_disk.errors`` classes; the server maps them to gRPC codes. Waiting for a
disk state always goes through the shared waiter, never a private polling loop. Attach and
detach (Publish, Unpublish, detach-before-delete) go through ``csi_disk.attach.Attacher``, the
same rules node attach mode uses.

Snapshots, expansion and modification are added as mixins in front of ``ControllerCore``
in ``ControllerService``'s bases; a mixin advertises its capabilities by extending
``capability_types`` and may accept content sources by overriding ``content_source``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from csi_disk import categories, parameters, topology
from csi_disk.attach import Attacher, Waiter, settle
from csi_disk.categories import GIB
from csi_disk.cloud import port
from csi_disk.cloud.errors import EcsError, is_unsupported_here
from csi_disk.cloud.port import Cloud, Disk, DiskRequest
from csi_disk.config import Config
from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk.errors import (
    Aborted,
    AlreadyExists,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unimplemented,
)
from csi_disk.expansion import ExpansionMixin
from csi_disk.host.paths import validate_volume_id
from csi_disk.locks import InFlight
from csi_disk.modification import ModificationMixin
from csi_disk.parameters import VolumeParameters
from csi_disk.snapshots import SnapshotsMixin
from csi_disk.tokens import VOLUME_NAME_TAG, client_token

log = logging.getLogger(__name__)

AccessMode = csi_pb2.VolumeCapability.AccessMode
RPC = csi_pb2.ControllerServiceCapability.RPC

PUBLISH_SERIAL_KEY = "serial"
LIST_CURSOR_PREFIX = "v1:"
MAX_NAME_LENGTH = 128  # the CSI spec's size limit for string fields, in bytes
KNOWN_NAMES = 10_000  # volume names remembered with their disk ids, most recent kept
TOKEN_GENERATIONS = 8  # bound on following a name's deleted disks to a fresh client token

SINGLE_NODE_MODES = frozenset(
    {
        AccessMode.SINGLE_NODE_WRITER,
        AccessMode.SINGLE_NODE_READER_ONLY,
        AccessMode.SINGLE_NODE_SINGLE_WRITER,
        AccessMode.SINGLE_NODE_MULTI_WRITER,
    }
)
MULTI_NODE_MODES = frozenset(
    {
        AccessMode.MULTI_NODE_READER_ONLY,
        AccessMode.MULTI_NODE_SINGLE_WRITER,
        AccessMode.MULTI_NODE_MULTI_WRITER,
    }
)
FS_TYPES = ("ext4", "ext3", "xfs")


def check_capability(cap: csi_pb2.VolumeCapability, *, multi_attach: bool) -> None:
    """Raise InvalidArgument for a capability this driver cannot serve."""
    kind = cap.WhichOneof("access_type")
    if kind is None:
        raise InvalidArgument("volume capability needs an access type (mount or block)")
    if kind == "mount" and cap.mount.fs_type and cap.mount.fs_type not in FS_TYPES:
        raise InvalidArgument(
            f"filesystem {cap.mount.fs_type} is not supported (use one of {', '.join(FS_TYPES)})"
        )
    mode = cap.access_mode.mode
    if mode in SINGLE_NODE_MODES:
        return
    if mode in MULTI_NODE_MODES:
        name = AccessMode.Mode.Name(mode)
        if kind != "block":
            raise InvalidArgument(
                f"access mode {name} is only possible for block volumes: two nodes mounting "
                "one ext4/xfs filesystem corrupt it"
            )
        if not multi_attach:
            raise InvalidArgument(f"access mode {name} needs a multi-attach disk (multiAttach)")
        return
    raise InvalidArgument(f"access mode {AccessMode.Mode.Name(mode)} is not supported")


def check_capabilities(caps: Sequence[csi_pb2.VolumeCapability], *, multi_attach: bool) -> None:
    if not caps:
        raise InvalidArgument("volume_capabilities are required")
    for cap in caps:
        check_capability(cap, multi_attach=multi_attach)


def _serial(disk: Disk) -> str:
    return disk.serial or disk.id.removeprefix("d-")


class ControllerCore(csi_pb2_grpc.ControllerServicer):
    """The volume lifecycle; see the module docstring for how to extend it."""

    def __init__(self, config: Config, cloud: Cloud, waiter: Waiter, *, default_zone: str) -> None:
        self.config = config
        self.cloud = cloud
        self.waiter = waiter
        self.default_zone = default_zone
        self.name_locks = InFlight()
        self.volume_locks = InFlight()
        self.attacher = Attacher(cloud, waiter, config)
        self.known = KnownVolumes(KNOWN_NAMES)

    # --- helpers shared with mixins --------------------------------------------------------

    @property
    def controller_attach(self) -> bool:
        return self.config.attach_mode == "controller"

    @property
    def timeout(self) -> float:
        return self.config.operation_timeout

    def describe(self, disk_id: str) -> Disk | None:
        disks = self.cloud.describe_disks([disk_id])
        return next((d for d in disks if d.id == disk_id), None)

    def require_disk(self, volume_id: str) -> Disk:
        disk = self.describe(volume_id)
        if disk is None:
            raise NotFound(f"volume {volume_id} does not exist")
        return disk

    def wait_for(self, disk_id: str, until: Callable[[Disk | None], bool]) -> Disk | None:
        return self.waiter.wait(disk_id, until, self.timeout)

    def settle(self, disk: Disk) -> Disk | None:
        """Wait until the disk leaves a transitional status; None once it is gone."""
        return settle(self.waiter, disk, self.timeout)

    def capability_types(self) -> list[int]:
        caps = [
            RPC.CREATE_DELETE_VOLUME,
            RPC.LIST_VOLUMES,
            RPC.GET_VOLUME,
            RPC.LIST_VOLUMES_PUBLISHED_NODES,
            RPC.VOLUME_CONDITION,
            RPC.SINGLE_NODE_MULTI_WRITER,
        ]
        if self.controller_attach:
            caps.insert(1, RPC.PUBLISH_UNPUBLISH_VOLUME)
        return caps

    def content_source(
        self, request: csi_pb2.CreateVolumeRequest
    ) -> tuple[str, csi_pb2.VolumeContentSource | None]:
        """The snapshot id to create from, and the source to echo; overridden for snapshots."""
        if request.HasField("volume_content_source"):
            raise Unimplemented("creating a volume from a snapshot or a volume is not supported")
        return "", None

    # --- CreateVolume ----------------------------------------------------------------------

    def CreateVolume(
        self, request: csi_pb2.CreateVolumeRequest, context: Any = None
    ) -> csi_pb2.CreateVolumeResponse:
        name = request.name
        if not name:
            raise InvalidArgument("name is required")
        if len(name.encode("utf-8")) > MAX_NAME_LENGTH:
            raise InvalidArgument(f"name is longer than {MAX_NAME_LENGTH} bytes")
        params = parameters.parse(request.parameters)
        for warning in params.warnings:
            log.warning("CreateVolume %s: %s", name, warning)
        check_capabilities(request.volume_capabilities, multi_attach=params.multi_attach)
        required = request.capacity_range.required_bytes
        limit = request.capacity_range.limit_bytes
        if required < 0 or limit < 0:
            raise InvalidArgument("capacity_range bytes must not be negative")
        if limit and required > limit:
            raise InvalidArgument(
                f"capacity_range required_bytes {required} exceeds limit_bytes {limit}"
            )
        region = getattr(self.cloud, "region", "")
        if params.region_id and region and params.region_id != region:
            raise InvalidArgument(
                f"parameter regionId={params.region_id}: this controller serves {region}"
            )
        snapshot_id, source = self.content_source(request)
        requirement = (
            request.accessibility_requirements
            if request.HasField("accessibility_requirements")
            else None
        )
        zones = topology.zones_in_order(requirement, params.zone_param, self.default_zone)
        with self.name_locks.hold(name):
            disk = self._known_disk(name, params, zones, required, limit)
            if disk is None:
                disk = self._create(name, params, zones, required, limit, snapshot_id)
            settled = self.settle(disk)
            for _ in range(TOKEN_GENERATIONS):
                if settled is not None:
                    break
                # ECS answers a used token with the disk it made then, even once that disk
                # is deleted: the name lives again under a token derived from the dead disk,
                # the same on every retry, so a lost reply still finds its disk.
                log.info("CreateVolume %s: disk %s is gone; creating anew", name, disk.id)
                token = client_token(f"{name}@{disk.id}")
                disk = self._create(name, params, zones, required, limit, snapshot_id, token)
                settled = self.settle(disk)
            if settled is None:
                self.known.forget(name)
                raise ResourceExhausted(f"disk {disk.id} for {name} vanished while being created")
            self.known.remember(name, settled.id)
            category, level = settled.category, self._level_of(settled, params)
            return csi_pb2.CreateVolumeResponse(
                volume=csi_pb2.Volume(
                    volume_id=settled.id,
                    capacity_bytes=settled.size_gib * GIB,
                    volume_context=params.volume_context(category, level),
                    accessible_topology=[
                        csi_pb2.Topology(segments=topology.volume_segment(settled.zone))
                    ],
                    content_source=source,
                )
            )

    def _known_disk(
        self,
        name: str,
        params: VolumeParameters,
        zones: Sequence[str],
        required: int,
        limit: int,
    ) -> Disk | None:
        """The disk this process already made for ``name``, re-read; None when unknown or gone.

        A repeat then costs one DescribeDisks and no CreateDisk. Names this process has not
        seen go straight to CreateDisk, whose client token finds an earlier disk: looking each
        new name up by tag first would cost a DescribeDisks per volume.
        """
        disk_id = self.known.get(name)
        if disk_id is None:
            return None
        disk = self.describe(disk_id)
        if disk is None or disk.tags.get(VOLUME_NAME_TAG) != name:
            self.known.forget(name)
            return None
        self._check_existing(disk, params, zones, required, limit, name)
        return disk

    def _find_by_name(self, name: str) -> Disk | None:
        found = self.cloud.find_disks(tags={VOLUME_NAME_TAG: name}, max_results=10).items
        found = [d for d in found if d.tags.get(VOLUME_NAME_TAG) == name]
        if len(found) > 1:
            ids = ", ".join(d.id for d in found)
            log.error("volume name %s is tagged on several disks: %s", name, ids)
        return found[0] if found else None

    @staticmethod
    def _level_of(disk: Disk, params: VolumeParameters) -> str:
        return disk.performance_level if categories.has_performance_levels(disk.category) else ""

    def _check_existing(
        self,
        disk: Disk,
        params: VolumeParameters,
        zones: Sequence[str],
        required: int,
        limit: int,
        name: str,
    ) -> None:
        """AlreadyExists when the disk created earlier under ``name`` differs from this request."""
        problems = []
        if disk.size_gib * GIB < required or (limit and disk.size_gib * GIB > limit):
            problems.append(f"size {disk.size_gib} GiB is outside the requested range")
        if disk.zone not in zones:
            problems.append(f"zone {disk.zone} is not among {','.join(zones)}")
        if disk.category not in params.types:
            problems.append(f"category {disk.category} is not among {','.join(params.types)}")
        elif (
            params.performance_levels
            and disk.performance_level
            and categories.has_performance_levels(disk.category)
            and disk.performance_level not in params.performance_levels
        ):
            problems.append(f"performance level {disk.performance_level} was not requested")
        if disk.encrypted != params.encrypted:
            problems.append(f"encrypted is {disk.encrypted}")
        elif params.kms_key_id and disk.kms_key_id and disk.kms_key_id != params.kms_key_id:
            problems.append("it is encrypted with another KMS key")
        if disk.multi_attach != params.multi_attach:
            problems.append(f"multiAttach is {disk.multi_attach}")
        if params.resource_group_id and disk.resource_group_id != params.resource_group_id:
            problems.append(f"resource group is {disk.resource_group_id or 'the default'}")
        if problems:
            raise AlreadyExists(
                f"volume {name} already exists as disk {disk.id} but " + "; ".join(problems)
            )

    def _create(
        self,
        name: str,
        params: VolumeParameters,
        zones: Sequence[str],
        required: int,
        limit: int,
        snapshot_id: str,
        token: str = "",
    ) -> Disk:
        """Try each category in the first zone; fall back only on "not possible here" answers.

        Returns the disk as far as CreateDisk tells (status Creating) or, when the name's
        token was used with other arguments, the disk found under the name; the caller's
        wait through the shared waiter reads the rest, so a create costs no DescribeDisks
        of its own.
        """
        zone = zones[0]
        token = token or client_token(name)
        tags = {**params.tags, VOLUME_NAME_TAG: name}
        refusals: list[str] = []
        size_only = True
        for category, level in params.attempts():
            label = f"{category}.{level}" if level else category
            try:
                size = categories.fit_size(
                    category, level, required, limit, raise_to_minimum=params.auto_size
                )
            except OutOfRange as err:
                refusals.append(err.message)
                continue
            desc = categories.category(category)
            request = DiskRequest(
                zone=zone,
                category=category,
                size_gib=size,
                client_token=token,
                name=name if _valid_disk_name(name) else "",
                description=f"created for volume {name}"[:256],
                performance_level=level,
                encrypted=params.encrypted,
                kms_key_id=params.kms_key_id if params.encrypted else "",
                resource_group_id=params.resource_group_id,
                tags=tags,
                multi_attach=params.multi_attach,
                snapshot_id=snapshot_id,
                provisioned_iops=params.provisioned_iops if desc.provisioned_iops else None,
                bursting_enabled=params.bursting_enabled if desc.bursting else None,
            )
            try:
                disk = self._create_disk(request, name, params, zones, required, limit)
            except EcsError as err:
                if not is_unsupported_here(err):
                    raise
                size_only = False
                refusals.append(f"{label}: {err.message}")
                log.info("CreateVolume %s: %s not possible in %s: %s", name, label, zone, err)
                continue
            log.info(
                "CreateVolume %s: disk %s (%s, %d GiB) in %s", name, disk.id, label, size, zone
            )
            return disk
        summary = "; ".join(refusals)
        if size_only and refusals:
            raise OutOfRange(f"no category fits the requested capacity: {summary}")
        raise ResourceExhausted(f"no disk category can be created in {zone}: {summary}")

    def _create_disk(
        self,
        request: DiskRequest,
        name: str,
        params: VolumeParameters,
        zones: Sequence[str],
        required: int,
        limit: int,
    ) -> Disk:
        try:
            return _creating(request, self.cloud.create_disk(request))
        except EcsError as err:
            if err.ecs_code != "IdempotentParameterMismatch":
                raise
        # The token was used before with other arguments: a disk for this name may exist.
        existing = self._find_by_name(name)
        if existing is not None:
            self._check_existing(existing, params, zones, required, limit, name)
            return existing
        # No disk carries the name: the earlier one was deleted and the name comes back
        # with other arguments. A token derived from them stays idempotent across retries.
        log.info("CreateVolume %s: token used before with other arguments; deriving one", name)
        fresh = dataclasses.replace(request, client_token="")
        fresh = dataclasses.replace(fresh, client_token=client_token(f"{name}@{fresh!r}"))
        return _creating(fresh, self.cloud.create_disk(fresh))

    # --- DeleteVolume ----------------------------------------------------------------------

    def DeleteVolume(
        self, request: csi_pb2.DeleteVolumeRequest, context: Any = None
    ) -> csi_pb2.DeleteVolumeResponse:
        volume_id = validate_volume_id(request.volume_id)
        with self.volume_locks.hold(volume_id):
            disk = self.describe(volume_id)
            if disk is not None:
                disk = self.settle(disk)
            if disk is None:
                return csi_pb2.DeleteVolumeResponse()
            self.attacher.release(
                disk, force=self.config.detach_before_delete, purpose="deleting it"
            )
            with contextlib.suppress(NotFound):
                self.cloud.delete_disk(volume_id)
            log.info("DeleteVolume: disk %s deleted", volume_id)
            return csi_pb2.DeleteVolumeResponse()

    # --- attach and detach -----------------------------------------------------------------

    def ControllerPublishVolume(
        self, request: csi_pb2.ControllerPublishVolumeRequest, context: Any = None
    ) -> csi_pb2.ControllerPublishVolumeResponse:
        if not self.controller_attach:
            raise Unimplemented("attach happens on the node (--attach-mode node)")
        volume_id = validate_volume_id(request.volume_id)
        node_id = request.node_id
        if not node_id:
            raise InvalidArgument("node_id is required")
        if not request.HasField("volume_capability"):
            raise InvalidArgument("volume_capability is required")
        with self.volume_locks.hold(volume_id):
            disk = self.require_disk(volume_id)
            check_capability(request.volume_capability, multi_attach=disk.multi_attach)
            disk = self.attacher.attach(volume_id, node_id, known=disk)
            log.info("ControllerPublishVolume: %s attached to %s", volume_id, node_id)
            return self._published(disk)

    @staticmethod
    def _published(disk: Disk) -> csi_pb2.ControllerPublishVolumeResponse:
        return csi_pb2.ControllerPublishVolumeResponse(
            publish_context={PUBLISH_SERIAL_KEY: _serial(disk)}
        )

    def ControllerUnpublishVolume(
        self, request: csi_pb2.ControllerUnpublishVolumeRequest, context: Any = None
    ) -> csi_pb2.ControllerUnpublishVolumeResponse:
        if not self.controller_attach:
            raise Unimplemented("detach happens on the node (--attach-mode node)")
        volume_id = validate_volume_id(request.volume_id)
        with self.volume_locks.hold(volume_id):
            if request.node_id:
                self.attacher.detach(volume_id, request.node_id)
            else:  # the spec's "from every node it is published to"
                disk = self.describe(volume_id)
                for instance_id in disk.attachments if disk is not None else ():
                    self.attacher.detach(volume_id, instance_id)
            return csi_pb2.ControllerUnpublishVolumeResponse()

    # --- queries ---------------------------------------------------------------------------

    def ValidateVolumeCapabilities(
        self, request: csi_pb2.ValidateVolumeCapabilitiesRequest, context: Any = None
    ) -> csi_pb2.ValidateVolumeCapabilitiesResponse:
        volume_id = validate_volume_id(request.volume_id)
        if not request.volume_capabilities:
            raise InvalidArgument("volume_capabilities are required")
        disk = self.require_disk(volume_id)
        try:
            check_capabilities(request.volume_capabilities, multi_attach=disk.multi_attach)
        except InvalidArgument as err:
            return csi_pb2.ValidateVolumeCapabilitiesResponse(message=err.message)
        return csi_pb2.ValidateVolumeCapabilitiesResponse(
            confirmed=csi_pb2.ValidateVolumeCapabilitiesResponse.Confirmed(
                volume_context=request.volume_context,
                volume_capabilities=request.volume_capabilities,
                parameters=request.parameters,
            )
        )

    def ListVolumes(
        self, request: csi_pb2.ListVolumesRequest, context: Any = None
    ) -> csi_pb2.ListVolumesResponse:
        if request.max_entries < 0:
            raise InvalidArgument("max_entries must not be negative")
        token = request.starting_token
        if token and not token.startswith(LIST_CURSOR_PREFIX):
            raise Aborted(f"starting_token {token[:40]!r} was not issued by this driver")
        cloud_token = token.removeprefix(LIST_CURSOR_PREFIX)
        try:
            page = self.cloud.find_disks(
                page_token=cloud_token, max_results=request.max_entries or 100
            )
        except InvalidArgument as err:
            if not token:
                raise
            raise Aborted(f"starting_token is no longer valid: {err.message}") from None
        entries = [
            csi_pb2.ListVolumesResponse.Entry(
                volume=self._volume(d),
                status=csi_pb2.ListVolumesResponse.VolumeStatus(
                    published_node_ids=list(d.attachments),
                    volume_condition=self._condition(d),
                ),
            )
            for d in page.items
            if VOLUME_NAME_TAG in d.tags
        ]
        next_token = LIST_CURSOR_PREFIX + page.next_token if page.next_token else ""
        return csi_pb2.ListVolumesResponse(entries=entries, next_token=next_token)

    def ControllerGetVolume(
        self, request: csi_pb2.ControllerGetVolumeRequest, context: Any = None
    ) -> csi_pb2.ControllerGetVolumeResponse:
        volume_id = validate_volume_id(request.volume_id)
        disk = self.require_disk(volume_id)
        return csi_pb2.ControllerGetVolumeResponse(
            volume=self._volume(disk),
            status=csi_pb2.ControllerGetVolumeResponse.VolumeStatus(
                published_node_ids=list(disk.attachments),
                volume_condition=self._condition(disk),
            ),
        )

    def ControllerGetCapabilities(
        self, request: csi_pb2.ControllerGetCapabilitiesRequest, context: Any = None
    ) -> csi_pb2.ControllerGetCapabilitiesResponse:
        Capability = csi_pb2.ControllerServiceCapability
        return csi_pb2.ControllerGetCapabilitiesResponse(
            capabilities=[Capability(rpc=Capability.RPC(type=t)) for t in self.capability_types()]
        )

    @staticmethod
    def _volume(disk: Disk) -> csi_pb2.Volume:
        return csi_pb2.Volume(
            volume_id=disk.id,
            capacity_bytes=disk.size_gib * GIB,
            accessible_topology=[csi_pb2.Topology(segments=topology.volume_segment(disk.zone))],
        )

    @staticmethod
    def _condition(disk: Disk) -> csi_pb2.VolumeCondition:
        healthy = {port.AVAILABLE, port.IN_USE, port.ATTACHING, port.DETACHING, port.CREATING}
        if disk.status in healthy:
            return csi_pb2.VolumeCondition(abnormal=False, message=f"disk is {disk.status}")
        return csi_pb2.VolumeCondition(abnormal=True, message=f"disk is {disk.status}")


def _creating(request: DiskRequest, disk_id: str) -> Disk:
    """What CreateDisk's answer tells about the new disk, before anyone describes it."""
    return Disk(
        id=disk_id,
        zone=request.zone,
        category=request.category,
        size_gib=request.size_gib,
        status=port.CREATING,
        performance_level=request.performance_level,
        tags=dict(request.tags or {}),
    )


class KnownVolumes:
    """Volume name -> disk id for disks this process created, bounded, most recent kept."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._ids.get(name)

    def remember(self, name: str, disk_id: str) -> None:
        with self._lock:
            self._ids[name] = disk_id
            self._ids.move_to_end(name)
            while len(self._ids) > self._capacity:
                self._ids.popitem(last=False)

    def forget(self, name: str) -> None:
        with self._lock:
            self._ids.pop(name, None)


_DISK_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9:_-]{1,127}")


def _valid_disk_name(name: str) -> bool:
    """Whether ECS takes ``name`` as a DiskName (the tag keeps any name in full)."""
    return _DISK_NAME.fullmatch(name) is not None


class ControllerService(SnapshotsMixin, ExpansionMixin, ModificationMixin, ControllerCore):
    """The Controller service as served: ``ControllerCore`` plus feature mixins in front."""
