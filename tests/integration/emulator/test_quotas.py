"""API quotas: per account and per action, in minute windows, answered as ECS answers them."""

from __future__ import annotations

import time
import urllib.error

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException

from csi_disk_emulator.process import EmulatorInfo
from tests.integration.emulator.sdk import Ecs
from tests.integration.emulator.v2sdk import role_credentials

pytestmark = pytest.mark.timeout(120)


def in_one_minute(info: EmulatorInfo, seconds: float = 15.0) -> None:
    """Start a test's calls with ``seconds`` left in the wall-clock minute the emulator
    counts in, and nothing counted yet: a sequence that crossed into the next minute would
    find its quota spent no more."""
    left = 60.0 - time.time() % 60.0
    if left < seconds:
        time.sleep(left + 0.1)
    info.admin("POST", "/quotas/reset")


def throttled(ecs: Ecs, action: str) -> ServerException:
    err = ecs.error(action)
    assert (err.get_error_code(), err.get_http_status()) == ("Throttling", 400)
    assert err.get_error_msg() == "Request was denied due to request throttling."
    return err


def test_an_action_over_its_quota_is_throttled_alone_until_the_next_minute(own_emulator) -> None:  # type: ignore[no-untyped-def]
    with own_emulator(api_quotas="DescribeZones=3", block_devices="off") as info:
        ecs = Ecs.for_account(info)
        in_one_minute(info)
        for _ in range(3):
            assert ecs.call("DescribeZones")["Zones"]["Zone"]
        throttled(ecs, "DescribeZones")
        throttled(ecs, "DescribeZones")
        assert ecs.call("DescribeInstances")["Instances"]  # another action goes on
        counts = info.admin("GET", "/calls")
        assert counts["throttled"] == {"DescribeZones": 2}
        assert counts["calls"]["DescribeZones"] == 5  # refused calls were still served
        assert info.admin("GET", "/quotas")["used"]["DescribeZones"] == 3
        info.admin("POST", "/quotas/reset")  # as when ECS's minute turns
        assert ecs.call("DescribeZones")["Zones"]["Zone"]


def test_every_key_of_the_account_shares_one_quota(own_emulator) -> None:  # type: ignore[no-untyped-def]
    with own_emulator(api_quotas="DescribeZones=2", block_devices="off") as info:
        account = Ecs.for_account(info)
        role = Ecs.for_sts(info, role_credentials(info, 0))
        other_role = Ecs.for_sts(info, role_credentials(info, 1))
        in_one_minute(info)
        account.call("DescribeZones")
        role.call("DescribeZones")
        throttled(other_role, "DescribeZones")
        throttled(account, "DescribeZones")


def test_quotas_default_to_the_drivers_and_change_through_the_admin_api(
    own_emulator,  # type: ignore[no-untyped-def]
) -> None:
    with own_emulator(block_devices="off") as info:
        quotas = info.admin("GET", "/quotas")["quotas"]
        assert quotas == {"*": 500, "DescribeInstanceTypes": 400}
        info.admin("POST", "/quotas", {"quotas": {"DescribeZones": 1, "*": 2}})
        ecs = Ecs.for_account(info)
        in_one_minute(info)
        ecs.call("DescribeZones")
        throttled(ecs, "DescribeZones")
        ecs.call("DescribeInstances")
        ecs.call("DescribeInstances")
        throttled(ecs, "DescribeInstances")
        info.admin("POST", "/quotas", {"quotas": {"*": 0}})  # no quota for the rest
        for _ in range(5):
            ecs.call("DescribeInstances")
        info.admin("POST", "/quotas", {"quotas": {"DescribeZones": None, "*": None}})
        assert info.admin("GET", "/quotas")["quotas"] == quotas


@pytest.mark.parametrize(
    "body",
    [
        {"quotas": 5},
        {"quotas": {"describe zones": 5}},
        {"quotas": {"DescribeZones=1,CreateDisk": 5}},
        {"quotas": {"DescribeZones": -1}},
        {"quotas": {"DescribeZones": "5"}},
    ],
)
def test_bad_quota_changes_are_refused(emulator: EmulatorInfo, body: dict[str, object]) -> None:

    with pytest.raises(urllib.error.HTTPError) as caught:
        emulator.admin("POST", "/quotas", body)
    assert caught.value.code == 400
    assert emulator.admin("GET", "/quotas")["quotas"]["*"] == 500
