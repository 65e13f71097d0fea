"""Alibaba's V2 Python SDK (``alibabacloud_ecs20140526`` on ``alibabacloud_tea_openapi``)
against the emulator: the client operators' own tooling uses, signing every request with
ACS3-HMAC-SHA256 ("V3"). Every answer is checked against the SDK's generated response model
(a field it does not know, or one spelled otherwise, fails the call)."""

from __future__ import annotations

import inspect
import json
import re
import time
import urllib.request
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models
from alibabacloud_ecs20140526.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.models import Config
from alibabacloud_tea_openapi.utils_models import OpenApiRequest, Params
from darabonba.runtime import RuntimeOptions

from csi_disk_emulator.process import EmulatorInfo

API_VERSION = "2014-05-26"


def snake(action: str) -> str:
    """``DescribeInstanceHistoryEvents`` -> ``describe_instance_history_events``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()


class _RecordingClient(Client):
    """The SDK client, keeping the raw JSON of the last answer for the model check."""

    last_body: Any = None

    def call_api(self, params: Params, request: OpenApiRequest, runtime: RuntimeOptions) -> dict:  # type: ignore[type-arg]
        result = super().call_api(params, request, runtime)
        self.last_body = result.get("body")
        return result  # type: ignore[no-any-return]


class EcsV2:
    """ECS actions through the V2 SDK's typed client (and its generic ``call_api``)."""

    def __init__(self, info: EmulatorInfo, config: Config) -> None:
        self.info = info
        self.client = _RecordingClient(config)

    @classmethod
    def for_account(
        cls,
        info: EmulatorInfo,
        secret: str | None = None,
        key_id: str | None = None,
        **config: Any,
    ) -> EcsV2:
        return cls(
            info,
            Config(
                endpoint=info.ecs_host,
                protocol="http",
                region_id=info.region,
                access_key_id=key_id or info.access_key_id,
                access_key_secret=secret or info.access_key_secret,
                **config,
            ),
        )

    @classmethod
    def for_sts(cls, info: EmulatorInfo, creds: dict[str, str]) -> EcsV2:
        """Client for RAM role credentials as the metadata service hands them out."""
        return cls(
            info,
            Config(
                endpoint=info.ecs_host,
                protocol="http",
                region_id=info.region,
                access_key_id=creds["AccessKeyId"],
                access_key_secret=creds["AccessKeySecret"],
                security_token=creds["SecurityToken"],
            ),
        )

    def request(self, action: str, **fields: Any) -> Any:
        """The SDK's request model for ``action``; RegionId filled in where it exists."""
        model = getattr(models, f"{action}Request")
        if "region_id" in inspect.signature(model).parameters:
            fields.setdefault("region_id", self.info.region)
        return model(**fields)

    def call(self, action: str, **fields: Any) -> Any:
        """Call ``action`` through its typed client method; the response body model."""
        response = getattr(self.client, snake(action))(self.request(action, **fields))
        raw = self.client.last_body
        body_model = getattr(models, f"{action}ResponseBody")
        assert body_model().from_map(raw).to_map() == raw, f"{action} answered {raw}"
        return response.body

    def error(self, action: str, **fields: Any) -> ClientException:
        with pytest.raises(ClientException) as caught:
            self.call(action, **fields)
        return caught.value

    def call_raw(
        self,
        action: str,
        method: str = "POST",
        query: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Any action through the SDK's generic ``call_api``: GET or POST, parameters in the
        query string or in a form body (the shapes RPC allows)."""
        params = Params(
            action=action,
            version=API_VERSION,
            protocol="HTTP",
            pathname="/",
            method=method,
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        request = OpenApiRequest(query=query or {}, body=form)
        result = self.client.call_api(params, request, RuntimeOptions())
        return dict(result["body"])

    # ----- waits (polls, never timing assertions) ------------------------------------

    def disk(self, disk_id: str) -> Any:
        disks = self.call("DescribeDisks", disk_ids=json.dumps([disk_id])).disks.disk
        assert len(disks) == 1, disks
        return disks[0]

    def wait_disk(self, disk_id: str, status: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            disk = self.disk(disk_id)
            if disk.status == status or time.monotonic() > deadline:
                assert disk.status == status, disk.to_map()
                return disk
            time.sleep(0.01)

    def wait_task(self, task_id: str, timeout: float = 20) -> Any:
        """DescribeTasks until the task is no longer Processing."""
        deadline = time.monotonic() + timeout
        while True:
            tasks = self.call("DescribeTasks", task_ids=task_id).task_set.task
            assert [t.task_id for t in tasks] == [task_id]
            if tasks[0].task_status != "Processing" or time.monotonic() > deadline:
                return tasks[0]
            time.sleep(0.01)

    def wait_snapshot(self, snapshot_id: str, timeout: float = 20) -> Any:
        """DescribeSnapshots until the snapshot is accomplished."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.call("DescribeSnapshots", snapshot_ids=json.dumps([snapshot_id]))
            snapshot = found.snapshots.snapshot[0]
            if snapshot.status == "accomplished" or time.monotonic() > deadline:
                assert snapshot.status == "accomplished", snapshot.to_map()
                return snapshot
            time.sleep(0.01)


def role_credentials(info: EmulatorInfo, index: int = 0) -> dict[str, str]:
    """RAM role credentials of instance ``index``, from its metadata service."""
    inst = info.instances[index]
    base = f"{inst.metadata_endpoint}/latest/meta-data/ram/security-credentials/"
    return dict(json.loads(_fetch(base + _fetch(base))))


def _fetch(url: str) -> str:
    if not url.startswith("http://"):
        raise ValueError("the metadata endpoint must be http://")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - checked above
        return str(response.read().decode())
