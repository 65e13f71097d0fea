"""Snapshot handlers and restores against the in-memory cloud."""

from __future__ import annotations

import dataclasses

import pytest

from csi_disk.categories import GIB
from csi_disk.cloud import port
from csi_disk.controller import ControllerService
from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import (
    Aborted,
    AlreadyExists,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
)
from csi_disk.snapshots import SNAPSHOT_NAME_TAG, parse_parameters
from csi_disk.tokens import client_token
from tests.fakes import InMemoryCloud, ecs_error
from tests.unit import controller_helpers
from tests.waiting import wait_until

RPC = csi_pb2.ControllerServiceCapability.RPC
SNAPSHOTTER = {
    "csi.storage.k8s.io/volumesnapshot/name": "snap",
    "csi.storage.k8s.io/volumesnapshot/namespace": "apps",
    "csi.storage.k8s.io/volumesnapshotcontent/name": "snapcontent-1",
}


cloud = controller_helpers.cloud
ctl = controller_helpers.ctl


def snap_request(
    source: str, name: str = "snapshot-1", params: dict[str, str] | None = None
) -> csi_pb2.CreateSnapshotRequest:
    return csi_pb2.CreateSnapshotRequest(
        source_volume_id=source, name=name, parameters=params or {}
    )


def restore_request(
    snapshot_id: str, required: int = 0, name: str = "pvc-r"
) -> csi_pb2.CreateVolumeRequest:
    req = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=required),
        volume_capabilities=[
            csi_pb2.VolumeCapability(
                mount=csi_pb2.VolumeCapability.MountVolume(),
                access_mode=csi_pb2.VolumeCapability.AccessMode(mode=1),
            )
        ],
    )
    req.volume_content_source.snapshot.snapshot_id = snapshot_id
    return req


def test_capabilities_advertise_snapshots(ctl: ControllerService) -> None:
    resp = ctl.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
    types = {c.rpc.type for c in resp.capabilities}
    assert {
        RPC.CREATE_DELETE_SNAPSHOT,
        RPC.LIST_SNAPSHOTS,
        RPC.GET_SNAPSHOT,
        RPC.CREATE_DELETE_VOLUME,
    } <= types
    assert RPC.CLONE_VOLUME not in types


def test_create_snapshot_tags_tokens_and_reports(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk(size_gib=40)
    snap = ctl.CreateSnapshot(snap_request(disk.id, params=SNAPSHOTTER)).snapshot
    # ECS uploads a new snapshot first: the first answer is never ready.
    assert (snap.source_volume_id, snap.size_bytes, snap.ready_to_use) == (disk.id, 40 * GIB, False)
    stored = cloud.snapshots[snap.snapshot_id]
    assert stored.tags[SNAPSHOT_NAME_TAG] == "snapshot-1"
    assert stored.tags["kubernetes.io/created-for/volumesnapshot/namespace"] == "apps"
    assert ("create_snapshot", (disk.id, "snapshot-1", client_token("snapshot-1"))) in cloud.log
    again = ctl.CreateSnapshot(snap_request(disk.id, params=SNAPSHOTTER)).snapshot
    assert again.snapshot_id == snap.snapshot_id and again.ready_to_use
    assert cloud.calls["create_snapshot"] == 1


def test_create_snapshot_reports_progress_until_ready(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk()
    first = ctl.CreateSnapshot(snap_request(disk.id)).snapshot
    cloud.snapshots[first.snapshot_id] = dataclasses.replace(
        cloud.snapshots[first.snapshot_id], status=port.SNAPSHOT_PROGRESSING
    )
    assert not ctl.CreateSnapshot(snap_request(disk.id)).snapshot.ready_to_use
    cloud.snapshots[first.snapshot_id] = dataclasses.replace(
        cloud.snapshots[first.snapshot_id], status=port.SNAPSHOT_ACCOMPLISHED
    )
    assert ctl.CreateSnapshot(snap_request(disk.id)).snapshot.ready_to_use


def test_create_snapshot_errors(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk()
    other = cloud.add_disk()
    with pytest.raises(InvalidArgument, match="name"):
        ctl.CreateSnapshot(snap_request(disk.id, name=""))
    with pytest.raises(InvalidArgument, match="source_volume_id"):
        ctl.CreateSnapshot(snap_request(""))
    with pytest.raises(InvalidArgument, match="bogus"):
        ctl.CreateSnapshot(snap_request(disk.id, params={"bogus": "1"}))
    with pytest.raises(NotFound):
        ctl.CreateSnapshot(snap_request("d-missing"))
    with pytest.raises(NotFound, match="not an ECS disk id"):
        ctl.CreateSnapshot(snap_request("fake-vol-id"))
    ctl.CreateSnapshot(snap_request(disk.id))
    with pytest.raises(AlreadyExists, match=disk.id):
        ctl.CreateSnapshot(snap_request(other.id))
    cloud.fail("create_snapshot", ecs_error("QuotaExceed.Snapshot", action="CreateSnapshot"))
    with pytest.raises(ResourceExhausted):
        ctl.CreateSnapshot(snap_request(disk.id, name="snapshot-2"))


def test_parameters_retention_and_upstream_keys() -> None:
    parsed = parse_parameters({"retentionDays": "7", "instantAccess": "true", **SNAPSHOTTER})
    assert parsed.retention_days == 7
    assert any("instantAccess" in w for w in parsed.warnings)
    for bad in ("never", "0", "-1", "\u0667", "\u00b2", "65537", "1e3"):
        with pytest.raises(InvalidArgument, match="retentionDays"):
            parse_parameters({"retentionDays": bad})
    with pytest.raises(InvalidArgument, match="control character"):
        parse_parameters({"csi.storage.k8s.io/volumesnapshot/name": "a\nforged"})


def test_delete_snapshot_is_idempotent_and_forces(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk()
    snap = ctl.CreateSnapshot(snap_request(disk.id)).snapshot
    req = csi_pb2.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id)
    ctl.DeleteSnapshot(req)
    ctl.DeleteSnapshot(req)
    assert snap.snapshot_id not in cloud.snapshots
    assert ("delete_snapshot", (snap.snapshot_id, True)) in cloud.log
    with pytest.raises(InvalidArgument):
        ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=""))
    # No snapshot can have these ids: deleted already, without asking ECS.
    calls = sum(cloud.calls.values())
    for nameless in ("../x", "reallyfakesnapshotid", "d-bp1"):
        ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=nameless))
    assert sum(cloud.calls.values()) == calls


def test_delete_snapshot_a_volume_was_restored_from(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    """ECS keeps such a snapshot unless told Force: the volume is a full disk of its own."""
    disk = cloud.add_disk(size_gib=20)
    snap = ctl.CreateSnapshot(snap_request(disk.id)).snapshot
    wait_until(lambda: ctl.CreateSnapshot(snap_request(disk.id)).snapshot.ready_to_use, "ready")
    restored = ctl.CreateVolume(restore_request(snap.snapshot_id)).volume
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id))
    assert snap.snapshot_id not in cloud.snapshots
    assert cloud.disk(restored.volume_id).snapshot_id == snap.snapshot_id


def test_list_snapshots_by_id_source_and_pages(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk()
    other = cloud.add_disk()
    ids = [ctl.CreateSnapshot(snap_request(disk.id, name=f"s-{i}")).snapshot.snapshot_id
           for i in range(5)]  # fmt: skip
    ctl.CreateSnapshot(snap_request(other.id, name="elsewhere"))
    one = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id=ids[2]))
    assert [e.snapshot.snapshot_id for e in one.entries] == [ids[2]]
    none = ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id="s-unknown"))
    assert list(none.entries) == []
    # Filters no snapshot or disk can match list nothing, without asking ECS.
    calls = sum(cloud.calls.values())
    for request in (
        csi_pb2.ListSnapshotsRequest(snapshot_id="none-exist-id"),
        csi_pb2.ListSnapshotsRequest(source_volume_id="fake-vol-id-1"),
        csi_pb2.ListSnapshotsRequest(snapshot_id=ids[2], source_volume_id="../x"),
    ):
        reply = ctl.ListSnapshots(request)
        assert list(reply.entries) == [] and not reply.next_token
    assert sum(cloud.calls.values()) == calls
    with pytest.raises(InvalidArgument, match="snapshot_id"):
        ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(snapshot_id="s-x\n"))
    seen: list[str] = []
    token = ""
    for _ in range(100):  # a paging bug must not loop forever
        page = ctl.ListSnapshots(
            csi_pb2.ListSnapshotsRequest(
                source_volume_id=disk.id, max_entries=2, starting_token=token
            )
        )
        assert len(page.entries) <= 2
        seen += [e.snapshot.snapshot_id for e in page.entries]
        token = page.next_token
        if not token:
            break
    else:
        pytest.fail("the listing never ended")
    assert sorted(seen) == sorted(ids)
    with pytest.raises(Aborted):
        ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(starting_token="garbage"))
    with pytest.raises(InvalidArgument):
        ctl.ListSnapshots(csi_pb2.ListSnapshotsRequest(max_entries=-1))


def test_restore_sizes_from_the_snapshot_and_echoes_the_source(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk(size_gib=30)
    snap = ctl.CreateSnapshot(snap_request(disk.id)).snapshot
    vol = ctl.CreateVolume(restore_request(snap.snapshot_id)).volume
    assert vol.capacity_bytes == 30 * GIB
    assert vol.content_source.snapshot.snapshot_id == snap.snapshot_id
    assert cloud.disk(vol.volume_id).snapshot_id == snap.snapshot_id
    bigger = ctl.CreateVolume(restore_request(snap.snapshot_id, 50 * GIB, name="pvc-big")).volume
    assert bigger.capacity_bytes == 50 * GIB


def test_restore_describes_its_snapshot_once(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk(size_gib=30)
    snap = ctl.CreateSnapshot(snap_request(disk.id)).snapshot
    before = cloud.calls["describe_snapshots"]
    ctl.CreateVolume(restore_request(snap.snapshot_id))
    assert cloud.calls["describe_snapshots"] - before == 1


def test_restore_errors(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk(size_gib=30)
    snap = ctl.CreateSnapshot(snap_request(disk.id)).snapshot
    with pytest.raises(OutOfRange, match="30 GiB"):
        ctl.CreateVolume(restore_request(snap.snapshot_id, 20 * GIB))
    with pytest.raises(NotFound):
        ctl.CreateVolume(restore_request("s-missing"))
    with pytest.raises(NotFound, match="not an ECS snapshot id"):
        ctl.CreateVolume(restore_request("fake-snapshot-id"))
    cloud.snapshots[snap.snapshot_id] = dataclasses.replace(
        cloud.snapshots[snap.snapshot_id], status=port.SNAPSHOT_PROGRESSING
    )
    with pytest.raises(Aborted, match="not ready"):
        ctl.CreateVolume(restore_request(snap.snapshot_id))
    assert cloud.calls["create_disk"] == 0


def test_get_snapshot_by_id(ctl: ControllerService, cloud: InMemoryCloud) -> None:
    disk = cloud.add_disk(size_gib=30)
    made = ctl.CreateSnapshot(snap_request(disk.id)).snapshot
    got = ctl.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=made.snapshot_id)).snapshot
    assert (got.snapshot_id, got.source_volume_id, got.size_bytes, got.ready_to_use) == (
        made.snapshot_id,
        disk.id,
        30 * GIB,
        True,
    )
    cloud.snapshots[made.snapshot_id] = dataclasses.replace(
        cloud.snapshots[made.snapshot_id], status=port.SNAPSHOT_PROGRESSING
    )
    req = csi_pb2.GetSnapshotRequest(snapshot_id=made.snapshot_id)
    assert not ctl.GetSnapshot(req).snapshot.ready_to_use
    ctl.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=made.snapshot_id))
    with pytest.raises(NotFound, match=made.snapshot_id):
        ctl.GetSnapshot(req)
    for bad in ("", "s-x\n"):
        with pytest.raises(InvalidArgument, match="snapshot_id"):
            ctl.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=bad))
    for nameless in ("s-a/../b", "d-bp1", "none-exist-id"):
        with pytest.raises(NotFound, match="not an ECS snapshot id"):
            ctl.GetSnapshot(csi_pb2.GetSnapshotRequest(snapshot_id=nameless))


def test_create_snapshot_refuses_control_characters_in_the_name(
    ctl: ControllerService, cloud: InMemoryCloud
) -> None:
    disk = cloud.add_disk()
    with pytest.raises(InvalidArgument, match="name"):
        ctl.CreateSnapshot(snap_request(disk.id, name="snap\nINFO forged"))
    assert cloud.calls["create_snapshot"] == 0 and cloud.calls["describe_snapshots"] == 0


def test_a_reused_name_never_makes_a_second_snapshot_when_a_reply_is_lost(
    ctl: ControllerService, cloud: InMemoryCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name's client token was spent on a snapshot of another volume, since deleted.
    The first CreateSnapshot makes the snapshot under another token and its reply is lost;
    the tag lookup of the retry lags behind the new snapshot. The retry must get the same
    snapshot, not a second one (a token derived from the arguments, never none)."""
    old, disk = cloud.add_disk(), cloud.add_disk()
    spent = cloud.create_snapshot(old.id, name="", client_token=client_token("snap-x"))
    cloud.delete_snapshot(spent, force=True)
    real = cloud.describe_snapshots

    def lagging(*args: object, **kwargs: object) -> port.Page[port.Snapshot]:
        if kwargs.get("tags"):
            return port.Page(items=[], next_token="")  # the new tag is not indexed yet
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cloud, "describe_snapshots", lagging)
    first = ctl.CreateSnapshot(snap_request(disk.id, name="snap-x")).snapshot
    retry = ctl.CreateSnapshot(snap_request(disk.id, name="snap-x")).snapshot
    assert retry.snapshot_id == first.snapshot_id
    assert [s.id for s in cloud.snapshots.values() if s.source_disk_id == disk.id] == [
        first.snapshot_id
    ]
    tokens = [args[-1] for name, args in cloud.log if name == "create_snapshot"]
    assert all(tokens), "a CreateSnapshot went out without a client token"
