"""ACS3-HMAC-SHA256, the "V3" request signature Alibaba's current SDKs send by default.

The client puts ``Authorization: ACS3-HMAC-SHA256 Credential=<key id>,SignedHeaders=<a;b>,
Signature=<hex>`` on the request. The signature is the hex HMAC-SHA256, keyed with the bare
secret (no ``&`` as in V1), of ``ACS3-HMAC-SHA256\\n`` + hex SHA-256 of the canonical
request::

    METHOD \\n path \\n sorted query (name=value, RFC 3986 encoded) \\n
    signed headers as "name:value\\n" (lower-case names, trimmed values) \\n
    signed header names joined by ";" \\n hex SHA-256 of the body
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from csi_disk_emulator.signature import percent_encode

ALGORITHM = "ACS3-HMAC-SHA256"
# Other ACS3 algorithms the SDKs know (SM3, RSA) are recognised to be refused by name.
ACS3_PREFIX = "ACS3-"
_FIELD = re.compile(r"\s*(Credential|SignedHeaders|Signature)=([^,\s]*)\s*")


@dataclass(frozen=True)
class Authorization:
    """The parts of an ``Authorization: ACS3-...`` header."""

    algorithm: str
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def is_v3(authorization: str) -> bool:
    return authorization.startswith(ACS3_PREFIX)


def parse_authorization(value: str) -> Authorization:
    """Split the header; ValueError names what is missing or repeated."""
    algorithm, _, rest = value.strip().partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        match = _FIELD.fullmatch(part)
        if match is None:
            raise ValueError(f"cannot read {part.strip()[:40]!r}")
        if match.group(1) in fields:
            raise ValueError(f"{match.group(1)} is given twice")
        fields[match.group(1)] = match.group(2)
    for name in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(name):
            raise ValueError(f"{name} is missing")
    signed = tuple(fields["SignedHeaders"].split(";"))
    if any(not h or h != h.lower() for h in signed):
        raise ValueError("SignedHeaders must be lower-case names separated by ';'")
    return Authorization(algorithm, fields["Credential"], signed, fields["Signature"])


def payload_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Sorted ``name=value`` pairs, both RFC 3986 encoded (a bare name keeps its ``=``)."""
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, list[str]],
    signed_headers: Iterable[str],
    body_hash: str,
) -> str:
    """The string whose hash is signed. ``headers`` maps lower-case names to every value
    the request carried; repeated values are sorted and joined with ``,``."""
    names = sorted(set(signed_headers))
    lines = "".join(
        f"{name}:{','.join(sorted(v.strip() for v in headers.get(name, [])))}\n" for name in names
    )
    return "\n".join(
        (method.upper(), path or "/", canonical_query(query), lines, ";".join(names), body_hash)
    )


def string_to_sign(canonical: str) -> str:
    return f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def sign(secret: str, to_sign: str) -> str:
    return hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def verify(secret: str, to_sign: str, signature: str) -> bool:
    """Constant-time comparison of bytes (a str with non-ASCII text cannot be compared);
    hex case does not matter."""
    return hmac.compare_digest(sign(secret, to_sign).encode(), signature.lower().encode())
