"""The ECS RPC front door: authenticate, check, dispatch to the action table, and answer
in ECS's JSON envelope (success body with RequestId, or the error envelope)."""

from __future__ import annotations

import calendar
import logging
import time
import uuid
from typing import Any

from csi_disk.emulator import signature
from csi_disk.emulator.actions import ACTIONS, Params
from csi_disk.emulator.cloud import TIMESTAMP_WINDOW_S, Cloud
from csi_disk.emulator.errors import EcsError, invalid_parameter, missing_parameter

log = logging.getLogger(__name__)

API_VERSION = "2014-05-26"


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def error_body(err: EcsError, request_id: str, host: str) -> dict[str, Any]:
    """ECS's error envelope, field for field."""
    return {
        "RequestId": request_id,
        "HostId": host,
        "Code": err.code,
        "Message": err.message,
        "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}&product=Ecs"
        f"&requestId={request_id}",
    }


def handle(
    cloud: Cloud, method: str, params: dict[str, str], host: str
) -> tuple[int, dict[str, Any]]:
    """Answer one RPC call: (HTTP status, JSON body)."""
    request_id = new_request_id()
    try:
        body = _dispatch(cloud, method, params)
    except EcsError as err:
        return err.status, error_body(err, request_id, host)
    except Exception:
        log.exception("action %s failed", params.get("Action", "?"))
        return 500, error_body(EcsError("InternalError"), request_id, host)
    return 200, {"RequestId": request_id, **body}


def _dispatch(cloud: Cloud, method: str, params: dict[str, str]) -> dict[str, Any]:
    if method not in ("GET", "POST"):
        raise EcsError("UnsupportedHTTPMethod")
    if params.get("Format", "JSON").upper() != "JSON":
        raise invalid_parameter("Format", "The emulator answers in JSON only.")
    _authenticate(cloud, method, params)
    if params.get("Version") != API_VERSION:
        raise EcsError("InvalidVersion")
    name = params.get("Action", "")
    if not name:
        raise missing_parameter("Action")
    action = ACTIONS.get(name)
    if action is None:
        raise EcsError("InvalidAction.NotFound")
    cloud.count_call(name)
    cloud.throttle(params["AccessKeyId"])
    cloud.inject_fault(name)
    region = params.get("RegionId", cloud.topology.region)
    if region != cloud.topology.region:
        raise EcsError("InvalidRegionId.NotFound")
    action.check_params(params)
    return action.handler(cloud, Params(params))


def _authenticate(cloud: Cloud, method: str, params: dict[str, str]) -> None:
    for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp"):
        if not params.get(name):
            raise missing_parameter(name)
    if params.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
        raise invalid_parameter("SignatureMethod")
    if params.get("SignatureVersion", "1.0") != "1.0":
        raise invalid_parameter("SignatureVersion")
    key_id = params["AccessKeyId"]
    token = params.get("SecurityToken", "")
    credential = cloud.sts_credential(key_id) if key_id.startswith("STS.") else None
    if credential is not None:
        secret = credential["secret"]
    else:
        found = cloud.account_keys().get(key_id)
        if found is None:
            raise EcsError("InvalidAccessKeyId.NotFound")
        secret = found
    if not signature.verify(method, params, secret):
        shown = {k: ("***" if k == "SecurityToken" else v) for k, v in params.items()}
        raise EcsError(
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. server string to sign is:"
            + signature.string_to_sign(method, shown),
        )
    if credential is not None:
        if not token:
            raise missing_parameter("SecurityToken")
        if token != credential["token"]:
            raise EcsError("InvalidSecurityToken.MismatchWithAccessKey")
        if credential["expires"] <= time.time():
            raise EcsError("InvalidSecurityToken.Expired")
    elif token:
        raise EcsError("InvalidSecurityToken.Malformed")
    try:
        stamp = calendar.timegm(time.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        raise EcsError("InvalidTimeStamp.Format") from None
    if abs(time.time() - stamp) > TIMESTAMP_WINDOW_S:
        raise EcsError("InvalidTimeStamp.Expired")
    if not cloud.remember_nonce(params["SignatureNonce"]):
        raise EcsError("SignatureNonceUsed")
