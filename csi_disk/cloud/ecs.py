"""The Cloud port implemented with Alibaba's ECS SDK (aliyun-python-sdk-core/-ecs).

Every call goes through ``EcsCloud._call``: the action's budget (``cloud.quotas``), a
signed request with the current credentials, our own retry policy (the SDK's is off: it
would retry on top of ours and put a random ClientToken on creates), error mapping to
domain errors, metrics. Nothing the SDK raises or logs leaves this module unscrubbed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.auth.signers.access_key_signer import AccessKeySigner
from aliyunsdkcore.auth.signers.sts_token_signer import StsTokenSigner
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import AcsRequest
from aliyunsdkecs.request.v20140526 import (
    AttachDiskRequest,
    CreateDiskRequest,
    CreateSnapshotRequest,
    DeleteDiskRequest,
    DeleteSnapshotRequest,
    DescribeAvailableResourceRequest,
    DescribeDisksRequest,
    DescribeInstancesRequest,
    DescribeInstanceTypesRequest,
    DescribeSnapshotsRequest,
    DetachDiskRequest,
    ModifyDiskAttributeRequest,
    ModifyDiskSpecRequest,
    ResizeDiskRequest,
)

from csi_disk.cloud import metrics
from csi_disk.cloud.credentials import CredentialProvider, Credentials, resolve_provider
from csi_disk.cloud.errors import (
    EcsError,
    EcsThrottled,
    EcsUnavailable,
    from_ecs_code,
    from_sdk_code,
    scrub,
    unreadable_answer,
)
from csi_disk.cloud.metadata import MetadataClient
from csi_disk.cloud.port import Disk, DiskOffer, DiskRequest, Instance, Page, Snapshot
from csi_disk.cloud.quotas import ApiQuotas, in_background
from csi_disk.cloud.retry import RetryPolicy, call_with_retry
from csi_disk.config import Config
from csi_disk.errors import DriverError, InvalidArgument

log = logging.getLogger(__name__)

BATCH = 100
SDK_LOGGER = "aliyunsdkcore"


# --- logging hygiene ---------------------------------------------------------------------


class ScrubFilter(logging.Filter):
    """Rewrites a record's message without URLs, signatures, keys or tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        if record.exc_info:
            # Tracebacks of SDK errors repeat the URL: keep only the scrubbed summary.
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_SCRUB_FILTER = ScrubFilter()


def quiet_sdk_logging() -> None:
    """SDK loggers silenced below CRITICAL, each with the scrub filter (filters do not inherit).

    The SDK logs an ERROR for every server error, including the ones we handle (Throttling,
    an expired token); every failure reaches our own log once, scrubbed, where we handle it.
    """
    logging.getLogger(SDK_LOGGER).setLevel(logging.CRITICAL)
    names = [SDK_LOGGER] + [
        name for name in list(logging.root.manager.loggerDict) if name.startswith(SDK_LOGGER + ".")
    ]
    for name in names:
        logger = logging.getLogger(name)
        if _SCRUB_FILTER not in logger.filters:
            logger.addFilter(_SCRUB_FILTER)


# --- SDK errors to domain errors ---------------------------------------------------------

_NOT_SENT_MARKERS = (
    "NewConnectionError",
    "ConnectTimeout",
    "Connection refused",
    "Failed to establish",
    "Name or service not known",
    "Temporary failure in name resolution",
    "nodename nor servname",
)


def _describe_http_error(raw: str) -> str:
    """What went wrong on the way to ECS, from the text requests/urllib3 put in the error.

    The text names the pool (``HTTPConnectionPool``) whichever phase failed, so "connect"
    alone does not tell a connect timeout from a read timeout.
    """
    lower = raw.lower()
    if "read timed out" in lower or "read timeout" in lower:
        return "read timed out"
    if "connecttimeout" in lower or "connect timeout" in lower:
        return "connect timed out"
    if "refused" in lower:
        return "connection refused"
    if "resolution" in lower or "not known" in lower or "servname" in lower:
        return "name resolution failed"
    if "ssl" in lower:
        return "TLS handshake failed"
    if "timed out" in lower:
        return "timed out"
    return "connection failed"


def _from_client_exception(err: ClientException, action: str) -> EcsError:
    code = str(err.get_error_code() or "")
    raw = str(err.get_error_msg() or "")
    if code == "SDK.HttpError":
        what = _describe_http_error(raw)
        error = EcsUnavailable(
            f"ECS {action} failed: endpoint unreachable ({what})", ecs_code=code, action=action
        )
        # A refused or unresolved connection never carried the request.
        error.not_applied = any(marker in raw for marker in _NOT_SENT_MARKERS)
        return error
    return from_sdk_code(code, raw, action=action)


def _from_server_exception(err: ServerException, action: str) -> EcsError:
    return from_ecs_code(
        str(err.get_error_code() or "Unknown"),
        str(err.get_error_msg() or ""),
        request_id=str(err.get_request_id() or ""),
        http_status=err.get_http_status(),
        action=action,
    )


# --- response mapping --------------------------------------------------------------------


def _items(container: Any, key: str) -> list[dict[str, Any]]:
    """``{"Disks": {"Disk": [...]}}``-style lists, tolerant of absent or null parts."""
    if not isinstance(container, dict):
        return []
    inner = container.get(key)
    if isinstance(inner, list):
        return [i for i in inner if isinstance(i, dict)]
    return []


def _tags(item: Mapping[str, Any]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for tag in _items(item.get("Tags"), "Tag"):
        key = tag.get("TagKey", tag.get("Key"))
        if key:
            tags[str(key)] = str(tag.get("TagValue", tag.get("Value", "")) or "")
    return tags


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("true", "enabled", "1")
    return bool(value)


def disk_from_item(item: Mapping[str, Any]) -> Disk:
    """One DescribeDisks item as a port Disk."""
    attachments = [
        str(a["InstanceId"])
        for a in _items(item.get("Attachments"), "Attachment")
        if a.get("InstanceId")
    ]
    if not attachments and item.get("InstanceId"):
        attachments = [str(item["InstanceId"])]
    return Disk(
        id=str(item.get("DiskId", "")),
        zone=str(item.get("ZoneId", "")),
        category=str(item.get("Category", "")),
        size_gib=_int(item.get("Size")),
        status=str(item.get("Status", "")),
        region=str(item.get("RegionId", "")),
        performance_level=str(item.get("PerformanceLevel") or ""),
        serial=str(item.get("SerialNumber") or ""),
        attachments=tuple(dict.fromkeys(attachments)),
        tags=_tags(item),
        multi_attach=str(item.get("MultiAttach", "")) == "Enabled",
        encrypted=_bool(item.get("Encrypted", False)),
        kms_key_id=str(item.get("KMSKeyId") or ""),
        snapshot_id=str(item.get("SourceSnapshotId") or ""),
        resource_group_id=str(item.get("ResourceGroupId") or ""),
        name=str(item.get("DiskName") or ""),
        description=str(item.get("Description") or ""),
        device=str(item.get("Device") or ""),
        delete_with_instance=_bool(item.get("DeleteWithInstance", False)),
        provisioned_iops=_int(item.get("ProvisionedIops")),
        bursting_enabled=_bool(item.get("BurstingEnabled", False)),
        creation_time=str(item.get("CreationTime") or ""),
    )


def instance_from_item(item: Mapping[str, Any]) -> Instance:
    return Instance(
        id=str(item.get("InstanceId", "")),
        zone=str(item.get("ZoneId", "")),
        status=str(item.get("Status", "")),
        instance_type=str(item.get("InstanceType") or ""),
        region=str(item.get("RegionId") or ""),
    )


def snapshot_from_item(item: Mapping[str, Any]) -> Snapshot:
    return Snapshot(
        id=str(item.get("SnapshotId", "")),
        source_disk_id=str(item.get("SourceDiskId") or ""),
        source_disk_size_gib=_int(item.get("SourceDiskSize")),
        status=str(item.get("Status", "")),
        progress=str(item.get("Progress") or ""),
        name=str(item.get("SnapshotName") or ""),
        creation_time=str(item.get("CreationTime") or ""),
        tags=_tags(item),
    )


def offers_from(data: Mapping[str, Any], destination: str = "DataDisk") -> list[DiskOffer]:
    """DescribeAvailableResource's answer as one DiskOffer per zone and category."""
    offers = []
    for zone in _items(data.get("AvailableZones"), "AvailableZone"):
        for resource in _items(zone.get("AvailableResources"), "AvailableResource"):
            if resource.get("Type") != destination:
                continue
            for item in _items(resource.get("SupportedResources"), "SupportedResource"):
                if not item.get("Value"):
                    continue
                offers.append(
                    DiskOffer(
                        zone=str(zone.get("ZoneId") or ""),
                        category=str(item["Value"]),
                        status=str(item.get("Status") or ""),
                        status_category=str(item.get("StatusCategory") or ""),
                        min_gib=_int(item.get("Min")),
                        max_gib=_int(item.get("Max")),
                    )
                )
    return offers


def _tag_list(tags: Mapping[str, str] | None) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())]


def _chunks(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _flag(value: bool) -> str:
    return "true" if value else "false"


# --- the client --------------------------------------------------------------------------


def _replaces(creds: Credentials, current: Credentials) -> bool:
    """True when ``creds`` should replace ``current``: different, and not older.

    A refresh never moves expiry back, so credentials expiring sooner are from before it.
    """
    if creds == current:
        return False
    older = (
        creds.expiration is not None
        and current.expiration is not None
        and creds.expiration < current.expiration
    )
    return not older


def parse_endpoint(endpoint: str) -> tuple[str, str]:
    """``http://127.0.0.1:8080`` -> ("127.0.0.1:8080", "http"); a bare host means https."""
    if not endpoint:
        return "", "https"
    if "://" not in endpoint:
        return endpoint.rstrip("/"), "https"
    parsed = urllib.parse.urlsplit(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidArgument("ECS endpoint must be host[:port] or an http(s) URL")
    return parsed.netloc, parsed.scheme


class EcsCloud:
    """``csi_disk.cloud.port.Cloud`` over the ECS OpenAPI."""

    def __init__(
        self,
        region: str,
        credentials: CredentialProvider,
        *,
        endpoint: str = "",
        quotas: ApiQuotas | None = None,
        retry_policy: RetryPolicy | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        pool_size: int = 128,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not region:
            raise InvalidArgument("ECS region is required")
        self.region = region
        self._credentials = credentials
        self._host, self._protocol = parse_endpoint(endpoint)
        self.quotas = quotas or ApiQuotas()
        self._policy = retry_policy or RetryPolicy()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool_size = pool_size
        self._sleep = sleep
        self._lock = threading.Lock()
        self._client: AcsClient | None = None
        self._client_creds: Credentials | None = None
        self._disk_quantity: dict[str, int | None] = {}
        quiet_sdk_logging()

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        credentials: CredentialProvider | None = None,
        metadata: MetadataClient | None = None,
        **kwargs: Any,
    ) -> EcsCloud:
        """The daemon's client: region from the config, else from the metadata service."""
        metadata = metadata or MetadataClient(config.metadata_endpoint)
        provider = credentials or resolve_provider(config, metadata=metadata)
        region = config.region or metadata.region_id()
        kwargs.setdefault("pool_size", max(10, config.workers))
        kwargs.setdefault("quotas", ApiQuotas.from_text(config.api_quotas))
        return cls(region, provider, endpoint=config.ecs_endpoint, **kwargs)

    # --- plumbing -----------------------------------------------------------------------

    def _acs_client(self, action: str) -> tuple[AcsClient, Credentials]:
        """The SDK client for the current credentials, rebuilt when they rotate.

        The provider is asked outside our lock (a refresh must not stall every call), so a
        caller may come back with credentials older than the client's: it then uses the
        client's newer ones instead of rebuilding the client over them. A provider that
        cannot supply credentials (metadata unreachable mid-refresh) is a retryable failure
        of a call that was never sent.
        """
        try:
            creds = self._credentials.get()
        except DriverError as err:
            error = EcsUnavailable(
                f"ECS {action} failed: no usable credentials: {err.message}", action=action
            )
            error.not_applied = True
            raise error from None
        with self._lock:
            client, current = self._client, self._client_creds
            if client is None or current is None or _replaces(creds, current):
                client, current = self._build_client(creds), creds
                self._client, self._client_creds = client, current
            return client, current

    def _build_client(self, creds: Credentials) -> AcsClient:
        client = AcsClient(
            ak=creds.access_key_id,
            secret=creds.access_key_secret,
            region_id=self.region,
            auto_retry=False,
            max_retry_time=0,
            connect_timeout=self._connect_timeout,
            timeout=self._read_timeout,
            pool_size=self._pool_size,
        )
        # Set the signer ourselves: the SDK's factory prefers ALIYUN_ACCESS_KEY_*
        # from the environment over the credential it is given.
        if creds.security_token:
            client._signer = StsTokenSigner(
                StsTokenCredential(
                    creds.access_key_id, creds.access_key_secret, creds.security_token
                )
            )
        else:
            client._signer = AccessKeySigner(client._signer._credential)
        return client

    def _send(self, action: str, build: Callable[[], AcsRequest]) -> dict[str, Any]:
        """One attempt: a fresh request (fresh nonce), signed with current credentials.

        An expired-token answer invalidates exactly the credentials this attempt used; a
        Throttling answer slows down this action's budget, any other answer ends its probing.
        """
        budget = self.quotas.budget(action)
        queued = time.monotonic()
        sent_at = budget.acquire(background=in_background())
        metrics.observe_budget_wait(action, sent_at - queued)
        request = build()
        if self._host:
            request.set_endpoint(self._host)
        request.set_protocol_type(self._protocol)
        request.set_connect_timeout(self._connect_timeout)
        request.set_read_timeout(self._read_timeout)
        client, creds = self._acs_client(action)
        started = time.monotonic()
        code = "OK"
        error: EcsError | None = None
        try:
            body = client.do_action_with_exception(request)
        except ServerException as err:
            error = _from_server_exception(err, action)
        except ClientException as err:
            error = _from_client_exception(err, action)
        except EcsError as err:
            error = err
        except Exception as err:  # the SDK failing to read an answer; its text may quote the URL
            what = f"the SDK could not read the answer ({type(err).__name__})"
            error = unreadable_answer(action, what)
        if error is not None:
            code = error.ecs_code or type(error).__name__
            throttled = isinstance(error, EcsThrottled)
            metrics.observe(action, code, time.monotonic() - started, throttled=throttled)
            if throttled:
                budget.throttled(sent_at)
            elif error.http_status is not None:
                budget.answered()
            if error.credentials_expired:
                self._credentials.invalidate(creds)
            raise error
        budget.answered()
        metrics.observe(action, code, time.monotonic() - started)
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            raise unreadable_answer(action, "the answer is not JSON") from None
        if not isinstance(data, dict):
            raise unreadable_answer(action, "the answer is not a JSON object")
        return data

    def _attempt(self, action: str, build: Callable[[], AcsRequest]) -> dict[str, Any]:
        """One attempt, repeated once with refreshed credentials if the STS token expired."""
        try:
            return self._send(action, build)
        except EcsError as err:
            if not err.credentials_expired:
                raise
            log.info("ECS reported expired credentials on %s; refreshing them", action)
            return self._send(action, build)

    def _call(
        self, action: str, build: Callable[[], AcsRequest], *, idempotent: bool
    ) -> dict[str, Any]:
        def on_retry(err: EcsError, retry: int, delay: float) -> None:
            log.info(
                "ECS %s failed with %s; retry %d in %.2fs",
                action,
                err.ecs_code or err.message,
                retry + 1,
                delay,
            )

        return call_with_retry(
            lambda: self._attempt(action, build),
            idempotent=idempotent,
            policy=self._policy,
            sleep=self._sleep,
            on_retry=on_retry,
        )

    # --- disks --------------------------------------------------------------------------

    def create_disk(self, request: DiskRequest) -> str:
        if not request.client_token:
            raise InvalidArgument("CreateDisk needs a client token for idempotency")

        def build() -> AcsRequest:
            r = CreateDiskRequest.CreateDiskRequest()
            r.set_ZoneId(request.zone)
            r.set_DiskCategory(request.category)
            r.set_Size(request.size_gib)
            r.set_ClientToken(request.client_token)
            if request.name:
                r.set_DiskName(request.name)
            if request.description:
                r.set_Description(request.description)
            if request.performance_level:
                r.set_PerformanceLevel(request.performance_level)
            if request.encrypted:
                r.set_Encrypted(_flag(True))
            if request.kms_key_id:
                r.set_KMSKeyId(request.kms_key_id)
            if request.resource_group_id:
                r.set_ResourceGroupId(request.resource_group_id)
            if request.tags:
                r.set_Tags(_tag_list(request.tags))
            if request.multi_attach:
                r.set_MultiAttach("Enabled")
            if request.snapshot_id:
                r.set_SnapshotId(request.snapshot_id)
            if request.provisioned_iops is not None:
                r.set_ProvisionedIops(request.provisioned_iops)
            if request.bursting_enabled is not None:
                r.set_BurstingEnabled(_flag(request.bursting_enabled))
            return r

        data = self._call("CreateDisk", build, idempotent=True)
        disk_id = data.get("DiskId")
        if not disk_id:
            raise unreadable_answer("CreateDisk", "the answer has no DiskId")
        return str(disk_id)

    def delete_disk(self, disk_id: str) -> None:
        def build() -> AcsRequest:
            r = DeleteDiskRequest.DeleteDiskRequest()
            r.set_DiskId(disk_id)
            return r

        self._call("DeleteDisk", build, idempotent=False)

    def describe_disks(self, disk_ids: Sequence[str]) -> list[Disk]:
        wanted = list(dict.fromkeys(i for i in disk_ids if i))
        found: list[Disk] = []
        for chunk in _chunks(wanted, BATCH):
            page_token = ""
            while True:
                page = self._describe_disks_page(disk_ids=chunk, page_token=page_token)
                found.extend(d for d in page.items if d.id in chunk)
                page_token = page.next_token
                if not page_token:
                    break
        return found

    def _describe_disks_page(
        self,
        *,
        disk_ids: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        zone: str = "",
        instance_id: str = "",
        page_token: str = "",
        max_results: int = BATCH,
        disk_type: str = "",
    ) -> Page[Disk]:
        def build() -> AcsRequest:
            r = DescribeDisksRequest.DescribeDisksRequest()
            if disk_ids is not None:
                r.set_DiskIds(json.dumps(list(disk_ids)))
            if disk_type:
                r.set_DiskType(disk_type)
            if tags:
                r.set_Tags(_tag_list(tags))
            if zone:
                r.set_ZoneId(zone)
            if instance_id:
                r.set_InstanceId(instance_id)
            if page_token:
                r.set_NextToken(page_token)
            r.set_MaxResults(max(1, min(max_results, BATCH)))
            return r

        data = self._call("DescribeDisks", build, idempotent=True)
        items = [disk_from_item(i) for i in _items(data.get("Disks"), "Disk")]
        return Page(items=items, next_token=str(data.get("NextToken") or ""))

    def find_disks(
        self,
        *,
        tags: Mapping[str, str] | None = None,
        zone: str = "",
        instance_id: str = "",
        page_token: str = "",
        max_results: int = 100,
    ) -> Page[Disk]:
        # Only data disks: a system disk is never a volume, and DiskQuantity counts data disks.
        return self._describe_disks_page(
            tags=tags,
            zone=zone,
            instance_id=instance_id,
            page_token=page_token,
            max_results=max_results,
            disk_type="data",
        )

    def attach_disk(self, disk_id: str, instance_id: str) -> None:
        def build() -> AcsRequest:
            r = AttachDiskRequest.AttachDiskRequest()
            r.set_DiskId(disk_id)
            r.set_InstanceId(instance_id)
            r.set_DeleteWithInstance(_flag(False))
            return r

        self._call("AttachDisk", build, idempotent=False)

    def detach_disk(self, disk_id: str, instance_id: str) -> None:
        def build() -> AcsRequest:
            r = DetachDiskRequest.DetachDiskRequest()
            r.set_DiskId(disk_id)
            r.set_InstanceId(instance_id)
            return r

        self._call("DetachDisk", build, idempotent=False)

    def resize_disk(self, disk_id: str, size_gib: int, *, online: bool) -> None:
        def build() -> AcsRequest:
            r = ResizeDiskRequest.ResizeDiskRequest()
            r.set_DiskId(disk_id)
            r.set_NewSize(size_gib)
            r.set_Type("online" if online else "offline")
            return r

        self._call("ResizeDisk", build, idempotent=False)

    def modify_disk_spec(
        self,
        disk_id: str,
        *,
        category: str = "",
        performance_level: str = "",
        provisioned_iops: int | None = None,
        bursting_enabled: bool | None = None,
    ) -> None:
        if category or performance_level or provisioned_iops is not None:

            def build() -> AcsRequest:
                r = ModifyDiskSpecRequest.ModifyDiskSpecRequest()
                r.set_DiskId(disk_id)
                if category:
                    r.set_DiskCategory(category)
                if performance_level:
                    r.set_PerformanceLevel(performance_level)
                if provisioned_iops is not None:
                    r.set_ProvisionedIops(provisioned_iops)
                return r

            try:
                self._call("ModifyDiskSpec", build, idempotent=False)
            except EcsError as err:
                # The disk already has this spec (a retry after a lost answer): done.
                if err.ecs_code != "NoChangeInDiskCategoryAndPerformanceLevel":
                    raise
        if bursting_enabled is not None:
            # Bursting is a disk attribute, not part of the spec.
            def build_attr() -> AcsRequest:
                r = ModifyDiskAttributeRequest.ModifyDiskAttributeRequest()
                r.set_DiskId(disk_id)
                r.set_BurstingEnabled(_flag(bursting_enabled))
                return r

            self._call("ModifyDiskAttribute", build_attr, idempotent=True)

    # --- instances ----------------------------------------------------------------------

    def describe_instance(self, instance_id: str) -> Instance | None:
        if not instance_id:
            return None

        def build() -> AcsRequest:
            r = DescribeInstancesRequest.DescribeInstancesRequest()
            r.set_InstanceIds(json.dumps([instance_id]))
            return r

        data = self._call("DescribeInstances", build, idempotent=True)
        for item in _items(data.get("Instances"), "Instance"):
            if item.get("InstanceId") == instance_id:
                return instance_from_item(item)
        return None

    def instance_disk_quantity(self, instance_type: str) -> int | None:
        if not instance_type:
            return None
        if instance_type in self._disk_quantity:
            return self._disk_quantity[instance_type]

        def build() -> AcsRequest:
            r = DescribeInstanceTypesRequest.DescribeInstanceTypesRequest()
            r.set_InstanceTypess([instance_type])
            return r

        data = self._call("DescribeInstanceTypes", build, idempotent=True)
        quantity: int | None = None
        for item in _items(data.get("InstanceTypes"), "InstanceType"):
            if item.get("InstanceTypeId") == instance_type and item.get("DiskQuantity"):
                quantity = _int(item.get("DiskQuantity")) or None
        self._disk_quantity[instance_type] = quantity
        return quantity

    def available_disks(
        self, *, zone: str = "", instance_type: str = "", regional: bool = False
    ) -> list[DiskOffer]:
        def build() -> AcsRequest:
            r = DescribeAvailableResourceRequest.DescribeAvailableResourceRequest()
            r.set_DestinationResource("DataDisk")
            r.set_ResourceType("disk")
            if regional:
                r.set_Scope("region")
            elif zone:
                r.set_ZoneId(zone)
            if instance_type:
                r.set_InstanceType(instance_type)
            return r

        data = self._call("DescribeAvailableResource", build, idempotent=True)
        offers = offers_from(data)
        if regional:
            return [o for o in offers if not o.zone]
        return [o for o in offers if o.zone and (not zone or o.zone == zone)]

    # --- snapshots ----------------------------------------------------------------------

    def create_snapshot(
        self,
        disk_id: str,
        *,
        name: str,
        client_token: str,
        tags: Mapping[str, str] | None = None,
        retention_days: int | None = None,
    ) -> str:
        def build() -> AcsRequest:
            r = CreateSnapshotRequest.CreateSnapshotRequest()
            r.set_DiskId(disk_id)
            r.set_SnapshotName(name)
            r.set_ClientToken(client_token)
            if tags:
                r.set_Tags(_tag_list(tags))
            if retention_days is not None:
                r.set_RetentionDays(retention_days)
            return r

        data = self._call("CreateSnapshot", build, idempotent=bool(client_token))
        snapshot_id = data.get("SnapshotId")
        if not snapshot_id:
            raise unreadable_answer("CreateSnapshot", "the answer has no SnapshotId")
        return str(snapshot_id)

    def delete_snapshot(self, snapshot_id: str, *, force: bool = False) -> None:
        def build() -> AcsRequest:
            r = DeleteSnapshotRequest.DeleteSnapshotRequest()
            r.set_SnapshotId(snapshot_id)
            if force:
                r.set_Force(_flag(True))
            return r

        self._call("DeleteSnapshot", build, idempotent=False)

    def describe_snapshots(
        self,
        *,
        snapshot_ids: Sequence[str] = (),
        disk_id: str = "",
        tags: Mapping[str, str] | None = None,
        page_token: str = "",
        max_results: int = 100,
    ) -> Page[Snapshot]:
        def build() -> AcsRequest:
            r = DescribeSnapshotsRequest.DescribeSnapshotsRequest()
            if snapshot_ids:
                r.set_SnapshotIds(json.dumps(list(snapshot_ids)))
            if disk_id:
                r.set_DiskId(disk_id)
            if tags:
                r.set_Tags(_tag_list(tags))
            if page_token:
                r.set_NextToken(page_token)
            r.set_MaxResults(max(10, min(max_results, BATCH)))
            return r

        data = self._call("DescribeSnapshots", build, idempotent=True)
        items = [snapshot_from_item(i) for i in _items(data.get("Snapshots"), "Snapshot")]
        if snapshot_ids:
            items = [s for s in items if s.id in snapshot_ids]
        return Page(items=items, next_token=str(data.get("NextToken") or ""))

    # --- readiness ----------------------------------------------------------------------

    def probe(self) -> None:
        """One cheap authenticated call; raises the mapped error when ECS is unusable."""

        def build() -> AcsRequest:
            r = DescribeDisksRequest.DescribeDisksRequest()
            r.set_DiskIds("[]")
            r.set_MaxResults(10)
            return r

        self._call("DescribeDisks", build, idempotent=True)
