"""EcsCloud, DiskWaiter and the credential chain against the ECS emulator."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest

from csi_disk.cloud.credentials import Credentials, RamRoleProvider, StaticProvider
from csi_disk.cloud.errors import PermissionDenied
from csi_disk.cloud.metadata import MetadataClient
from csi_disk.cloud.port import AVAILABLE, IN_USE, Disk, DiskRequest
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.errors import FailedPrecondition, NotFound
from csi_disk_emulator.process import EmulatorInfo

pytestmark = pytest.mark.timeout(120)


def request(info: EmulatorInfo, zone: str = "", **kwargs) -> DiskRequest:
    kwargs.setdefault("client_token", "n:" + uuid.uuid4().hex)
    return DiskRequest(zone=zone or info.zones[0], category="cloud_essd", size_gib=20, **kwargs)


class CountingRoleProvider(RamRoleProvider):
    invalidations = 0

    def invalidate(self, failed: Credentials | None = None) -> None:
        self.invalidations += 1
        super().invalidate(failed)


def available(disk: Disk | None) -> bool:
    return disk is not None and disk.status == AVAILABLE


def test_create_describe_and_find_by_tag(emu, cloud, waiter) -> None:
    name = uuid.uuid4().hex
    req = request(emu, tags={"csi.alibabacloud.com/volume-name": name}, performance_level="PL0")
    disk_id = cloud.create_disk(req)
    assert cloud.create_disk(req) == disk_id  # same ClientToken, same disk
    disk = waiter.wait(disk_id, available, timeout=30)
    assert disk is not None
    assert (disk.zone, disk.category, disk.size_gib) == (emu.zones[0], "cloud_essd", 20)
    assert disk.performance_level == "PL0"
    assert disk.tags["csi.alibabacloud.com/volume-name"] == name
    found = cloud.find_disks(tags={"csi.alibabacloud.com/volume-name": name})
    assert [d.id for d in found.items] == [disk_id]
    assert cloud.describe_disks([disk_id, "d-doesnotexist0000000"]) == [disk]


def test_attach_and_detach_through_the_waiter(emu, cloud, waiter) -> None:
    instance = emu.instances_in(emu.zones[0])[0]
    disk_id = cloud.create_disk(request(emu))
    waiter.wait(disk_id, available, timeout=30)
    cloud.attach_disk(disk_id, instance.id)
    disk = waiter.wait(disk_id, lambda d: d is not None and d.status == IN_USE, timeout=30)
    assert disk is not None and disk.attached_to(instance.id)
    assert not disk.delete_with_instance
    cloud.detach_disk(disk_id, instance.id)
    disk = waiter.wait(disk_id, available, timeout=30)
    assert disk is not None and disk.attachments == ()
    cloud.delete_disk(disk_id)
    assert waiter.wait(disk_id, lambda d: d is None, timeout=30) is None


def test_errors_are_domain_errors(emu, cloud, waiter) -> None:
    with pytest.raises(NotFound):
        cloud.delete_disk("d-doesnotexist0000000")
    other_zone = emu.instances_in(emu.zones[1])[0]
    disk_id = cloud.create_disk(request(emu))
    waiter.wait(disk_id, available, timeout=30)
    with pytest.raises(FailedPrecondition):
        cloud.attach_disk(disk_id, other_zone.id)


def test_instances(emu, cloud) -> None:
    instance = emu.instances[0]
    found = cloud.describe_instance(instance.id)
    assert found is not None
    assert (found.zone, found.instance_type, found.status) == (
        instance.zone,
        instance.instance_type,
        "Running",
    )
    assert cloud.describe_instance("i-doesnotexist000000") is None
    quantity = cloud.instance_disk_quantity(instance.instance_type)
    assert quantity is not None and quantity > 0


def test_throttling_is_absorbed_by_our_retries(emu, cloud) -> None:
    emu.admin("DELETE", "/calls")
    emu.admin("POST", "/faults", {"action": "DescribeDisks", "code": "Throttling", "count": 2})
    assert cloud.describe_disks(["d-doesnotexist0000000"]) == []
    assert emu.admin("GET", "/calls")["calls"]["DescribeDisks"] == 3


def test_waiter_batches_many_disks_into_few_calls(emu, cloud) -> None:
    ids = [cloud.create_disk(request(emu)) for _ in range(12)]
    emu.admin("DELETE", "/calls")
    waiter = DiskWaiter(cloud, interval=0.05)
    try:
        results: list[Disk | None] = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(waiter.wait(i, available, 30)))
            for i in ids
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        waiter.close()
    assert len(results) == len(ids) and all(available(d) for d in results)
    # Each poll covers every waiting disk, so calls stay far below one per disk per poll.
    assert emu.admin("GET", "/calls")["calls"]["DescribeDisks"] < len(ids)


def test_wrong_secret_is_permission_denied_and_leaks_nothing(emu, make_cloud, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    bad_secret = "WrongSecretValue" + uuid.uuid4().hex
    cloud = make_cloud(StaticProvider(Credentials(emu.access_key_id, bad_secret)))
    with pytest.raises(PermissionDenied) as info:
        cloud.probe()
    for text in (info.value.message, caplog.text):
        assert bad_secret not in text
        assert emu.access_key_id not in text
        assert "Signature=" not in text


def test_ram_role_credentials_from_the_metadata_service(emu, make_cloud) -> None:
    instance = emu.instances[0]
    metadata = MetadataClient(instance.metadata_endpoint)
    assert metadata.instance_id() == instance.id
    assert metadata.zone_id() == instance.zone
    assert metadata.region_id() == emu.region
    assert metadata.ram_role() == instance.ram_role
    provider = CountingRoleProvider(metadata)
    cloud = make_cloud(provider)
    cloud.probe()
    first = provider.get()
    assert first.security_token and first.source == "ram-role"
    # ECS expires the token: the next call is refused once, the provider fetches fresh
    # credentials from the metadata service and the call succeeds.
    emu.admin("POST", "/credentials/expire", {"instance_id": instance.id})
    assert cloud.describe_instance(instance.id) is not None
    assert provider.invalidations == 1
    assert provider.get().access_key_id != first.access_key_id


def test_available_disks_per_zone_family_and_region(emu, cloud) -> None:
    h, _, j = emu.zones
    every = cloud.available_disks()
    assert {o.zone for o in every} == set(emu.zones)
    assert ("cloud_ssd" in {o.category for o in every if o.zone == h}) and not any(
        o.zone == j and o.category == "cloud_ssd" for o in every
    )
    g8i = cloud.available_disks(zone=j, instance_type="ecs.g8i.large")
    assert {(o.zone, o.category) for o in g8i} == {(j, "cloud_essd"), (j, "cloud_auto")}
    (regional,) = cloud.available_disks(regional=True, instance_type="ecs.g8i.large")
    assert (regional.zone, regional.category, regional.min_gib) == (
        "",
        "cloud_regional_disk_auto",
        10,
    )
    assert regional.in_stock
    emu.admin("POST", "/stock", {"zone": h, "category": "cloud_auto", "count": 0, "closed": True})
    try:
        auto = next(o for o in cloud.available_disks(zone=h) if o.category == "cloud_auto")
        assert (auto.status_category, auto.in_stock) == ("ClosedWithoutStock", False)
    finally:
        emu.admin("POST", "/stock", {"zone": h, "category": "cloud_auto", "count": None})
