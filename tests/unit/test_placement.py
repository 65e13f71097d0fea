"""Which (zone, category) pairs CreateVolume tries: the nodes' disk types and the stock read
narrow the StorageClass's fallback order before any ECS call."""

from __future__ import annotations

from dataclasses import dataclass, field

from csi_disk import placement, topology
from csi_disk.topology import K8S_REGION_KEY, ZONE_KEY

H, ZONE_I = "cn-hangzhou-h", "cn-hangzhou-i"
REGIONAL = "cloud_regional_disk_auto"


@dataclass
class Term:
    segments: dict[str, str]


@dataclass
class Requirement:
    requisite: list[Term] = field(default_factory=list)
    preferred: list[Term] = field(default_factory=list)


def node(zone: str, *types: str) -> Term:
    return Term(topology.node_segments(zone, "cn-hangzhou", f"i-{zone[-1]}", types))


@dataclass
class Offer:
    in_stock: bool = True


@dataclass
class Sold:
    """zone ("" for the region) -> category -> in stock."""

    places: dict[str, dict[str, bool]]

    def knows(self, zone: str, category: str) -> bool:
        return zone in self.places

    def offer(self, zone: str, category: str) -> Offer | None:
        left = self.places.get(zone, {}).get(category)
        return None if left is None else Offer(left)


ESSD_SSD = [("cloud_essd", ""), ("cloud_ssd", "")]


def test_the_selected_nodes_types_leave_out_what_it_cannot_attach() -> None:
    reach = placement.reach_of(Requirement([node(H, "cloud_ssd")], [node(H, "cloud_ssd")]))
    tries, why = placement.plan(ESSD_SSD, [H], reach, None, "cn-hangzhou")
    assert tries == [(H, "cloud_ssd", "")]
    assert why == [f"cloud_essd: no node in {H} attaches it"]


def test_nodes_that_report_no_types_restrict_nothing() -> None:
    silent = Term({ZONE_KEY: H})
    for requirement in (None, Requirement([silent]), Requirement([node(H, "cloud_ssd"), silent])):
        reach = placement.reach_of(requirement)
        assert placement.plan(ESSD_SSD, [H], reach, None, "r")[0] == [
            (H, "cloud_essd", ""),
            (H, "cloud_ssd", ""),
        ]
        assert not reach.reported(H, "cloud_essd")


def test_immediate_binding_takes_what_any_node_of_the_zone_attaches() -> None:
    reach = placement.reach_of(Requirement([node(H, "cloud_ssd"), node(H, "cloud_essd"),
                                            node(ZONE_I, "cloud_ssd")]))  # fmt: skip
    tries, _ = placement.plan(ESSD_SSD, [H, ZONE_I], reach, None, "r")
    assert tries == [(H, "cloud_essd", ""), (H, "cloud_ssd", ""), (ZONE_I, "cloud_ssd", "")]
    assert reach.reported(H, "cloud_essd") and reach.reported(ZONE_I, "cloud_ssd")


def test_the_stock_read_leaves_out_what_a_zone_does_not_sell_or_has_run_out_of() -> None:
    stock = Sold({H: {"cloud_essd": False}, ZONE_I: {"cloud_essd": True, "cloud_ssd": True}})
    tries, why = placement.plan(ESSD_SSD, [H, ZONE_I], placement.NOWHERE, stock, "r")
    # Out of stock goes last, in case the read is stale; not sold is left out.
    assert tries == [(ZONE_I, "cloud_essd", ""), (ZONE_I, "cloud_ssd", ""), (H, "cloud_essd", "")]
    assert why == [f"cloud_ssd is not sold in {H}"]
    # A zone the read does not list is unknown: nothing is left out there.
    tries, _ = placement.plan(ESSD_SSD, ["cn-hangzhou-k"], placement.NOWHERE, stock, "r")
    assert len(tries) == 2


def test_a_regional_category_is_tried_once_without_a_zone() -> None:
    choices = [(REGIONAL, ""), ("cloud_essd", "")]
    reach = placement.reach_of(
        Requirement([node(H, REGIONAL, "cloud_essd"), node(ZONE_I, "cloud_essd")])
    )
    tries, _ = placement.plan(choices, [H, ZONE_I], reach, None, "cn-hangzhou")
    assert tries == [("", REGIONAL, ""), (H, "cloud_essd", ""), (ZONE_I, "cloud_essd", "")]
    assert reach.reported("", REGIONAL)
    # No node of the requirement attaches it, or the region has none left: left out.
    reach = placement.reach_of(Requirement([node(H, "cloud_essd")]))
    tries, why = placement.plan(choices, [H], reach, None, "cn-hangzhou")
    assert tries == [(H, "cloud_essd", "")]
    assert why == [f"{REGIONAL}: no node of the requirement attaches it"]
    stock = Sold({"": {REGIONAL: False}, H: {"cloud_essd": True}})
    tries, _ = placement.plan(choices, [H], placement.NOWHERE, stock, "cn-hangzhou")
    assert tries == [(H, "cloud_essd", ""), ("", REGIONAL, "")]
    stock = Sold({H: {"cloud_essd": True}, "cn-hangzhou-x": {}})  # the region not listed
    tries, _ = placement.plan(choices, [H], placement.NOWHERE, stock, "cn-hangzhou")
    assert tries[0] == ("", REGIONAL, "")


def test_region_key_alone_gives_no_zone_but_types_still_count() -> None:
    term = Term({K8S_REGION_KEY: "cn-hangzhou", topology.disk_type_key(REGIONAL): "available"})
    reach = placement.reach_of(Requirement([term]))
    assert reach.by_zone == {} and reach.anywhere == {REGIONAL}
    assert reach.attaches("", REGIONAL)
    # A zonal category in a zone the requirement does not name is not ruled out.
    assert reach.attaches(H, "cloud_essd_entry")
