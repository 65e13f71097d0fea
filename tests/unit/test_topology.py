"""Zone choice and topology segments."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi_disk import topology
from csi_disk.errors import InvalidArgument
from csi_disk.topology import (
    INSTANCE_ID_KEY,
    K8S_REGION_KEY,
    K8S_ZONE_KEY,
    LEGACY_ZONE_KEY,
    ZONE_KEY,
    node_segments,
    volume_segment,
    zones_in_order,
)


@dataclass
class Topo:
    segments: dict[str, str]


@dataclass
class Req:
    requisite: list[Topo] = field(default_factory=list)
    preferred: list[Topo] = field(default_factory=list)


def z(zone: str, key: str = ZONE_KEY) -> Topo:
    return Topo({key: zone})


def test_keys_are_the_upstream_ones() -> None:
    assert ZONE_KEY == "topology.diskplugin.csi.alibabacloud.com/zone"
    assert K8S_ZONE_KEY == "topology.kubernetes.io/zone"
    assert K8S_REGION_KEY == "topology.kubernetes.io/region"
    assert INSTANCE_ID_KEY == "alibabacloud.com/ecs-instance-id"


A, B, C, OWN = "cn-hangzhou-a", "cn-hangzhou-b", "cn-hangzhou-c", "cn-hangzhou-own"


def test_preferred_comes_before_requisite() -> None:
    req = Req(requisite=[z(A), z(B), z(C)], preferred=[z(C), z(A)])
    assert zones_in_order(req, "", OWN) == [C, A, B]


@pytest.mark.parametrize("key", [ZONE_KEY, K8S_ZONE_KEY, LEGACY_ZONE_KEY])
def test_every_zone_key_is_understood(key: str) -> None:
    assert zones_in_order(Req(requisite=[z(B, key)]), "", OWN) == [B]


def test_zone_param_narrows_topology() -> None:
    req = Req(requisite=[z(A), z(B)], preferred=[z(A), z(B)])
    assert zones_in_order(req, B, OWN) == [B]
    assert zones_in_order(req, f" {C} , {B} ", OWN) == [B]
    assert zones_in_order(req, f"{B},{A}", OWN) == [A, B]  # topology order wins


def test_zone_param_disjoint_from_requisite_is_invalid() -> None:
    req = Req(requisite=[z(A)], preferred=[z(A)])
    with pytest.raises(InvalidArgument, match=f"zoneId '{C}'"):
        zones_in_order(req, C, OWN)


def test_preferred_outside_requisite_is_never_chosen() -> None:
    req = Req(requisite=[z(A)], preferred=[z(B), z(A)])
    assert zones_in_order(req, "", OWN) == [A]


def test_no_topology_uses_param_then_default_zone() -> None:
    assert zones_in_order(None, f"{A},{B},{A}", OWN) == [A, B]
    assert zones_in_order(None, "", OWN) == [OWN]
    assert zones_in_order(Req(), "", OWN) == [OWN]


def test_preferred_without_zone_imposes_nothing() -> None:
    req = Req(preferred=[Topo({INSTANCE_ID_KEY: "i-1"})])
    assert zones_in_order(req, "", OWN) == [OWN]


@pytest.mark.parametrize(
    "segments",
    [
        {INSTANCE_ID_KEY: "i-1"},
        {K8S_REGION_KEY: "cn-hangzhou"},
        {"example.com/zone": A},
    ],
)
def test_requisite_without_a_known_zone_key_is_invalid(segments: dict[str, str]) -> None:
    """Falling back to the controller's zone would create the disk outside the requisite."""
    req = Req(requisite=[Topo(segments)], preferred=[Topo(segments)])
    with pytest.raises(InvalidArgument, match="requisite names no zone"):
        zones_in_order(req, "", OWN)
    with pytest.raises(InvalidArgument, match="requisite names no zone"):
        zones_in_order(req, A, OWN)


def test_requisite_segments_without_zone_are_skipped_when_others_name_one() -> None:
    req = Req(requisite=[Topo({INSTANCE_ID_KEY: "i-1"}), z(B)])
    assert zones_in_order(req, "", OWN) == [B]


def test_no_zone_anywhere_is_invalid() -> None:
    with pytest.raises(InvalidArgument):
        zones_in_order(None, "", "")


@pytest.mark.parametrize(
    "bad", ["a/../b", "cn-hangzhou-h\nforged", "CN-HANGZHOU-H", "cn_hangzhou_h", "zone", "-cn-h"]
)
def test_malformed_zones_are_invalid(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="zoneId"):
        zones_in_order(None, bad, OWN)
    with pytest.raises(InvalidArgument, match="topology requisite"):
        zones_in_order(Req(requisite=[z(bad)]), "", OWN)
    with pytest.raises(InvalidArgument, match="topology preferred"):
        zones_in_order(Req(preferred=[z(bad)], requisite=[z(A)]), "", OWN)


def test_node_and_volume_segments() -> None:
    assert node_segments("cn-hangzhou-h", "cn-hangzhou", "i-123") == {
        ZONE_KEY: "cn-hangzhou-h",
        K8S_ZONE_KEY: "cn-hangzhou-h",
        K8S_REGION_KEY: "cn-hangzhou",
        INSTANCE_ID_KEY: "i-123",
    }
    assert node_segments("z", "", "") == {ZONE_KEY: "z", K8S_ZONE_KEY: "z"}
    assert volume_segment("z") == {ZONE_KEY: "z"}


DISK_TYPE = "node.csi.alibabacloud.com/disktype."


def test_disk_types_are_upstreams_node_labels() -> None:
    segments = node_segments("z", "r", "i-1", ["cloud_essd", "cloud_auto"])
    assert segments[f"{DISK_TYPE}cloud_essd"] == segments[f"{DISK_TYPE}cloud_auto"] == "available"
    assert topology.disk_types_of(segments) == {"cloud_essd", "cloud_auto"}
    # A node that reports none restricts nothing; upstream reads the key, not its value.
    assert topology.disk_types_of({ZONE_KEY: "z"}) is None
    assert topology.disk_types_of({f"{DISK_TYPE}cloud_ssd": "true"}) == {"cloud_ssd"}


def test_volume_segments_of_zonal_and_regional_disks() -> None:
    assert volume_segment("z", category="cloud_essd", attached_by_type=True) == {
        ZONE_KEY: "z",
        f"{DISK_TYPE}cloud_essd": "available",
    }
    regional = "cloud_regional_disk_auto"
    assert volume_segment("", region="cn-hangzhou", category=regional) == {
        K8S_REGION_KEY: "cn-hangzhou"
    }
    assert volume_segment("", region="r", category=regional, attached_by_type=True) == {
        K8S_REGION_KEY: "r",
        f"{DISK_TYPE}{regional}": "available",
    }


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("", None),
        ("  ", None),
        ("none", ()),
        ("cloud_essd, cloud_auto,,cloud_essd", ("cloud_essd", "cloud_auto")),
    ],
)
def test_disk_categories_setting(value: str, parsed: tuple[str, ...] | None) -> None:
    assert topology.parse_disk_categories(value) == parsed


@pytest.mark.parametrize("value", ["cloud-essd", "Cloud_ESSD", "cloud_essd,a/b", "x" * 64])
def test_disk_categories_setting_refuses_what_cannot_be_a_label(value: str) -> None:
    with pytest.raises(ValueError, match="not a disk category name"):
        topology.parse_disk_categories(value)


zones = st.sampled_from([f"cn-hangzhou-{x}" for x in "abcde"])


@given(
    st.lists(zones, max_size=5),
    st.lists(zones, max_size=5),
    st.lists(zones, max_size=3),
)
def test_choice_respects_requisite_and_param(
    requisite: list[str], preferred: list[str], param: list[str]
) -> None:
    req = Req(requisite=[z(x) for x in requisite], preferred=[z(x) for x in preferred])
    try:
        result = zones_in_order(req, ",".join(param), OWN)
    except InvalidArgument:
        candidates = set(requisite) or set(preferred)
        assert param and candidates and not (candidates & set(param))
        return
    assert result
    assert len(result) == len(set(result))
    if requisite:
        assert set(result) <= set(requisite)
    if param:
        assert set(result) <= set(param)
    if not requisite and not preferred:
        assert result == (topology.parse_zone_list(",".join(param)) or [OWN])
    if (
        preferred
        and (not requisite or preferred[0] in requisite)
        and (not param or preferred[0] in param)
    ):
        assert result[0] == preferred[0]
