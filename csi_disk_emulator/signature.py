"""ECS RPC signature version 1.0 (HMAC-SHA1), computed the way the gateway does.

The string to sign is ``METHOD&%2F&`` plus the percent-encoded, sorted, percent-encoded
parameter list; the key is the secret followed by ``&``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the gateway applies it (``~`` kept, space as %20)."""
    return quote(value, safe="~")


def string_to_sign(method: str, params: dict[str, str]) -> str:
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in pairs)
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical)}"


def sign(method: str, params: dict[str, str], secret: str) -> str:
    digest = hmac.new(
        (secret + "&").encode(), string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


def verify(method: str, params: dict[str, str], secret: str) -> bool:
    """Constant-time comparison of the request's Signature with ours, as bytes: a str with
    non-ASCII text cannot be compared and would end the request as an internal error."""
    given = params.get("Signature", "").encode()
    return hmac.compare_digest(sign(method, params, secret).encode(), given)
