"""GetCapacity, and the stock read it shares with CreateVolume.

ECS tells what each zone (and the region) still sells through DescribeAvailableResource, not
how many bytes: a category is in stock or not. GetCapacity answers per topology segment and
StorageClass parameters: for a segment whose zone sells, in stock, a category of the class
that the segment's node attaches, a large ``available_capacity`` and the category's largest
size as ``maximum_volume_size`` (what the scheduler compares a claim against); otherwise 0
for both, so the scheduler places the pod elsewhere before any CreateVolume.

csi-provisioner asks for every segment and class each poll period: the answers come from one
read of the stock (two calls: the zones, the region), reused until it is older than
``--stock-refresh-interval``, so GetCapacity makes no ECS call of its own. One caller
refreshes a stale read while the others keep using it; a failed read keeps the last one and
is tried again after a short pause. A CreateDisk refused for stock marks the category sold out
at once.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from google.protobuf import wrappers_pb2

from csi_disk import capabilities, categories, parameters, topology
from csi_disk.categories import GIB
from csi_disk.cloud.port import WITHOUT_STOCK, Cloud, DiskOffer
from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import DriverError

log = logging.getLogger(__name__)

RPC = csi_pb2.ControllerServiceCapability.RPC

# ECS does not say how many disks a zone can still sell: in stock reports this much (1 PiB),
# more than any claim, and the scheduler compares claims with maximum_volume_size.
IN_STOCK_CAPACITY = 1 << 50
RETRY_AFTER_FAILURE = 10.0  # seconds before a failed stock read is tried again
RESERVED_PREFIX = "csi.storage.k8s.io/"


@dataclass(frozen=True)
class Stock:
    """One read of what ECS sells: zone -> category -> offer, and the region's offers."""

    zones: dict[str, dict[str, DiskOffer]] = field(default_factory=dict)
    region: dict[str, DiskOffer] = field(default_factory=dict)

    @classmethod
    def of(cls, zonal: Iterable[DiskOffer], regional: Iterable[DiskOffer]) -> Stock:
        zones: dict[str, dict[str, DiskOffer]] = {}
        for offer in zonal:
            zones.setdefault(offer.zone, {})[offer.category] = offer
        return cls(zones, {o.category: o for o in regional})

    def knows(self, zone: str, category: str) -> bool:
        """Whether the read says anything of the place: a zone (or a region) it does not list
        is unknown rather than selling nothing."""
        return bool(self.region) if categories.is_regional(category) else zone in self.zones

    def offer(self, zone: str, category: str) -> DiskOffer | None:
        """What ``zone`` (ignored for a regional category) sells of ``category``; None: not
        sold there, or not known (see ``knows``)."""
        if categories.is_regional(category):
            return self.region.get(category)
        return self.zones.get(zone, {}).get(category)

    def sold_out(self, zone: str, category: str) -> Stock:
        """This read with ``category`` out of stock in ``zone`` (or the region)."""
        offer = self.offer(zone, category)
        if offer is None:
            return self
        empty = dataclasses.replace(offer, status="SoldOut", status_category=WITHOUT_STOCK)
        if categories.is_regional(category):
            return Stock(self.zones, {**self.region, category: empty})
        return Stock({**self.zones, zone: {**self.zones[zone], category: empty}}, self.region)


class Capacity:
    """The controller's GET_CAPACITY feature over a periodically refreshed stock read."""

    capabilities = (RPC.GET_CAPACITY,)

    def __init__(
        self,
        cloud: Cloud,
        *,
        refresh_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cloud = cloud
        self._interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stock: Stock | None = None
        self._read_at = 0.0
        self._failed_at: float | None = None
        self._reading = False

    # --- the stock read -------------------------------------------------------------------

    def stock(self) -> Stock | None:
        """The last stock read, refreshed first when it is stale; None before any read
        succeeded (nothing is known, so nothing is ruled out)."""
        now = self._clock()
        with self._lock:
            fresh = self._stock is not None and now - self._read_at < self._interval
            pausing = self._failed_at is not None and now - self._failed_at < min(
                self._interval, RETRY_AFTER_FAILURE
            )
            if fresh or pausing or self._reading:
                return self._stock
            self._reading = True
        try:
            zonal = self._cloud.available_disks()
            regional = self._cloud.available_disks(regional=True)
        except DriverError as err:
            log.warning("could not read what ECS has in stock; keeping the last read: %s", err)
            with self._lock:
                self._failed_at, self._reading = self._clock(), False
                return self._stock
        read = Stock.of(zonal, regional)
        with self._lock:
            self._stock, self._read_at, self._failed_at, self._reading = read, now, None, False
        return read

    def note_sold_out(self, zone: str, category: str) -> None:
        """CreateDisk answered NoStock: the next GetCapacity says so without waiting."""
        with self._lock:
            if self._stock is not None:
                self._stock = self._stock.sold_out(zone, category)

    # --- GetCapacity ----------------------------------------------------------------------

    def get(self, request: csi_pb2.GetCapacityRequest, region: str) -> csi_pb2.GetCapacityResponse:
        # csi-provisioner sends a class's parameters as they are, where CreateVolume gets them
        # without its own csi.storage.k8s.io/ keys (secret references and the like).
        params = parameters.parse(
            {k: v for k, v in request.parameters.items() if not k.startswith(RESERVED_PREFIX)}
        )
        if request.volume_capabilities:
            capabilities.check_all(request.volume_capabilities, multi_attach=params.multi_attach)
        segments: dict[str, str] = {}
        if request.HasField("accessible_topology"):
            segments = dict(request.accessible_topology.segments)
        zone = topology.zone_of(segments)
        if zone:
            topology.check_zone(zone, "accessible_topology zone")
        segment_region = segments.get(topology.K8S_REGION_KEY, "")
        if segment_region and region and segment_region != region:
            return _capacity(0)  # this controller creates no disks in another region
        attaches = topology.disk_types_of(segments)
        stock = self.stock()
        largest = 0
        for category, level in params.attempts():
            if attaches is not None and category not in attaches:
                continue
            offers = self._offers(stock, zone, category, params.zone_ids)
            if offers is None:  # nothing known: not ruled out
                largest = max(largest, categories.max_size_gib(category, level))
                continue
            for offer in offers:
                if offer.in_stock:
                    largest = max(largest, _largest(category, level, offer))
        return _capacity(largest * GIB)

    @staticmethod
    def _offers(
        stock: Stock | None, zone: str, category: str, zone_ids: tuple[str, ...]
    ) -> list[DiskOffer] | None:
        """The offers of ``category`` a volume in this segment could take; None: unknown."""
        if stock is None:
            return None
        if categories.is_regional(category):
            places = [""]
        elif zone:
            places = [zone] if not zone_ids or zone in zone_ids else []
        elif zone_ids or stock.zones:
            places = list(zone_ids) or list(stock.zones)
        else:
            return None  # a read that lists no zone says nothing
        if any(not stock.knows(p, category) for p in places):
            return None
        return [o for p in places if (o := stock.offer(p, category)) is not None]


def _largest(category: str, level: str, offer: DiskOffer) -> int:
    """The largest disk of ``category`` at ``level``: ECS's Max when it says, within ours."""
    ours = categories.max_size_gib(category, level)
    return min(ours, offer.max_gib) if offer.max_gib else ours


def _capacity(maximum_bytes: int) -> csi_pb2.GetCapacityResponse:
    return csi_pb2.GetCapacityResponse(
        available_capacity=IN_STOCK_CAPACITY if maximum_bytes else 0,
        maximum_volume_size=wrappers_pb2.Int64Value(value=maximum_bytes),
    )

