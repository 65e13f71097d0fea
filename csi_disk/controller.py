"""CSI Controller: create, delete, attach, detach, list and describe ECS disks.

Handlers validate, take an in-flight lock, call the cloud port and shape the reply. They
raise ``csi_disk.errors`` classes; the server maps them to gRPC codes. Waiting for a
disk state always goes through the shared waiter, never a private polling loop. Attach and
detach (Publish, Unpublish, detach-before-delete) go through ``csi_disk.attach.Attacher``, the
same rules node attach mode uses.

Snapshots, expansion and modification are collaborators over the shared ``Disks``
interface: the servicer delegates their RPCs to them, CreateVolume asks ``Snapshots`` once
for the snapshot it restores, and each advertises its own capabilities.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from csi_disk import capabilities, categories, parameters, placement, topology
from csi_disk.attach import Attacher
from csi_disk.capacity import Capacity
from csi_disk.categories import GIB
from csi_disk.cloud import port
from csi_disk.cloud.errors import (
    EcsError,
    EcsNoStock,
    is_unsupported_here,
    refused_for_disk_status,
)
from csi_disk.cloud.port import Cloud, Disk, DiskRequest
from csi_disk.config import Config
from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk.deadlines import Deadline
from csi_disk.disks import Disks, Waiter
from csi_disk.errors import (
    Aborted,
    AlreadyExists,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unimplemented,
)
from csi_disk.expansion import Expansion
from csi_disk.locks import InFlight
from csi_disk.modification import Modification, with_mutable
from csi_disk.parameters import VolumeParameters
from csi_disk.quoting import quote
from csi_disk.snapshots import Snapshots
from csi_disk.tokens import VOLUME_NAME_TAG, client_token
from csi_disk.volume_ids import (
    check_id,
    is_disk_id,
    is_instance_id,
    validate_instance_id,
    validate_name,
    validate_volume_id,
)

log = logging.getLogger(__name__)

RPC = csi_pb2.ControllerServiceCapability.RPC

LIST_CURSOR_PREFIX = "v1:"
KNOWN_NAMES = 10_000  # volume names remembered with their disk ids, most recent kept
TOKEN_GENERATIONS = 8  # bound on following a name's deleted disks to a fresh client token


@dataclasses.dataclass(frozen=True)
class _Asked:
    """One CreateVolume, checked: what a disk found or made for ``name`` must be."""

    name: str
    params: VolumeParameters
    zones: Sequence[str]
    required: int
    limit: int
    snapshot_id: str
    reach: placement.Reach = placement.NOWHERE  # what the nodes that will use it attach


def _serial(disk: Disk) -> str:
    return disk.serial or disk.id.removeprefix("d-")


class ControllerService(csi_pb2_grpc.ControllerServicer):
    """The CSI Controller service: the volume lifecycle, and the features it delegates to."""

    def __init__(self, config: Config, cloud: Cloud, waiter: Waiter, *, default_zone: str) -> None:
        self.config = config
        self.cloud = cloud
        self.default_zone = default_zone
        self.disks = Disks(cloud, waiter)
        self.name_locks = InFlight()
        self.attacher = Attacher(cloud, waiter, config)
        self.known = KnownVolumes(KNOWN_NAMES)
        self.snapshots = Snapshots(self.disks)
        self.expansion = Expansion(self.disks)
        self.modification = Modification(self.disks)
        self.capacity = Capacity(cloud, refresh_interval=config.stock_refresh_interval)

    @property
    def controller_attach(self) -> bool:
        return self.config.attach_mode == "controller"

    def deadline(self, context: Any) -> Deadline:
        """The call's deadline: its caller's, never past --operation-timeout."""
        return Deadline.of(context, self.config.operation_timeout)

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
        features = (self.modification, self.expansion, self.snapshots, self.capacity)
        return caps + [kind for feature in features for kind in feature.capabilities]

    # --- CreateVolume ----------------------------------------------------------------------

    def CreateVolume(
        self, request: csi_pb2.CreateVolumeRequest, context: Any = None
    ) -> csi_pb2.CreateVolumeResponse:
        deadline = self.deadline(context)
        restore = self.snapshots.restore_source(request)
        name = validate_name(request.name)
        params = with_mutable(parameters.parse(request.parameters), request.mutable_parameters)
        for warning in params.warnings:
            log.warning("CreateVolume %s: %s", name, warning)
        capabilities.check_all(request.volume_capabilities, multi_attach=params.multi_attach)
        required = request.capacity_range.required_bytes
        limit = request.capacity_range.limit_bytes
        if restore is not None and not required:
            required = restore.size_gib * GIB  # without a capacity, as large as the snapshot
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
        requirement = (
            request.accessibility_requirements
            if request.HasField("accessibility_requirements")
            else None
        )
        zones = topology.zones_in_order(requirement, params.zone_param, self.default_zone)
        snapshot_id = restore.snapshot_id if restore is not None else ""
        reach = placement.reach_of(requirement)
        asked = _Asked(name, params, zones, required, limit, snapshot_id, reach)
        with self.name_locks.hold(name):
            disk = self._known_disk(asked)
            if disk is None:
                disk = self._create(asked)
                # Known before it settles: a retry after this call's deadline waits for
                # this disk instead of asking ECS for another.
                self.known.remember(name, disk.id)
            settled = self.disks.settle(disk, deadline)
            for _ in range(TOKEN_GENERATIONS):
                if settled is not None:
                    break
                if deadline.expired:
                    # Every generation shares the call's one deadline: the caller's retry
                    # follows the same chain of tokens to the same disks.
                    raise DeadlineExceeded(
                        f"disk {disk.id} for {name} vanished while being created; the next "
                        "call creates it anew"
                    )
                # ECS answers a used token with the disk it made then, even once that disk
                # is deleted: the name lives again under a token derived from the dead disk,
                # the same on every retry, so a lost reply still finds its disk.
                log.info("CreateVolume %s: disk %s is gone; creating anew", name, disk.id)
                token = client_token(f"{name}@{disk.id}")
                disk = self._create(asked, token)
                self.known.remember(name, disk.id)
                settled = self.disks.settle(disk, deadline)
            if settled is None:
                self.known.forget(name)
                raise ResourceExhausted(f"disk {disk.id} for {name} vanished while being created")
            self.known.remember(name, settled.id)
            category = settled.category
            level = categories.effective_level(category, settled.performance_level)
            zone = _zone_of(settled)
            segments = topology.volume_segment(
                zone,
                region=region,
                category=category,
                attached_by_type=reach.reported(zone, category),
            )
            return csi_pb2.CreateVolumeResponse(
                volume=csi_pb2.Volume(
                    volume_id=settled.id,
                    capacity_bytes=settled.size_gib * GIB,
                    volume_context=params.volume_context(category, level),
                    accessible_topology=[csi_pb2.Topology(segments=segments)],
                    content_source=restore.source if restore is not None else None,
                )
            )

    def _known_disk(self, asked: _Asked) -> Disk | None:
        """The disk this process already made for ``name``, re-read; None when unknown or gone.

        A repeat then costs one DescribeDisks and no CreateDisk. Names this process has not
        seen go straight to CreateDisk, whose client token finds an earlier disk: looking each
        new name up by tag first would cost a DescribeDisks per volume.
        """
        disk_id = self.known.get(asked.name)
        if disk_id is None:
            return None
        disk = self.disks.describe(disk_id)
        if disk is None or disk.tags.get(VOLUME_NAME_TAG) != asked.name:
            self.known.forget(asked.name)
            return None
        self._check_existing(disk, asked)
        return disk

    def _find_by_name(self, name: str) -> Disk | None:
        found = self.cloud.find_disks(tags={VOLUME_NAME_TAG: name}, max_results=10).items
        found = [d for d in found if d.tags.get(VOLUME_NAME_TAG) == name]
        if len(found) > 1:
            ids = ", ".join(d.id for d in found)
            log.error("volume name %s is tagged on several disks: %s", name, ids)
        return found[0] if found else None

    @staticmethod
    def _check_existing(disk: Disk, asked: _Asked) -> None:
        """AlreadyExists when the disk created earlier under ``name`` differs from this request."""
        params, zones, required, limit = asked.params, asked.zones, asked.required, asked.limit
        problems = []
        if disk.size_gib * GIB < required or (limit and disk.size_gib * GIB > limit):
            problems.append(f"size {disk.size_gib} GiB is outside the requested range")
        if not categories.is_regional(disk.category) and disk.zone not in zones:
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
                f"volume {asked.name} already exists as disk {disk.id} but " + "; ".join(problems)
            )

    def _create(self, asked: _Asked, token: str = "") -> Disk:
        """Try each zone in order and, within a zone, each category; fall back only on
        "not possible here" answers (NoStock, category, size or level not sold there).

        One client token serves every attempt of a request: ECS binds it to the arguments of
        the attempt that succeeded, so a retry whose earlier zones have stock again gets
        IdempotentParameterMismatch there instead of a second disk, and finds the disk under
        the name's tag or at the attempt with the same arguments. Returns the disk as far as
        CreateDisk tells (status Creating); the caller's wait through the shared waiter reads
        the rest, so a create costs no DescribeDisks of its own.
        """
        name = asked.name
        attempts, every, size_refusals, left_out = self._attempts(asked)
        if not attempts and not left_out:
            raise OutOfRange(f"no category fits the requested capacity: {'; '.join(size_refusals)}")
        if not attempts:
            # Nothing ECS could create for the nodes that will use it: the provisioner sends
            # the pod back to the scheduler, with no CreateDisk refused.
            raise ResourceExhausted(
                f"no disk category can be created for volume {name}: {'; '.join(left_out)}"
            )
        disk = self._create_first(asked, attempts, token or client_token(name))
        if disk is not None:
            return disk
        # The token made a disk with other arguments and no disk carries the name: the
        # earlier one was deleted and the name comes back asking for something else. A token
        # derived from these arguments (not from one zone or category, nor from what the stock
        # read left out) stays idempotent across retries that find other zones with stock.
        log.info("CreateVolume %s: token used before with other arguments; deriving one", name)
        derived = client_token(f"{name}@{_fingerprint(every)}")
        disk = self._create_first(asked, attempts, derived)
        if disk is None:
            raise Aborted(f"CreateVolume {name}: ECS refuses both client tokens; retrying")
        return disk

    def _attempts(
        self, asked: _Asked
    ) -> tuple[list[DiskRequest], list[DiskRequest], list[str], list[str]]:
        """Every CreateDisk to try, best first (zone by zone), without a client token; every
        one the request allows, whatever the nodes and the stock say; why the categories left
        out cannot hold the requested capacity; and why the (zone, category) pairs the nodes'
        disk types and the stock rule out were left out."""
        name, params, snapshot_id = asked.name, asked.params, asked.snapshot_id
        tags = {**params.tags, VOLUME_NAME_TAG: name}
        sized: list[DiskRequest] = []
        refusals: list[str] = []
        for category, level in params.attempts():
            try:
                size = categories.fit_size(
                    category, level, asked.required, asked.limit, raise_to_minimum=params.auto_size
                )
            except OutOfRange as err:
                refusals.append(err.message)
                continue
            desc = categories.category(category)
            sized.append(
                DiskRequest(
                    zone="",
                    category=category,
                    size_gib=size,
                    client_token="",
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
            )
        by_choice = {(r.category, r.performance_level): r for r in sized}
        tries, left_out = placement.plan(
            list(by_choice), asked.zones, asked.reach, self.capacity.stock(), self.cloud.region
        )
        attempts = [dataclasses.replace(by_choice[(c, lvl)], zone=z) for z, c, lvl in tries]
        every = [dataclasses.replace(r, zone=zone) for zone in asked.zones for r in sized]
        return attempts, every, refusals, left_out

    def _create_first(
        self, asked: _Asked, attempts: Sequence[DiskRequest], token: str
    ) -> Disk | None:
        """The first disk CreateDisk makes (or already made) under ``token``.

        None when ECS answered IdempotentParameterMismatch to every attempt not refused
        otherwise and no disk carries the name: the token belongs to a disk that is gone.
        RESOURCE_EXHAUSTED when every (zone, category) is out of stock or not sold.
        """
        name = asked.name
        refusals: list[str] = []
        mismatched = False
        for attempt in attempts:
            request = dataclasses.replace(attempt, client_token=token)
            label = placement.label(request.category, request.performance_level)
            try:
                disk_id = self.cloud.create_disk(request)
            except EcsError as err:
                if err.ecs_code == "IdempotentParameterMismatch":
                    if not mismatched:
                        mismatched = True
                        existing = self._find_by_name(name)
                        if existing is not None:
                            self._check_existing(existing, asked)
                            return existing
                    # The tag lookup may lag a fresh disk: the attempt with the arguments
                    # the token was used with answers its id, and none of the others can
                    # create a disk under it.
                    continue
                if err.ecs_code.startswith("InvalidZoneId"):
                    raise InvalidArgument(
                        f"zone {request.zone} is not an ECS zone this account can use in the "
                        f"region: check the zoneId parameter and the topology ({err.message})"
                    ) from None
                if not is_unsupported_here(err):
                    raise
                if isinstance(err, EcsNoStock):
                    self.capacity.note_sold_out(request.zone, request.category)
                refusals.append(f"{label} in {request.zone or 'the region'}: {err.message}")
                log.info(
                    "CreateVolume %s: %s not possible in %s: %s", name, label, request.zone, err
                )
                continue
            log.info(
                "CreateVolume %s: disk %s (%s, %d GiB) in %s",
                name,
                disk_id,
                label,
                request.size_gib,
                request.zone,
            )
            return _creating(request, disk_id)
        if mismatched:
            return None
        zones = ", ".join(dict.fromkeys(a.zone for a in attempts))
        raise ResourceExhausted(
            f"no disk category can be created in {zones}: {'; '.join(refusals)}"
        )

    # --- DeleteVolume ----------------------------------------------------------------------

    def DeleteVolume(
        self, request: csi_pb2.DeleteVolumeRequest, context: Any = None
    ) -> csi_pb2.DeleteVolumeResponse:
        deadline = self.deadline(context)
        volume_id = check_id(request.volume_id, "volume_id")
        if not is_disk_id(volume_id):
            return csi_pb2.DeleteVolumeResponse()  # names no disk: deleted already
        with self.disks.locks.hold(volume_id):
            try:
                self.cloud.delete_disk(volume_id)
            except NotFound:
                return csi_pb2.DeleteVolumeResponse()
            except EcsError as err:
                if not refused_for_disk_status(err):
                    raise
                # Attached, or still creating or changing: look, settle, free it, again.
                self._delete_busy(volume_id, deadline)
            log.info("DeleteVolume: disk %s deleted", volume_id)
            return csi_pb2.DeleteVolumeResponse()

    def _delete_busy(self, volume_id: str, deadline: Deadline) -> None:
        """Delete a disk ECS refused to delete for its status: wait until it settles, detach
        it from holders that are not Running (or any, with --detach-before-delete)."""
        disk = self.disks.describe(volume_id)
        if disk is not None:
            disk = self.disks.settle(disk, deadline)
        if disk is None:
            return
        self.attacher.release(
            disk, deadline, force=self.config.detach_before_delete, purpose="deleting it"
        )
        with contextlib.suppress(NotFound):
            self.cloud.delete_disk(volume_id)

    # --- attach and detach -----------------------------------------------------------------

    def ControllerPublishVolume(
        self, request: csi_pb2.ControllerPublishVolumeRequest, context: Any = None
    ) -> csi_pb2.ControllerPublishVolumeResponse:
        if not self.controller_attach:
            raise Unimplemented("attach happens on the node (--attach-mode node)")
        deadline = self.deadline(context)
        check_id(request.volume_id, "volume_id")
        check_id(request.node_id, "node_id")
        if not request.HasField("volume_capability"):
            raise InvalidArgument("volume_capability is required")
        volume_id = validate_volume_id(request.volume_id)
        node_id = validate_instance_id(request.node_id)
        capability = request.volume_capability
        capabilities.check(capability, multi_attach=True)  # its shape, before any ECS call
        with self.disks.locks.hold(volume_id):
            known = None
            if capability.access_mode.mode in capabilities.MULTI_NODE_MODES:
                # Only a multi-node mode depends on the disk: it needs a multi-attach one.
                known = self.disks.require(volume_id)
                capabilities.check(capability, multi_attach=known.multi_attach)
            disk = self.attacher.attach(volume_id, node_id, deadline, known=known)
            log.info("ControllerPublishVolume: %s attached to %s", volume_id, node_id)
            return self._published(disk)

    @staticmethod
    def _published(disk: Disk) -> csi_pb2.ControllerPublishVolumeResponse:
        return csi_pb2.ControllerPublishVolumeResponse(
            publish_context=capabilities.publish_context(_serial(disk))
        )

    def ControllerUnpublishVolume(
        self, request: csi_pb2.ControllerUnpublishVolumeRequest, context: Any = None
    ) -> csi_pb2.ControllerUnpublishVolumeResponse:
        if not self.controller_attach:
            raise Unimplemented("detach happens on the node (--attach-mode node)")
        deadline = self.deadline(context)
        volume_id = check_id(request.volume_id, "volume_id")
        node_id = check_id(request.node_id, "node_id") if request.node_id else ""
        if not is_disk_id(volume_id) or (node_id and not is_instance_id(node_id)):
            return csi_pb2.ControllerUnpublishVolumeResponse()  # nothing there to detach
        with self.disks.locks.hold(volume_id):
            if node_id:
                self.attacher.detach(volume_id, node_id, deadline)
            else:  # the spec's "from every node it is published to"
                disk = self.disks.describe(volume_id)
                for instance_id in disk.attachments if disk is not None else ():
                    self.attacher.detach(volume_id, instance_id, deadline)
            return csi_pb2.ControllerUnpublishVolumeResponse()

    # --- queries ---------------------------------------------------------------------------

    def ValidateVolumeCapabilities(
        self, request: csi_pb2.ValidateVolumeCapabilitiesRequest, context: Any = None
    ) -> csi_pb2.ValidateVolumeCapabilitiesResponse:
        check_id(request.volume_id, "volume_id")
        if not request.volume_capabilities:
            raise InvalidArgument("volume_capabilities are required")
        disk = self.disks.require(validate_volume_id(request.volume_id))
        try:
            # What CreateVolume would refuse is not confirmed either: the same checks, so a
            # capability confirmed here is one the node will mount.
            parameters.parse(request.parameters)
            capabilities.check_all(request.volume_capabilities, multi_attach=disk.multi_attach)
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
        """Every disk in the region, paged, with the instances it is attached to.

        Not only the disks this driver created: external-attacher re-publishes every
        VolumeAttachment whose volume the listing lacks, so hiding static volumes would
        re-attach them every resync period.
        """
        if request.max_entries < 0:
            raise InvalidArgument("max_entries must not be negative")
        token = request.starting_token
        if token and not token.startswith(LIST_CURSOR_PREFIX):
            raise Aborted(f"starting_token {quote(token)} was not issued by this driver")
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
        ]
        next_token = LIST_CURSOR_PREFIX + page.next_token if page.next_token else ""
        return csi_pb2.ListVolumesResponse(entries=entries, next_token=next_token)

    def ControllerGetVolume(
        self, request: csi_pb2.ControllerGetVolumeRequest, context: Any = None
    ) -> csi_pb2.ControllerGetVolumeResponse:
        volume_id = validate_volume_id(request.volume_id)
        disk = self.disks.require(volume_id)
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

    def _volume(self, disk: Disk) -> csi_pb2.Volume:
        segments = topology.volume_segment(_zone_of(disk), region=disk.region or self.cloud.region)
        return csi_pb2.Volume(
            volume_id=disk.id,
            capacity_bytes=disk.size_gib * GIB,
            accessible_topology=[csi_pb2.Topology(segments=segments)],
        )

    @staticmethod
    def _condition(disk: Disk) -> csi_pb2.VolumeCondition:
        healthy = {port.AVAILABLE, port.IN_USE, port.ATTACHING, port.DETACHING, port.CREATING}
        if disk.status in healthy:
            return csi_pb2.VolumeCondition(abnormal=False, message=f"disk is {disk.status}")
        return csi_pb2.VolumeCondition(abnormal=True, message=f"disk is {disk.status}")


    # --- features ------------------------------------------------------------------------

    def GetCapacity(
        self, request: csi_pb2.GetCapacityRequest, context: Any = None
    ) -> csi_pb2.GetCapacityResponse:
        return self.capacity.get(request, self.cloud.region)

    def CreateSnapshot(
        self, request: csi_pb2.CreateSnapshotRequest, context: Any = None
    ) -> csi_pb2.CreateSnapshotResponse:
        return self.snapshots.create(request)

    def DeleteSnapshot(
        self, request: csi_pb2.DeleteSnapshotRequest, context: Any = None
    ) -> csi_pb2.DeleteSnapshotResponse:
        return self.snapshots.delete(request)

    def GetSnapshot(
        self, request: csi_pb2.GetSnapshotRequest, context: Any = None
    ) -> csi_pb2.GetSnapshotResponse:
        return self.snapshots.get(request)

    def ListSnapshots(
        self, request: csi_pb2.ListSnapshotsRequest, context: Any = None
    ) -> csi_pb2.ListSnapshotsResponse:
        return self.snapshots.list(request)

    def ControllerExpandVolume(
        self, request: csi_pb2.ControllerExpandVolumeRequest, context: Any = None
    ) -> csi_pb2.ControllerExpandVolumeResponse:
        return self.expansion.expand(request, self.deadline(context))

    def ControllerModifyVolume(
        self, request: csi_pb2.ControllerModifyVolumeRequest, context: Any = None
    ) -> csi_pb2.ControllerModifyVolumeResponse:
        return self.modification.modify(request, self.deadline(context))


def _zone_of(disk: Disk) -> str:
    """The zone a disk is used in; none for a regional disk, whatever ECS shows as its zone."""
    return "" if categories.is_regional(disk.category) else disk.zone


def _fingerprint(attempts: Sequence[DiskRequest]) -> str:
    """The arguments of a request's attempts, independent of order and of dict ordering."""
    rows = sorted(json.dumps(dataclasses.asdict(a), sort_keys=True) for a in attempts)
    return json.dumps(rows)


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
