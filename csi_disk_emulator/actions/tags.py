"""Tag actions: TagResources, UntagResources, ListTagResources (the API current SDKs use) and
the older AddTags, RemoveTags, DescribeTags.

Tags live on the resource rows, the same list CreateDisk/CreateSnapshot ``Tag.N`` fill and
DescribeDisks/DescribeSnapshots show, so a tag is visible everywhere whichever API set it.
Disks and snapshots carry tags; other ECS resource types are known by name but the emulator
has none of them to tag.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import TYPE_CHECKING, Any

from csi_disk_emulator.actions import MAX_INDEX, Params, action
from csi_disk_emulator.actions.paging import Paging
from csi_disk_emulator.errors import CATALOGUE, EcsError, invalid_parameter, missing_parameter

if TYPE_CHECKING:
    from csi_disk_emulator.cloud import Cloud

CATALOGUE.update(
    {
        "MissingParameter.ResourceType": (404, "The parameter - ResourceType should not be null"),
        "MissingParameter.Tags": (404, "The parameter - Tags should not be null"),
        "NumberExceed.ResourceIds": (
            400,
            "The ResourceIds parameter's number is exceed , Valid : 50",
        ),
        "NumberExceed.Tags": (400, "The Tags parameter's number is exceed , Valid : 20"),
        "Duplicate.TagKey": (400, "The Tag.N.Key contain duplicate key."),
        "InvalidResourceId.NotFound": (
            404,
            "The specified ResourceIds are not found in our records.",
        ),
        "InvalidResourceType.NotFound": (
            404,
            "The ResourceType provided does not exist in our records.",
        ),
        "InvalidResourceId.NotSupported": (
            403,
            "The specified ResourceId does not support tagging.",
        ),
        "InvalidTagKey.Malformed": (400, "The specified Tag.n.Key is not valid."),
        "InvalidTagValue.Malformed": (400, "The specified Tag.n.Value is not valid."),
        "InvalidTag.Mismatch": (400, "The specified Tag.n.Key and Tag.n.Value are not match."),
        "InvalidParameter.TagValue": (400, "The specified Tag.n.Value needs a Tag.n.Key."),
        "OperationDenied.QuotaExceed": (
            400,
            "The quota of tags on resource is beyond permitted range.",
        ),
    }
)

# Resource types ECS tags (TagResources and ListTagResources take them all).
RESOURCE_TYPES = (
    "instance",
    "disk",
    "snapshot",
    "image",
    "securitygroup",
    "volume",
    "eni",
    "ddh",
    "ddhcluster",
    "keypair",
    "launchtemplate",
    "reservedinstance",
    "snapshotpolicy",
    "elasticityassurance",
    "capacityreservation",
    "command",
    "invocation",
    "activation",
    "managedinstance",
)
# The emulated ones, with the queries that read and write their tag lists.
_READ = {
    "disk": "SELECT id, tags FROM disks ORDER BY seq",
    "snapshot": "SELECT id, tags FROM snapshots ORDER BY seq",
}
_WRITE = {
    "disk": "UPDATE disks SET tags=? WHERE id=?",
    "snapshot": "UPDATE snapshots SET tags=? WHERE id=?",
}
# DescribeTags counts resources per type under these names.
COUNT_NAMES = {
    "ddh": "Ddh",
    "disk": "Disk",
    "eni": "Eni",
    "image": "Image",
    "instance": "Instance",
    "keypair": "KeyPair",
    "launchtemplate": "LaunchTemplate",
    "reservedinstance": "ReservedInstance",
    "securitygroup": "Securitygroup",
    "snapshot": "Snapshot",
    "snapshotpolicy": "SnapshotPolicy",
    "volume": "Volume",
}
MAX_TAGS = 20  # per resource, and per request
MAX_RESOURCES = 50  # per TagResources, UntagResources or ListTagResources request
MAX_TAG_FILTERS = 5
LIST_PAGE = 50  # entries per ListTagResources page
TAG_LENGTH = 128

Tags = list[dict[str, str]]  # [{"TagKey": ..., "TagValue": ...}] as the resource rows keep it


def _resource_type(p: Params, emulated: bool) -> str:
    """The checked ResourceType. ``emulated``: it must be a type the emulator keeps tags
    on (writes); reads of other known types simply find nothing."""
    kind = p.str("ResourceType")
    if not kind:
        raise EcsError("MissingParameter.ResourceType")
    if kind not in RESOURCE_TYPES:
        raise EcsError("InvalidResourceType.NotFound")
    if emulated and kind not in _READ:
        raise EcsError(
            "InvalidResourceId.NotSupported",
            f"The emulator keeps tags on disks and snapshots only, not on {kind} resources.",
        )
    return kind


def _resource_ids(p: Params, prefix: str, required: bool) -> list[str]:
    ids = p.numbered(prefix, limit=MAX_INDEX)
    if len(ids) > MAX_RESOURCES:
        raise EcsError("NumberExceed.ResourceIds")
    if required and not ids:
        raise missing_parameter(f"{prefix}.N")
    return list(dict.fromkeys(ids))


def _new_tags(p: Params) -> list[tuple[str, str]]:
    """``Tag.N.Key``/``Tag.N.Value`` to add, checked as ECS checks them."""
    given = p.indexed("Tag", ("Key", "Value"), limit=MAX_INDEX)
    if not given:
        raise EcsError("MissingParameter.Tags")
    if len(given) > MAX_TAGS:
        raise EcsError("NumberExceed.Tags")
    pairs: list[tuple[str, str]] = []
    for tag in given:
        key = tag.get("Key", "")
        value = tag.get("Value", "")
        if not key:
            raise EcsError("InvalidTag.Mismatch" if "Value" in tag else "InvalidTagKey.Malformed")
        if len(key) > TAG_LENGTH or key.startswith(("aliyun", "acs:")) or _has_url(key):
            raise EcsError(
                "InvalidTagKey.Malformed",
                f"The tag key {key[:40]!r} is not valid: at most {TAG_LENGTH} characters, not "
                "starting with aliyun or acs:, without http:// or https://.",
            )
        if len(value) > TAG_LENGTH or value.startswith("acs:") or _has_url(value):
            raise EcsError(
                "InvalidTagValue.Malformed",
                f"The value of tag {key[:40]!r} is not valid: at most {TAG_LENGTH} characters, "
                "not starting with acs:, without http:// or https://.",
            )
        if any(key == k for k, _ in pairs):
            raise EcsError("Duplicate.TagKey")
        pairs.append((key, value))
    return pairs


def _has_url(text: str) -> bool:
    return "http://" in text or "https://" in text


def _rows(db: sqlite3.Connection, kind: str) -> list[tuple[str, Tags]]:
    """Every resource of ``kind`` with its tags, oldest first; none for types not emulated."""
    query = _READ.get(kind)
    if query is None:
        return []
    return [(r["id"], list(json.loads(r["tags"]))) for r in db.execute(query).fetchall()]


def _existing(db: sqlite3.Connection, kind: str, ids: list[str]) -> dict[str, Tags]:
    """The tags of each of ``ids``; every one must exist."""
    wanted = set(ids)
    found = {rid: tags for rid, tags in _rows(db, kind) if rid in wanted}
    missing = [rid for rid in ids if rid not in found]
    if missing:
        raise EcsError(
            "InvalidResourceId.NotFound",
            f"The specified ResourceIds are not found in our records: {', '.join(missing)[:200]}.",
        )
    return found


def _store(db: sqlite3.Connection, kind: str, resource_id: str, tags: Tags) -> None:
    db.execute(_WRITE[kind], (json.dumps(tags), resource_id))


def _merged(tags: Tags, pairs: list[tuple[str, str]]) -> Tags:
    """``tags`` with ``pairs`` set (an existing key takes the new value); at most 20."""
    merged = {t["TagKey"]: t["TagValue"] for t in tags}
    merged.update(pairs)
    if len(merged) > MAX_TAGS:
        raise EcsError(
            "OperationDenied.QuotaExceed",
            f"A resource carries at most {MAX_TAGS} tags; this would make {len(merged)}.",
        )
    return [{"TagKey": k, "TagValue": v} for k, v in merged.items()]


def _add(cloud: Cloud, kind: str, ids: list[str], pairs: list[tuple[str, str]]) -> None:
    with cloud.store.tx() as db:
        found = _existing(db, kind, ids)
        updated = {rid: _merged(found[rid], pairs) for rid in ids}
        for rid, tags in updated.items():
            _store(db, kind, rid, tags)


@action(
    "TagResources",
    params=("ResourceType",),
    patterns=(r"ResourceId\.\d+", r"Tag\.\d+\.(Key|Value)"),
)
def tag_resources(cloud: Cloud, p: Params) -> dict[str, Any]:
    kind = _resource_type(p, emulated=True)
    ids = _resource_ids(p, "ResourceId", required=True)
    _add(cloud, kind, ids, _new_tags(p))
    return {}


@action(
    "UntagResources",
    params=("ResourceType", "All"),
    patterns=(r"ResourceId\.\d+", r"TagKey\.\d+"),
)
def untag_resources(cloud: Cloud, p: Params) -> dict[str, Any]:
    kind = _resource_type(p, emulated=True)
    ids = _resource_ids(p, "ResourceId", required=True)
    keys = p.numbered("TagKey", limit=MAX_INDEX)
    if len(keys) > MAX_TAGS:
        raise EcsError("NumberExceed.Tags")
    remove_all = p.bool("All")
    if not keys and not remove_all:
        raise EcsError("MissingParameter.Tags", "Give TagKey.N, or All=true to remove every tag.")
    with cloud.store.tx() as db:
        for rid, tags in _existing(db, kind, ids).items():
            kept = [] if not keys else [t for t in tags if t["TagKey"] not in keys]
            _store(db, kind, rid, kept)
    return {}


def _wildcard(pattern: str) -> re.Pattern[str]:
    """ECS's fuzzy tag match: ``*`` stands for any text (``env*``, ``*env*``), else exact."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def _tag_filters(p: Params) -> list[tuple[str, list[str]]]:
    """``TagFilter.N.TagKey`` with its ``TagFilter.N.TagValues.M``, ordered by N."""
    shape = re.compile(r"^TagFilter\.(\d+)\.(TagKey|TagValues\.(\d+))$")
    grouped: dict[int, tuple[str, dict[int, str]]] = {}
    for name, value in p.raw.items():
        match = shape.match(name)
        if not match:
            continue
        index = int(match.group(1))
        if not 1 <= index <= MAX_TAG_FILTERS:
            raise invalid_parameter(name, f"The index must be between 1 and {MAX_TAG_FILTERS}.")
        key, values = grouped.get(index, ("", {}))
        if match.group(3) is None:
            key = value
        else:
            position = int(match.group(3))
            if not 1 <= position <= MAX_TAG_FILTERS:
                raise invalid_parameter(name, f"At most {MAX_TAG_FILTERS} values per key.")
            values[position] = value
        grouped[index] = (key, values)
    filters = []
    for index in sorted(grouped):
        key, values = grouped[index]
        if not key:
            raise missing_parameter(f"TagFilter.{index}.TagKey")
        filters.append((key, [values[i] for i in sorted(values)]))
    return filters


def _matches_filter(tags: Tags, key: str, values: list[str]) -> bool:
    if not values:
        wanted = _wildcard(key)
        return any(wanted.fullmatch(t["TagKey"]) for t in tags)
    patterns = [_wildcard(v) for v in values]
    return any(
        t["TagKey"] == key and any(v.fullmatch(t["TagValue"]) for v in patterns) for t in tags
    )


def _matches_pairs(tags: Tags, wanted: list[dict[str, str]]) -> bool:
    have = {t["TagKey"]: t["TagValue"] for t in tags}
    return all(
        w["Key"] in have and ("Value" not in w or have[w["Key"]] == w["Value"]) for w in wanted
    )


@action(
    "ListTagResources",
    params=("ResourceType", "NextToken"),
    patterns=(
        r"ResourceId\.\d+",
        r"Tag\.\d+\.(Key|Value)",
        r"TagFilter\.\d+\.(TagKey|TagValues\.\d+)",
    ),
)
def list_tag_resources(cloud: Cloud, p: Params) -> dict[str, Any]:
    kind = _resource_type(p, emulated=False)
    ids = set(_resource_ids(p, "ResourceId", required=False))
    pairs = p.indexed("Tag", ("Key", "Value"), limit=MAX_TAGS)
    if any("Key" not in t or not t["Key"] for t in pairs):
        raise EcsError("InvalidParameter.TagValue")
    filters = _tag_filters(p)
    if pairs and filters:
        raise invalid_parameter("TagFilter.N", "It cannot be used together with Tag.N.")
    if not (ids or pairs or filters):
        raise EcsError(
            "MissingParameter", "Give at least one of ResourceId.N, Tag.N or TagFilter.N."
        )
    start = 0
    if p.str("NextToken"):
        try:
            start = int(p.str("NextToken"), 16)
        except ValueError:
            raise invalid_parameter("NextToken") from None
    with cloud.store.tx() as db:
        rows = _rows(db, kind)
    entries = [
        {"ResourceId": rid, "ResourceType": kind, "TagKey": t["TagKey"], "TagValue": t["TagValue"]}
        for rid, tags in rows
        if (not ids or rid in ids)
        and _matches_pairs(tags, pairs)
        and all(_matches_filter(tags, key, values) for key, values in filters)
        for t in tags
    ]
    page = entries[start : start + LIST_PAGE]
    more = start + LIST_PAGE < len(entries)
    return {
        "NextToken": format(start + LIST_PAGE, "x") if more else "",
        "TagResources": {"TagResource": page},
    }


def _single_resource(p: Params) -> str:
    resource_id = p.str("ResourceId")
    if not resource_id:
        raise missing_parameter("ResourceId")
    return resource_id


@action("AddTags", params=("ResourceType", "ResourceId"), patterns=(r"Tag\.\d+\.(Key|Value)",))
def add_tags(cloud: Cloud, p: Params) -> dict[str, Any]:
    kind = _resource_type(p, emulated=True)
    _add(cloud, kind, [_single_resource(p)], _new_tags(p))
    return {}


@action("RemoveTags", params=("ResourceType", "ResourceId"), patterns=(r"Tag\.\d+\.(Key|Value)",))
def remove_tags(cloud: Cloud, p: Params) -> dict[str, Any]:
    """Remove the tags named (a Value given must match too); all of them when none is."""
    kind = _resource_type(p, emulated=True)
    resource_id = _single_resource(p)
    given = p.indexed("Tag", ("Key", "Value"), limit=MAX_TAGS)
    with cloud.store.tx() as db:
        tags = _existing(db, kind, [resource_id])[resource_id]

        def removed(tag: dict[str, str]) -> bool:
            return any(
                g.get("Key") == tag["TagKey"] and g.get("Value", tag["TagValue"]) == tag["TagValue"]
                for g in given
            )

        kept = [] if not given else [t for t in tags if not removed(t)]
        _store(db, kind, resource_id, kept)
    return {}


@action(
    "DescribeTags",
    params=("ResourceType", "ResourceId", "Category", "PageNumber", "PageSize"),
    patterns=(r"Tag\.\d+\.(Key|Value)",),
)
def describe_tags(cloud: Cloud, p: Params) -> dict[str, Any]:
    """The distinct tags on resources, with how many resources of each type carry them."""
    kind = p.str("ResourceType")
    if kind and kind not in RESOURCE_TYPES:
        raise EcsError("InvalidResourceType.NotFound")
    resource_id = p.str("ResourceId")
    if resource_id and not kind:
        raise EcsError("MissingParameter.ResourceType")
    category = p.str("Category").lower()
    if category not in ("", "custom", "system"):
        raise invalid_parameter("Category", "It must be Custom or System.")
    wanted = p.indexed("Tag", ("Key", "Value"), limit=MAX_TAGS)
    paging = Paging.parse(p, default_page_size=50)
    counts: dict[tuple[str, str], dict[str, int]] = {}
    # The emulator's tags are all custom ones: none is a system tag.
    if category != "system":
        with cloud.store.tx() as db:
            for rtype in [kind] if kind else list(_READ):
                for rid, tags in _rows(db, rtype):
                    if resource_id and rid != resource_id:
                        continue
                    for tag in tags:
                        pair = (tag["TagKey"], tag["TagValue"])
                        if wanted and not any(
                            w.get("Key") == pair[0] and w.get("Value", pair[1]) == pair[1]
                            for w in wanted
                        ):
                            continue
                        per_type = counts.setdefault(pair, dict.fromkeys(COUNT_NAMES.values(), 0))
                        per_type[COUNT_NAMES[rtype]] += 1
    found = [
        (n, {"TagKey": k, "TagValue": v, "ResourceTypeCount": per_type})
        for n, ((k, v), per_type) in enumerate(counts.items(), 1)
    ]
    return paging.body(found, "Tags", "Tag")
