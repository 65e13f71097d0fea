"""Instance and region actions: DescribeInstances, DescribeInstanceTypes, DescribeZones."""

from __future__ import annotations

from typing import Any

from csi_disk_emulator.actions import Params, action
from csi_disk_emulator.actions.paging import Paging
from csi_disk_emulator.cloud import Cloud, iso
from csi_disk_emulator.errors import invalid_parameter
from csi_disk_emulator.topology import INSTANCE_TYPES, InstanceType

INSTANCE_STATUSES = ("Pending", "Running", "Starting", "Stopping", "Stopped")


@action(
    "DescribeInstances",
    params=(
        "InstanceIds",
        "ZoneId",
        "Status",
        "InstanceType",
        "InstanceTypeFamily",
        "PageNumber",
        "PageSize",
        "NextToken",
        "MaxResults",
        "InstanceName",
        "VpcId",
        "VSwitchId",
        "SecurityGroupId",
        "ImageId",
        "InstanceNetworkType",
        "InstanceChargeType",
        "InternetChargeType",
        "IoOptimized",
        "KeyPairName",
        "LockReason",
        "ResourceGroupId",
        "PrivateIpAddresses",
        "PublicIpAddresses",
        "InnerIpAddresses",
        "EipAddresses",
        "RdmaIpAddresses",
        "HpcClusterId",
        "DeviceAvailable",
        "NeedSaleCycle",
        "DryRun",
        "HttpEndpoint",
        "HttpTokens",
        "HttpPutResponseHopLimit",
    ),
    patterns=(
        r"Tag\.\d+\.(Key|Value)",
        r"Filter\.\d+\.(Key|Value)",
        r"AdditionalAttributes\.\d+",
        r"Ipv6Address\.\d+",
    ),
)
def describe_instances(cloud: Cloud, p: Params) -> dict[str, Any]:
    ids = p.json_list("InstanceIds", "InvalidInstanceIds.Malformed", 100)
    status = p.str("Status")
    if status and status not in INSTANCE_STATUSES:
        raise invalid_parameter("Status")
    paging = Paging.parse(p)
    with cloud.store.tx() as db:
        rows = db.execute("SELECT rowid AS seq, * FROM instances ORDER BY rowid").fetchall()
    found = []
    for row in rows:
        if ids is not None and row["id"] not in ids:
            continue
        if p.str("ZoneId") and row["zone"] != p.str("ZoneId"):
            continue
        if status and row["status"] != status:
            continue
        itype = INSTANCE_TYPES[row["instance_type"]]
        if p.str("InstanceType") and itype.name != p.str("InstanceType"):
            continue
        if p.str("InstanceTypeFamily") and itype.family != p.str("InstanceTypeFamily"):
            continue
        found.append((row["seq"], _instance_view(cloud, row, itype)))
    return paging.body(found, "Instances", "Instance")


def _instance_view(cloud: Cloud, row: Any, itype: InstanceType) -> dict[str, Any]:
    return {
        "InstanceId": row["id"],
        "InstanceName": row["id"],
        "HostName": row["id"],
        "RegionId": cloud.topology.region,
        "ZoneId": row["zone"],
        "InstanceType": itype.name,
        "InstanceTypeFamily": itype.family,
        "Status": row["status"],
        "Cpu": itype.cpu,
        "Memory": int(itype.memory_gib * 1024),
        "OSType": "linux",
        "InstanceNetworkType": "vpc",
        "InstanceChargeType": "PostPaid",
        "CreationTime": iso(row["created"]),
        "SerialNumber": row["id"][2:],
    }


@action(
    "DescribeInstanceTypes",
    params=(
        "InstanceTypeFamily",
        "NextToken",
        "MaxResults",
        "InstanceCategory",
        "CpuArchitecture",
        "NvmeSupport",
        "MinimumDiskQuantity",
        "MinimumCpuCoreCount",
        "MaximumCpuCoreCount",
        "MinimumMemorySize",
        "MaximumMemorySize",
        "InstanceFamilyLevel",
        "GPUSpec",
        "LocalStorageCategory",
        "MinimumEniQuantity",
        "MinimumGPUAmount",
        "MaximumGPUAmount",
        "PhysicalProcessorModel",
        "MinimumInstancePpsTx",
        "MinimumInstancePpsRx",
        "MinimumInstanceBandwidthTx",
        "MinimumInstanceBandwidthRx",
        "MinimumBaselineCredit",
        "MinimumInitialCredit",
        "MinimumPrimaryEniQueueNumber",
        "MinimumSecondaryEniQueueNumber",
        "MinimumQueuePairNumber",
        "MinimumLocalStorageAmount",
        "MinimumLocalStorageCapacity",
        "MinimumCpuSpeedFrequency",
        "MaximumCpuSpeedFrequency",
        "MinimumCpuTurboFrequency",
        "MaximumCpuTurboFrequency",
        "MinimumEniPrivateIpAddressQuantity",
        "MinimumEniIpv6AddressQuantity",
        "MinimumEriQuantity",
    ),
    patterns=(
        r"InstanceTypes\.\d+",
        r"InstanceTypeFamilies\.\d+",
        r"CpuArchitectures\.\d+",
        r"InstanceCategories\.\d+",
        r"LocalStorageCategories\.\d+",
        r"GpuSpecs\.\d+",
        r"PhysicalProcessorModels\.\d+",
        r"AdditionalAttributes\.\d+",
    ),
)
def describe_instance_types(cloud: Cloud, p: Params) -> dict[str, Any]:
    wanted = set(p.numbered("InstanceTypes"))
    families = set(p.numbered("InstanceTypeFamilies"))
    if p.str("InstanceTypeFamily"):
        families.add(p.str("InstanceTypeFamily"))
    types = []
    for itype in INSTANCE_TYPES.values():
        if wanted and itype.name not in wanted:
            continue
        if families and itype.family not in families:
            continue
        types.append(
            {
                "InstanceTypeId": itype.name,
                "InstanceTypeFamily": itype.family,
                "CpuCoreCount": itype.cpu,
                "MemorySize": itype.memory_gib,
                "DiskQuantity": itype.disk_quantity,
                "NvmeSupport": "required" if itype.bus == "nvme" else "unsupported",
                "CpuArchitecture": "X86",
                "InstanceCategory": "General-purpose",
            }
        )
    return {"InstanceTypes": {"InstanceType": types}, "NextToken": ""}


@action(
    "DescribeZones",
    params=("InstanceChargeType", "SpotStrategy", "AcceptLanguage", "Verbose"),
)
def describe_zones(cloud: Cloud, p: Params) -> dict[str, Any]:
    zones = []
    for zone in cloud.topology.zones:
        types = sorted(
            name
            for name, itype in INSTANCE_TYPES.items()
            if any(c in zone.categories for c in itype.categories)
        )
        zones.append(
            {
                "ZoneId": zone.id,
                "LocalName": zone.id,
                "ZoneType": "AvailabilityZone",
                "AvailableDiskCategories": {"DiskCategories": list(zone.categories)},
                "AvailableVolumeCategories": {"VolumeCategories": list(zone.categories)},
                "AvailableInstanceTypes": {"InstanceTypes": types},
                "AvailableResourceCreation": {"ResourceTypes": ["Instance", "Disk"]},
            }
        )
    return {"Zones": {"Zone": zones}}
