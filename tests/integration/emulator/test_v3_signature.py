"""ACS3-HMAC-SHA256 ("V3") requests as Alibaba's V2 Python SDK signs them: accepted with the
account key and with RAM role credentials, in every shape RPC allows, and refused as ECS
refuses a wrong secret, a replayed nonce, a stale date or a tampered request."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from alibabacloud_tea_openapi import utils as sdk_utils
from alibabacloud_tea_openapi.exceptions import ClientException
from darabonba.request import DaraRequest

from csi_disk_emulator.process import EmulatorInfo
from tests.integration.emulator.sdk import Ecs
from tests.integration.emulator.v2sdk import EcsV2, role_credentials

STAMP = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture
def v2(emulator: EmulatorInfo) -> EcsV2:
    return EcsV2.for_account(emulator)


def _code(err: ClientException) -> tuple[str, int]:
    return str(err.code), int(err.status_code)


def test_typed_call_with_the_account_key(v2: EcsV2) -> None:
    body = v2.call("DescribeZones")
    assert [z.zone_id for z in body.zones.zone] == v2.info.zones
    assert body.request_id


def test_typed_call_with_role_credentials_from_metadata(emulator: EmulatorInfo) -> None:
    sts = EcsV2.for_sts(emulator, role_credentials(emulator))
    assert sts.call("DescribeInstances").total_count == len(emulator.instances)


@pytest.mark.parametrize(
    ("method", "where"),
    [("GET", "query"), ("POST", "query"), ("POST", "form")],
)
def test_every_rpc_shape_is_accepted(v2: EcsV2, method: str, where: str) -> None:
    zone = v2.info.zones[0]
    params = {"RegionId": v2.info.region, "ZoneId": zone, "PageSize": "5", "DiskName": "a b*~"}
    query, form = (params, None) if where == "query" else ({}, params)
    body = v2.call_raw("DescribeDisks", method, query=query, form=form)
    assert body["PageSize"] == 5
    assert body["Disks"]["Disk"] == []  # no disk has that name: the filter arrived intact


def test_form_body_parameters_are_read_as_parameters(v2: EcsV2) -> None:
    form = {"RegionId": v2.info.region, "ZoneId": v2.info.zones[0], "DiskCategory": "cloud_essd"}
    form |= {"Size": "20", "PerformanceLevel": "PL0", "DiskName": "form-made"}
    disk_id = v2.call_raw("CreateDisk", "POST", form=form)["DiskId"]
    disk = v2.wait_disk(disk_id, "Available")
    assert (disk.disk_name, disk.zone_id, disk.size) == ("form-made", v2.info.zones[0], 20)
    v2.call("DeleteDisk", disk_id=disk_id)


def _sdk_canonical(request: Any, payload: str) -> str:
    """The canonical request as the SDK builds it, from the SDK's own helpers."""
    headers, signed = sdk_utils.get_canonicalized_headers(request.headers)
    query = sdk_utils.get_canonical_query_string(request.query)
    return f"{request.method}\n{request.pathname or '/'}\n{query}\n{headers}\n{signed}\n{payload}"


def test_wrong_secret_is_signature_does_not_match_with_the_servers_canonical_request(
    emulator: EmulatorInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, str] = {}
    real = sdk_utils.Utils.get_authorization

    def spy(request, sign_type, payload, ak, secret):  # type: ignore[no-untyped-def]
        seen["canonical"] = _sdk_canonical(request, payload)
        return real(request, sign_type, payload, ak, secret)

    monkeypatch.setattr(sdk_utils.Utils, "get_authorization", staticmethod(spy))
    err = EcsV2.for_account(emulator, secret="not-the-secret").error(
        "DescribeDisks", disk_name="with space and * and ü", page_size=3
    )
    assert _code(err) == ("SignatureDoesNotMatch", 400)
    envelope = {k: v for k, v in err.data.items() if k != "statusCode"}  # the SDK adds it
    assert set(envelope) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    # The server shows what it signed: the same canonical request as the SDK's.
    assert f"server CanonicalRequest is [{seen['canonical']}]" in envelope["Message"]
    digest = hashlib.sha256(seen["canonical"].encode()).hexdigest()
    assert f"server StringToSign is [ACS3-HMAC-SHA256\n{digest}]" in envelope["Message"]


def test_unknown_access_key_is_not_found(emulator: EmulatorInfo) -> None:
    err = EcsV2.for_account(emulator, key_id="LTAIunknown").error("DescribeZones")
    assert _code(err) == ("InvalidAccessKeyId.NotFound", 404)


def test_replayed_nonce_is_refused(v2: EcsV2, monkeypatch: pytest.MonkeyPatch) -> None:
    nonce = f"v3-fixed-nonce-{time.time_ns()}"
    monkeypatch.setattr(sdk_utils.Utils, "get_nonce", staticmethod(lambda: nonce))
    v2.call("DescribeZones")
    assert _code(v2.error("DescribeZones")) == ("SignatureNonceUsed", 400)


@pytest.mark.parametrize(("minutes", "accepted"), [(-16, False), (16, False), (-10, True)])
def test_date_must_be_within_fifteen_minutes(
    v2: EcsV2, monkeypatch: pytest.MonkeyPatch, minutes: int, accepted: bool
) -> None:
    stamp = time.strftime(STAMP, time.gmtime(time.time() + minutes * 60))
    monkeypatch.setattr(sdk_utils.Utils, "get_timestamp", staticmethod(lambda: stamp))
    if accepted:
        assert v2.call("DescribeZones").zones.zone
    else:
        assert _code(v2.error("DescribeZones")) == ("InvalidTimeStamp.Expired", 400)


def test_role_credentials_need_their_own_token_and_expire(own_emulator) -> None:  # type: ignore[no-untyped-def]
    with own_emulator() as info:
        creds = role_credentials(info)
        forged = {**creds, "SecurityToken": creds["SecurityToken"][:-4] + "AAAA"}
        err = EcsV2.for_sts(info, forged).error("DescribeZones")
        assert _code(err) == ("InvalidSecurityToken.MismatchWithAccessKey", 400)
        sts = EcsV2.for_sts(info, creds)
        assert sts.call("DescribeZones").zones.zone
        info.admin("POST", "/credentials/expire", {"instance_id": info.instances[0].id})
        assert _code(sts.error("DescribeZones")) == ("InvalidSecurityToken.Expired", 400)


def test_role_credentials_without_their_token_name_the_header(emulator: EmulatorInfo) -> None:
    creds = role_credentials(emulator)
    bare = EcsV2.for_account(
        emulator, key_id=creds["AccessKeyId"], secret=creds["AccessKeySecret"]
    ).error("DescribeZones")
    assert _code(bare) == ("MissingParameter", 400)
    assert "x-acs-security-token" in str(bare.message)


def test_other_acs3_algorithms_are_refused_by_name(emulator: EmulatorInfo) -> None:
    sm3 = EcsV2.for_account(emulator, signature_algorithm="ACS3-HMAC-SM3")
    err = sm3.error("DescribeZones")
    assert _code(err) == ("IncompleteSignature", 400)
    assert "ACS3-HMAC-SM3" in str(err.message)


def test_v1_and_v3_share_the_nonce_store(
    emulator: EmulatorInfo, ecs: Ecs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aliyunsdkcore.utils import parameter_helper

    nonce = f"shared-nonce-{time.time_ns()}"
    monkeypatch.setattr(parameter_helper, "get_uuid", lambda: nonce)
    ecs.call("DescribeZones")
    monkeypatch.setattr(sdk_utils.Utils, "get_nonce", staticmethod(lambda: nonce))
    assert _code(EcsV2.for_account(emulator).error("DescribeZones")) == ("SignatureNonceUsed", 400)


# ----- hand-built requests: signed by the SDK's signer, then sent as given --------------


def _send(
    info: EmulatorInfo,
    query: dict[str, str],
    body: bytes = b"",
    drop_from_signature: str = "",
    tamper: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]] | None = None,
    authorization: str | None = None,
    omit: str = "",
    date: str = "",
) -> tuple[int, dict[str, Any]]:
    headers = {
        "host": info.ecs_host,
        "x-acs-action": "DescribeZones",
        "x-acs-version": "2014-05-26",
        "x-acs-date": time.strftime(STAMP, time.gmtime()),
        "x-acs-signature-nonce": f"hand-{time.time_ns()}",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    headers.pop(omit, None)
    if date:
        headers["x-acs-date"] = date
    if body:
        headers["content-type"] = "application/x-www-form-urlencoded"
    signed = DaraRequest()
    signed.method = "POST"
    signed.pathname = "/"
    signed.query = dict(query)
    signed.headers = {k: v for k, v in headers.items() if k != drop_from_signature}
    auth = sdk_utils.Utils.get_authorization(
        signed,
        "ACS3-HMAC-SHA256",
        hashlib.sha256(body).hexdigest(),
        info.access_key_id,
        info.access_key_secret,
    )
    headers["Authorization"] = authorization or auth
    if tamper is not None:
        query, body = tamper(dict(query), body)
    url = f"{info.ecs_endpoint}/?{urlencode(query)}"
    data = body or None  # urllib would add a Content-Type of its own to an empty body
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_hand_built_request_signed_by_the_sdk_is_accepted(emulator: EmulatorInfo) -> None:
    status, body = _send(emulator, {"RegionId": emulator.region})
    assert status == 200, body
    assert body["Zones"]["Zone"]


def test_changed_query_is_signature_does_not_match(emulator: EmulatorInfo) -> None:
    def tamper(query: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        return {**query, "Verbose": "true"}, body

    status, body = _send(emulator, {"RegionId": emulator.region}, tamper=tamper)
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")


def test_changed_form_body_is_signature_does_not_match(emulator: EmulatorInfo) -> None:
    def tamper(query: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        return query, body.replace(b"false", b"true")

    form = urlencode({"RegionId": emulator.region, "Verbose": "false"}).encode()
    status, body = _send(emulator, {}, body=form)
    assert status == 200, body
    status, body = _send(emulator, {}, body=form, tamper=tamper)
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")


@pytest.mark.parametrize("header", ["x-acs-signature-nonce", "x-acs-action", "host"])
def test_a_header_left_out_of_the_signature_is_incomplete(
    emulator: EmulatorInfo, header: str
) -> None:
    status, body = _send(emulator, {"RegionId": emulator.region}, drop_from_signature=header)
    assert (status, body["Code"]) == (400, "IncompleteSignature")
    assert header in body["Message"]


@pytest.mark.parametrize(
    "authorization",
    [
        "ACS3-HMAC-SHA256 Credential=LTAIx,Signature=ab",
        "ACS3-HMAC-SHA256 Credential=LTAIx,SignedHeaders=Host,Signature=ab",
        "ACS3-HMAC-SHA256",
    ],
)
def test_malformed_authorization_is_incomplete_signature(
    emulator: EmulatorInfo, authorization: str
) -> None:
    status, body = _send(emulator, {"RegionId": emulator.region}, authorization=authorization)
    assert (status, body["Code"]) == (400, "IncompleteSignature")


@pytest.mark.parametrize("header", ["x-acs-date", "x-acs-signature-nonce"])
def test_missing_date_or_nonce_header_is_missing_parameter(
    emulator: EmulatorInfo, header: str
) -> None:
    status, body = _send(emulator, {"RegionId": emulator.region}, omit=header)
    assert (status, body["Code"]) == (400, "MissingParameter")
    assert header in body["Message"]


def test_date_not_in_iso_format_is_refused(emulator: EmulatorInfo) -> None:
    status, body = _send(emulator, {"RegionId": emulator.region}, date="Tue, 01 Apr 2025 10:00:00")
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Format")


def test_missing_action_header_is_missing_parameter(emulator: EmulatorInfo) -> None:
    status, body = _send(emulator, {"RegionId": emulator.region}, omit="x-acs-action")
    assert (status, body["Code"]) == (400, "MissingParameter")
    assert "x-acs-action" in body["Message"]
