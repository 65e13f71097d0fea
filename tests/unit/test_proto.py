"""The checked-in CSI modules match protos/csi.proto, and the proto speaks CSI's wire format.

Drift is judged on descriptors rather than generated text, so a different grpcio-tools
version (which formats the modules differently) does not fail the suite. Wire checks pin
field numbers and enum values as published in CSI spec 1.13.0: a CO (kubelet, the
external-provisioner) only ever sees numbers, so a renumbered field breaks it silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from csi_disk.csi_pb import csi_pb2, csi_pb2_grpc
from csi_disk_tools import protogen

SERVICES = ("Identity", "Controller", "GroupController", "SnapshotMetadata", "Node")


def _strip_json_names(message: descriptor_pb2.DescriptorProto) -> None:
    """json_name is derived from the field name; the Python runtime does not keep it."""
    for field in (*message.field, *message.extension):
        field.ClearField("json_name")
    for nested in message.nested_type:
        _strip_json_names(nested)


def _normalised(file_proto: descriptor_pb2.FileDescriptorProto) -> None:
    file_proto.ClearField("source_code_info")
    for field in file_proto.extension:
        field.ClearField("json_name")
    for message in file_proto.message_type:
        _strip_json_names(message)


@pytest.fixture(scope="module")
def compiled_proto(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorProto:
    """protos/csi.proto compiled afresh by protoc into a descriptor set."""
    out = tmp_path_factory.mktemp("protoc") / "csi.pb"
    protogen.run_protoc([f"--descriptor_set_out={out}", str(protogen.PROTO_FILE)])
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    assert [f.name for f in descriptor_set.file] == ["csi.proto"]
    return descriptor_set.file[0]


def test_generated_module_matches_proto(
    compiled_proto: descriptor_pb2.FileDescriptorProto,
) -> None:
    module_proto = descriptor_pb2.FileDescriptorProto()
    csi_pb2.DESCRIPTOR.CopyToProto(module_proto)
    expected = descriptor_pb2.FileDescriptorProto()
    expected.CopyFrom(compiled_proto)
    _normalised(expected)
    _normalised(module_proto)
    assert module_proto == expected, "csi_pb is stale: run python -m csi_disk_tools.protogen"


def test_grpc_module_has_stub_and_servicer_for_every_service() -> None:
    assert sorted(csi_pb2.DESCRIPTOR.services_by_name) == sorted(SERVICES)
    for name in SERVICES:
        service = csi_pb2.DESCRIPTOR.services_by_name[name]
        stub = getattr(csi_pb2_grpc, f"{name}Stub")
        servicer = getattr(csi_pb2_grpc, f"{name}Servicer")
        assert callable(getattr(csi_pb2_grpc, f"add_{name}Servicer_to_server"))
        for method in service.methods:
            assert callable(getattr(servicer, method.name)), f"{name}.{method.name}"
        # The stub binds one attribute per RPC when built on a channel.
        assert "channel" in stub.__init__.__code__.co_varnames


def test_grpc_module_imports_its_messages_relatively() -> None:
    source = Path(csi_pb2_grpc.__file__).read_text()
    assert "from . import csi_pb2 as csi__pb2" in source
    assert re.search(r"^import csi_pb2\b", source, re.MULTILINE) is None


def test_package_and_custom_options() -> None:
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"
    options = csi_pb2.DESCRIPTOR.GetOptions()
    assert options.go_package == "github.com/container-storage-interface/spec/lib/go/csi"
    numbers = {name: ext.number for name, ext in csi_pb2.DESCRIPTOR.extensions_by_name.items()}
    assert numbers == {
        "csi_secret": 1059,
        "alpha_field": 1060,
        "alpha_message": 1060,
        "alpha_method": 1060,
        "alpha_service": 1060,
        "alpha_enum": 1060,
        "alpha_enum_value": 1060,
    }
    extendees = {
        name: ext.containing_type.full_name
        for name, ext in csi_pb2.DESCRIPTOR.extensions_by_name.items()
    }
    assert extendees["csi_secret"] == "google.protobuf.FieldOptions"
    assert extendees["alpha_service"] == "google.protobuf.ServiceOptions"
    assert extendees["alpha_enum_value"] == "google.protobuf.EnumValueOptions"


def _fields(message: Descriptor) -> dict[str, int]:
    return {field.name: field.number for field in message.fields}


def _values(enum: EnumDescriptor) -> dict[str, int]:
    return {value.name: value.number for value in enum.values}


# Field numbers as published in the CSI spec (csi.proto, v1.13.0).
PUBLISHED_FIELDS: dict[str, dict[str, int]] = {
    "CreateVolumeRequest": {
        "name": 1,
        "capacity_range": 2,
        "volume_capabilities": 3,
        "parameters": 4,
        "secrets": 5,
        "volume_content_source": 6,
        "accessibility_requirements": 7,
        "mutable_parameters": 8,
    },
    "VolumeCapability": {"block": 1, "mount": 2, "access_mode": 3},
    "VolumeCapability.MountVolume": {"fs_type": 1, "mount_flags": 2, "volume_mount_group": 3},
    "TopologyRequirement": {"requisite": 1, "preferred": 2},
    "Topology": {"segments": 1},
    "Volume": {
        "capacity_bytes": 1,
        "volume_id": 2,
        "volume_context": 3,
        "content_source": 4,
        "accessible_topology": 5,
    },
    "NodeStageVolumeRequest": {
        "volume_id": 1,
        "publish_context": 2,
        "staging_target_path": 3,
        "volume_capability": 4,
        "secrets": 5,
        "volume_context": 6,
    },
    "NodePublishVolumeRequest": {
        "volume_id": 1,
        "publish_context": 2,
        "staging_target_path": 3,
        "target_path": 4,
        "volume_capability": 5,
        "readonly": 6,
        "secrets": 7,
        "volume_context": 8,
    },
    "ControllerPublishVolumeRequest": {
        "volume_id": 1,
        "node_id": 2,
        "volume_capability": 3,
        "readonly": 4,
        "secrets": 5,
        "volume_context": 6,
    },
    "NodeGetInfoResponse": {"node_id": 1, "max_volumes_per_node": 2, "accessible_topology": 3},
    "NodeExpandVolumeRequest": {
        "volume_id": 1,
        "volume_path": 2,
        "capacity_range": 3,
        "staging_target_path": 4,
        "volume_capability": 5,
        "secrets": 6,
    },
    "PluginCapability": {"service": 1, "volume_expansion": 2},
    "ProbeResponse": {"ready": 1},
    "ListVolumesRequest": {"max_entries": 1, "starting_token": 2},
    "Snapshot": {
        "size_bytes": 1,
        "snapshot_id": 2,
        "source_volume_id": 3,
        "creation_time": 4,
        "ready_to_use": 5,
        "group_snapshot_id": 6,
    },
}

PUBLISHED_ENUMS: dict[str, dict[str, int]] = {
    "ControllerServiceCapability.RPC.Type": {
        "UNKNOWN": 0,
        "CREATE_DELETE_VOLUME": 1,
        "PUBLISH_UNPUBLISH_VOLUME": 2,
        "LIST_VOLUMES": 3,
        "GET_CAPACITY": 4,
        "CREATE_DELETE_SNAPSHOT": 5,
        "LIST_SNAPSHOTS": 6,
        "CLONE_VOLUME": 7,
        "PUBLISH_READONLY": 8,
        "EXPAND_VOLUME": 9,
        "LIST_VOLUMES_PUBLISHED_NODES": 10,
        "VOLUME_CONDITION": 11,
        "GET_VOLUME": 12,
        "SINGLE_NODE_MULTI_WRITER": 13,
        "MODIFY_VOLUME": 14,
        "GET_SNAPSHOT": 15,
        "LIST_VOLUME_HEALTH": 16,
        "GET_VOLUME_HEALTH": 17,
    },
    "NodeServiceCapability.RPC.Type": {
        "UNKNOWN": 0,
        "STAGE_UNSTAGE_VOLUME": 1,
        "GET_VOLUME_STATS": 2,
        "EXPAND_VOLUME": 3,
        "VOLUME_CONDITION": 4,
        "SINGLE_NODE_MULTI_WRITER": 5,
        "VOLUME_MOUNT_GROUP": 6,
        "GET_VOLUME_HEALTH": 7,
        "STORAGE_HEALTH": 8,
    },
    "PluginCapability.Service.Type": {
        "UNKNOWN": 0,
        "CONTROLLER_SERVICE": 1,
        "VOLUME_ACCESSIBILITY_CONSTRAINTS": 2,
        "GROUP_CONTROLLER_SERVICE": 3,
        "SNAPSHOT_METADATA_SERVICE": 4,
    },
    "PluginCapability.VolumeExpansion.Type": {"UNKNOWN": 0, "ONLINE": 1, "OFFLINE": 2},
    "VolumeCapability.AccessMode.Mode": {
        "UNKNOWN": 0,
        "SINGLE_NODE_WRITER": 1,
        "SINGLE_NODE_READER_ONLY": 2,
        "MULTI_NODE_READER_ONLY": 3,
        "MULTI_NODE_SINGLE_WRITER": 4,
        "MULTI_NODE_MULTI_WRITER": 5,
        "SINGLE_NODE_SINGLE_WRITER": 6,
        "SINGLE_NODE_MULTI_WRITER": 7,
    },
    "VolumeUsage.Unit": {"UNKNOWN": 0, "BYTES": 1, "INODES": 2},
}


def _message(path: str) -> Descriptor:
    first, *rest = path.split(".")
    message = csi_pb2.DESCRIPTOR.message_types_by_name[first]
    for name in rest:
        message = message.nested_types_by_name[name]
    return message


@pytest.mark.parametrize("path", sorted(PUBLISHED_FIELDS))
def test_message_field_numbers_match_published_spec(path: str) -> None:
    assert _fields(_message(path)) == PUBLISHED_FIELDS[path]


@pytest.mark.parametrize("path", sorted(PUBLISHED_ENUMS))
def test_enum_values_match_published_spec(path: str) -> None:
    *owner, enum_name = path.split(".")
    enum = _message(".".join(owner)).enum_types_by_name[enum_name]
    assert _values(enum) == PUBLISHED_ENUMS[path]


def test_oneofs_match_published_spec() -> None:
    expected = {
        "VolumeCapability": ("access_type", {"block", "mount"}),
        "VolumeContentSource": ("type", {"snapshot", "volume"}),
        "PluginCapability": ("type", {"service", "volume_expansion"}),
        "ControllerServiceCapability": ("type", {"rpc"}),
        "NodeServiceCapability": ("type", {"rpc"}),
    }
    for path, (oneof_name, members) in expected.items():
        oneof = _message(path).oneofs_by_name[oneof_name]
        assert {field.name for field in oneof.fields} == members, path


def test_snapshot_metadata_calls_stream_their_answers() -> None:
    service = csi_pb2.DESCRIPTOR.services_by_name["SnapshotMetadata"]
    assert service.GetOptions().Extensions[csi_pb2.alpha_service]
    for method in service.methods:
        assert method.server_streaming and not method.client_streaming


def _all_messages() -> Iterator[Descriptor]:
    pending = list(csi_pb2.DESCRIPTOR.message_types_by_name.values())
    while pending:
        message = pending.pop()
        yield message
        pending.extend(message.nested_types)


SECRET_BEARERS = {
    "CreateVolumeRequest",
    "DeleteVolumeRequest",
    "ControllerPublishVolumeRequest",
    "ControllerUnpublishVolumeRequest",
    "ValidateVolumeCapabilitiesRequest",
    "ControllerListVolumeHealthRequest",
    "ControllerGetVolumeHealthRequest",
    "ControllerModifyVolumeRequest",
    "CreateSnapshotRequest",
    "DeleteSnapshotRequest",
    "ListSnapshotsRequest",
    "GetSnapshotRequest",
    "ControllerExpandVolumeRequest",
    "NodeStageVolumeRequest",
    "NodePublishVolumeRequest",
    "NodeGetStorageHealthRequest",
    "NodeExpandVolumeRequest",
    "CreateVolumeGroupSnapshotRequest",
    "DeleteVolumeGroupSnapshotRequest",
    "GetVolumeGroupSnapshotRequest",
    "GetMetadataAllocatedRequest",
    "GetMetadataDeltaRequest",
}


def _is_secret(field: FieldDescriptor) -> bool:
    return bool(field.GetOptions().Extensions[csi_pb2.csi_secret])


def test_every_secrets_field_is_marked_secret() -> None:
    secrets_fields = [
        (message.full_name, field)
        for message in _all_messages()
        for field in message.fields
        if field.name == "secrets"
    ]
    # The requests that carry credentials in CSI 1.13: a missing one means a lost field.
    assert {name.removeprefix("csi.v1.") for name, _ in secrets_fields} == SECRET_BEARERS
    unmarked = [name for name, field in secrets_fields if not _is_secret(field)]
    assert unmarked == []


def test_only_secrets_fields_are_marked_secret() -> None:
    marked = {
        (message.name, field.name)
        for message in _all_messages()
        for field in message.fields
        if _is_secret(field)
    }
    assert {field for _, field in marked} == {"secrets"}


def test_secret_marker_survives_round_trip_on_the_wire() -> None:
    request = csi_pb2.NodeStageVolumeRequest(
        volume_id="d-123", staging_target_path="/stage", secrets={"token": "s3cr3t"}
    )
    decoded = csi_pb2.NodeStageVolumeRequest.FromString(request.SerializeToString())
    assert dict(decoded.secrets) == {"token": "s3cr3t"}
    field = decoded.DESCRIPTOR.fields_by_name["secrets"]
    assert _is_secret(field)
