"""The SDK side of the emulator tests: ECS calls through the real request classes."""

from __future__ import annotations

import importlib
import json
import time
from typing import Any

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request import v20140526

from csi_disk_emulator.process import EmulatorInfo


class Ecs:
    """Calls ECS actions through the SDK's request classes against the emulator."""

    def __init__(self, info: EmulatorInfo, client: AcsClient) -> None:
        self.info = info
        self.client = client

    @classmethod
    def for_account(cls, info: EmulatorInfo, secret: str | None = None) -> Ecs:
        client = AcsClient(
            info.access_key_id, secret or info.access_key_secret, info.region, auto_retry=False
        )
        return cls(info, client)

    @classmethod
    def for_sts(cls, info: EmulatorInfo, creds: dict[str, str]) -> Ecs:
        credential = StsTokenCredential(
            creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"]
        )
        client = AcsClient(region_id=info.region, credential=credential, auto_retry=False)
        return cls(info, client)

    def request(self, action: str, **params: Any) -> Any:
        module = importlib.import_module(f"{v20140526.__name__}.{action}Request")
        req = getattr(module, f"{action}Request")()
        req.set_endpoint(self.info.ecs_host)
        req.set_protocol_type("http")
        for key, value in params.items():
            getattr(req, f"set_{key}")(value)
        return req

    def call(self, action: str, **params: Any) -> dict[str, Any]:
        return self.send(self.request(action, **params))

    def send(self, req: Any) -> dict[str, Any]:
        return dict(json.loads(self.client.do_action_with_exception(req)))

    def error(self, action: str, **params: Any) -> ServerException:
        with pytest.raises(ServerException) as caught:
            self.call(action, **params)
        return caught.value

    def disk(self, disk_id: str) -> dict[str, Any]:
        disks = self.call("DescribeDisks", DiskIds=json.dumps([disk_id]))["Disks"]["Disk"]
        assert len(disks) == 1, disks
        return dict(disks[0])

    def wait_status(self, disk_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
        """Poll until the disk reaches ``status`` (a wait, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while True:
            disk = self.disk(disk_id)
            if disk["Status"] == status or time.monotonic() > deadline:
                assert disk["Status"] == status, disk
                return disk
            time.sleep(0.01)

    def create(self, zone: str | None = None, **params: Any) -> str:
        params.setdefault("DiskCategory", "cloud_essd")
        params.setdefault("Size", 20)
        disk_id = self.call("CreateDisk", ZoneId=zone or self.info.zones[0], **params)["DiskId"]
        return str(disk_id)

    def create_available(self, zone: str | None = None, **params: Any) -> str:
        disk_id = self.create(zone, **params)
        self.wait_status(disk_id, "Available")
        return disk_id

    def attach(self, disk_id: str, instance_id: str) -> dict[str, Any]:
        self.call("AttachDisk", DiskId=disk_id, InstanceId=instance_id)
        return self.wait_status(disk_id, "In_use")

    def detach(self, disk_id: str, instance_id: str) -> dict[str, Any]:
        self.call("DetachDisk", DiskId=disk_id, InstanceId=instance_id)
        return self.wait_status(disk_id, "Available")
