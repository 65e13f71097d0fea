"""ECS disk categories: which sizes each accepts and what it supports.

Sizes follow the ECS CreateDisk reference (GiB). They change now and then, so a
CreateDisk refusal on size is still treated as "not possible here" and the next
category in the StorageClass list is tried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from csi_disk.errors import InvalidArgument, OutOfRange
from csi_disk.quoting import quote

GIB = 1024**3
DEFAULT_SIZE_GIB = 20  # the size of a volume whose request names no capacity

PERFORMANCE_LEVELS = ("PL0", "PL1", "PL2", "PL3")


@dataclass(frozen=True)
class SizeRange:
    min_gib: int
    max_gib: int


@dataclass(frozen=True)
class Category:
    name: str
    size: SizeRange
    performance_levels: dict[str, SizeRange] = field(default_factory=dict)
    provisioned_iops: bool = False
    bursting: bool = False
    regional: bool = False  # zone-redundant: lives in the region, attaches in any of its zones


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category("cloud", SizeRange(5, 2000)),
        Category("cloud_efficiency", SizeRange(20, 32768)),
        Category("cloud_ssd", SizeRange(20, 32768)),
        Category(
            "cloud_essd",
            SizeRange(20, 65536),  # no level given: ECS creates PL1
            performance_levels={
                "PL0": SizeRange(1, 65536),
                "PL1": SizeRange(20, 65536),
                "PL2": SizeRange(461, 65536),
                "PL3": SizeRange(1261, 65536),
            },
        ),
        Category("cloud_essd_entry", SizeRange(10, 32768)),
        Category("cloud_auto", SizeRange(1, 65536), provisioned_iops=True, bursting=True),
        Category("cloud_regional_disk_auto", SizeRange(10, 65536), regional=True),
    )
}


def category(name: str) -> Category:
    try:
        return CATEGORIES[name]
    except KeyError:
        known = ", ".join(CATEGORIES)
        raise InvalidArgument(f"unknown disk category {quote(name)} (known: {known})") from None


def is_regional(name: str) -> bool:
    """Whether disks of ``name`` live in the region (False for categories not known here)."""
    known = CATEGORIES.get(name)
    return known is not None and known.regional


def has_performance_levels(name: str) -> bool:
    return bool(category(name).performance_levels)


def effective_level(name: str, performance_level: str) -> str:
    """The level that counts for a disk: ECS may report one on categories that have none."""
    return performance_level if has_performance_levels(name) else ""


def size_range(name: str, performance_level: str = "") -> SizeRange:
    """The sizes ``name`` accepts at ``performance_level`` ("" for the category default)."""
    desc = category(name)
    if not performance_level:
        return desc.size
    if performance_level not in desc.performance_levels:
        raise InvalidArgument(
            f"category {name} has no performance level {quote(performance_level)}"
        )
    return desc.performance_levels[performance_level]


def max_size_gib(name: str, performance_level: str = "") -> int:
    """The largest size ``name`` accepts: the bound for expansion."""
    return size_range(name, performance_level).max_gib


def bytes_to_gib_ceil(n: int) -> int:
    return -(-n // GIB)


def fit_size(
    name: str,
    performance_level: str,
    required_bytes: int,
    limit_bytes: int,
    *,
    raise_to_minimum: bool = True,
) -> int:
    """The size in GiB to create for a CSI capacity range on this category.

    Rounds the requirement up to whole GiB (or takes DEFAULT_SIZE_GIB when none is
    given, capped by the limit), raises it to the category minimum when allowed, and
    raises OutOfRange when the limit or the category maximum forbids every size.
    """
    if required_bytes < 0 or limit_bytes < 0:
        raise InvalidArgument("capacity range bytes must not be negative")
    if limit_bytes and required_bytes > limit_bytes:
        raise InvalidArgument(
            f"capacity range required_bytes {required_bytes} exceeds limit_bytes {limit_bytes}"
        )
    limits = size_range(name, performance_level)
    hi = limit_bytes // GIB if limit_bytes else None
    if required_bytes:
        size = bytes_to_gib_ceil(required_bytes)
    else:
        size = DEFAULT_SIZE_GIB if hi is None else min(DEFAULT_SIZE_GIB, hi)
    label = f"{name}.{performance_level}" if performance_level else name
    if size < limits.min_gib:
        if not raise_to_minimum and required_bytes:
            raise OutOfRange(
                f"{label} needs at least {limits.min_gib} GiB and {size} GiB was requested "
                "(volumeSizeAutoAvailable is false)"
            )
        size = limits.min_gib
    if hi is not None and size > hi:
        raise OutOfRange(
            f"{label} needs at least {size} GiB but the capacity limit is {limit_bytes} bytes"
        )
    if size > limits.max_gib:
        raise OutOfRange(f"{label} holds at most {limits.max_gib} GiB, {size} GiB requested")
    return size
