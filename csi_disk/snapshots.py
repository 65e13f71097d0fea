"""CSI snapshots: Create, Delete, Get and ListSnapshots, and volumes restored from one.

CreateVolume asks ``Snapshots.restore_source`` once for its content source. Idempotency
follows volumes: the ECS ClientToken is
derived from the CSI snapshot name and the snapshot carries the name as a tag, so a retry
finds the snapshot whether or not the first answer arrived. CreateSnapshot never waits for
ECS to finish: it answers ``ready_to_use=false`` and the snapshotter calls again.
"""

from __future__ import annotations

import calendar
import dataclasses
import json
import logging
import re
import time
from collections.abc import Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from csi_disk.categories import GIB
from csi_disk.cloud.errors import EcsError
from csi_disk.cloud.port import Snapshot
from csi_disk.csi_pb import csi_pb2
from csi_disk.disks import Disks
from csi_disk.errors import (
    Aborted,
    AlreadyExists,
    InvalidArgument,
    NotFound,
    OutOfRange,
)
from csi_disk.locks import InFlight
from csi_disk.parameters import parse_count
from csi_disk.quoting import quote
from csi_disk.tokens import client_token
from csi_disk.volume_ids import (
    check_id,
    has_control_chars,
    is_disk_id,
    is_snapshot_id,
    validate_name,
    validate_snapshot_id,
    validate_volume_id,
)

log = logging.getLogger(__name__)

RPC = csi_pb2.ControllerServiceCapability.RPC

SNAPSHOT_NAME_TAG = "csi.alibabacloud.com/snapshot-name"
SNAPSHOT_CURSOR_PREFIX = "s1:"
MAX_RETENTION_DAYS = 65536

# What external-snapshotter adds with --extra-create-metadata, and the disk tags they become.
SNAPSHOTTER_TAGS = {
    "csi.storage.k8s.io/volumesnapshot/name": "kubernetes.io/created-for/volumesnapshot/name",
    "csi.storage.k8s.io/volumesnapshot/namespace": (
        "kubernetes.io/created-for/volumesnapshot/namespace"
    ),
    "csi.storage.k8s.io/volumesnapshotcontent/name": (
        "kubernetes.io/created-for/volumesnapshotcontent/name"
    ),
}
RETENTION_DAYS_KEY = "retentionDays"
# VolumeSnapshotClass parameters of the upstream driver this one accepts but does not act on.
IGNORED = {
    "instantAccess": "instant access snapshots are not created by this driver",
    "instantAccessRetentionDays": "instant access snapshots are not created by this driver",
    "snapshotType": "only standard snapshots are created",
    "resourceGroupId": "snapshots stay in the default resource group",
}

_SNAPSHOT_NAME = re.compile(r"[a-zA-Z\u4e00-\u9fa5][\w.:-]{1,127}")


@dataclasses.dataclass(frozen=True)
class SnapshotParameters:
    tags: dict[str, str]
    retention_days: int | None
    warnings: tuple[str, ...]


def parse_parameters(params: Mapping[str, str]) -> SnapshotParameters:
    """VolumeSnapshotClass parameters; an unknown key is INVALID_ARGUMENT naming it."""
    tags: dict[str, str] = {}
    warnings: list[str] = []
    retention: int | None = None
    for key, value in sorted(params.items()):
        if has_control_chars(key) or has_control_chars(value):
            raise InvalidArgument(f"snapshot parameter {quote(key)} holds a control character")
        if key in SNAPSHOTTER_TAGS:
            tags[SNAPSHOTTER_TAGS[key]] = value
        elif key == RETENTION_DAYS_KEY:
            retention = parse_count(key, value, MAX_RETENTION_DAYS)
            if retention < 1:
                raise InvalidArgument(f"parameter {key}={quote(value)} must be at least one day")
        elif key in IGNORED:
            warnings.append(f"parameter {key} is ignored: {IGNORED[key]}")
        else:
            raise InvalidArgument(f"unknown snapshot parameter {quote(key)}")
    return SnapshotParameters(tags, retention, tuple(warnings))


def _timestamp(text: str) -> Timestamp | None:
    """ECS times (``2024-05-01T10:00Z`` or with seconds) as a protobuf Timestamp."""
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%MZ"):
        try:
            seconds = calendar.timegm(time.strptime(text, fmt))
        except ValueError:
            continue
        return Timestamp(seconds=seconds)
    return None


def snapshot_message(snap: Snapshot) -> csi_pb2.Snapshot:
    message = csi_pb2.Snapshot(
        snapshot_id=snap.id,
        source_volume_id=snap.source_disk_id,
        size_bytes=snap.source_disk_size_gib * GIB,
        ready_to_use=snap.ready,
    )
    created = _timestamp(snap.creation_time)
    if created is not None:
        message.creation_time.CopyFrom(created)
    return message


@dataclasses.dataclass(frozen=True)
class Restore:
    """The snapshot a CreateVolume restores, checked to be usable."""

    snapshot_id: str
    size_gib: int  # of the disk it was taken from: the least the volume may have
    source: csi_pb2.VolumeContentSource  # echoed in the CreateVolume reply


class Snapshots:
    """The snapshot RPCs, and the restore source of CreateVolume, over the shared disks."""

    capabilities = (RPC.CREATE_DELETE_SNAPSHOT, RPC.LIST_SNAPSHOTS, RPC.GET_SNAPSHOT)

    def __init__(self, disks: Disks) -> None:
        self._disks = disks
        self._cloud = disks.cloud
        self._names = InFlight()  # one CreateSnapshot per snapshot name at a time

    def describe_snapshot(self, snapshot_id: str) -> Snapshot | None:
        page = self._cloud.describe_snapshots(snapshot_ids=[snapshot_id], max_results=10)
        return next((s for s in page.items if s.id == snapshot_id), None)

    # --- restore ---------------------------------------------------------------------------

    def restore_source(self, request: csi_pb2.CreateVolumeRequest) -> Restore | None:
        """The snapshot a CreateVolume restores, checked to be usable; None without one.

        The one place the source snapshot is described: CreateVolume calls it once.
        """
        if not request.HasField("volume_content_source"):
            return None
        source = request.volume_content_source
        if source.WhichOneof("type") != "snapshot":
            # The spec's code for a source the plugin cannot create from: INVALID_ARGUMENT.
            raise InvalidArgument(
                "creating a volume from another volume (cloning) is not supported"
            )
        snapshot_id = validate_snapshot_id(source.snapshot.snapshot_id)
        snap = self.describe_snapshot(snapshot_id)
        if snap is None:
            raise NotFound(f"snapshot {snapshot_id} does not exist")
        if snap.status == "failed":
            raise NotFound(f"snapshot {snapshot_id} failed and cannot be restored")
        if not snap.ready:
            raise Aborted(f"snapshot {snapshot_id} is not ready yet ({snap.progress or 'pending'})")
        size = snap.source_disk_size_gib * GIB
        required = request.capacity_range.required_bytes
        limit = request.capacity_range.limit_bytes
        if required and required < size:
            raise OutOfRange(
                f"snapshot {snapshot_id} holds {snap.source_disk_size_gib} GiB; the volume must "
                f"be at least that large, not {required} bytes"
            )
        if limit and limit < size:
            raise OutOfRange(
                f"snapshot {snapshot_id} holds {snap.source_disk_size_gib} GiB, more than "
                f"limit_bytes {limit}"
            )
        return Restore(snapshot_id, snap.source_disk_size_gib, source)

    # --- CreateSnapshot --------------------------------------------------------------------

    def create(self, request: csi_pb2.CreateSnapshotRequest) -> csi_pb2.CreateSnapshotResponse:
        name = validate_name(request.name)
        check_id(request.source_volume_id, "source_volume_id")
        params = parse_parameters(request.parameters)
        source = validate_volume_id(request.source_volume_id, "source_volume_id")
        for warning in params.warnings:
            log.warning("CreateSnapshot %s: %s", name, warning)
        with self._names.hold(name):
            existing = self._find_snapshot(name)
            if existing is None:
                existing = self._create_snapshot(name, source, params)
            if existing.source_disk_id != source:
                raise AlreadyExists(
                    f"snapshot {name} already exists as {existing.id} of volume "
                    f"{existing.source_disk_id}, not of {source}"
                )
            return csi_pb2.CreateSnapshotResponse(snapshot=snapshot_message(existing))

    def _find_snapshot(self, name: str) -> Snapshot | None:
        found = self._cloud.describe_snapshots(tags={SNAPSHOT_NAME_TAG: name}, max_results=10)
        matches = [s for s in found.items if s.tags.get(SNAPSHOT_NAME_TAG) == name]
        if len(matches) > 1:
            log.error("snapshot name %s is tagged on %s", name, ", ".join(s.id for s in matches))
        return matches[0] if matches else None

    def _create_snapshot(self, name: str, source: str, params: SnapshotParameters) -> Snapshot:
        self._disks.require(source)
        tags = {**params.tags, SNAPSHOT_NAME_TAG: name}
        ecs_name = name if _SNAPSHOT_NAME.fullmatch(name) and not name.startswith(
            ("auto", "http")
        ) else ""  # fmt: skip
        arguments = json.dumps(
            [source, ecs_name, sorted(tags.items()), params.retention_days], sort_keys=True
        )
        snapshot_id = self._create_under(name, source, ecs_name, tags, params, client_token(name))
        if snapshot_id is None:
            # The name's token made a snapshot with other arguments (of another volume, or
            # with other tags) and the tag lookup found none carrying the name. Never create
            # without a token: a lost reply and a tag lookup lagging behind the new snapshot
            # would then make a second one. A token derived from the arguments is the same on
            # every retry, so ECS answers the first snapshot made under it.
            log.info("CreateSnapshot %s: token used with other arguments; deriving one", name)
            derived = client_token(f"{name}@{arguments}")
            snapshot_id = self._create_under(name, source, ecs_name, tags, params, derived)
            if snapshot_id is None:
                raise Aborted(f"CreateSnapshot {name}: ECS refuses both client tokens; retrying")
        log.info("CreateSnapshot %s: snapshot %s of %s", name, snapshot_id, source)
        snap = self.describe_snapshot(snapshot_id)
        if snap is None:  # not listed yet: report what was asked for, not ready
            disk = self._disks.require(source)
            snap = Snapshot(
                id=snapshot_id,
                source_disk_id=source,
                source_disk_size_gib=disk.size_gib,
                status="progressing",
                tags=tags,
            )
        return snap

    def _create_under(
        self,
        name: str,
        source: str,
        ecs_name: str,
        tags: dict[str, str],
        params: SnapshotParameters,
        token: str,
    ) -> str | None:
        """CreateSnapshot under ``token``; None when ECS answers that the token was used
        with other arguments."""
        try:
            return self._cloud.create_snapshot(
                source,
                name=ecs_name,
                client_token=token,
                tags=tags,
                retention_days=params.retention_days,
            )
        except EcsError as err:
            if err.ecs_code != "IdempotentParameterMismatch":
                raise
            return None

    # --- DeleteSnapshot --------------------------------------------------------------------

    def delete(self, request: csi_pb2.DeleteSnapshotRequest) -> csi_pb2.DeleteSnapshotResponse:
        snapshot_id = check_id(request.snapshot_id, "snapshot_id")
        if not is_snapshot_id(snapshot_id):
            return csi_pb2.DeleteSnapshotResponse()  # names no snapshot: deleted already
        with self._disks.locks.hold(snapshot_id):
            try:
                # Force: volumes restored from it are full disks of their own.
                self._cloud.delete_snapshot(snapshot_id, force=True)
            except NotFound:
                pass
            else:
                log.info("DeleteSnapshot: snapshot %s deleted", snapshot_id)
        return csi_pb2.DeleteSnapshotResponse()

    # --- GetSnapshot -----------------------------------------------------------------------

    def get(self, request: csi_pb2.GetSnapshotRequest) -> csi_pb2.GetSnapshotResponse:
        """One snapshot by id; NOT_FOUND once it is gone (the snapshotter then stops asking)."""
        snapshot_id = validate_snapshot_id(request.snapshot_id)
        snap = self.describe_snapshot(snapshot_id)
        if snap is None:
            raise NotFound(f"snapshot {snapshot_id} does not exist")
        return csi_pb2.GetSnapshotResponse(snapshot=snapshot_message(snap))

    # --- ListSnapshots ---------------------------------------------------------------------

    def list(self, request: csi_pb2.ListSnapshotsRequest) -> csi_pb2.ListSnapshotsResponse:
        if request.max_entries < 0:
            raise InvalidArgument("max_entries must not be negative")
        limit = request.max_entries or 100
        cloud_token, offset = _parse_cursor(request.starting_token)
        snapshot_id = request.snapshot_id and check_id(request.snapshot_id, "snapshot_id")
        source = request.source_volume_id and check_id(request.source_volume_id, "source_volume_id")
        if (snapshot_id and not is_snapshot_id(snapshot_id)) or (source and not is_disk_id(source)):
            return csi_pb2.ListSnapshotsResponse()  # a filter that names nothing matches nothing
        snapshot_ids = [snapshot_id] if snapshot_id else []
        try:
            page = self._cloud.describe_snapshots(
                snapshot_ids=snapshot_ids,
                disk_id=request.source_volume_id,
                page_token=cloud_token,
                max_results=max(limit, 10),
            )
        except InvalidArgument as err:
            if not request.starting_token:
                raise
            raise Aborted(f"starting_token is no longer valid: {err.message}") from None
        if offset > len(page.items):
            raise Aborted("starting_token does not match the listing any more")
        items = page.items[offset : offset + limit]
        if offset + limit < len(page.items):
            next_token = f"{SNAPSHOT_CURSOR_PREFIX}{offset + limit}:{cloud_token}"
        elif page.next_token:
            next_token = f"{SNAPSHOT_CURSOR_PREFIX}0:{page.next_token}"
        else:
            next_token = ""
        entries = [
            csi_pb2.ListSnapshotsResponse.Entry(snapshot=snapshot_message(s))
            for s in items
            if not request.source_volume_id or s.source_disk_id == request.source_volume_id
        ]
        return csi_pb2.ListSnapshotsResponse(entries=entries, next_token=next_token)


def _parse_cursor(token: str) -> tuple[str, int]:
    """``s1:<offset>:<ECS token>`` -> (ECS token, offset into that page); ABORTED if foreign."""
    if not token:
        return "", 0
    if not token.startswith(SNAPSHOT_CURSOR_PREFIX):
        raise Aborted(f"starting_token {quote(token)} was not issued by this driver")
    offset, sep, cloud_token = token.removeprefix(SNAPSHOT_CURSOR_PREFIX).partition(":")
    if not sep or not offset.isdigit():
        raise Aborted(f"starting_token {quote(token)} is malformed")
    return cloud_token, int(offset)
