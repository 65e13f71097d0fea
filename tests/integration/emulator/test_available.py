"""DescribeAvailableResource and stock: which categories each zone and the region sell, what
each instance family can attach, and the four stock states the admin API sets at run time."""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest

from csi_disk_emulator.process import EmulatorInfo, admin_error
from tests.integration.emulator.sdk import Ecs


def _offers(body: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """zone id ("" for the region) -> category -> its SupportedResource."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for zone in body["AvailableZones"]["AvailableZone"]:
        for resource in zone["AvailableResources"]["AvailableResource"]:
            for supported in resource["SupportedResources"]["SupportedResource"]:
                out.setdefault(zone["ZoneId"], {})[supported["Value"]] = supported
    return out


def _data_disks(ecs: Ecs, **params: Any) -> dict[str, dict[str, dict[str, Any]]]:
    params.setdefault("ResourceType", "disk")
    return _offers(ecs.call("DescribeAvailableResource", DestinationResource="DataDisk", **params))


def _code(err: Any) -> tuple[str, int]:
    return err.get_error_code(), err.get_http_status()


@pytest.fixture
def stock(emulator: EmulatorInfo) -> Iterator[Any]:
    """``stock(zone, category, count=..., closed=...)``; every level set is reset after."""
    touched: list[tuple[str, str]] = []

    def set_stock(zone: str, category: str, count: int | None = None, closed: bool = False) -> None:
        touched.append((zone, category))
        body = {"zone": zone, "category": category, "count": count, "closed": closed}
        emulator.admin("POST", "/stock", body)

    yield set_stock
    for zone, category in touched:
        emulator.admin("POST", "/stock", {"zone": zone, "category": category, "count": None})


def test_disks_sold_per_zone_without_an_instance_type(ecs: Ecs) -> None:
    offers = _data_disks(ecs)
    h, _, j = ecs.info.zones
    assert set(offers) == set(ecs.info.zones)
    assert "cloud_ssd" in offers[h] and "cloud_ssd" not in offers[j]
    assert all("cloud_regional_disk_auto" not in o for o in offers.values())
    essd = offers[h]["cloud_essd"]
    assert (essd["Min"], essd["Max"], essd["Unit"]) == (1, 65536, "GiB")
    assert (offers[h]["cloud_ssd"]["Min"], offers[h]["cloud_ssd"]["Max"]) == (20, 32768)
    assert {o["StatusCategory"] for z in offers.values() for o in z.values()} == {"WithStock"}


def test_an_instance_type_narrows_to_what_its_family_attaches(ecs: Ecs) -> None:
    g8i = _data_disks(ecs, InstanceType="ecs.g8i.large")
    assert {c for z in g8i.values() for c in z} == {"cloud_essd", "cloud_auto"}
    u1 = _data_disks(ecs, InstanceType="ecs.u1-c1m2.large", ZoneId=ecs.info.zones[0])
    assert set(u1) == {ecs.info.zones[0]}
    assert "cloud_essd_entry" in u1[ecs.info.zones[0]]
    g7 = _data_disks(ecs, InstanceType="ecs.g7.large")
    assert all("cloud_essd_entry" not in z for z in g7.values())


def test_scope_region_answers_the_regional_categories_once_for_the_region(ecs: Ecs) -> None:
    body = ecs.call(
        "DescribeAvailableResource",
        DestinationResource="DataDisk",
        ResourceType="disk",
        Scope="region",
        InstanceType="ecs.g8i.large",
    )
    (zone,) = body["AvailableZones"]["AvailableZone"]
    assert (zone["ZoneId"], zone["RegionId"]) == ("", ecs.info.region)
    assert set(_offers(body)[""]) == {"cloud_regional_disk_auto"}
    assert _offers(body)[""]["cloud_regional_disk_auto"]["Min"] == 10
    assert not _data_disks(ecs, Scope="region", InstanceType="ecs.g7.large")


def test_system_disks_and_the_parameters_each_destination_needs(ecs: Ecs) -> None:
    system = _offers(
        ecs.call(
            "DescribeAvailableResource",
            DestinationResource="SystemDisk",
            InstanceType="ecs.g8i.large",
            ZoneId=ecs.info.zones[2],
        )
    )[ecs.info.zones[2]]
    assert set(system) == {"cloud_essd", "cloud_auto"}
    assert (system["cloud_essd"]["Min"], system["cloud_essd"]["Max"]) == (20, 2048)
    missing = ecs.error("DescribeAvailableResource", DestinationResource="SystemDisk")
    assert _code(missing) == ("MissingParameter", 400)
    assert "InstanceType" in missing.get_error_msg()
    # Data disks bought with an instance (the default ResourceType) are per instance type.
    missing = ecs.error("DescribeAvailableResource", DestinationResource="DataDisk")
    assert "InstanceType" in missing.get_error_msg()
    unknown = ecs.error(
        "DescribeAvailableResource",
        DestinationResource="DataDisk",
        ResourceType="disk",
        InstanceType="ecs.nope.large",
    )
    assert _code(unknown) == ("InvalidInstanceType.ValueNotSupported", 400)
    zone = ecs.error("DescribeAvailableResource", DestinationResource="Zone")
    assert _code(zone) == ("InvalidParameter", 400)


def test_stock_states_follow_the_admin_api(ecs: Ecs, stock: Any) -> None:
    h, i, j = ecs.info.zones
    stock(h, "cloud_essd", count=0)
    stock(i, "cloud_essd", closed=True)
    stock(j, "cloud_essd", count=0, closed=True)
    stock(ecs.info.region, "cloud_regional_disk_auto", count=0)
    offers = _data_disks(ecs)
    states = {z: (offers[z]["cloud_essd"]["Status"], offers[z]["cloud_essd"]["StatusCategory"])
              for z in (h, i, j)}  # fmt: skip
    assert states == {
        h: ("SoldOut", "WithoutStock"),
        i: ("Available", "ClosedWithStock"),
        j: ("SoldOut", "ClosedWithoutStock"),
    }
    regional = _data_disks(ecs, Scope="region")[""]["cloud_regional_disk_auto"]
    assert regional["StatusCategory"] == "WithoutStock"
    # Low supply still sells; none left does not, closed or not.
    assert ecs.create(i, DiskCategory="cloud_essd")
    for zone in (h, j):
        err = ecs.error("CreateDisk", ZoneId=zone, DiskCategory="cloud_essd", Size=20)
        assert _code(err) == ("OperationDenied.NoStock", 403)
    err = ecs.error("CreateDisk", DiskCategory="cloud_regional_disk_auto", Size=20)
    assert _code(err) == ("OperationDenied.NoStock", 403)
    listed = {(s["zone"], s["category"]): s for s in ecs.info.admin("GET", "/stock")["stock"]}
    assert listed[(j, "cloud_essd")]["status_category"] == "ClosedWithoutStock"


def test_the_last_disk_in_stock_turns_the_zone_sold_out(ecs: Ecs, stock: Any) -> None:
    zone = ecs.info.zones[1]
    stock(zone, "cloud_auto", count=1)
    assert _data_disks(ecs, ZoneId=zone)[zone]["cloud_auto"]["StatusCategory"] == "WithStock"
    ecs.create(zone, DiskCategory="cloud_auto")
    assert _data_disks(ecs, ZoneId=zone)[zone]["cloud_auto"]["StatusCategory"] == "WithoutStock"


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"zone": "cn-nowhere-x", "category": "cloud_ssd", "count": 0}, "zone"),
        ({"zone": "ZONE", "category": "cloud_bogus", "count": 0}, "category"),
        ({"zone": "ZONE", "category": "cloud_regional_disk_auto", "count": 0}, "region"),
        ({"zone": "ZONE", "category": "cloud_ssd", "closed": "yes"}, "closed"),
    ],
)
def test_stock_admin_refuses_what_names_nothing(
    emulator: EmulatorInfo, body: dict[str, Any], names: str
) -> None:
    body = {k: (emulator.zones[0] if v == "ZONE" else v) for k, v in body.items()}
    with pytest.raises(urllib.error.HTTPError) as caught:
        emulator.admin("POST", "/stock", body)
    assert caught.value.code == 400
    assert names in admin_error(caught.value)["error"]
