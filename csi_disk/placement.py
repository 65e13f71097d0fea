"""Where a new disk goes: which (zone, category) pairs CreateDisk tries, in what order.

CreateVolume tries the zones of the topology requirement in order and, in each, the
StorageClass's categories in their fallback order. Two things narrow that list before any
ECS call:

- what the nodes that will use the disk attach: the ``disktype`` segments their NodeGetInfo
  reports reach CreateVolume in the requirement (csi-provisioner copies the selected node's
  segments; with Immediate binding, every node's). A category no node of the zone attaches
  is left out; nodes that report no disk types restrict nothing;
- what the zone sells, from the last stock read: a category not sold there is left out, and
  one out of stock goes after every other choice, in case the read (up to a minute old) is
  stale: a zone that has stock again still gets its disk. Of a zone the read does not list,
  or with no read yet, nothing is left out; CreateDisk's own refusals still move on to the
  next choice.

A regional category (``cloud_regional_disk_auto``) lives in the region rather than a zone:
it is tried once, where it first comes in the order, without a zone, if any node of the
requirement attaches it. The PV's topology then names the region, so the disk follows its
pod across zones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from csi_disk import categories, topology
from csi_disk.topology import TopologyRequirement


class Offer(Protocol):
    """A category a place sells, as the stock read found it."""

    @property
    def in_stock(self) -> bool: ...


class Sold(Protocol):
    """What ECS sells where: ``offer`` is None for a category not sold in a place it
    ``knows``; of a place it does not know, nothing is ruled out."""

    def knows(self, zone: str, category: str) -> bool: ...

    def offer(self, zone: str, category: str) -> Offer | None: ...


@dataclass(frozen=True)
class Reach:
    """The disk categories the nodes of a topology requirement attach: per zone, and over
    all of them for regional disks. None where some node reports no disk types."""

    by_zone: dict[str, frozenset[str] | None]
    anywhere: frozenset[str] | None

    def attaches(self, zone: str, category: str) -> bool:
        """Whether a node of ``zone`` (any zone for a regional category) attaches it; a zone
        the requirement does not name (a zoneId or default zone) restricts nothing."""
        types = self.anywhere if categories.is_regional(category) else self.by_zone.get(zone)
        return types is None or category in types

    def reported(self, zone: str, category: str) -> bool:
        """Whether the nodes that will use a disk there all report their disk types, so the
        PV may require the category's node label."""
        if categories.is_regional(category):
            return self.anywhere is not None
        return self.by_zone.get(zone) is not None


NOWHERE = Reach(by_zone={}, anywhere=None)


def reach_of(requirement: TopologyRequirement | None) -> Reach:
    """What the requirement's segments (requisite, else preferred) say the nodes attach."""
    if requirement is None:
        return NOWHERE
    terms = list(requirement.requisite) or list(requirement.preferred)
    by_zone: dict[str, frozenset[str] | None] = {}
    anywhere: frozenset[str] | None = frozenset()
    for term in terms:
        types = topology.disk_types_of(term.segments)
        zone = topology.zone_of(term.segments)
        if zone:
            known = by_zone.get(zone, frozenset())
            by_zone[zone] = None if types is None or known is None else known | types
        anywhere = None if types is None or anywhere is None else anywhere | types
    return Reach(by_zone=by_zone, anywhere=anywhere if terms else None)


def label(category: str, level: str) -> str:
    return f"{category}.{level}" if level else category


def plan(
    choices: Sequence[tuple[str, str]],
    zones: Sequence[str],
    reach: Reach,
    stock: Sold | None,
    region: str,
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(zone, category, level) to try in order, zone "" for a regional category, those out
    of stock last; and why each choice left out was left out.

    ``choices`` are the (category, level) pairs of the StorageClass that fit the size, in
    their fallback order; ``zones`` the requirement's zones, best first.
    """
    tries: list[tuple[str, str, str]] = []
    last: list[tuple[str, str, str]] = []
    reasons: list[str] = []
    regional_done: set[tuple[str, str]] = set()
    for zone in zones:
        for category, level in choices:
            regional = categories.is_regional(category)
            if regional and (category, level) in regional_done:
                continue
            where = region if regional else zone
            if regional:
                regional_done.add((category, level))
            if not reach.attaches(zone, category):
                nodes = "no node of the requirement" if regional else f"no node in {zone}"
                reasons.append(f"{label(category, level)}: {nodes} attaches it")
                continue
            place = "" if regional else zone
            known = stock is not None and stock.knows(place, category)
            offer = stock.offer(place, category) if stock is not None and known else None
            if known and offer is None:
                reasons.append(f"{label(category, level)} is not sold in {where}")
                continue
            if offer is not None and not offer.in_stock:
                last.append((place, category, level))
                continue
            tries.append((place, category, level))
    return tries + last, reasons
