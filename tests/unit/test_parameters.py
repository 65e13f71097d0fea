"""StorageClass parameter parsing: every key implemented, ignored with a warning, or refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi_disk import parameters
from csi_disk.errors import InvalidArgument
from csi_disk.parameters import DEFAULT_TYPES, parse


def test_defaults() -> None:
    p = parse({})
    assert p.types == DEFAULT_TYPES == ("cloud_essd", "cloud_ssd", "cloud_efficiency")
    assert p.performance_levels == ()
    assert p.zone_ids == ()
    assert not p.encrypted and not p.multi_attach
    assert p.auto_size is True
    assert p.tags == {}
    assert p.warnings == ()
    assert parse(None) == p


def test_type_is_an_ordered_deduplicated_list() -> None:
    assert parse({"type": "cloud_ssd, cloud_essd,cloud_ssd"}).types == ("cloud_ssd", "cloud_essd")


def test_available_alias_is_the_default_list() -> None:
    assert parse({"type": "available"}).types == DEFAULT_TYPES


@pytest.mark.parametrize("value", ["cloud_magic", "cloud_ssd,", "", "san_ssd"])
def test_bad_type_names_key_and_value(value: str) -> None:
    if value == "":
        assert parse({"type": value}).types == DEFAULT_TYPES
        return
    with pytest.raises(InvalidArgument, match="type="):
        parse({"type": value})


def test_performance_levels_expand_attempts_in_order() -> None:
    p = parse({"type": "cloud_essd,cloud_auto", "performanceLevel": "PL2,PL0"})
    assert p.attempts() == [("cloud_essd", "PL2"), ("cloud_essd", "PL0"), ("cloud_auto", "")]
    assert parse({"type": "cloud_essd"}).attempts() == [("cloud_essd", "")]


def test_bad_performance_level() -> None:
    with pytest.raises(InvalidArgument, match="performanceLevel='PL9'"):
        parse({"performanceLevel": "PL9"})
    with pytest.raises(InvalidArgument, match="applies to none"):
        parse({"type": "cloud_ssd", "performanceLevel": "PL1"})


@pytest.mark.parametrize("key", ["zoneId", "zoneid"])
def test_zone_list(key: str) -> None:
    assert parse({key: "cn-a, cn-b,,cn-a"}).zone_ids == ("cn-a", "cn-b")
    assert parse({key: "cn-a,cn-b"}).zone_param == "cn-a,cn-b"


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("Yes", True), ("1", True), ("false", False), ("no", False), ("0", False)],
)
def test_booleans(raw: str, value: bool) -> None:
    p = parse({"encrypted": raw, "multiAttach": raw, "burstingEnabled": raw})
    assert p.encrypted is value and p.multi_attach is value and p.bursting_enabled is value


@pytest.mark.parametrize(
    "key", ["encrypted", "multiAttach", "burstingEnabled", "volumeSizeAutoAvailable"]
)
def test_bad_boolean_names_key_and_value(key: str) -> None:
    with pytest.raises(InvalidArgument, match=f"{key}='maybe'"):
        parse({key: "maybe"})


def test_multi_attach_accepts_enabled() -> None:
    assert parse({"multiAttach": "Enabled"}).multi_attach is True


def test_kms_needs_encryption_and_annotation_wins() -> None:
    with pytest.raises(InvalidArgument, match="kmsKeyId='key-1'"):
        parse({"kmsKeyId": "key-1"})
    p = parse({"encrypted": "true", "kmsKeyId": "k1", "alibabacloud.com/kms-key-id": "k2"})
    assert p.kms_key_id == "k2"


def test_provisioned_iops() -> None:
    p = parse({"type": "cloud_auto", "provisionedIops": "5000"})
    assert p.provisioned_iops == 5000 and p.warnings == ()
    assert parse({"type": "cloud_auto", "provisionedIops": " 0 "}).provisioned_iops == 0
    limit = parameters.MAX_PROVISIONED_IOPS
    assert parse({"provisionedIops": str(limit)}).provisioned_iops == limit
    # int() would take the signs, underscores and other scripts' digits.
    for bad in ("-1", "+5", "lots", "1.5", "1_000", "\u0663\u0660\u0660", "\u00b2", "9" * 40):
        with pytest.raises(InvalidArgument, match=r"provisionedIops=.* is not a whole number"):
            parse({"provisionedIops": bad})
    with pytest.raises(InvalidArgument, match=f"exceeds {limit}"):
        parse({"provisionedIops": str(limit + 1)})


def test_iops_on_a_category_without_it_warns() -> None:
    p = parse({"type": "cloud_ssd", "provisionedIops": "100"})
    assert any("cloud_auto" in w for w in p.warnings)


def test_fs_type_legacy_and_provisioner_key() -> None:
    assert parse({"fsType": "xfs"}).fs_type == "xfs"
    assert parse({"csi.storage.k8s.io/fstype": "ext3"}).fs_type == "ext3"
    with pytest.raises(InvalidArgument, match="fsType='ntfs'"):
        parse({"fsType": "ntfs"})


def test_mkfs_options_checked_as_words() -> None:
    assert parse({"mkfsOptions": "-O ^has_journal -E 'a=b'"}).mkfs_options.startswith("-O")
    with pytest.raises(InvalidArgument, match="mkfsOptions"):
        parse({"mkfsOptions": "-L 'unterminated"})
    with pytest.raises(InvalidArgument, match="control"):
        parse({"mkfsOptions": "-L a\nb"})


def test_tags_both_forms_and_provisioner_metadata() -> None:
    p = parse(
        {
            "diskTags": "team:storage,env:dev",
            "diskTags/env": "prod",
            "csi.storage.k8s.io/pvc/name": "data",
            "csi.storage.k8s.io/pvc/namespace": "default",
            "csi.storage.k8s.io/pv/name": "pvc-1",
        }
    )
    assert p.tags == {
        "team": "storage",
        "env": "prod",
        "kubernetes.io/created-for/pvc/name": "data",
        "kubernetes.io/created-for/pvc/namespace": "default",
        "kubernetes.io/created-for/pv/name": "pvc-1",
    }
    assert (p.pvc_name, p.pvc_namespace, p.pv_name) == ("data", "default", "pvc-1")


def test_long_pvc_name_is_cut_for_the_tag() -> None:
    p = parse({"csi.storage.k8s.io/pvc/name": "n" * 253})
    assert p.tags["kubernetes.io/created-for/pvc/name"] == "n" * 128
    assert p.pvc_name == "n" * 253


@pytest.mark.parametrize(
    "params",
    [
        {"diskTags": "novalue"},
        {"diskTags": ":v"},
        {"diskTags/csi.alibabacloud.com/volume-name": "x"},
        {"diskTags/aliyun-x": "v"},
        {"diskTags/acs:x": "v"},
        {"diskTags/k": "https://example"},
        {"diskTags/" + "k" * 129: "v"},
        {"diskTags/k": "v" * 129},
        {f"diskTags/k{i}": "v" for i in range(20)},
    ],
)
def test_bad_tags(params: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        parse(params)


def test_unknown_key_is_named() -> None:
    with pytest.raises(InvalidArgument, match="unknown parameter 'tpye'"):
        parse({"tpye": "cloud_ssd"})


@pytest.mark.parametrize("key", sorted(parameters.REFUSED))
def test_refused_upstream_keys_are_named(key: str) -> None:
    with pytest.raises(InvalidArgument, match=key):
        parse({key: "x"})


@pytest.mark.parametrize("key", sorted(parameters.IGNORED))
def test_ignored_upstream_keys_warn(key: str) -> None:
    p = parse({key: "x"})
    assert any(key in w for w in p.warnings)


def test_volume_context() -> None:
    p = parse({"fsType": "xfs", "mkfsOptions": "-K", "multiAttach": "true"})
    assert p.volume_context("cloud_essd", "PL1") == {
        "type": "cloud_essd",
        "performanceLevel": "PL1",
        "fsType": "xfs",
        "mkfsOptions": "-K",
        "multiAttach": "true",
    }
    assert parse({}).volume_context("cloud_ssd", "") == {"type": "cloud_ssd"}


def test_region_and_resource_group_pass_through() -> None:
    p = parse({"regionId": "cn-hangzhou", "resourceGroupId": "rg-1"})
    assert (p.region_id, p.resource_group_id) == ("cn-hangzhou", "rg-1")


def test_parsed_value_is_frozen() -> None:
    p = parse({})
    with pytest.raises(AttributeError):
        p.encrypted = True  # type: ignore[misc]


known = sorted(parameters.IMPLEMENTED | set(parameters.IGNORED) | set(parameters.REFUSED))


@given(st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=4))
def test_parse_either_succeeds_or_names_a_key(params: dict[str, str]) -> None:
    try:
        result = parse(params)
    except InvalidArgument as err:
        assert any(
            k in err.message or repr(k) in err.message or ascii(k[:64]) in err.message
            for k in params
        ) or ("tag" in err.message)
        return
    for key in params:
        assert key in known or key.startswith("diskTags/")
    assert result.types


def test_ids_keep_to_their_ecs_alphabets() -> None:
    p = parse(
        {
            "resourceGroupId": "rg-acfmzw2jz2z",
            "encrypted": "true",
            "kmsKeyId": "0e478b7a-4262-4802-b8cb-00d3fb40826e",
            "regionId": "ap-southeast-1",
        }
    )
    assert (p.resource_group_id, p.kms_key_id, p.region_id) == (
        "rg-acfmzw2jz2z",
        "0e478b7a-4262-4802-b8cb-00d3fb40826e",
        "ap-southeast-1",
    )
    assert parse({"encrypted": "true", "kmsKeyId": "key-hzz62f1cb66fa42qo"}).kms_key_id


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("resourceGroupId", "rg-a/../b"),
        ("resourceGroupId", "default"),
        ("resourceGroupId", "rg-\u0661\u0662"),
        ("kmsKeyId", "../../etc/passwd"),
        ("kmsKeyId", "key..1"),
        ("kmsKeyId", "alias/mine"),
        ("regionId", "cn hangzhou"),
        ("regionId", "CN-HANGZHOU"),
    ],
)
def test_malformed_ids_are_invalid(key: str, value: str) -> None:
    with pytest.raises(InvalidArgument, match=key):
        parse({key: value, "encrypted": "true"})


@pytest.mark.parametrize("key", ["resourceGroupId", "kmsKeyId", "diskTags", "mkfsOptions"])
def test_control_characters_in_values_are_invalid(key: str) -> None:
    with pytest.raises(InvalidArgument, match=f"'{key}' holds a control character"):
        parse({key: "a:b\nforged log line", "encrypted": "true"})
    with pytest.raises(InvalidArgument, match="control character"):
        parse({key: "a:b\x00", "encrypted": "true"})


def test_ignored_keys_may_hold_anything() -> None:
    """kubectl's last-applied JSON ends with a newline; its value is never used or shown."""
    p = parse({"kubectl.kubernetes.io/last-applied-configuration": '{"a": 1}\n'})
    assert p.warnings


def test_fs_types_are_the_capability_ones() -> None:
    from csi_disk.fstypes import FS_TYPES

    for fs in FS_TYPES:
        assert parse({"fsType": fs}).fs_type == fs
    with pytest.raises(InvalidArgument):
        parse({"fsType": "btrfs"})
