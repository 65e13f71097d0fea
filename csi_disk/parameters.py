"""StorageClass parameters of CreateVolume, parsed once into a frozen value.

Every parameter Alibaba's upstream driver accepts is either implemented here, accepted
with a warning the handler logs, or refused with INVALID_ARGUMENT naming it (see
docs/parameters.md). Anything else is refused too: a typo must not silently create a
disk the user did not ask for.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from csi_disk import categories
from csi_disk.errors import InvalidArgument
from csi_disk.fstypes import FS_TYPES
from csi_disk.quoting import quote
from csi_disk.tokens import VOLUME_NAME_TAG
from csi_disk.topology import parse_zone_list
from csi_disk.volume_ids import has_control_chars

DEFAULT_TYPES = ("cloud_essd", "cloud_ssd", "cloud_efficiency")
# Upstream's "available" means "whatever high-availability disk the zone has".
AVAILABLE_ALIAS = "available"

PVC_NAME_KEY = "csi.storage.k8s.io/pvc/name"
PVC_NAMESPACE_KEY = "csi.storage.k8s.io/pvc/namespace"
PV_NAME_KEY = "csi.storage.k8s.io/pv/name"
PVC_NAME_TAG = "kubernetes.io/created-for/pvc/name"
PVC_NAMESPACE_TAG = "kubernetes.io/created-for/pvc/namespace"
PV_NAME_TAG = "kubernetes.io/created-for/pv/name"
DISK_TAG_PREFIX = "diskTags/"
KMS_KEY_ANNOTATION = "alibabacloud.com/kms-key-id"
# Also the volume context key the node reads: "true" skips e2fsck before mounting.
OMIT_FSCK_KEY = "omitfsck"

MAX_TAGS = 20
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 128
# ECS's ceiling for a cloud_auto disk's provisioned IOPS; ECS narrows it further by size.
MAX_PROVISIONED_IOPS = 1_000_000

# ECS id alphabets: resource groups are "rg-" + letters/digits; KMS keys are ids such as
# "key-hzz62f1cb66fa42qo" or UUIDs; regions look like "cn-hangzhou" or "ap-southeast-1".
_RESOURCE_GROUP_ID = re.compile(r"rg-[A-Za-z0-9]{1,64}")
_KMS_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_REGION_ID = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+){1,4}")

IMPLEMENTED = frozenset(
    {
        "type",
        "performanceLevel",
        "zoneId",
        "zoneid",
        "regionId",
        "encrypted",
        "kmsKeyId",
        KMS_KEY_ANNOTATION,
        "resourceGroupId",
        "diskTags",
        "multiAttach",
        "provisionedIops",
        "burstingEnabled",
        "volumeSizeAutoAvailable",
        "fsType",
        "csi.storage.k8s.io/fstype",
        "mkfsOptions",
        OMIT_FSCK_KEY,
        PVC_NAME_KEY,
        PVC_NAMESPACE_KEY,
        PV_NAME_KEY,
    }
)

# Accepted so StorageClasses written for the upstream driver keep working; each use is logged.
IGNORED = {
    "readOnly": "read-only is chosen per mount by Kubernetes, not per disk",
    "volumeExpandAutoSnapshot": "obsolete upstream too: it has no effect",
    "volumeDeleteSnapshotRetentionDays": "snapshots before delete are not taken by this driver",
    "sysConfig": "block-device sysfs tuning is not applied by this driver",
    "volume.kubernetes.io/selected-node": "the topology requirement already names the zone",
    "csi.alibabacloud.com/reclaimPolicy": "StorageClass metadata",
    "csi.alibabacloud.com/storageclassName": "StorageClass metadata",
    "allowVolumeExpansion": "StorageClass metadata",
    "kubectl.kubernetes.io/last-applied-configuration": "StorageClass metadata",
    "volume.beta.kubernetes.io/storage-provisioner": "StorageClass metadata",
}

# Upstream features this driver does not have; silently ignoring them would create a
# different disk than the one asked for.
REFUSED = {
    "storageClusterId": "dedicated block storage clusters are not supported",
    "alibabacloud.com/createdisk-arn": "creating disks for another account is not supported",
    "csi.alibabacloud.com/disk-snapshot-id": "give the snapshot as the volume content source",
    "volume.alibabacloud.com/disk-id": "static volumes are created as PersistentVolumes, "
    "not through CreateVolume",
    "restrictToHpnZone": "LingJun HPN zones are not supported",
}

_TRUE = ("true", "yes", "1", "enabled", "enable")
_FALSE = ("false", "no", "0", "disabled", "disable")


@dataclass(frozen=True)
class VolumeParameters:
    """What CreateVolume needs from the StorageClass, validated."""

    types: tuple[str, ...] = DEFAULT_TYPES
    performance_levels: tuple[str, ...] = ()
    zone_ids: tuple[str, ...] = ()
    region_id: str = ""
    encrypted: bool = False
    kms_key_id: str = ""
    resource_group_id: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    multi_attach: bool = False
    provisioned_iops: int | None = None
    bursting_enabled: bool | None = None
    auto_size: bool = True
    fs_type: str = ""
    mkfs_options: str = ""
    omit_fsck: bool = False
    pvc_name: str = ""
    pvc_namespace: str = ""
    pv_name: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def zone_param(self) -> str:
        return ",".join(self.zone_ids)

    def attempts(self) -> list[tuple[str, str]]:
        """(category, performance level) pairs in the order CreateDisk should try them.

        A category with performance levels is tried once per requested level it
        supports; without requested levels (or for other categories) once, with "".
        """
        out: list[tuple[str, str]] = []
        for name in self.types:
            levels = categories.category(name).performance_levels
            if levels and self.performance_levels:
                out.extend((name, pl) for pl in self.performance_levels if pl in levels)
            else:
                out.append((name, ""))
        return out

    def volume_context(self, category: str, performance_level: str) -> dict[str, str]:
        """What the node needs to know later, carried in the PV's volume attributes."""
        ctx = {"type": category}
        if performance_level:
            ctx["performanceLevel"] = performance_level
        if self.fs_type:
            ctx["fsType"] = self.fs_type
        if self.mkfs_options:
            ctx["mkfsOptions"] = self.mkfs_options
        if self.omit_fsck:
            ctx[OMIT_FSCK_KEY] = "true"
        if self.multi_attach:
            ctx["multiAttach"] = "true"
        return ctx


def parse(params: Mapping[str, str] | None) -> VolumeParameters:
    """Validate CreateVolume parameters; InvalidArgument names the first bad key."""
    params = dict(params or {})
    warnings: list[str] = []
    for key in sorted(params):
        if has_control_chars(key):
            raise InvalidArgument(f"unknown parameter {quote(key)}")
        if key in REFUSED:
            raise InvalidArgument(f"parameter {key} is not supported: {REFUSED[key]}")
        if key in IGNORED:
            warnings.append(f"parameter {key} is ignored: {IGNORED[key]}")
            continue  # never used, so never shown: kubectl's JSON may span lines
        if key not in IMPLEMENTED and not key.startswith(DISK_TAG_PREFIX):
            raise InvalidArgument(f"unknown parameter {quote(key)}")
        # Values end up in disk tags, ECS calls and messages: no line breaks or escapes.
        if has_control_chars(params[key].replace("\t", " ")):
            raise InvalidArgument(f"parameter {quote(key)} holds a control character")

    types = _parse_types(params.get("type"))
    levels = _parse_levels(params.get("performanceLevel", ""))
    if levels and not any(categories.has_performance_levels(t) for t in types):
        raise InvalidArgument(
            f"parameter performanceLevel={quote(params['performanceLevel'])} applies to none of "
            f"the types {','.join(types)}"
        )
    zones = parse_zone_list(params.get("zoneId", params.get("zoneid", "")))
    encrypted = _parse_bool(params, "encrypted", False)
    kms = _parse_id(params, (KMS_KEY_ANNOTATION, "kmsKeyId"), _KMS_KEY_ID, "a KMS key id")
    if kms and not encrypted:
        raise InvalidArgument(f"parameter kmsKeyId={quote(kms)} needs encrypted=true")
    iops = _parse_iops(params.get("provisionedIops"))
    bursting = _parse_bool(params, "burstingEnabled", None)
    if (iops is not None or bursting is not None) and not any(
        categories.category(t).provisioned_iops for t in types
    ):
        warnings.append(
            "provisionedIops and burstingEnabled apply only to cloud_auto and are ignored "
            f"for {','.join(types)}"
        )
    fs_type = _parse_fs_type(params)
    mkfs = params.get("mkfsOptions", "")
    if mkfs:
        _check_mkfs_options(mkfs)
    return VolumeParameters(
        types=types,
        performance_levels=levels,
        zone_ids=tuple(zones),
        region_id=_parse_id(params, ("regionId",), _REGION_ID, "an ECS region id"),
        encrypted=encrypted,
        kms_key_id=kms,
        resource_group_id=_parse_id(
            params, ("resourceGroupId",), _RESOURCE_GROUP_ID, "a resource group id (rg-...)"
        ),
        tags=_parse_tags(params),
        multi_attach=_parse_bool(params, "multiAttach", False),
        provisioned_iops=iops,
        bursting_enabled=bursting,
        auto_size=_parse_bool(params, "volumeSizeAutoAvailable", True),
        fs_type=fs_type,
        mkfs_options=mkfs,
        omit_fsck=_parse_bool(params, OMIT_FSCK_KEY, False),
        pvc_name=params.get(PVC_NAME_KEY, ""),
        pvc_namespace=params.get(PVC_NAMESPACE_KEY, ""),
        pv_name=params.get(PV_NAME_KEY, ""),
        warnings=tuple(warnings),
    )


def _parse_types(value: str | None) -> tuple[str, ...]:
    if value is None or value.strip() in ("", AVAILABLE_ALIAS):
        return DEFAULT_TYPES
    out: list[str] = []
    for part in value.split(","):
        name = part.strip()
        if name not in categories.CATEGORIES:
            known = ", ".join([*categories.CATEGORIES, AVAILABLE_ALIAS])
            raise InvalidArgument(
                f"parameter type={quote(value)}: unknown category {quote(name)} ({known})"
            )
        if name not in out:
            out.append(name)
    return tuple(out)


def _parse_levels(value: str) -> tuple[str, ...]:
    if not value.strip():
        return ()
    out: list[str] = []
    for part in value.split(","):
        level = part.strip()
        if level not in categories.PERFORMANCE_LEVELS:
            raise InvalidArgument(
                f"parameter performanceLevel={quote(value)}: {quote(level)} is not one of "
                f"{', '.join(categories.PERFORMANCE_LEVELS)}"
            )
        if level not in out:
            out.append(level)
    return tuple(out)


def _parse_bool(params: Mapping[str, str], key: str, default: bool | None) -> bool | None:
    if key not in params:
        return default
    value = params[key].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(f"parameter {key}={quote(params[key])} is not a boolean (true or false)")


def parse_count(key: str, value: str, maximum: int) -> int:
    """A whole number of ASCII digits up to ``maximum``; INVALID_ARGUMENT naming ``key``.

    ``int()`` alone would take other scripts' digits, signs, underscores and whitespace.
    """
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise InvalidArgument(f"parameter {key}={quote(value)} is not a whole number")
    number = int(text)
    if number > maximum:
        raise InvalidArgument(f"parameter {key}={number} exceeds {maximum}")
    return number


def _parse_iops(value: str | None) -> int | None:
    if value is None:
        return None
    return parse_count("provisionedIops", value, MAX_PROVISIONED_IOPS)


def _parse_id(
    params: Mapping[str, str], keys: tuple[str, ...], pattern: re.Pattern[str], what: str
) -> str:
    """The first of ``keys`` that is set, checked against an ECS id alphabet; "" when none."""
    for key in keys:
        value = params.get(key, "").strip()
        if not value:
            continue
        if has_control_chars(value) or pattern.fullmatch(value) is None:
            raise InvalidArgument(f"parameter {key}={quote(value)} is not {what}")
        return value
    return ""


def _parse_fs_type(params: Mapping[str, str]) -> str:
    key = "csi.storage.k8s.io/fstype" if "csi.storage.k8s.io/fstype" in params else "fsType"
    value = params.get(key, "").strip()
    if value and value not in FS_TYPES:
        raise InvalidArgument(
            f"parameter {key}={quote(value)} is not one of {', '.join(FS_TYPES)}"
        )
    return value


def _check_mkfs_options(value: str) -> None:
    if any(ord(c) < 32 and c not in " \t" for c in value):
        raise InvalidArgument("parameter mkfsOptions holds a control character")
    try:
        shlex.split(value)
    except ValueError as err:
        raise InvalidArgument(
            f"parameter mkfsOptions={quote(value)} cannot be split: {err}"
        ) from None


def _parse_tags(params: Mapping[str, str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    raw = params.get("diskTags", "")
    if raw.strip():
        for item in raw.split(","):
            key, sep, value = item.partition(":")
            if not sep:
                raise InvalidArgument(f"parameter diskTags: {quote(item)} has no ':'")
            tags[key.strip()] = value.strip()
    for key in sorted(params):
        if key.startswith(DISK_TAG_PREFIX):
            tags[key[len(DISK_TAG_PREFIX) :]] = params[key]
    for key, tag in (
        (PVC_NAME_KEY, PVC_NAME_TAG),
        (PV_NAME_KEY, PV_NAME_TAG),
        (PVC_NAMESPACE_KEY, PVC_NAMESPACE_TAG),
    ):
        if params.get(key):
            # Kubernetes names run to 253 characters; a tag is a label, not a key, so a
            # long name is cut rather than failing the volume.
            tags[tag] = params[key][:MAX_TAG_VALUE]
    for key, value in tags.items():
        _check_tag(key, value)
    if len(tags) > MAX_TAGS - 1:  # one slot stays free for the volume-name tag
        raise InvalidArgument(f"at most {MAX_TAGS - 1} disk tags may be given, got {len(tags)}")
    return tags


def _check_tag(key: str, value: str) -> None:
    if not key:
        raise InvalidArgument("disk tag with an empty key")
    if key == VOLUME_NAME_TAG:
        raise InvalidArgument(f"disk tag {key} is reserved for the driver")
    lowered = key.lower()
    if lowered.startswith(("aliyun", "acs:")) or "http://" in lowered or "https://" in lowered:
        raise InvalidArgument(f"disk tag key {quote(key)} is not allowed by ECS")
    if len(key) > MAX_TAG_KEY:
        raise InvalidArgument(f"disk tag key {quote(key)} is longer than {MAX_TAG_KEY}")
    if len(value) > MAX_TAG_VALUE:
        raise InvalidArgument(f"disk tag {quote(key)} value is longer than {MAX_TAG_VALUE}")
    if "http://" in value.lower() or "https://" in value.lower():
        raise InvalidArgument(f"disk tag {quote(key)} value may not contain http:// or https://")
