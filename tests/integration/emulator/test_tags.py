"""The tag APIs (TagResources, UntagResources, ListTagResources and the older AddTags,
RemoveTags, DescribeTags) on disks and snapshots: one set of tags, visible in DescribeDisks
and DescribeSnapshots whichever API set it, with ECS's limits and error codes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models

from csi_disk_emulator.process import EmulatorInfo
from tests.integration.emulator.sdk import Ecs
from tests.integration.emulator.v2sdk import EcsV2


@pytest.fixture
def v2(emulator: EmulatorInfo) -> EcsV2:
    return EcsV2.for_account(emulator)


@pytest.fixture
def disks(v2: EcsV2) -> Iterator[list[str]]:
    """Three fresh disks, deleted afterwards."""
    made = [
        v2.call(
            "CreateDisk",
            zone_id=v2.info.zones[0],
            disk_category="cloud_essd",
            performance_level="PL0",
            size=1,
        ).disk_id
        for _ in range(3)
    ]
    for disk_id in made:
        v2.wait_disk(disk_id, "Available")
    yield made
    for disk_id in made:
        v2.call("DeleteDisk", disk_id=disk_id)


def tag(key: str | None, value: str | None = None) -> models.TagResourcesRequestTag:
    return models.TagResourcesRequestTag(key=key, value=value)


def tag_disks(v2: EcsV2, ids: list[str], *pairs: tuple[str, str]) -> None:
    v2.call(
        "TagResources",
        resource_type="disk",
        resource_id=ids,
        tag=[tag(k, v) for k, v in pairs],
    )


def disk_tags(v2: EcsV2, disk_id: str) -> dict[str, str]:
    return {t.tag_key: t.tag_value for t in v2.disk(disk_id).tags.tag}


def listed(v2: EcsV2, **query: Any) -> list[tuple[str, str, str]]:
    body = v2.call("ListTagResources", resource_type="disk", **query)
    assert body.next_token == ""
    return [(t.resource_id, t.tag_key, t.tag_value) for t in body.tag_resources.tag_resource]


def test_tags_set_by_tag_resources_show_in_describe_disks_and_filter_them(
    v2: EcsV2, disks: list[str]
) -> None:
    marker = uuid.uuid4().hex[:12]
    tag_disks(v2, disks[:2], ("team", "storage"), ("run", marker))
    tag_disks(v2, disks[:1], ("team", "platform"))  # an existing key takes the new value
    assert disk_tags(v2, disks[0]) == {"team": "platform", "run": marker}
    assert disk_tags(v2, disks[1]) == {"team": "storage", "run": marker}
    assert disk_tags(v2, disks[2]) == {}
    found = v2.call(
        "DescribeDisks", tag=[models.DescribeDisksRequestTag(key="run", value=marker)]
    ).disks.disk
    assert sorted(d.disk_id for d in found) == sorted(disks[:2])


def test_list_tag_resources_by_id_by_tag_and_by_fuzzy_filter(v2: EcsV2, disks: list[str]) -> None:
    marker = uuid.uuid4().hex[:12]
    tag_disks(v2, disks[:1], ("env", "production"), (f"m-{marker}", "1"))
    tag_disks(v2, disks[1:2], ("environment", "prod-eu"), (f"m-{marker}", "2"))
    d0, d1 = disks[0], disks[1]
    assert listed(v2, resource_id=[d0]) == [(d0, "env", "production"), (d0, f"m-{marker}", "1")]
    assert listed(v2, resource_id=[disks[2]]) == []
    assert listed(v2, resource_id=["d-doesnotexist"]) == []
    by_key = listed(v2, tag=[models.ListTagResourcesRequestTag(key=f"m-{marker}")])
    assert sorted({r for r, _, _ in by_key}) == sorted([d0, d1])
    exact = listed(v2, tag=[models.ListTagResourcesRequestTag(key=f"m-{marker}", value="2")])
    assert {r for r, _, _ in exact} == {d1}

    def fuzzy(key: str, *values: str) -> set[str]:
        rows = listed(
            v2,
            resource_id=disks,
            tag_filter=[
                models.ListTagResourcesRequestTagFilter(tag_key=key, tag_values=list(values))
            ],
        )
        return {r for r, _, _ in rows}

    assert fuzzy("env*") == {d0, d1}
    assert fuzzy("*viron*") == {d1}
    assert fuzzy("env") == {d0}
    assert fuzzy("environment", "prod*") == {d1}
    assert fuzzy("env", "*duct*", "nothing") == {d0}
    assert fuzzy("env", "prod") == set()


def test_list_tag_resources_pages_by_fifty(v2: EcsV2, disks: list[str]) -> None:
    tag_disks(v2, disks, *[(f"k{n:02d}", str(n)) for n in range(20)])
    first = v2.call("ListTagResources", resource_type="disk", resource_id=disks)
    assert len(first.tag_resources.tag_resource) == 50 and first.next_token
    second = v2.call(
        "ListTagResources", resource_type="disk", resource_id=disks, next_token=first.next_token
    )
    assert len(second.tag_resources.tag_resource) == 10 and second.next_token == ""
    pages = first.tag_resources.tag_resource + second.tag_resources.tag_resource
    assert {(t.resource_id, t.tag_key) for t in pages} == {
        (d, f"k{n:02d}") for d in disks for n in range(20)
    }
    err = v2.error("ListTagResources", resource_type="disk", resource_id=disks, next_token="zz")
    assert (err.code, err.status_code) == ("InvalidParameter", 400)


def test_untag_resources_by_key_and_all(v2: EcsV2, disks: list[str]) -> None:
    tag_disks(v2, disks[:2], ("a", "1"), ("b", "2"), ("c", "3"))
    v2.call("UntagResources", resource_type="disk", resource_id=disks[:2], tag_key=["a", "zz"])
    assert disk_tags(v2, disks[0]) == disk_tags(v2, disks[1]) == {"b": "2", "c": "3"}
    v2.call("UntagResources", resource_type="disk", resource_id=[disks[0]], all=True)
    assert disk_tags(v2, disks[0]) == {}
    assert disk_tags(v2, disks[1]) == {"b": "2", "c": "3"}
    err = v2.error("UntagResources", resource_type="disk", resource_id=[disks[1]])
    assert (err.code, err.status_code) == ("MissingParameter.Tags", 404)


def test_snapshot_tags_are_shared_with_describe_snapshots(v2: EcsV2, disks: list[str]) -> None:
    snapshot_id = v2.call("CreateSnapshot", disk_id=disks[0]).snapshot_id
    v2.wait_snapshot(snapshot_id)
    marker = uuid.uuid4().hex[:12]
    v2.call(
        "TagResources",
        resource_type="snapshot",
        resource_id=[snapshot_id],
        tag=[tag("snap", marker)],
    )
    found = v2.call(
        "DescribeSnapshots", tag=[models.DescribeSnapshotsRequestTag(key="snap", value=marker)]
    ).snapshots.snapshot
    assert [s.snapshot_id for s in found] == [snapshot_id]
    assert [(t.tag_key, t.tag_value) for t in found[0].tags.tag] == [("snap", marker)]
    rows = v2.call("ListTagResources", resource_type="snapshot", resource_id=[snapshot_id])
    assert [(t.resource_type, t.tag_value) for t in rows.tag_resources.tag_resource] == [
        ("snapshot", marker)
    ]
    v2.call("DeleteSnapshot", snapshot_id=snapshot_id)


def test_a_resource_carries_at_most_twenty_tags_and_a_refusal_changes_nothing(
    v2: EcsV2, disks: list[str]
) -> None:
    tag_disks(v2, disks[:1], *[(f"k{n}", "v") for n in range(19)])
    err = v2.error(
        "TagResources",
        resource_type="disk",
        resource_id=disks[:2],
        tag=[tag("x", "1"), tag("y", "2")],
    )
    assert (err.code, err.status_code) == ("OperationDenied.QuotaExceed", 400)
    assert len(disk_tags(v2, disks[0])) == 19 and disk_tags(v2, disks[1]) == {}
    tag_disks(v2, disks[:1], ("k0", "replaced"), ("x", "1"))  # 20: still allowed
    assert len(disk_tags(v2, disks[0])) == 20


@pytest.mark.parametrize(
    ("tags", "code"),
    [
        ([tag("a", "1"), tag("a", "2")], "Duplicate.TagKey"),
        ([tag("aliyun-owned", "1")], "InvalidTagKey.Malformed"),
        ([tag("acs:owned", "1")], "InvalidTagKey.Malformed"),
        ([tag("see http://x", "1")], "InvalidTagKey.Malformed"),
        ([tag("k" * 129, "1")], "InvalidTagKey.Malformed"),
        ([tag("", "1")], "InvalidTag.Mismatch"),
        ([tag(None, "1")], "InvalidTag.Mismatch"),
        ([tag("k", "https://x")], "InvalidTagValue.Malformed"),
        ([tag("k", "acs:x")], "InvalidTagValue.Malformed"),
        ([tag("k", "v" * 129)], "InvalidTagValue.Malformed"),
        ([tag(f"k{n}", "v") for n in range(21)], "NumberExceed.Tags"),
        ([], "MissingParameter.Tags"),
    ],
)
def test_tag_resources_refuses_bad_tags(
    v2: EcsV2, disks: list[str], tags: list[Any], code: str
) -> None:
    err = v2.error("TagResources", resource_type="disk", resource_id=disks[:1], tag=tags)
    assert err.code == code
    assert disk_tags(v2, disks[0]) == {}


@pytest.mark.parametrize(
    ("fields", "code", "status"),
    [
        (
            {"resource_type": "disk", "resource_id": ["d-doesnotexist"]},
            "InvalidResourceId.NotFound",
            404,
        ),
        ({"resource_type": "bucket", "resource_id": ["d-x"]}, "InvalidResourceType.NotFound", 404),
        (
            {"resource_type": "instance", "resource_id": ["i-x"]},
            "InvalidResourceId.NotSupported",
            403,
        ),
        ({"resource_id": ["d-x"]}, "MissingParameter.ResourceType", 404),
        ({"resource_type": "disk"}, "MissingParameter", 400),
        (
            {"resource_type": "disk", "resource_id": [f"d-{n}" for n in range(51)]},
            "NumberExceed.ResourceIds",
            400,
        ),
    ],
)
def test_tag_resources_refuses_bad_resources(
    v2: EcsV2, fields: dict[str, Any], code: str, status: int
) -> None:
    err = v2.error("TagResources", tag=[tag("k", "v")], **fields)
    assert (err.code, err.status_code) == (code, status)


def test_tagging_stops_at_an_unknown_id_without_tagging_the_others(
    v2: EcsV2, disks: list[str]
) -> None:
    err = v2.error(
        "TagResources",
        resource_type="disk",
        resource_id=[disks[0], "d-doesnotexist"],
        tag=[tag("k", "v")],
    )
    assert err.code == "InvalidResourceId.NotFound" and "d-doesnotexist" in str(err.message)
    assert disk_tags(v2, disks[0]) == {}


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({}, "MissingParameter"),
        ({"tag": [models.ListTagResourcesRequestTag(value="v")]}, "InvalidParameter.TagValue"),
        (
            {
                "tag": [models.ListTagResourcesRequestTag(key="k")],
                "tag_filter": [models.ListTagResourcesRequestTagFilter(tag_key="k")],
            },
            "InvalidParameter",
        ),
    ],
)
def test_list_tag_resources_needs_one_way_to_choose(
    v2: EcsV2, fields: dict[str, Any], code: str
) -> None:
    assert v2.error("ListTagResources", resource_type="disk", **fields).code == code


def test_list_tag_resources_of_a_type_without_emulated_resources_is_empty(v2: EcsV2) -> None:
    rows = v2.call("ListTagResources", resource_type="instance", resource_id=["i-x"])
    assert rows.tag_resources.tag_resource == []


def test_add_remove_and_describe_tags(v2: EcsV2, disks: list[str]) -> None:
    marker = uuid.uuid4().hex[:12]
    for disk_id in disks[:2]:
        v2.call(
            "AddTags",
            resource_type="disk",
            resource_id=disk_id,
            tag=[
                models.AddTagsRequestTag(key="owner", value=marker),
                models.AddTagsRequestTag(key="tier", value="gold"),
            ],
        )
    described = v2.call(
        "DescribeTags",
        resource_type="disk",
        tag=[models.DescribeTagsRequestTag(key="owner", value=marker)],
    )
    assert [(t.tag_key, t.tag_value) for t in described.tags.tag] == [("owner", marker)]
    assert described.tags.tag[0].resource_type_count.disk == 2
    assert described.tags.tag[0].resource_type_count.snapshot == 0
    assert (described.total_count, described.page_size) == (1, 50)
    one = v2.call("DescribeTags", resource_type="disk", resource_id=disks[0])
    assert {(t.tag_key, t.tag_value) for t in one.tags.tag} == {("owner", marker), ("tier", "gold")}
    system = v2.call("DescribeTags", resource_type="disk", resource_id=disks[0], category="System")
    assert system.tags.tag == []

    def remove(**tags: str | None) -> None:
        v2.call(
            "RemoveTags",
            resource_type="disk",
            resource_id=disks[0],
            tag=[models.RemoveTagsRequestTag(key=k, value=v) for k, v in tags.items()],
        )

    remove(tier="silver")  # the value must match too: nothing removed
    assert disk_tags(v2, disks[0]) == {"owner": marker, "tier": "gold"}
    remove(tier=None)
    assert disk_tags(v2, disks[0]) == {"owner": marker}
    v2.call("RemoveTags", resource_type="disk", resource_id=disks[1])  # no Tag.N: every tag
    assert disk_tags(v2, disks[1]) == {}

    err = v2.error(
        "AddTags",
        resource_type="disk",
        resource_id="d-doesnotexist",
        tag=[models.AddTagsRequestTag(key="k", value="v")],
    )
    assert (err.code, err.status_code) == ("InvalidResourceId.NotFound", 404)
    err = v2.error("DescribeTags", resource_id=disks[0])
    assert err.code == "MissingParameter.ResourceType"


def test_v1_clients_tag_and_list_too(ecs: Ecs) -> None:
    disk_id = ecs.create_available(DiskCategory="cloud_essd", PerformanceLevel="PL0", Size=1)
    ecs.call(
        "TagResources",
        ResourceType="disk",
        ResourceIds=[disk_id],
        Tags=[{"Key": "via", "Value": "v1"}],
    )
    rows = ecs.call("ListTagResources", ResourceType="disk", ResourceIds=[disk_id])
    assert rows["TagResources"]["TagResource"] == [
        {"ResourceId": disk_id, "ResourceType": "disk", "TagKey": "via", "TagValue": "v1"}
    ]
    assert ecs.disk(disk_id)["Tags"]["Tag"] == [{"TagKey": "via", "TagValue": "v1"}]
    ecs.call("UntagResources", ResourceType="disk", ResourceIds=[disk_id], TagKeys=["via"])
    assert ecs.call("DescribeDisks", DiskIds=json.dumps([disk_id]))["Disks"]["Disk"][0]["Tags"] == {
        "Tag": []
    }
    ecs.call("DeleteDisk", DiskId=disk_id)
