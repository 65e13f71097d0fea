"""Idempotency keys for CreateDisk, derived from the CSI volume name.

ECS dedupes CreateDisk calls that carry the same ``ClientToken`` (at most 64 ASCII
characters). The derivation matches Alibaba's upstream Go driver byte for byte, so a
retry of a request first sent by the upstream driver (or the other way round, during a
migration) finds the same disk instead of creating a second one.
"""

from __future__ import annotations

import base64

# The tag every disk created by the driver carries: the CSI name, whatever its length.
VOLUME_NAME_TAG = "csi.alibabacloud.com/volume-name"

# Longest name used verbatim: "n:" + 62 bytes fills ECS's 64-character limit.
MAX_PLAIN_NAME_BYTES = 62

_FNV128_OFFSET = 0x6C62272E07BB014262B821756295C58D
_FNV128_PRIME = 0x0000000001000000000000000000013B
_MASK128 = (1 << 128) - 1


def fnv1a_128(data: bytes) -> bytes:
    """The 128-bit FNV-1a digest of ``data``, big-endian, as Go's ``hash/fnv`` sums it."""
    h = _FNV128_OFFSET
    for byte in data:
        h ^= byte
        h = (h * _FNV128_PRIME) & _MASK128
    return h.to_bytes(16, "big")


def client_token(name: str) -> str:
    """The ECS ClientToken for the CSI volume ``name``.

    ``n:`` + the name when it is ASCII and at most 62 bytes; otherwise ``h:`` + the
    unpadded standard base64 of the name's FNV-1a 128 digest (24 characters in all).
    """
    raw = name.encode("utf-8")
    if len(raw) <= MAX_PLAIN_NAME_BYTES and raw.isascii():
        return "n:" + name
    digest = base64.b64encode(fnv1a_128(raw)).decode("ascii").rstrip("=")
    return "h:" + digest
