"""The emulator's ACS3-HMAC-SHA256 canonical request and signature agree with the signer of
Alibaba's V2 Python SDK (alibabacloud_tea_openapi) byte for byte, and a malformed
Authorization header is told apart from a wrong signature."""

from __future__ import annotations

import hashlib

import pytest
from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest

from csi_disk_emulator import signature_v3

SECRET = "not-a-real-secret"


def _sdk_signed(method: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> str:
    """The Authorization header the SDK computes for this request."""
    request = DaraRequest()
    request.method = method
    request.pathname = "/"
    request.query = dict(query)
    request.headers = dict(headers)
    digest = hashlib.sha256(body).hexdigest()
    return str(Utils.get_authorization(request, "ACS3-HMAC-SHA256", digest, "LTAIkey", SECRET))


def _ours(method: str, query: dict[str, str], headers: dict[str, str], body: bytes, auth: str):  # type: ignore[no-untyped-def]
    parsed = signature_v3.parse_authorization(auth)
    lowered = {k.lower(): [v] for k, v in headers.items()}
    canonical = signature_v3.canonical_request(
        method,
        "/",
        list(query.items()),
        lowered,
        parsed.signed_headers,
        signature_v3.payload_hash(body),
    )
    return parsed, signature_v3.string_to_sign(canonical)


@pytest.mark.parametrize(
    "value", ["plain", "with space", "ünïcode*~", "a+b=c&d", "/slash/", "", "quote'\"()!"]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_signature_agrees_with_the_sdk_signer(method: str, value: str) -> None:
    query = {"RegionId": "cn-hangzhou", "DiskName": value, "Tag.1.Key": "k", "Tag.1.Value": value}
    headers = {
        "host": "127.0.0.1:8080",
        "x-acs-action": "DescribeDisks",
        "x-acs-version": "2014-05-26",
        "x-acs-date": "2025-01-02T03:04:05Z",
        "x-acs-signature-nonce": "n-1",
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
        "accept": "application/json",
        "user-agent": "  spaced agent  ",
    }
    auth = _sdk_signed(method, query, headers, b"")
    parsed, to_sign = _ours(method, query, headers, b"", auth)
    assert parsed.algorithm == "ACS3-HMAC-SHA256"
    assert parsed.access_key_id == "LTAIkey"
    assert signature_v3.verify(SECRET, to_sign, parsed.signature)
    assert not signature_v3.verify("other", to_sign, parsed.signature)


def test_form_body_is_signed_through_its_hash() -> None:
    body = b"DiskName=a%20b&Size=20"
    headers = {
        "host": "h",
        "content-type": "application/x-www-form-urlencoded",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    auth = _sdk_signed("POST", {}, headers, body)
    parsed, to_sign = _ours("POST", {}, headers, body, auth)
    assert signature_v3.verify(SECRET, to_sign, parsed.signature)
    _, tampered = _ours("POST", {}, headers, body.replace(b"20", b"21"), auth)
    assert not signature_v3.verify(SECRET, tampered, parsed.signature)


def test_a_query_value_changed_after_signing_is_detected() -> None:
    headers = {"host": "h", "x-acs-action": "DescribeDisks"}
    auth = _sdk_signed("POST", {"Size": "20"}, headers, b"")
    parsed, to_sign = _ours("POST", {"Size": "200"}, headers, b"", auth)
    assert not signature_v3.verify(SECRET, to_sign, parsed.signature)


def test_signature_hex_case_does_not_matter_and_non_ascii_is_a_mismatch() -> None:
    to_sign = signature_v3.string_to_sign("anything")
    good = signature_v3.sign(SECRET, to_sign)
    assert signature_v3.verify(SECRET, to_sign, good.upper())
    assert not signature_v3.verify(SECRET, to_sign, "é" * len(good))


@pytest.mark.parametrize(
    ("header", "complaint"),
    [
        ("ACS3-HMAC-SHA256 SignedHeaders=host,Signature=ab", "Credential is missing"),
        ("ACS3-HMAC-SHA256 Credential=k,Signature=ab", "SignedHeaders is missing"),
        ("ACS3-HMAC-SHA256 Credential=k,SignedHeaders=host", "Signature is missing"),
        ("ACS3-HMAC-SHA256 Credential=k,Credential=j,SignedHeaders=host,Signature=a", "twice"),
        ("ACS3-HMAC-SHA256 Credential=k,SignedHeaders=Host,Signature=ab", "lower-case"),
        ("ACS3-HMAC-SHA256 Credential=k,SignedHeaders=host;;a,Signature=ab", "lower-case"),
        ("ACS3-HMAC-SHA256 Credential=k;SignedHeaders=host", "SignedHeaders is missing"),
        ("ACS3-HMAC-SHA256 Credential=k,SignedHeaders=host,Signature=a b", "cannot read"),
        ("ACS3-HMAC-SHA256", "cannot read"),
    ],
)
def test_malformed_authorization_names_the_problem(header: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        signature_v3.parse_authorization(header)


def test_authorization_fields_may_carry_spaces_around_commas() -> None:
    parsed = signature_v3.parse_authorization(
        "ACS3-HMAC-SHA256 Credential=STS.k, SignedHeaders=host;x-acs-date, Signature=AB12"
    )
    assert parsed.access_key_id == "STS.k"
    assert parsed.signed_headers == ("host", "x-acs-date")
    assert parsed.signature == "AB12"
