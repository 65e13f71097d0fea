"""The wire protocol through the real SDK: signing, replay, staleness, STS, envelopes."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.utils import parameter_helper

from csi_disk_emulator.process import EmulatorInfo
from tests.integration.emulator.sdk import Ecs


def test_signed_call_succeeds_and_carries_a_request_id(ecs: Ecs) -> None:
    body = ecs.call("DescribeZones")
    assert body["RequestId"]
    assert [z["ZoneId"] for z in body["Zones"]["Zone"]] == ecs.info.zones


def test_wrong_secret_is_refused_as_a_signature_mismatch(emulator: EmulatorInfo) -> None:
    err = Ecs.for_account(emulator, secret="not-the-secret").error("DescribeZones")
    assert err.get_http_status() == 400
    # The server's string-to-sign matches the SDK's, so the SDK names the cause precisely.
    assert err.get_error_code() == "InvalidAccessKeySecret"


def test_tampered_request_is_signature_does_not_match(
    ecs: Ecs, monkeypatch: pytest.MonkeyPatch
) -> None:
    req = ecs.request("DescribeZones")
    real = ecs.client._make_http_response

    def tamper(endpoint, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = real(endpoint, request, *args, **kwargs)
        response.set_url(response.get_url().replace("DescribeZones", "DescribeZones&Verbose=true"))
        return response

    monkeypatch.setattr(ecs.client, "_make_http_response", tamper)
    with pytest.raises(ServerException) as caught:
        ecs.send(req)
    assert caught.value.get_error_code() == "SignatureDoesNotMatch"
    assert caught.value.get_http_status() == 400


def test_unknown_access_key_is_not_found(emulator: EmulatorInfo) -> None:
    client = AcsClient("LTAIunknownkey", "secret", emulator.region, auto_retry=False)
    err = Ecs(emulator, client).error("DescribeZones")
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidAccessKeyId.NotFound", 404)


def test_replayed_nonce_is_refused(ecs: Ecs, monkeypatch: pytest.MonkeyPatch) -> None:
    nonce = f"fixed-nonce-{time.time_ns()}"
    monkeypatch.setattr(parameter_helper, "get_uuid", lambda: nonce)
    ecs.call("DescribeZones")
    err = ecs.error("DescribeZones")
    assert (err.get_error_code(), err.get_http_status()) == ("SignatureNonceUsed", 400)


def test_stale_timestamp_is_refused(ecs: Ecs, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 16 * 60))
    monkeypatch.setattr(parameter_helper, "get_iso_8061_date", lambda: stale)
    err = ecs.error("DescribeZones")
    assert (err.get_error_code(), err.get_http_status()) == ("InvalidTimeStamp.Expired", 400)


def test_timestamp_inside_the_window_is_accepted(ecs: Ecs, monkeypatch: pytest.MonkeyPatch) -> None:
    recent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 10 * 60))
    monkeypatch.setattr(parameter_helper, "get_iso_8061_date", lambda: recent)
    assert ecs.call("DescribeZones")["Zones"]["Zone"]


def test_parameter_ecs_does_not_define_is_refused_by_name(ecs: Ecs) -> None:
    req = ecs.request("DescribeDisks")
    req.add_query_param("DiskIdz", "[]")
    with pytest.raises(ServerException) as caught:
        ecs.send(req)
    assert caught.value.get_error_code() == "InvalidParameter"
    assert caught.value.get_http_status() == 400
    assert "DiskIdz" in caught.value.get_error_msg()


def test_error_envelope_has_exactly_the_ecs_fields(emulator: EmulatorInfo, ecs: Ecs) -> None:
    # Read the raw body the SDK parsed: the SDK keeps it out of the exception.
    req = ecs.request("DeleteDisk", DiskId="d-doesnotexist00000000")
    req.set_accept_format("JSON")
    status, _, body, _ = ecs.client._implementation_of_do_action(req)
    envelope = json.loads(body)
    assert status == 404
    assert set(envelope) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert envelope["Code"] == "InvalidDiskId.NotFound"
    assert envelope["RequestId"] in envelope["Recommend"]


def _fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> str:
    request = urllib.request.Request(url, headers=headers or {}, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return str(response.read().decode())


def test_sts_credentials_from_metadata_work_until_they_expire(own_emulator) -> None:  # type: ignore[no-untyped-def]
    with own_emulator() as info:
        inst = info.instances[0]
        role = _fetch(f"{inst.metadata_endpoint}/latest/meta-data/ram/security-credentials/")
        assert role == inst.ram_role
        url = f"{inst.metadata_endpoint}/latest/meta-data/ram/security-credentials/{role}"
        creds = json.loads(_fetch(url))
        assert creds["Code"] == "Success"
        assert set(creds) == {
            "AccessKeyId",
            "AccessKeySecret",
            "SecurityToken",
            "Expiration",
            "LastUpdated",
            "Code",
        }
        sts = Ecs.for_sts(info, creds)
        assert sts.call("DescribeZones")["Zones"]["Zone"]

        # A token the emulator never issued is refused even with a valid key pair.
        forged = Ecs.for_sts(info, {**creds, "SecurityToken": creds["SecurityToken"][:-4] + "AAAA"})
        assert forged.error("DescribeZones").get_error_code() == (
            "InvalidSecurityToken.MismatchWithAccessKey"
        )

        info.admin("POST", "/credentials/expire", {"instance_id": inst.id})
        err = sts.error("DescribeZones")
        assert (err.get_error_code(), err.get_http_status()) == (
            "InvalidSecurityToken.Expired",
            400,
        )

        rotated = json.loads(_fetch(url))
        assert rotated["AccessKeyId"] != creds["AccessKeyId"]
        assert Ecs.for_sts(info, rotated).call("DescribeZones")["Zones"]["Zone"]


def test_credentials_rotate_and_the_new_ones_work(own_emulator) -> None:  # type: ignore[no-untyped-def]
    with own_emulator(credential_lifetime=3) as info:
        inst = info.instances[0]
        url = f"{inst.metadata_endpoint}/latest/meta-data/ram/security-credentials/{inst.ram_role}"
        first = json.loads(_fetch(url))
        assert json.loads(_fetch(url))["AccessKeyId"] == first["AccessKeyId"]
        deadline = time.monotonic() + 20
        current = first
        while current["AccessKeyId"] == first["AccessKeyId"] and time.monotonic() < deadline:
            time.sleep(0.1)
            current = json.loads(_fetch(url))
        assert current["AccessKeyId"] != first["AccessKeyId"]
        assert current["Expiration"] > first["Expiration"]
        assert Ecs.for_sts(info, current).call("DescribeZones")["Zones"]["Zone"]


def test_metadata_paths_and_token_flow(emulator: EmulatorInfo) -> None:
    inst = emulator.instances[-1]
    base = inst.metadata_endpoint
    assert _fetch(f"{base}/latest/meta-data/instance-id") == inst.id
    assert _fetch(f"{base}/latest/meta-data/zone-id") == inst.zone
    assert _fetch(f"{base}/latest/meta-data/region-id") == emulator.region
    assert _fetch(f"{base}/latest/meta-data/instance/instance-type") == inst.instance_type
    document = json.loads(_fetch(f"{base}/latest/dynamic/instance-identity/document"))
    assert (document["instance-id"], document["zone-id"]) == (inst.id, inst.zone)

    token = _fetch(
        f"{base}/latest/api/token",
        {"X-aliyun-ecs-metadata-token-ttl-seconds": "60"},
        method="PUT",
    )
    assert (
        _fetch(f"{base}/latest/meta-data/instance-id", {"X-aliyun-ecs-metadata-token": token})
        == inst.id
    )
    with pytest.raises(urllib.error.HTTPError) as bad:
        _fetch(f"{base}/latest/meta-data/instance-id", {"X-aliyun-ecs-metadata-token": "bogus"})
    assert bad.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as no_ttl:
        _fetch(f"{base}/latest/api/token", method="PUT")
    assert no_ttl.value.code == 400
