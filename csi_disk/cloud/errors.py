"""ECS failures as domain errors, with messages safe to show anyone.

ECS answers with a string code (``InvalidDiskId.NotFound``); the driver decides on meaning
(retry, fall back to another category, report NOT_FOUND). This module is the one table from
ECS codes to meaning, so handlers never match ECS strings themselves.

The SDK puts signed URLs, string-to-sign text and tokens into its exception messages:
``scrub`` removes them, and every message stored on an ``EcsError`` has been scrubbed.
"""

from __future__ import annotations

from csi_disk.errors import (
    Aborted,
    AlreadyExists,
    DriverError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

# One scrubber serves the whole driver; ECS error text is where it matters most.
from csi_disk.scrubbing import register_secret, scrub  # noqa: F401 (re-exported)


class PermissionDenied(DriverError):
    """The credentials were refused: retrying will not help until an operator acts."""

    code = "PERMISSION_DENIED"


class EcsError(DriverError):
    """A failure ECS (or the way to it) reported.

    ``retryable``: trying again later may succeed. ``unsupported_here``: this category, size or
    performance level cannot be created in this zone now, so the caller may try the next one.
    ``not_applied``: the error proves ECS did not act on the call (throttled, refused before
    sending), so even a call that is not idempotent may be repeated.
    """

    retryable = False
    unsupported_here = False
    not_applied = False
    credentials_expired = False

    def __init__(
        self,
        message: str,
        *,
        ecs_code: str = "",
        request_id: str = "",
        http_status: int | None = None,
        action: str = "",
    ) -> None:
        super().__init__(scrub(message))
        self.ecs_code = ecs_code
        self.request_id = request_id
        self.http_status = http_status
        self.action = action


class EcsNotFound(EcsError, NotFound):
    pass


class EcsInvalidArgument(EcsError, InvalidArgument):
    pass


class EcsUnsupportedHere(EcsError, InvalidArgument):
    """Category, size or performance level not possible in this zone: try the next category."""

    unsupported_here = True


class EcsResourceExhausted(EcsError, ResourceExhausted):
    pass


class EcsNoStock(EcsResourceExhausted):
    """The zone has no capacity for this category now: try the next category."""

    unsupported_here = True


class EcsFailedPrecondition(EcsError, FailedPrecondition):
    pass


class EcsAlreadyExists(EcsError, AlreadyExists):
    pass


class EcsAborted(EcsError, Aborted):
    """A conflicting operation is in progress on the resource: retry later."""


class EcsUnavailable(EcsError, Unavailable):
    retryable = True


class EcsThrottled(EcsUnavailable):
    """ECS refused the call for rate: it did not act on it."""

    not_applied = True


class EcsServiceUnavailable(EcsUnavailable):
    """ECS answered that it is unavailable: it did not act on the call."""

    not_applied = True


class EcsCredentialsExpired(EcsError, Unavailable):
    """The STS token expired: refresh the credentials and retry once."""

    credentials_expired = True


class EcsPermissionDenied(EcsError, PermissionDenied):
    pass


class EcsInternal(EcsError):
    """An ECS code this driver does not know; the code is kept in the message."""


# Exact codes first, then prefixes (longest first), so InvalidAccessKeyId.NotFound is a
# permission problem and not a missing resource.
_EXACT: dict[str, type[EcsError]] = {
    "InvalidDiskId.NotFound": EcsNotFound,
    "InvalidInstanceId.NotFound": EcsNotFound,
    "InvalidSnapshotId.NotFound": EcsNotFound,
    "InvalidInstanceType.NotFound": EcsNotFound,
    # A zone is an argument of the call, not a resource the caller asked about: NOT_FOUND
    # from CreateVolume would mean a missing content source.
    "InvalidZoneId.NotFound": EcsInvalidArgument,
    "OperationDenied.NoStock": EcsNoStock,
    "Zone.NotOnSale": EcsNoStock,
    "InstanceDiskLimitExceeded": EcsResourceExhausted,
    "InvalidDiskCategory.NotSupported": EcsUnsupportedHere,
    "InvalidDataDiskCategory.NotSupported": EcsUnsupportedHere,
    "InvalidDiskSize.NotSupported": EcsUnsupportedHere,
    "IncorrectInstanceStatus": EcsFailedPrecondition,
    "ResourcesNotInSameZone": EcsFailedPrecondition,
    # The instance's family cannot attach the disk's category: no retry changes that.
    "InvalidInstanceType.NotSupportDiskCategory": EcsFailedPrecondition,
    "DependencyViolation": EcsFailedPrecondition,
    "IdempotentParameterMismatch": EcsAlreadyExists,
    "InvalidOperation.Conflict": EcsAborted,
    "LastTokenProcessing": EcsAborted,
    # A snapshot still uploading, or a spec change still cooling down: retry later.
    "InvalidSnapshot.NotReady": EcsAborted,
    "DiskInCoolingPeriod": EcsAborted,
    "DiskCreatingSnapshot": EcsAborted,
    "OperationDenied.PerformanceLevelNotMatch": EcsInvalidArgument,
    "InvalidDiskSize.TooSmall": EcsInvalidArgument,
    "IdempotentProcessing": EcsAborted,
    "ServiceUnavailable": EcsServiceUnavailable,
    "InternalError": EcsUnavailable,
    "UnknownError": EcsUnavailable,
    "InvalidSecurityToken.Expired": EcsCredentialsExpired,
    "SignatureDoesNotMatch": EcsPermissionDenied,
    "InvalidAccessKeySecret": EcsPermissionDenied,
    "MissingParameter": EcsInvalidArgument,
    # An API this endpoint does not serve is a driver/endpoint mismatch, not a missing disk.
    "InvalidAction.NotFound": EcsInternal,
    "InvalidParameter": EcsInvalidArgument,
}

_PREFIXES: list[tuple[str, type[EcsError]]] = sorted(
    [
        ("QuotaExceed", EcsResourceExhausted),
        ("InvalidPerformanceLevel.", EcsUnsupportedHere),
        ("InvalidDiskCategory.", EcsUnsupportedHere),
        ("InvalidDataDiskCategory.", EcsUnsupportedHere),
        ("InvalidDiskSize.", EcsUnsupportedHere),
        ("InvalidDataDiskSize.", EcsUnsupportedHere),
        ("IncorrectDiskStatus", EcsFailedPrecondition),
        ("IncorrectInstanceStatus", EcsFailedPrecondition),
        ("IncorrectSnapshotStatus", EcsFailedPrecondition),
        ("DependencyViolation", EcsFailedPrecondition),
        ("OperationConflict", EcsAborted),
        ("Throttling", EcsThrottled),
        ("Forbidden", EcsPermissionDenied),
        ("InvalidAccessKeyId", EcsPermissionDenied),
        ("InvalidSecurityToken", EcsPermissionDenied),
        ("NoPermission", EcsPermissionDenied),
        ("InvalidParameter", EcsInvalidArgument),
    ],
    key=lambda item: len(item[0]),
    reverse=True,
)


def class_for_code(ecs_code: str) -> type[EcsError]:
    """The domain class an ECS error code means (``EcsInternal`` when unknown)."""
    if ecs_code in _EXACT:
        return _EXACT[ecs_code]
    for prefix, cls in _PREFIXES:
        if ecs_code.startswith(prefix):
            return cls
    if ecs_code.startswith("Invalid") and ecs_code.endswith(".NotFound"):
        return EcsNotFound
    if ecs_code.endswith(".Malformed"):
        return EcsInvalidArgument
    return EcsInternal


def from_ecs_code(
    ecs_code: str,
    message: str,
    *,
    request_id: str = "",
    http_status: int | None = None,
    action: str = "",
) -> EcsError:
    """Build the domain error for an ECS error answer."""
    cls = class_for_code(ecs_code)
    if cls is EcsInternal and ecs_code not in _EXACT and (http_status or 0) >= 500:
        # A 5xx without a code ECS documents comes from a gateway or load balancer in front
        # of ECS (an HTML 502/503/504 page): transient, retried like InternalError. The page
        # itself says nothing useful and may be long.
        if ecs_code.startswith("SDK."):
            message = "the endpoint answered without an ECS error"
        text = f"ECS {action or 'call'} failed: HTTP {http_status}: {ecs_code}: {message}"
        return EcsUnavailable(
            text, ecs_code=ecs_code, request_id=request_id, http_status=http_status, action=action
        )
    if ecs_code == "SignatureDoesNotMatch":
        # ECS echoes the whole string-to-sign (with the access key id) in this message.
        message = "the request signature does not match: check the access key secret"
    text = f"ECS {action or 'call'} failed: {ecs_code}: {message}"
    return cls(
        text, ecs_code=ecs_code, request_id=request_id, http_status=http_status, action=action
    )


def is_retryable(err: BaseException) -> bool:
    return isinstance(err, EcsError) and err.retryable


def is_unsupported_here(err: BaseException) -> bool:
    return isinstance(err, EcsError) and err.unsupported_here

