"""The ECS RPC front door: authenticate, check, dispatch to the action table, and answer
in ECS's JSON envelope (success body with RequestId, or the error envelope).

Two signatures are accepted with the same account keys and STS credentials, the same nonce
and clock checks: V1 (``Signature`` and its companions among the parameters, HMAC-SHA1) and
V3 (``Authorization: ACS3-HMAC-SHA256 ...`` with ``x-acs-*`` headers), which is what the
current SDKs send. Parameters travel in the query string or a form body either way.
"""

from __future__ import annotations

import calendar
import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from csi_disk_emulator import signature, signature_v3
from csi_disk_emulator.actions import ACTIONS, Params
from csi_disk_emulator.cloud import TIMESTAMP_WINDOW_S, Cloud
from csi_disk_emulator.errors import EcsError, invalid_parameter, missing_parameter

log = logging.getLogger(__name__)

API_VERSION = "2014-05-26"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Headers a V3 request must sign when it carries them: host and the x-acs-* common headers.
# Others (Content-Type, Accept-Encoding, Content-Length) may be added by HTTP libraries
# after signing, so they count only when the client lists them in SignedHeaders.
V3_ALWAYS_SIGNED = ("host",)
V3_SIGNED_PREFIX = "x-acs-"
SECURITY_TOKEN_HEADER = "x-acs-security-token"  # noqa: S105 - a header name


@dataclass
class Request:
    """One HTTP request to the ECS endpoint, as far as the server parsed it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    form: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, list[str]] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    host: str = "ecs.aliyuncs.com"

    def header(self, name: str) -> str:
        values = self.headers.get(name, [])
        return values[0] if values else ""

    def params(self) -> dict[str, str]:
        """Query and form parameters together; the form wins a name given twice."""
        return {**dict(self.query), **dict(self.form)}


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


def handle(cloud: Cloud, request: Request) -> tuple[int, dict[str, Any]]:
    """Answer one RPC call: (HTTP status, JSON body)."""
    request_id = new_request_id()
    try:
        body = _dispatch(cloud, request)
    except EcsError as err:
        return err.status, error_body(err, request_id, request.host)
    except Exception:
        log.exception("action %s failed", _action_name(request) or "?")
        return 500, error_body(EcsError("InternalError"), request_id, request.host)
    return 200, {"RequestId": request_id, **body}


def _action_name(request: Request) -> str:
    return request.header("x-acs-action") or request.params().get("Action", "")


def _dispatch(cloud: Cloud, request: Request) -> dict[str, Any]:
    if request.method not in ("GET", "POST"):
        raise EcsError("UnsupportedHTTPMethod")
    params = request.params()
    if params.get("Format", "JSON").upper() != "JSON":
        raise invalid_parameter("Format", "The emulator answers in JSON only.")
    authorization = request.header("authorization")
    if signature_v3.is_v3(authorization):
        key_id = _authenticate_v3(cloud, request, authorization)
        # V3 names the action and version in headers; the actions read them as parameters.
        params["Action"] = request.header("x-acs-action")
        params["Version"] = request.header("x-acs-version")
        if not params["Action"]:
            raise missing_parameter("x-acs-action")
    else:
        key_id = _authenticate_v1(cloud, request.method, params)
    if params.get("Version") != API_VERSION:
        raise EcsError("InvalidVersion")
    name = params.get("Action", "")
    if not name:
        raise missing_parameter("Action")
    action = ACTIONS.get(name)
    if action is None:
        raise EcsError("InvalidAction.NotFound")
    cloud.count_call(name)
    cloud.throttle(key_id)
    cloud.quotas.admit(name)  # one account: every key and role credential counts together
    cloud.inject_fault(name)
    region = params.get("RegionId", cloud.topology.region)
    if region != cloud.topology.region:
        raise EcsError("InvalidRegionId.NotFound")
    action.check_params(params)
    return action.handler(cloud, Params(params))


def _authenticate_v1(cloud: Cloud, method: str, params: dict[str, str]) -> str:
    """Check a V1 (HMAC-SHA1 parameter) signature; the caller's access key id."""
    for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp"):
        if not params.get(name):
            raise missing_parameter(name)
    if params.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
        raise invalid_parameter("SignatureMethod")
    if params.get("SignatureVersion", "1.0") != "1.0":
        raise invalid_parameter("SignatureVersion")
    key_id = params["AccessKeyId"]
    secret, credential = _secret_of(cloud, key_id)
    if not signature.verify(method, params, secret):
        shown = {k: ("***" if k == "SecurityToken" else v) for k, v in params.items()}
        raise EcsError(
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. server string to sign is:"
            + signature.string_to_sign(method, shown),
        )
    _check_token(credential, params.get("SecurityToken", ""), "SecurityToken")
    _check_fresh(cloud, params["Timestamp"], params["SignatureNonce"])
    return key_id


def _authenticate_v3(cloud: Cloud, request: Request, authorization: str) -> str:
    """Check an ACS3-HMAC-SHA256 signature; the caller's access key id."""
    try:
        auth = signature_v3.parse_authorization(authorization)
    except ValueError as err:
        raise EcsError(
            "IncompleteSignature",
            f"The request signature does not conform to Aliyun standards: {err}.",
        ) from None
    if auth.algorithm != signature_v3.ALGORITHM:
        raise EcsError(
            "IncompleteSignature",
            f"The signature algorithm {auth.algorithm[:40]} is not supported; "
            f"use {signature_v3.ALGORITHM}.",
        )
    for name in ("x-acs-date", "x-acs-signature-nonce"):
        if not request.header(name):
            raise missing_parameter(name)
    unsigned = sorted(
        name
        for name in request.headers
        if (name in V3_ALWAYS_SIGNED or name.startswith(V3_SIGNED_PREFIX))
        and name not in auth.signed_headers
    )
    if unsigned:
        raise EcsError(
            "IncompleteSignature",
            "The request signature does not conform to Aliyun standards: SignedHeaders "
            f"must include {';'.join(unsigned)}.",
        )
    secret, credential = _secret_of(cloud, auth.access_key_id)
    canonical = signature_v3.canonical_request(
        request.method,
        request.path,
        request.query,
        request.headers,
        auth.signed_headers,
        signature_v3.payload_hash(request.body),
    )
    to_sign = signature_v3.string_to_sign(canonical)
    if not signature_v3.verify(secret, to_sign, auth.signature):
        shown = {**request.headers}
        if SECURITY_TOKEN_HEADER in shown:
            shown[SECURITY_TOKEN_HEADER] = ["***"]
        shown_canonical = signature_v3.canonical_request(
            request.method,
            request.path,
            request.query,
            shown,
            auth.signed_headers,
            signature_v3.payload_hash(request.body),
        )
        raise EcsError(
            "SignatureDoesNotMatch",
            f"Specified signature does not match our calculation. server StringToSign is "
            f"[{to_sign}] server CanonicalRequest is [{shown_canonical}]",
        )
    _check_token(credential, request.header(SECURITY_TOKEN_HEADER), SECURITY_TOKEN_HEADER)
    _check_fresh(cloud, request.header("x-acs-date"), request.header("x-acs-signature-nonce"))
    return auth.access_key_id


def _secret_of(cloud: Cloud, key_id: str) -> tuple[str, sqlite3.Row | None]:
    """The secret that signs for ``key_id``, and its STS credential row if it is one."""
    credential = cloud.sts_credential(key_id) if key_id.startswith("STS.") else None
    if credential is not None:
        return str(credential["secret"]), credential
    found = cloud.account_keys().get(key_id)
    if found is None:
        raise EcsError("InvalidAccessKeyId.NotFound")
    return found, None


def _check_token(credential: sqlite3.Row | None, token: str, name: str) -> None:
    """STS keys need their own live token (``name`` is where it travels); account keys take
    none."""
    if credential is not None:
        if not token:
            raise missing_parameter(name)
        if token != credential["token"]:
            raise EcsError("InvalidSecurityToken.MismatchWithAccessKey")
        if credential["expires"] <= time.time():
            raise EcsError("InvalidSecurityToken.Expired")
    elif token:
        raise EcsError("InvalidSecurityToken.Malformed")


def _check_fresh(cloud: Cloud, timestamp: str, nonce: str) -> None:
    """The request was signed within the window and its nonce is new."""
    try:
        stamp = calendar.timegm(time.strptime(timestamp, TIMESTAMP_FORMAT))
    except ValueError:
        raise EcsError("InvalidTimeStamp.Format") from None
    if abs(time.time() - stamp) > TIMESTAMP_WINDOW_S:
        raise EcsError("InvalidTimeStamp.Expired")
    if not cloud.remember_nonce(nonce):
        raise EcsError("SignatureNonceUsed")
