"""Hypothesis strategies for every CSI request: mostly hostile, sometimes right.

Each field draws from values that mean something to the plugin (the seeded disk, snapshot
and instance, paths in the kubelet directory, links planted there, upstream parameter keys)
and from values that should not (other shapes, control characters, names no file can have,
strings far over every limit). A request that is right often enough reaches the cloud and
the host, where the interesting failures are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from csi_disk.csi_pb import csi_pb2
from tests.fuzz.conftest import SECRET_MARK, Rig

Cap = csi_pb2.VolumeCapability
HUGE = "k" * 100_000
ODD = [
    "", " ", "\n", "\x00", "x\ny", "\u202eevil", "\u2028", "..", "../..", "/", "//",
    "a" * 129, "a" * 300, "é" * 70, "卷" * 43, "🙂" * 40, HUGE,
]  # fmt: skip
FSTYPES = ["", "ext4", "xfs", "ext3", "EXT4", "ntfs", "btrfs", "ext4 -F", "xfs\n"]
MOUNT_FLAGS = [
    "noatime", "ro", "rw", "nodev,nosuid", "bind", "remount", "data=ordered", "context=\"a\"",
    "x-mount.mkdir", "loop", "--bind", "offset=1", "uid=0", "exec", "noexec,noatime",
]  # fmt: skip
PARAM_KEYS = [
    "type", "performanceLevel", "zoneId", "regionId", "encrypted", "kmsKeyId", "fsType",
    "mkfsOptions", "diskTags", "diskTags/team", "multiAttach", "provisionedIops",
    "burstingEnabled", "resourceGroupId", "volumeSizeAutoAvailable", "omitfsck", "readOnly",
    "csi.storage.k8s.io/pvc/name", "csi.storage.k8s.io/fstype", "storageClusterId",
    "retentionDays", "instantAccess", "csi.storage.k8s.io/volumesnapshot/name",
]  # fmt: skip
PARAM_VALUES = [
    "cloud_essd", "cloud_ssd,cloud_efficiency", "cloud_auto", "cloud_essd_entry",
    "cloud_regional_disk_auto", "available", "PL0", "PL9",
    "cn-hangzhou-h", "cn-hangzhou", "true", "false", "maybe", "1", "-1", "99999999999999",
    "k:v,a:b", "noColon", "-b 4096", "-E nodiscard;rm -rf /", "-L /etc", "rg-abc", "key-1",
    "ext4", "xfs", "http://x", "٣",
]  # fmt: skip
MODES = [0, 1, 2, 3, 4, 5, 6, 7, 99]

GIB = 1 << 30
SIZES = [0, 1, -1, GIB, 20 * GIB, 21 * GIB + 1, 40 * GIB, 32768 * GIB, 2**62, -(2**63)]


def text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(ODD), st.text(max_size=40))


def ids(rig: Rig) -> st.SearchStrategy[str]:
    """Ids of every shape; none names a seeded resource (a delete would take it away)."""
    return st.one_of(
        st.sampled_from(
            [
                rig.instance_id,
                "d-" + "0" * 20,
                "s-" + "0" * 20,
                "i-" + "0" * 20,
                "fake-vol-id-1",
                "D-ABC",
                "d-",
                "../etc",
            ]
        ),
        text(),
    )


def volume_ids(rig: Rig) -> st.SearchStrategy[str]:
    """The controller's seeded disk, its snapshot, or any id."""
    return st.one_of(st.sampled_from([rig.disk_id, rig.snapshot_id]), ids(rig))


def node_volume_ids(rig: Rig) -> st.SearchStrategy[str]:
    """The node's own seeded disk (the controller never resizes it), or any id."""
    return st.one_of(st.just(rig.node_disk_id), ids(rig))


def names() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["pvc-fuzz-1", "pvc-fuzz-2", "snapshot-fuzz-1", "a" * 128]), text()
    )


def hostile_paths(rig: Rig) -> list[str]:
    """Paths that lead out, through a planted link or a file, or that no file can have."""
    k = str(rig.kubelet)
    return [
        f"{k}/pods/p1/volumes/v1/mount", f"{k}/plugins/kubernetes.io/csi/s1/globalmount",
        f"{k}/pods/p1/volumes/v2/dev", f"{k}/link-out", f"{k}/link-out/x", f"{k}/a-file",
        f"{k}/a-file/x", f"{k}/pods/p1/link-file", f"{k}/pods/p1/dangling",
        f"{k}/pods/p1/dangling/x", f"{k}/pods/" + "a" * 300, f"{k}/" + "b/" * 2100, k, k + "/",
        f"{k}/../outside/dir", f"{k}/./pods/p1", str(rig.outside / "dir"),
        str(rig.outside / "etc" / "passwd"), "/etc", "/", "relative/path", "",
    ]  # fmt: skip


def paths(rig: Rig) -> st.SearchStrategy[str]:
    k = str(rig.kubelet)
    inside = st.lists(text(), min_size=1, max_size=4).map(lambda parts: "/".join([k, *parts]))
    return st.one_of(st.sampled_from(hostile_paths(rig)), inside, text())


def string_maps(keys: list[str], values: list[str]) -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(
        st.one_of(st.sampled_from(keys), text()),
        st.one_of(st.sampled_from(values), text()),
        max_size=4,
    )


def secrets() -> st.SearchStrategy[dict[str, str]]:
    return st.dictionaries(st.sampled_from(["accessKeySecret", "token", ""]),
                           st.just(SECRET_MARK), max_size=2)  # fmt: skip


@st.composite
def capabilities(draw: st.DrawFn) -> csi_pb2.VolumeCapability:
    cap = Cap(access_mode=Cap.AccessMode(mode=draw(st.sampled_from(MODES))))
    kind = draw(st.sampled_from(["mount", "mount", "block", "none"]))
    if kind == "mount":
        cap.mount.fs_type = draw(st.one_of(st.sampled_from(FSTYPES), text()))
        cap.mount.mount_flags.extend(
            draw(st.lists(st.one_of(st.sampled_from(MOUNT_FLAGS), text()), max_size=3))
        )
        if draw(st.booleans()) and draw(st.booleans()):
            cap.mount.volume_mount_group = draw(text())
    elif kind == "block":
        cap.block.SetInParent()
    return cap


def optional_capability(draw: st.DrawFn, request: Any) -> None:
    if draw(st.integers(0, 9)):
        request.volume_capability.CopyFrom(draw(capabilities()))


def capacity(draw: st.DrawFn) -> csi_pb2.CapacityRange:
    return csi_pb2.CapacityRange(
        required_bytes=draw(st.sampled_from(SIZES)), limit_bytes=draw(st.sampled_from(SIZES))
    )


TOPOLOGY_KEYS = [
    "topology.diskplugin.csi.alibabacloud.com/zone", "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region", "alibabacloud.com/ecs-instance-id",
    "node.csi.alibabacloud.com/disktype.cloud_essd",
    "node.csi.alibabacloud.com/disktype.cloud_regional_disk_auto",
]  # fmt: skip


def segments(rig: Rig) -> st.SearchStrategy[dict[str, str]]:
    values = [rig.zone, "cn-hangzhou-i", "cn-hangzhou", "nowhere", "available"]
    return string_maps(TOPOLOGY_KEYS, values)


def topology(draw: st.DrawFn, rig: Rig) -> csi_pb2.TopologyRequirement:
    segments_ = st.lists(segments(rig), max_size=3)
    return csi_pb2.TopologyRequirement(
        requisite=[csi_pb2.Topology(segments=s) for s in draw(segments_)],
        preferred=[csi_pb2.Topology(segments=s) for s in draw(segments_)],
    )


def context(draw: st.DrawFn, rig: Rig) -> dict[str, str]:
    keys = ["serial", "serialNumber", "type", "fsType", "mkfsOptions", "omitfsck"]
    serial = rig.node_disk_id.removeprefix("d-")
    return draw(string_maps(keys, [serial, "wrong", "true", "-b 4096", "-O ^has_journal"]))


# --- one strategy per RPC --------------------------------------------------------------------

Builder = Callable[[Rig], st.SearchStrategy[Any]]


def _create_volume(rig: Rig) -> st.SearchStrategy[Any]:
    @st.composite
    def build(draw: st.DrawFn) -> Any:
        r = csi_pb2.CreateVolumeRequest(
            name=draw(names()),
            volume_capabilities=draw(st.lists(capabilities(), max_size=2)),
            parameters=draw(string_maps(PARAM_KEYS, PARAM_VALUES)),
            secrets=draw(secrets()),
            mutable_parameters=draw(string_maps(PARAM_KEYS, PARAM_VALUES)),
        )
        if draw(st.booleans()):
            r.capacity_range.CopyFrom(capacity(draw))
        if draw(st.booleans()):
            r.accessibility_requirements.CopyFrom(topology(draw, rig))
        source = draw(st.sampled_from(["none", "none", "snapshot", "volume"]))
        if source == "snapshot":
            r.volume_content_source.snapshot.snapshot_id = draw(
                st.one_of(st.just(rig.snapshot_id), ids(rig))
            )
        elif source == "volume":
            r.volume_content_source.volume.volume_id = draw(volume_ids(rig))
        return r

    return build()


def _simple(message: Any, **fields: Callable[[Rig], st.SearchStrategy[Any]]) -> Builder:
    def builder(rig: Rig) -> st.SearchStrategy[Any]:
        return st.builds(message, **{name: make(rig) for name, make in fields.items()})

    return builder


def _with_capability(message: Any, **fields: Callable[[Rig], st.SearchStrategy[Any]]) -> Builder:
    def builder(rig: Rig) -> st.SearchStrategy[Any]:
        @st.composite
        def build(draw: st.DrawFn) -> Any:
            request = message(**{name: draw(make(rig)) for name, make in fields.items()})
            optional_capability(draw, request)
            if hasattr(request, "publish_context"):
                request.publish_context.update(context(draw, rig))
            if hasattr(request, "volume_context"):
                request.volume_context.update(context(draw, rig))
            return request

        return build()

    return builder


def _capacity_request(message: Any, **fields: Callable[[Rig], st.SearchStrategy[Any]]) -> Builder:
    def builder(rig: Rig) -> st.SearchStrategy[Any]:
        @st.composite
        def build(draw: st.DrawFn) -> Any:
            request = message(**{name: draw(make(rig)) for name, make in fields.items()})
            if draw(st.booleans()):
                request.capacity_range.CopyFrom(capacity(draw))
            optional_capability(draw, request)
            return request

        return build()

    return builder


def _caps_list(message: Any) -> Builder:
    def builder(rig: Rig) -> st.SearchStrategy[Any]:
        @st.composite
        def build(draw: st.DrawFn) -> Any:
            return message(
                volume_id=draw(volume_ids(rig)),
                volume_capabilities=draw(st.lists(capabilities(), max_size=2)),
                parameters=draw(string_maps(PARAM_KEYS, PARAM_VALUES)),
                volume_context=context(draw, rig),
                secrets=draw(secrets()),
            )

        return build()

    return builder


def _get_capacity(rig: Rig) -> st.SearchStrategy[Any]:
    @st.composite
    def build(draw: st.DrawFn) -> Any:
        request = csi_pb2.GetCapacityRequest(
            parameters=draw(string_maps(PARAM_KEYS, PARAM_VALUES)),
            volume_capabilities=draw(st.lists(capabilities(), max_size=2)),
        )
        if draw(st.integers(0, 3)):
            request.accessible_topology.segments.update(draw(segments(rig)))
        return request

    return build()


CONSTANT: set[str] = set()  # calls whose request is sent as it is: nothing in it to vary


def _nothing(message: Any) -> Builder:
    CONSTANT.add(message.DESCRIPTOR.name.removesuffix("Request"))
    return lambda rig: st.just(message())


def _entries(rig: Rig) -> st.SearchStrategy[int]:
    return st.sampled_from([0, 1, 2, 100, -1, 2**31 - 1, -(2**31)])


def _tokens(rig: Rig) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(["", "v1:", "v1:abc", "s1:0:", "s1:x:y", "s1:99:"]), text())


def _mutable(rig: Rig) -> st.SearchStrategy[dict[str, str]]:
    keys = ["type", "performanceLevel", "provisionedIops", "burstingEnabled"]
    return string_maps(keys, ["cloud_essd", "cloud_auto", "PL0", "PL2", "3000", "true", "no"])


pb = csi_pb2
CONTROLLER: dict[str, Builder] = {
    "CreateVolume": _create_volume,
    "DeleteVolume": _simple(pb.DeleteVolumeRequest, volume_id=ids, secrets=lambda r: secrets()),
    "ControllerPublishVolume": _with_capability(
        pb.ControllerPublishVolumeRequest,
        volume_id=volume_ids,
        node_id=lambda r: st.one_of(st.just(r.instance_id), ids(r)),
        readonly=lambda r: st.booleans(),
        secrets=lambda r: secrets(),
    ),
    "ControllerUnpublishVolume": _simple(
        pb.ControllerUnpublishVolumeRequest,
        volume_id=ids,
        node_id=lambda r: st.one_of(st.just(""), ids(r)),
        secrets=lambda r: secrets(),
    ),
    "ValidateVolumeCapabilities": _caps_list(pb.ValidateVolumeCapabilitiesRequest),
    "ListVolumes": _simple(pb.ListVolumesRequest, max_entries=_entries, starting_token=_tokens),
    "GetCapacity": _get_capacity,
    "ControllerGetCapabilities": _nothing(pb.ControllerGetCapabilitiesRequest),
    "CreateSnapshot": _simple(
        pb.CreateSnapshotRequest,
        source_volume_id=volume_ids,
        name=lambda r: names(),
        parameters=lambda r: string_maps(PARAM_KEYS, PARAM_VALUES),
        secrets=lambda r: secrets(),
    ),
    "DeleteSnapshot": _simple(
        pb.DeleteSnapshotRequest, snapshot_id=ids, secrets=lambda r: secrets()
    ),
    "ListSnapshots": _simple(
        pb.ListSnapshotsRequest,
        max_entries=_entries,
        starting_token=_tokens,
        source_volume_id=lambda r: st.one_of(st.just(""), ids(r)),
        snapshot_id=lambda r: st.one_of(st.just(""), ids(r)),
        secrets=lambda r: secrets(),
    ),
    "GetSnapshot": _simple(pb.GetSnapshotRequest, snapshot_id=ids, secrets=lambda r: secrets()),
    "ControllerExpandVolume": _capacity_request(
        pb.ControllerExpandVolumeRequest, volume_id=volume_ids, secrets=lambda r: secrets()
    ),
    "ControllerGetVolume": _simple(pb.ControllerGetVolumeRequest, volume_id=ids),
    "ControllerModifyVolume": _simple(
        pb.ControllerModifyVolumeRequest,
        volume_id=volume_ids,
        secrets=lambda r: secrets(),
        mutable_parameters=_mutable,
    ),
}

NODE: dict[str, Builder] = {
    # In a kubelet's order, so each call finds the volume where the one before left it.
    "NodeStageVolume": _with_capability(
        pb.NodeStageVolumeRequest,
        volume_id=node_volume_ids,
        staging_target_path=paths,
        secrets=lambda r: secrets(),
    ),
    "NodePublishVolume": _with_capability(
        pb.NodePublishVolumeRequest,
        volume_id=node_volume_ids,
        staging_target_path=paths,
        target_path=paths,
        readonly=lambda r: st.booleans(),
        secrets=lambda r: secrets(),
    ),
    "NodeGetVolumeStats": _simple(
        pb.NodeGetVolumeStatsRequest,
        volume_id=node_volume_ids,
        volume_path=paths,
        staging_target_path=paths,
    ),
    "NodeExpandVolume": _capacity_request(
        pb.NodeExpandVolumeRequest,
        volume_id=node_volume_ids,
        volume_path=paths,
        staging_target_path=paths,
        secrets=lambda r: secrets(),
    ),
    "NodeUnpublishVolume": _simple(
        pb.NodeUnpublishVolumeRequest, volume_id=node_volume_ids, target_path=paths
    ),
    "NodeUnstageVolume": _simple(
        pb.NodeUnstageVolumeRequest, volume_id=node_volume_ids, staging_target_path=paths
    ),
    "NodeGetCapabilities": _nothing(pb.NodeGetCapabilitiesRequest),
    "NodeGetInfo": _nothing(pb.NodeGetInfoRequest),
}

IDENTITY: dict[str, Builder] = {
    "GetPluginInfo": _nothing(pb.GetPluginInfoRequest),
    "GetPluginCapabilities": _nothing(pb.GetPluginCapabilitiesRequest),
    "Probe": _nothing(pb.ProbeRequest),
}


# --- well-formed requests, one field at a time gone wrong ------------------------------------
#
# Hostile values in every field are refused at the first check; a right request with one
# field taken from a hostile one reaches the cloud, the host, and the checks behind them.


def _sane_capability(block_ok: bool = True) -> st.SearchStrategy[csi_pb2.VolumeCapability]:
    mount = st.builds(
        lambda fs, mode: Cap(
            mount=Cap.MountVolume(fs_type=fs), access_mode=Cap.AccessMode(mode=mode)
        ),
        st.sampled_from(["ext4", "ext4", "xfs", ""]),
        st.sampled_from([1, 1, 2, 7]),
    )
    block = st.builds(
        lambda mode: Cap(block=Cap.BlockVolume(), access_mode=Cap.AccessMode(mode=mode)),
        st.sampled_from([1, 7]),
    )
    return st.one_of(mount, block) if block_ok else mount


def _staging(rig: Rig) -> st.SearchStrategy[str]:
    k = rig.kubelet / "plugins" / "kubernetes.io" / "csi"
    return st.sampled_from([str(k / "s1" / "globalmount"), str(k / "s2" / "globalmount")])


def _target(rig: Rig) -> st.SearchStrategy[str]:
    k = rig.kubelet / "pods" / "p1" / "volumes"
    return st.sampled_from([str(k / "v1" / "mount"), str(k / "v2" / "mount")])


def _sane_sizes() -> st.SearchStrategy[csi_pb2.CapacityRange]:
    return st.builds(csi_pb2.CapacityRange, required_bytes=st.sampled_from([20 * GIB, 24 * GIB]))


SANE: dict[str, Builder] = {
    "CreateVolume": lambda r: st.builds(
        pb.CreateVolumeRequest,
        name=st.sampled_from([f"pvc-fuzz-{i}" for i in range(4)]),
        capacity_range=_sane_sizes(),
        volume_capabilities=st.lists(_sane_capability(False), min_size=1, max_size=1),
        parameters=st.sampled_from([{}, {"type": "cloud_essd"}, {"type": "cloud_auto,cloud_essd"}]),
        accessibility_requirements=st.just(
            pb.TopologyRequirement(
                requisite=[
                    pb.Topology(segments={"topology.diskplugin.csi.alibabacloud.com/zone": r.zone})
                ]
            )
        ),
    ),
    "ControllerPublishVolume": lambda r: st.builds(
        pb.ControllerPublishVolumeRequest,
        volume_id=st.just(r.disk_id),
        node_id=st.just(r.instance_id),
        volume_capability=_sane_capability(False),
    ),
    "ControllerUnpublishVolume": lambda r: st.builds(
        pb.ControllerUnpublishVolumeRequest,
        volume_id=st.just(r.disk_id),
        node_id=st.sampled_from([r.instance_id, ""]),
    ),
    "ValidateVolumeCapabilities": lambda r: st.builds(
        pb.ValidateVolumeCapabilitiesRequest,
        volume_id=st.just(r.disk_id),
        volume_capabilities=st.lists(_sane_capability(), min_size=1, max_size=2),
    ),
    "CreateSnapshot": lambda r: st.builds(
        pb.CreateSnapshotRequest,
        source_volume_id=st.just(r.disk_id),
        name=st.sampled_from(["snapshot-fuzz-1", "snapshot-fuzz-2"]),
    ),
    "ListSnapshots": lambda r: st.builds(
        pb.ListSnapshotsRequest,
        source_volume_id=st.just(r.disk_id),
        max_entries=st.sampled_from([0, 1]),
    ),
    "ControllerExpandVolume": lambda r: st.builds(
        pb.ControllerExpandVolumeRequest,
        volume_id=st.just(r.disk_id),
        capacity_range=st.builds(
            pb.CapacityRange, required_bytes=st.sampled_from([30 * GIB, 40 * GIB])
        ),
    ),
    "ControllerGetVolume": lambda r: st.just(pb.ControllerGetVolumeRequest(volume_id=r.disk_id)),
    "ControllerModifyVolume": lambda r: st.builds(
        pb.ControllerModifyVolumeRequest,
        volume_id=st.just(r.disk_id),
        mutable_parameters=st.sampled_from(
            [{"performanceLevel": "PL0"}, {"performanceLevel": "PL1"}]
        ),
    ),
    "NodeStageVolume": lambda r: st.builds(
        pb.NodeStageVolumeRequest,
        volume_id=st.just(r.node_disk_id),
        staging_target_path=_staging(r),
        volume_capability=_sane_capability(),
        publish_context=st.sampled_from([{}, {"serial": r.node_disk_id.removeprefix("d-")}]),
    ),
    "NodeUnstageVolume": lambda r: st.builds(
        pb.NodeUnstageVolumeRequest,
        volume_id=st.just(r.node_disk_id),
        staging_target_path=_staging(r),
    ),
    "NodePublishVolume": lambda r: st.builds(
        pb.NodePublishVolumeRequest,
        volume_id=st.just(r.node_disk_id),
        staging_target_path=_staging(r),
        target_path=_target(r),
        volume_capability=_sane_capability(),
        readonly=st.booleans(),
    ),
    "NodeUnpublishVolume": lambda r: st.builds(
        pb.NodeUnpublishVolumeRequest, volume_id=st.just(r.node_disk_id), target_path=_target(r)
    ),
    "NodeGetVolumeStats": lambda r: st.builds(
        pb.NodeGetVolumeStatsRequest,
        volume_id=st.just(r.node_disk_id),
        volume_path=st.one_of(_target(r), _staging(r)),
    ),
    "NodeExpandVolume": lambda r: st.builds(
        pb.NodeExpandVolumeRequest,
        volume_id=st.just(r.node_disk_id),
        volume_path=_target(r),
        staging_target_path=_staging(r),
    ),
}


def _take(name: str, source: Any, target: Any) -> None:
    """``target``'s field ``name`` replaced by ``source``'s."""
    field = target.DESCRIPTOR.fields_by_name[name]
    target.ClearField(name)
    repeated = getattr(field, "is_repeated", None)
    if repeated is None:
        repeated = field.label == field.LABEL_REPEATED
    if repeated:
        getattr(target, name).MergeFrom(getattr(source, name))
    elif field.message_type is not None:
        if source.HasField(name):
            getattr(target, name).CopyFrom(getattr(source, name))
    else:
        setattr(target, name, getattr(source, name))


def requests_for(table: dict[str, Builder], name: str, rig: Rig) -> st.SearchStrategy[Any]:
    """Hostile requests for the call, and right ones with at most one field gone wrong."""
    hostile = table[name](rig)
    if name not in SANE:
        return hostile

    def perturb(parts: tuple[Any, Any, int | None]) -> Any:
        sane, bad, choice = parts
        if choice is not None:
            fields = sane.DESCRIPTOR.fields
            _take(fields[choice % len(fields)].name, bad, sane)
        return sane

    perturbed = st.tuples(SANE[name](rig), hostile, st.one_of(st.none(), st.integers(0, 15))).map(
        perturb
    )
    return st.one_of(hostile, perturbed, perturbed)


# --- each hostile path in each path field, for sure ------------------------------------------
#
# A draw lands on one given hostile path only a few times in 300, so a call that fails on just
# one of them could pass a run; these requests are sent as well, every time.


def _well_formed_node_requests(rig: Rig) -> dict[str, Any]:
    staging = str(rig.kubelet / "plugins" / "kubernetes.io" / "csi" / "s1" / "globalmount")
    target = str(rig.kubelet / "pods" / "p1" / "volumes" / "v1" / "mount")
    cap = Cap(mount=Cap.MountVolume(fs_type="ext4"), access_mode=Cap.AccessMode(mode=1))
    disk = rig.node_disk_id
    return {
        "NodeStageVolume": pb.NodeStageVolumeRequest(
            volume_id=disk, staging_target_path=staging, volume_capability=cap
        ),
        "NodePublishVolume": pb.NodePublishVolumeRequest(
            volume_id=disk, staging_target_path=staging, target_path=target, volume_capability=cap
        ),
        "NodeGetVolumeStats": pb.NodeGetVolumeStatsRequest(volume_id=disk, volume_path=target),
        "NodeExpandVolume": pb.NodeExpandVolumeRequest(
            volume_id=disk, volume_path=target, staging_target_path=staging
        ),
        "NodeUnpublishVolume": pb.NodeUnpublishVolumeRequest(volume_id=disk, target_path=target),
        "NodeUnstageVolume": pb.NodeUnstageVolumeRequest(
            volume_id=disk, staging_target_path=staging
        ),
    }


def hand_picked(name: str, rig: Rig) -> list[Any]:
    """The call's well-formed request with each path field set, in turn, to each hostile path."""
    base = _well_formed_node_requests(rig).get(name)
    if base is None:
        return []
    picked = []
    for field in base.DESCRIPTOR.fields:
        if field.name.endswith("path"):
            for path in hostile_paths(rig):
                request = type(base)()
                request.CopyFrom(base)
                setattr(request, field.name, path)
                picked.append(request)
    return picked
