"""ClientToken derivation must match the upstream driver byte for byte."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi_disk.tokens import MAX_PLAIN_NAME_BYTES, VOLUME_NAME_TAG, client_token, fnv1a_128

# Go's hash/fnv golden vectors for New128a.
GO_GOLDEN_128A = [
    ("", "6c62272e07bb014262b821756295c58d"),
    ("a", "d228cb696f1a8caf78912b704e4a8964"),
    ("ab", "08809544bbab1be95aa0733055b69a62"),
    ("abc", "a68d622cec8b5822836dbc7977af7f3b"),
]


@pytest.mark.parametrize(("data", "digest"), GO_GOLDEN_128A)
def test_fnv1a_128_matches_go_golden_vectors(data: str, digest: str) -> None:
    assert fnv1a_128(data.encode()).hex() == digest


def test_short_ascii_name_is_used_verbatim() -> None:
    name = "pvc-6f1c1c2e-3f1b-4c9e-9d7e-1d2f3a4b5c6d"
    assert client_token(name) == "n:" + name


def test_62_bytes_is_plain_and_63_is_hashed() -> None:
    assert client_token("x" * 62) == "n:" + "x" * 62
    token = client_token("x" * 63)
    assert token.startswith("h:")
    assert token != "n:" + "x" * 63


def test_non_ascii_name_is_hashed_even_when_short() -> None:
    name = "卷-a"
    expected = base64.b64encode(fnv1a_128(name.encode("utf-8"))).decode().rstrip("=")
    assert client_token(name) == "h:" + expected


def test_hashed_token_uses_unpadded_standard_base64_of_big_endian_digest() -> None:
    # "a" * 63 forces hashing; the expected text is built from the Go vector layout.
    name = "a" * 63
    digest = fnv1a_128(name.encode())
    token = client_token(name)
    assert token == "h:" + base64.b64encode(digest).decode().rstrip("=")
    assert len(token) == 24
    assert "=" not in token


def test_go_raw_std_encoding_of_a_golden_digest() -> None:
    # Go's base64.RawStdEncoding of the New128a("a") digest, and the empty name stays plain.
    raw = bytes.fromhex(GO_GOLDEN_128A[1][1])
    assert base64.b64encode(raw).decode().rstrip("=") == "0ijLaW8ajK94kStwTkqJZA"
    assert client_token("") == "n:"


# ClientTokens the upstream Go driver sends, one per name shape. The algorithm is
# kubernetes-sigs/alibaba-cloud-csi-driver pkg/disk/cloud.go, func clientToken (FNV-1a 128
# from hash/fnv, base64.RawStdEncoding); the first four pairs are its own test data,
# pkg/disk/cloud_test.go, func TestClientToken. Every value was computed once with Go 1.26
# running that function, not with this module.
UPSTREAM_TOKENS = [
    # ASCII, at most 62 bytes: the name itself.
    ("disk-dcd6fdde-8c1e-45eb-8ec7-786a8b2e0b61", "n:disk-dcd6fdde-8c1e-45eb-8ec7-786a8b2e0b61"),
    ("pvc-6f1c1c2e-3f1b-4c9e-9d7e-1d2f3a4b5c6d", "n:pvc-6f1c1c2e-3f1b-4c9e-9d7e-1d2f3a4b5c6d"),
    ("0123456789" * 6 + "01", "n:" + "0123456789" * 6 + "01"),
    # Non-ASCII, however short.
    ("disk-磁盘名称-1", "h:LGH7vCPQbR31I47I1eCW7g"),
    ("é", "h:CICTv56rG+laoHMwVMcIIQ"),
    ("卷-a", "h:SGl/uBKD2U9wf8/dKizaig"),
    # ASCII over 62 bytes: 63, mixed case, CreateVolume's derived name@disk, CSI's 128 maximum.
    ("0123456789" * 6 + "012", "h:NDeYXVDChDCom5xYgHLVQA"),
    (
        "Snapshot-For-PVC-Data-Volume-Of-StatefulSet-Web-0-In-Namespace-Prod",
        "h:xG511glmmwJA6cWUp51qMg",
    ),
    (
        "snapshot-6f1c1c2e-3f1b-4c9e-9d7e-1d2f3a4b5c6d@d-2ze0000000000000000a",
        "h:APCNzeM64h5W3/JcNbNjjw",
    ),
    ("pvc-" + "a" * 124, "h:GSJSEoH9IdyIMNwTY6y02w"),
]


@pytest.mark.parametrize(("name", "token"), UPSTREAM_TOKENS)
def test_token_is_what_the_upstream_driver_sends(name: str, token: str) -> None:
    assert client_token(name) == token


@given(st.text(max_size=200))
def test_token_fits_ecs_limit_and_is_ascii(name: str) -> None:
    token = client_token(name)
    assert len(token) <= 64
    assert token.isascii()


@given(st.text(max_size=100), st.text(max_size=100))
def test_distinct_plain_names_give_distinct_tokens(a: str, b: str) -> None:
    if a != b and all(len(x.encode()) <= MAX_PLAIN_NAME_BYTES and x.isascii() for x in (a, b)):
        assert client_token(a) != client_token(b)


def test_tag_key_is_the_upstream_one() -> None:
    assert VOLUME_NAME_TAG == "csi.alibabacloud.com/volume-name"
