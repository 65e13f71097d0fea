"""ECS error answers as ECS sends them (JSON envelopes with their HTTP status) through the
real SDK and EcsCloud, held to tests/ecs_codes.py's statement of what each code means.

The fake cloud raises errors from that same statement, so handler tests never lean on the
driver's own code table; this module is where that table is checked, code by code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from csi_disk.categories import GIB
from csi_disk.cloud.credentials import Credentials, StaticProvider
from csi_disk.cloud.ecs import EcsCloud
from csi_disk.cloud.errors import EcsError, is_retryable, is_unsupported_here
from csi_disk.cloud.retry import RetryPolicy
from csi_disk.cloud.waiter import DiskWaiter
from csi_disk.config import Config
from csi_disk.controller import ControllerService
from csi_disk.csi_pb import csi_pb2
from csi_disk.errors import InvalidArgument
from csi_disk.tokens import VOLUME_NAME_TAG
from csi_disk_emulator.errors import CATALOGUE
from tests.ecs_codes import MEANING, answer, http_status

ZONE = "cn-hangzhou-h"


def envelope(code: str) -> tuple[int, dict[str, Any]]:
    """An ECS error answer: the code's HTTP status and the JSON body ECS sends with it."""
    message = answer(code)[1]
    if code == "SignatureDoesNotMatch":  # ECS echoes what it signed (the SDK parses it)
        message += " server string to sign is:POST&%2F&AccessKeyId%3DLTAI5tKeyIdent"
    return http_status(code), {
        "RequestId": "5DB8E3A4-0000-4000-8000-000000000001",
        "HostId": "ecs.aliyuncs.com",
        "Code": code,
        "Message": message,
        "Recommend": "https://api.aliyun.com/troubleshoot?q=" + code,
    }


def cloud_at(url: str) -> EcsCloud:
    return EcsCloud(
        "cn-hangzhou",
        StaticProvider(Credentials("LTAI5tKeyIdent", "Sup3rS3cretValue")),
        endpoint=url,
        retry_policy=RetryPolicy(max_attempts=1, total_timeout=0),
        sleep=lambda _: None,
    )


def test_every_code_the_emulator_answers_has_a_stated_meaning() -> None:
    assert set(CATALOGUE) <= set(MEANING), sorted(set(CATALOGUE) - set(MEANING))


@pytest.mark.parametrize("code", sorted(MEANING))
def test_an_ecs_answer_becomes_the_error_its_code_means(ecs_server, code: str) -> None:
    server = ecs_server(lambda action, params: envelope(code))
    with pytest.raises(EcsError) as caught:
        cloud_at(server.url).detach_disk("d-2ze0000000000000000a", "i-2ze0000000000000000b")
    err = caught.value
    assert type(err) is MEANING[code]
    assert (err.ecs_code, err.http_status, err.action) == (code, http_status(code), "DetachDisk")
    assert err.request_id == "5DB8E3A4-0000-4000-8000-000000000001"
    assert code in err.message


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_an_undocumented_code_with_a_5xx_is_transient(ecs_server, status: int) -> None:
    """A gateway in front of ECS answers 5xx with codes ECS never documents."""
    body = {"RequestId": "r-5", "Code": "Gateway.Unavailable", "Message": "upstream"}
    server = ecs_server(lambda action, params: (status, body))
    with pytest.raises(EcsError) as caught:
        cloud_at(server.url).detach_disk("d-2ze0000000000000000a", "i-2ze0000000000000000b")
    assert is_retryable(caught.value) and caught.value.code == "UNAVAILABLE"
    server = ecs_server(lambda action, params: (499, body))
    with pytest.raises(EcsError) as caught:
        cloud_at(server.url).detach_disk("d-2ze0000000000000000a", "i-2ze0000000000000000b")
    assert not is_retryable(caught.value) and caught.value.code == "FAILED_PRECONDITION"


# --- what a code's meaning decides in CreateVolume --------------------------------------------


def disk_item(disk_id: str, category: str, name: str) -> dict[str, Any]:
    return {
        "DiskId": disk_id,
        "ZoneId": ZONE,
        "RegionId": "cn-hangzhou",
        "Category": category,
        "Size": 20,
        "Status": "Available",
        "SerialNumber": disk_id.removeprefix("d-"),
        "MultiAttach": "Disabled",
        "Tags": {"Tag": [{"TagKey": VOLUME_NAME_TAG, "TagValue": name}]},
    }


class FirstCategoryRefused:
    """An ECS endpoint refusing CreateDisk for cloud_essd with ``code``; cloud_ssd works."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.created: list[str] = []

    def __call__(self, action: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if action == "CreateDisk":
            self.created.append(params["DiskCategory"])
            if params["DiskCategory"] == "cloud_essd":
                return envelope(self.code)
            return 200, {"RequestId": "r-2", "DiskId": "d-2ze0000000000000000s"}
        if action == "DescribeDisks":
            item = disk_item("d-2ze0000000000000000s", "cloud_ssd", "pvc-answers")
            return 200, {"RequestId": "r-3", "Disks": {"Disk": [item]}, "TotalCount": 1}
        return 200, {"RequestId": "r-4"}


@pytest.fixture
def controller_at(ecs_server) -> Iterator[Any]:
    waiters: list[DiskWaiter] = []

    def start(handler: Any) -> ControllerService:
        cloud = cloud_at(ecs_server(handler).url)
        waiter = DiskWaiter(cloud, 0.01)
        waiters.append(waiter)
        config = Config(attach_mode="controller", operation_timeout=5.0)
        return ControllerService(config, cloud, waiter, default_zone=ZONE)

    yield start
    for waiter in waiters:
        waiter.close()


def create(ctl: ControllerService) -> csi_pb2.CreateVolumeResponse:
    return ctl.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name="pvc-answers",
            capacity_range=csi_pb2.CapacityRange(required_bytes=20 * GIB),
            volume_capabilities=[
                csi_pb2.VolumeCapability(
                    mount=csi_pb2.VolumeCapability.MountVolume(),
                    access_mode=csi_pb2.VolumeCapability.AccessMode(
                        mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
                    ),
                )
            ],
            parameters={"type": "cloud_essd,cloud_ssd"},
        )
    )


def test_too_small_stops_create_volume_without_trying_another_category(controller_at) -> None:
    """A size the disk cannot have is the request's fault, whatever the category: falling
    back would end in RESOURCE_EXHAUSTED, which sends the pod to another node for nothing."""
    ecs = FirstCategoryRefused("InvalidDiskSize.TooSmall")
    with pytest.raises(InvalidArgument, match=r"InvalidDiskSize\.TooSmall"):
        create(controller_at(ecs))
    assert ecs.created == ["cloud_essd"]


@pytest.mark.parametrize(
    "code", sorted(c for c, cls in MEANING.items() if is_unsupported_here(cls("")))
)
def test_not_possible_here_falls_back_to_the_next_category(controller_at, code: str) -> None:
    ecs = FirstCategoryRefused(code)
    volume = create(controller_at(ecs)).volume
    assert volume.volume_id == "d-2ze0000000000000000s"
    assert ecs.created == ["cloud_essd", "cloud_ssd"]


@pytest.mark.parametrize("code", sorted(c for c, cls in MEANING.items() if is_retryable(cls(""))))
def test_transient_answers_are_retried_by_the_policy(ecs_server, code: str) -> None:
    answers = [envelope(code), (200, {"RequestId": "r-ok", "Disks": {"Disk": []}})]
    server = ecs_server(lambda action, params: answers.pop(0) if len(answers) > 1 else answers[0])
    cloud = EcsCloud(
        "cn-hangzhou",
        StaticProvider(Credentials("LTAI5tKeyIdent", "Sup3rS3cretValue")),
        endpoint=server.url,
        retry_policy=RetryPolicy(max_attempts=3),
        sleep=lambda _: None,
    )
    assert cloud.describe_disks(["d-2ze0000000000000000a"]) == []
    assert len(server.calls) == 2
