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
    choose_zone,
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


def test_preferred_comes_before_requisite() -> None:
    req = Req(requisite=[z("a"), z("b"), z("c")], preferred=[z("c"), z("a")])
    assert zones_in_order(req, "", "x") == ["c", "a", "b"]
    assert choose_zone(req, "", "x") == "c"


@pytest.mark.parametrize("key", [ZONE_KEY, K8S_ZONE_KEY, LEGACY_ZONE_KEY])
def test_every_zone_key_is_understood(key: str) -> None:
    assert choose_zone(Req(requisite=[z("cn-b", key)]), "", "cn-x") == "cn-b"


def test_zone_param_narrows_topology() -> None:
    req = Req(requisite=[z("a"), z("b")], preferred=[z("a"), z("b")])
    assert zones_in_order(req, "b", "x") == ["b"]
    assert choose_zone(req, " c , b ", "x") == "b"


def test_zone_param_disjoint_from_requisite_is_invalid() -> None:
    req = Req(requisite=[z("a")], preferred=[z("a")])
    with pytest.raises(InvalidArgument, match="zoneId c"):
        choose_zone(req, "c", "x")


def test_preferred_outside_requisite_is_never_chosen() -> None:
    req = Req(requisite=[z("a")], preferred=[z("b"), z("a")])
    assert zones_in_order(req, "", "x") == ["a"]


def test_no_topology_uses_param_then_default_zone() -> None:
    assert choose_zone(None, "p1,p2", "own") == "p1"
    assert zones_in_order(None, "p1,p2,p1", "own") == ["p1", "p2"]
    assert choose_zone(None, "", "own") == "own"
    assert choose_zone(Req(), "", "own") == "own"


def test_segments_without_zone_impose_nothing() -> None:
    req = Req(requisite=[Topo({INSTANCE_ID_KEY: "i-1"})])
    assert choose_zone(req, "", "own") == "own"


def test_no_zone_anywhere_is_invalid() -> None:
    with pytest.raises(InvalidArgument):
        choose_zone(None, "", "")


def test_node_and_volume_segments() -> None:
    assert node_segments("cn-hangzhou-h", "cn-hangzhou", "i-123") == {
        ZONE_KEY: "cn-hangzhou-h",
        K8S_ZONE_KEY: "cn-hangzhou-h",
        K8S_REGION_KEY: "cn-hangzhou",
        INSTANCE_ID_KEY: "i-123",
    }
    assert node_segments("z", "", "") == {ZONE_KEY: "z", K8S_ZONE_KEY: "z"}
    assert volume_segment("z") == {ZONE_KEY: "z"}


zones = st.sampled_from(["a", "b", "c", "d", "e"])


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
        result = zones_in_order(req, ",".join(param), "own")
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
        assert result == (topology.parse_zone_list(",".join(param)) or ["own"])
    if (
        preferred
        and (not requisite or preferred[0] in requisite)
        and (not param or preferred[0] in param)
    ):
        assert result[0] == preferred[0]
