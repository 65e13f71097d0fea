"""The emulator's signature matches the SDK's signer, and size limits match ECS's table."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from aliyunsdkcore.auth.composer import rpc_signature_composer

from csi_disk_emulator import signature
from csi_disk_emulator.actions.disks import size_range


@pytest.mark.parametrize("value", ["plain", "with space", "ünïcode*~", "a+b=c&d"])
def test_signature_agrees_with_the_sdk_signer(value: str) -> None:
    url, sdk_string = rpc_signature_composer.get_signed_url(
        {"Action": "DescribeDisks", "DiskName": value}, "ak", "sk", "JSON", "POST", {}
    )
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    assert signature.string_to_sign("POST", params) == sdk_string
    assert signature.verify("POST", params, "sk")
    assert not signature.verify("POST", params, "other")
    assert not signature.verify("GET", params, "sk")


@pytest.mark.parametrize(
    ("category", "level", "expected"),
    [
        ("cloud_efficiency", "", (20, 32768)),
        ("cloud_ssd", "", (20, 32768)),
        ("cloud_essd", "PL0", (1, 65536)),
        ("cloud_essd", "PL1", (20, 65536)),
        ("cloud_essd", "PL2", (461, 65536)),
        ("cloud_essd", "PL3", (1261, 65536)),
        ("cloud_essd_entry", "", (10, 32768)),
        ("cloud_auto", "", (1, 65536)),
    ],
)
def test_size_ranges(category: str, level: str, expected: tuple[int, int]) -> None:
    assert size_range(category, level or "PL1") == expected
