"""EcsCloud through the real SDK against a canned local ECS endpoint."""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import Any

import pytest
from prometheus_client import REGISTRY

from csi_disk.cloud.credentials import Credentials, RamRoleProvider, StaticProvider
from csi_disk.cloud.ecs import EcsCloud, _describe_http_error, disk_from_item, parse_endpoint
from csi_disk.cloud.errors import EcsError, PermissionDenied
from csi_disk.cloud.port import DiskRequest
from csi_disk.cloud.quotas import ApiQuotas
from csi_disk.cloud.retry import RetryPolicy
from csi_disk.config import Config
from csi_disk.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable

SECRET = "Sup3rS3cretValue"
TOKEN = "T0kenValueForSts"
KEY_ID = "LTAI5tKeyIdent"

DISK = {
    "DiskId": "d-1",
    "ZoneId": "cn-hangzhou-k",
    "RegionId": "cn-hangzhou",
    "Category": "cloud_essd",
    "PerformanceLevel": "PL1",
    "Size": 40,
    "Status": "In_use",
    "SerialNumber": "1abc",
    "MultiAttach": "Enabled",
    "Encrypted": True,
    "InstanceId": "",
    "Attachments": {"Attachment": [{"InstanceId": "i-1"}, {"InstanceId": "i-2"}]},
    "Tags": {"Tag": [{"TagKey": "csi.alibabacloud.com/volume-name", "TagValue": "pvc-1"}]},
}


class RotatingProvider:
    """STS credentials that change on ``invalidate`` (like a RAM role refresh)."""

    def __init__(self) -> None:
        self.n = 1
        self.invalidations = 0

    def get(self) -> Credentials:
        return Credentials(f"STS.{self.n}", f"{SECRET}{self.n}", f"{TOKEN}{self.n}")

    def invalidate(self, failed: Credentials | None = None) -> None:
        self.invalidations += 1
        if failed is None or failed == self.get():
            self.n += 1


def make_cloud(url: str, provider: Any = None, **kwargs: Any) -> tuple[EcsCloud, list[float]]:
    sleeps: list[float] = []
    kwargs.setdefault("retry_policy", RetryPolicy(max_attempts=4))
    cloud = EcsCloud(
        "cn-hangzhou",
        provider or StaticProvider(Credentials(KEY_ID, SECRET, TOKEN)),
        endpoint=url,
        quotas=ApiQuotas(first_gap=0.001),
        sleep=sleeps.append,
        **kwargs,
    )
    return cloud, sleeps


def ok(**body: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"RequestId": "req-ok", **body}


def test_disk_mapping() -> None:
    disk = disk_from_item(DISK)
    assert disk.attachments == ("i-1", "i-2")
    assert disk.tags == {"csi.alibabacloud.com/volume-name": "pvc-1"}
    assert disk.multi_attach and disk.encrypted
    assert (disk.size_gib, disk.performance_level, disk.serial) == (40, "PL1", "1abc")
    legacy = disk_from_item({**DISK, "Attachments": {"Attachment": []}, "InstanceId": "i-9"})
    assert legacy.attachments == ("i-9",)
    bare = disk_from_item({"DiskId": "d-2", "Size": "20", "Status": "Available"})
    assert (bare.attachments, bare.tags, bare.multi_attach, bare.size_gib) == ((), {}, False, 20)


def test_parse_endpoint() -> None:
    assert parse_endpoint("http://127.0.0.1:8080") == ("127.0.0.1:8080", "http")
    assert parse_endpoint("ecs-vpc.cn-hangzhou.aliyuncs.com") == (
        "ecs-vpc.cn-hangzhou.aliyuncs.com",
        "https",
    )
    with pytest.raises(InvalidArgument):
        parse_endpoint("ftp://x")


def test_describe_disks_batches_by_100_and_keeps_only_existing(ecs_server) -> None:
    def handler(action: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        ids = json.loads(params["DiskIds"])
        disks = [{**DISK, "DiskId": i} for i in ids if int(i[2:]) % 2 == 0]
        return ok(Disks={"Disk": disks})

    server = ecs_server(handler)
    cloud, _ = make_cloud(server.url)
    ids = [f"d-{n}" for n in range(250)]
    disks = cloud.describe_disks(ids + ids[:10])
    assert sorted(d.id for d in disks) == sorted(i for i in ids if int(i[2:]) % 2 == 0)
    sizes = [len(json.loads(p["DiskIds"])) for _, p in server.calls]
    assert sizes == [100, 100, 50]
    assert cloud.describe_disks([]) == []
    assert len(server.calls) == 3


def test_find_disks_sends_tag_filters_and_pages(ecs_server) -> None:
    def handler(action: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if params.get("NextToken") == "page2":
            return ok(Disks={"Disk": [{**DISK, "DiskId": "d-3"}]}, NextToken="")
        return ok(Disks={"Disk": [DISK]}, NextToken="page2")

    server = ecs_server(handler)
    cloud, _ = make_cloud(server.url)
    first = cloud.find_disks(tags={"k": "v"}, zone="cn-hangzhou-k", max_results=50)
    assert [d.id for d in first.items] == ["d-1"] and first.next_token == "page2"
    second = cloud.find_disks(tags={"k": "v"}, page_token=first.next_token)
    assert [d.id for d in second.items] == ["d-3"] and second.next_token == ""
    params = server.calls[0][1]
    assert (params["Tag.1.Key"], params["Tag.1.Value"]) == ("k", "v")
    assert (params["ZoneId"], params["MaxResults"]) == ("cn-hangzhou-k", "50")
    assert params["DiskType"] == "data"  # a system disk is never a volume
    assert "DiskIds" not in params


def test_create_disk_sends_our_token_and_retries_throttling(ecs_server) -> None:
    answers = [(400, {"Code": "Throttling.User", "Message": "slow", "RequestId": "r"})]

    def handler(action: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return answers.pop(0) if answers else ok(DiskId="d-new")

    server = ecs_server(handler)
    cloud, sleeps = make_cloud(server.url)
    request = DiskRequest(
        zone="cn-hangzhou-k",
        category="cloud_essd",
        size_gib=20,
        client_token="n:pvc-1",
        performance_level="PL0",
        tags={"csi.alibabacloud.com/volume-name": "pvc-1"},
        multi_attach=True,
        encrypted=True,
    )
    assert cloud.create_disk(request) == "d-new"
    assert server.actions() == ["CreateDisk", "CreateDisk"]
    assert len(sleeps) == 1
    for _, params in server.calls:
        assert params["ClientToken"] == "n:pvc-1"
        assert params["DiskCategory"] == "cloud_essd" and params["Size"] == "20"
        assert params["MultiAttach"] == "Enabled" and params["Encrypted"] == "true"
        assert params["Tag.1.Key"] == "csi.alibabacloud.com/volume-name"
        assert params["SecurityToken"] == TOKEN
    before = REGISTRY.get_sample_value("csi_disk_ecs_throttles_total", {"action": "CreateDisk"})
    assert before is not None and before >= 1


def test_throttling_slows_that_action_alone_until_a_call_goes_through(ecs_server) -> None:
    throttle = {"on": True}

    def handler(action: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if action == "CreateDisk" and throttle["on"]:
            return 400, {"Code": "Throttling", "Message": "denied", "RequestId": "r"}
        if action == "CreateDisk":
            return ok(DiskId="d-new")
        return ok(Disks={"Disk": []})

    server = ecs_server(handler)
    cloud, _ = make_cloud(server.url, retry_policy=RetryPolicy(total_timeout=0))
    request = DiskRequest("cn-hangzhou-k", "cloud_essd", 20, client_token="n:pvc-1")
    with pytest.raises(Unavailable, match="Throttling"):
        cloud.create_disk(request)
    paced = cloud.quotas.budget("CreateDisk").gap
    assert paced > 0
    assert cloud.describe_disks(["d-1"]) == []  # another action goes on as before
    assert not cloud.quotas.budget("DescribeDisks").gap
    throttle["on"] = False
    assert cloud.create_disk(request) == "d-new"
    assert cloud.quotas.budget("CreateDisk").gap < paced


def test_create_disk_needs_a_client_token(ecs_server) -> None:
    cloud, _ = make_cloud(ecs_server(lambda a, p: ok()).url)
    with pytest.raises(InvalidArgument):
        cloud.create_disk(DiskRequest("z", "cloud_essd", 20, client_token=""))


def test_attach_is_not_retried_on_internal_error(ecs_server) -> None:
    server = ecs_server(lambda a, p: (500, {"Code": "InternalError", "Message": "x"}))
    cloud, sleeps = make_cloud(server.url)
    with pytest.raises(Unavailable):
        cloud.attach_disk("d-1", "i-1")
    assert server.actions() == ["AttachDisk"]
    assert server.calls[0][1]["DeleteWithInstance"] == "false"
    assert sleeps == []


def test_attach_is_retried_when_throttled(ecs_server) -> None:
    answers = [(503, {"Code": "ServiceUnavailable", "Message": "x"})]
    server = ecs_server(lambda a, p: answers.pop(0) if answers else ok())
    cloud, _ = make_cloud(server.url)
    cloud.attach_disk("d-1", "i-1")
    assert server.actions() == ["AttachDisk", "AttachDisk"]


def test_describe_retries_are_bounded(ecs_server) -> None:
    server = ecs_server(lambda a, p: (500, {"Code": "InternalError", "Message": "x"}))
    cloud, sleeps = make_cloud(server.url)
    with pytest.raises(EcsError):
        cloud.describe_disks(["d-1"])
    assert len(server.calls) == 4
    assert len(sleeps) == 3


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("InvalidDiskId.NotFound", NotFound),
        ("IdempotentParameterMismatch", AlreadyExists),
        ("Forbidden.RAM", PermissionDenied),
    ],
)
def test_server_errors_map_to_domain_errors(ecs_server, code: str, expected: type) -> None:
    server = ecs_server(lambda a, p: (404, {"Code": code, "Message": "m", "RequestId": "r-9"}))
    cloud, _ = make_cloud(server.url)
    with pytest.raises(expected) as info:
        cloud.delete_disk("d-1")
    assert info.value.request_id == "r-9"
    assert info.value.http_status == 404
    assert len(server.calls) == 1


def test_expired_token_refreshes_credentials_and_retries_once(ecs_server) -> None:
    def handler(action: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if params["SecurityToken"] == f"{TOKEN}1":
            return 400, {"Code": "InvalidSecurityToken.Expired", "Message": "expired"}
        return ok()

    server = ecs_server(handler)
    provider = RotatingProvider()
    cloud, _ = make_cloud(server.url, provider)
    cloud.detach_disk("d-1", "i-1")
    assert provider.invalidations == 1
    assert [p["SecurityToken"] for _, p in server.calls] == [f"{TOKEN}1", f"{TOKEN}2"]
    assert [p["AccessKeyId"] for _, p in server.calls] == ["STS.1", "STS.2"]


def test_expired_token_twice_gives_up(ecs_server) -> None:
    server = ecs_server(lambda a, p: (400, {"Code": "InvalidSecurityToken.Expired"}))
    provider = RotatingProvider()
    cloud, _ = make_cloud(server.url, provider)
    with pytest.raises(Unavailable):
        cloud.detach_disk("d-1", "i-1")
    assert len(server.calls) == 2


class CountingMetadata:
    """Role credentials from a metadata stand-in that counts its fetches."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fetches = 0
        self.down = False

    def ram_role(self) -> str:
        return "csi-role"

    def role_credentials(self, role: str) -> dict[str, Any]:
        if self.down:
            raise Unavailable("metadata service unreachable (URLError)")
        with self.lock:
            self.fetches += 1
            n = self.fetches
        return {
            "AccessKeyId": f"STS.{n}",
            "AccessKeySecret": f"{SECRET}{n}",
            "SecurityToken": f"{TOKEN}{n}",
            "Expiration": "2099-01-01T00:00:00Z",
        }


def test_a_hundred_calls_seeing_one_expiry_cost_one_refresh(ecs_server) -> None:
    callers = 100
    arrived = threading.Event()
    lock = threading.Lock()
    old_token_calls = [0]

    def handler(action: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if params["SecurityToken"] != f"{TOKEN}1":
            return ok(Disks={"Disk": []})
        # Answer nobody until every caller has sent with the first token: all of them see
        # the expiry, none of them has seen a refresh yet.
        with lock:
            old_token_calls[0] += 1
            if old_token_calls[0] == callers:
                arrived.set()
        arrived.wait(20)
        return 400, {"Code": "InvalidSecurityToken.Expired", "Message": "expired"}

    server = ecs_server(handler)
    metadata = CountingMetadata()
    provider = RamRoleProvider(metadata, "csi-role")  # type: ignore[arg-type]
    cloud, _ = make_cloud(server.url, provider)
    assert provider.get().security_token == f"{TOKEN}1"
    errors: list[BaseException] = []

    def call() -> None:
        try:
            cloud.describe_disks(["d-1"])
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert arrived.is_set()
    assert errors == []
    assert metadata.fetches == 2  # the first token and one refresh, not one per caller
    tokens = [p["SecurityToken"] for _, p in server.calls]
    assert tokens.count(f"{TOKEN}1") == callers  # nobody went back to the old token
    assert tokens.count(f"{TOKEN}2") == callers


class ScriptedProvider:
    """Hands out the given credentials in order, like callers racing a refresh."""

    def __init__(self, *script: Credentials) -> None:
        self.script = list(script)

    def get(self) -> Credentials:
        return self.script.pop(0)

    def invalidate(self, failed: Credentials | None = None) -> None:
        pass


def test_a_caller_with_older_credentials_does_not_replace_newer_ones(ecs_server) -> None:
    server = ecs_server(lambda a, p: ok(Disks={"Disk": []}))
    old = Credentials("STS.old", "old-secret-value", "old-token-value", expiration=1000.0)
    new = Credentials("STS.new", "new-secret-value", "new-token-value", expiration=2000.0)
    newest = Credentials("STS.newest", "newest-secret-value", "newest-token", expiration=3000.0)
    cloud, _ = make_cloud(server.url, ScriptedProvider(new, old, newest))
    for _ in range(3):
        cloud.describe_disks(["d-1"])
    tokens = [p["SecurityToken"] for _, p in server.calls]
    assert tokens == ["new-token-value", "new-token-value", "newest-token"]


def test_unreachable_credentials_are_retryable_and_never_sent(ecs_server) -> None:
    server = ecs_server(lambda a, p: ok(Disks={"Disk": []}))
    metadata = CountingMetadata()
    metadata.down = True
    provider = RamRoleProvider(metadata, "csi-role")  # type: ignore[arg-type]
    cloud, sleeps = make_cloud(server.url, provider)
    with pytest.raises(EcsError) as info:
        cloud.describe_disks(["d-1"])
    err = info.value
    assert isinstance(err, Unavailable) and err.code == "UNAVAILABLE"
    assert err.retryable and err.not_applied
    assert "DescribeDisks" in err.message and "metadata service unreachable" in err.message
    assert len(sleeps) == 3  # retried within the policy (4 attempts)
    assert server.calls == []
    # A call that is not idempotent is retried too: nothing reached ECS.
    sleeps.clear()
    with pytest.raises(Unavailable):
        cloud.attach_disk("d-1", "i-1")
    assert len(sleeps) == 3
    metadata.down = False
    assert cloud.describe_disks(["d-1"]) == []


def test_ambient_sdk_env_keys_do_not_override_ours(ecs_server, monkeypatch) -> None:
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_ID", "ambient-id")
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_SECRET", "ambient-secret")
    server = ecs_server(lambda a, p: ok(Disks={"Disk": []}))
    cloud, _ = make_cloud(server.url)
    cloud.probe()
    assert server.calls[0][1]["AccessKeyId"] == KEY_ID
    assert server.calls[0][1]["SecurityToken"] == TOKEN


def test_instances_and_snapshots(ecs_server) -> None:
    def handler(action: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if action == "DescribeInstances":
            ids = json.loads(params["InstanceIds"])
            items = [{"InstanceId": i, "ZoneId": "z", "Status": "Running"} for i in ids]
            return ok(Instances={"Instance": [i for i in items if i["InstanceId"] == "i-1"]})
        if action == "DescribeInstanceTypes":
            return ok(
                InstanceTypes={
                    "InstanceType": [
                        {"InstanceTypeId": params["InstanceTypes.1"], "DiskQuantity": 17}
                    ]
                }
            )
        if action == "CreateSnapshot":
            return ok(SnapshotId="s-1")
        if action == "DescribeSnapshots":
            return ok(
                Snapshots={
                    "Snapshot": [
                        {
                            "SnapshotId": "s-1",
                            "SourceDiskId": "d-1",
                            "SourceDiskSize": "40",
                            "Status": "accomplished",
                            "Tags": {"Tag": [{"TagKey": "a", "TagValue": "b"}]},
                        }
                    ]
                }
            )
        return ok()

    server = ecs_server(handler)
    cloud, _ = make_cloud(server.url)
    instance = cloud.describe_instance("i-1")
    assert instance is not None and instance.status == "Running"
    assert cloud.describe_instance("i-404") is None
    assert cloud.instance_disk_quantity("ecs.g7.large") == 17
    assert cloud.instance_disk_quantity("ecs.g7.large") == 17
    assert server.actions().count("DescribeInstanceTypes") == 1  # cached
    assert cloud.create_snapshot("d-1", name="snap", client_token="t-1") == "s-1"
    page = cloud.describe_snapshots(snapshot_ids=["s-1"])
    assert page.items[0].ready and page.items[0].source_disk_size_gib == 40
    assert page.items[0].tags == {"a": "b"}
    cloud.resize_disk("d-1", 60, online=True)
    cloud.modify_disk_spec("d-1", performance_level="PL2", bursting_enabled=True)
    cloud.delete_snapshot("s-1", force=True)
    calls = dict(server.calls)
    assert calls["ResizeDisk"]["Type"] == "online" and calls["ResizeDisk"]["NewSize"] == "60"
    assert calls["ModifyDiskSpec"]["PerformanceLevel"] == "PL2"
    assert calls["ModifyDiskAttribute"]["BurstingEnabled"] == "true"
    assert calls["DeleteSnapshot"]["Force"] == "true"


def test_metrics_count_calls_by_action_and_code(ecs_server) -> None:
    def value(code: str) -> float:
        labels = {"action": "DeleteDisk", "code": code}
        return REGISTRY.get_sample_value("csi_disk_ecs_requests_total", labels) or 0.0

    before_ok, before_err = value("OK"), value("IncorrectDiskStatus")
    answers = [(403, {"Code": "IncorrectDiskStatus", "Message": "m"})]
    server = ecs_server(lambda a, p: answers.pop(0) if answers else ok())
    cloud, _ = make_cloud(server.url)
    with pytest.raises(EcsError):
        cloud.delete_disk("d-1")
    cloud.delete_disk("d-1")
    assert value("OK") == before_ok + 1
    assert value("IncorrectDiskStatus") == before_err + 1


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_errors_leak_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{_unused_port()}"
    cloud, sleeps = make_cloud(url)
    logging.getLogger("aliyunsdkcore").setLevel(logging.DEBUG)  # even if someone turns it up
    with pytest.raises(Unavailable) as info:
        cloud.describe_disks(["d-1"])
    with pytest.raises(Unavailable) as attach_info:
        cloud.attach_disk("d-1", "i-1")
    # A refused connection proves ECS never saw the call: even the attach is retried.
    assert len(sleeps) == 3 + 3
    texts = [info.value.message, str(info.value), attach_info.value.message]
    texts += [r.getMessage() for r in caplog.records]
    texts += [caplog.text]
    assert any("aliyunsdkcore" in r.name for r in caplog.records)  # the SDK did log
    for text in texts:
        for leaked in ("Signature=", SECRET, TOKEN, KEY_ID, "http://", "https://", "/?"):
            assert leaked not in text, text
    assert "connection refused" in info.value.message


def test_a_read_timeout_is_not_reported_as_a_connect_timeout() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        cloud, sleeps = make_cloud(url, read_timeout=0.2)
        with pytest.raises(Unavailable) as info:
            cloud.delete_disk("d-1")  # not idempotent: one attempt
    assert sleeps == []
    assert "read timed out" in info.value.message
    assert "connect" not in info.value.message
    assert not info.value.not_applied  # the request may have reached ECS


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        ("HTTPConnectionPool(host='h', port=1): Read timed out. (read timeout=10)", "read timed"),
        (
            "HTTPSConnectionPool(host='h', port=443): Max retries exceeded (Caused by "
            "ConnectTimeoutError(<c>, 'Connection to h timed out. (connect timeout=5)'))",
            "connect timed",
        ),
        ("HTTPConnectionPool(host='h', port=1): [Errno 111] Connection refused", "refused"),
        ("Failed to resolve: Temporary failure in name resolution", "name resolution"),
        ("SSLError(SSLCertVerificationError('certificate verify failed'))", "TLS"),
    ],
)
def test_http_errors_say_which_phase_failed(raw: str, what: str) -> None:
    assert what in _describe_http_error(raw)


GATEWAY_PAGE = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def test_a_gateway_5xx_page_is_retried_for_idempotent_calls_only(ecs_server) -> None:
    server = ecs_server(lambda a, p: (502, GATEWAY_PAGE))
    cloud, sleeps = make_cloud(server.url)
    with pytest.raises(EcsError) as info:
        cloud.describe_disks(["d-1"])
    err = info.value
    assert isinstance(err, Unavailable) and err.retryable
    assert err.http_status == 502
    assert "HTTP 502" in err.message and "<html>" not in err.message
    assert len(server.calls) == 4 and len(sleeps) == 3
    server.calls.clear()
    with pytest.raises(Unavailable):
        cloud.attach_disk("d-1", "i-1")  # the gateway may have passed it on: not repeated
    assert len(server.calls) == 1


def test_a_5xx_page_then_success(ecs_server) -> None:
    answers: list[tuple[int, Any]] = [(503, GATEWAY_PAGE), (504, GATEWAY_PAGE)]
    server = ecs_server(lambda a, p: answers.pop(0) if answers else ok(Disks={"Disk": [DISK]}))
    cloud, sleeps = make_cloud(server.url)
    assert [d.id for d in cloud.describe_disks(["d-1"])] == ["d-1"]
    assert len(sleeps) == 2


def test_a_5xx_with_a_known_code_keeps_its_meaning(ecs_server) -> None:
    server = ecs_server(lambda a, p: (500, {"Code": "InvalidParameter", "Message": "m"}))
    cloud, _ = make_cloud(server.url)
    with pytest.raises(InvalidArgument):
        cloud.describe_disks(["d-1"])
    assert len(server.calls) == 1


def test_signature_mismatch_echo_is_scrubbed(ecs_server, caplog) -> None:
    caplog.set_level(logging.DEBUG)

    def handler(action: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        echo = f"GET&%2F&AccessKeyId%3D{params['AccessKeyId']}%26SecurityToken%3D{TOKEN}"
        return 400, {"Code": "SignatureDoesNotMatch", "Message": f"string to sign is:{echo}"}

    cloud, _ = make_cloud(ecs_server(handler).url)
    with pytest.raises(PermissionDenied) as info:
        cloud.describe_disks(["d-1"])
    for text in [info.value.message, caplog.text]:
        assert KEY_ID not in text and TOKEN not in text


def test_from_config_uses_config_endpoint_and_keys(ecs_server) -> None:
    server = ecs_server(lambda a, p: ok(Disks={"Disk": []}))
    config = Config(
        ecs_endpoint=server.url,
        region="cn-beijing",
        access_key_id="cfg-key-id",
        access_key_secret="cfg-secret-value",
        metadata_endpoint="http://127.0.0.1:9",
    )
    cloud = EcsCloud.from_config(config)
    cloud.probe()
    assert cloud.region == "cn-beijing"
    params = server.calls[0][1]
    assert (params["AccessKeyId"], params["RegionId"]) == ("cfg-key-id", "cn-beijing")
    assert "SecurityToken" not in params
