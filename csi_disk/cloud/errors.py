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
    """A request this driver should never have sent (a bug here): INTERNAL."""


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
    # AttachDisk's other answers for a disk that is not Available (ECS's AttachDisk page).
    "DiskError": EcsFailedPrecondition,
    "DiskId.StatusNotSupported": EcsFailedPrecondition,
    "InvalidDisk.InUse": EcsFailedPrecondition,
    "ResourcesNotInSameZone": EcsFailedPrecondition,
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
    # A spec change the disk already has: a racing call made it; the retry finds it done.
    "NoChangeInDiskCategoryAndPerformanceLevel": EcsAborted,
    "ServiceUnavailable": EcsServiceUnavailable,
    "InternalError": EcsUnavailable,
    "UnknownError": EcsUnavailable,
    # The same signed request seen twice (a resend below the SDK): each attempt signs anew.
    "SignatureNonceUsed": EcsUnavailable,
    "InvalidSecurityToken.Expired": EcsCredentialsExpired,
    "SignatureDoesNotMatch": EcsPermissionDenied,
    # ECS's gateway answers this too for a secret that does not sign right.
    "IncompleteSignature": EcsPermissionDenied,
    "InvalidAccessKeySecret": EcsPermissionDenied,
    # The node's clock is off by more than ECS's window: an operator has to fix it.
    "InvalidTimeStamp.Expired": EcsFailedPrecondition,
    "MissingParameter": EcsInvalidArgument,
    # An API the endpoint does not serve: --ecs-endpoint names something else than ECS.
    "InvalidAction.NotFound": EcsFailedPrecondition,
    "InvalidParameter": EcsInvalidArgument,
    # Refusals of what the volume is: its type, its multi-attach, where it is attached.
    "OperationDenied": EcsFailedPrecondition,
    "InvalidOperation.MultiAttachDisabled": EcsFailedPrecondition,
    "SnapshotCreatedDisk": EcsFailedPrecondition,
    "InvalidOperation.MultiAttachDisk": EcsInvalidArgument,
    "InvalidInstanceType.NotSupportDiskCategory": EcsInvalidArgument,
    "OperationDenied.QuotaExceed": EcsResourceExhausted,
    "Duplicate.TagKey": EcsInvalidArgument,
    "InvalidResourceId.NotSupported": EcsInvalidArgument,
    "InvalidTag.Mismatch": EcsInvalidArgument,
    "EventIdLimitExceeded": EcsInvalidArgument,
    # Requests the driver forms wrong, whatever the caller asked: a bug here.
    "InvalidVersion": EcsInternal,
    "UnsupportedHTTPMethod": EcsInternal,
    "InvalidTimeStamp.Format": EcsInternal,
    "DryRunOperation": EcsInternal,
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
        ("MissingParameter", EcsInvalidArgument),
        ("NumberExceed.", EcsInvalidArgument),
    ],
    key=lambda item: len(item[0]),
    reverse=True,
)


# Codes whose meaning depends on the call. An instance family that cannot attach the disk's
# category is the node's condition at AttachDisk (no retry changes it), but a spec change
# no volume of its kind can have at ModifyDiskSpec (the resizer marks it infeasible).
_BY_ACTION: dict[tuple[str, str], type[EcsError]] = {
    ("AttachDisk", "InvalidInstanceType.NotSupportDiskCategory"): EcsFailedPrecondition,
}


def class_for_code(ecs_code: str, http_status: int | None = None) -> type[EcsError]:
    """The domain class an ECS error code means.

    A code not known here means what its HTTP status says: ECS answers 400 for a parameter
    it refuses and 403 for an operation the resource's state does not allow; any other 4xx
    is a refusal an operator has to look at, never NOT_FOUND (which DeleteVolume would take
    for "deleted already"). 5xx is ``from_ecs_code``'s. Without a status, ``EcsInternal``.
    """
    if ecs_code in _EXACT:
        return _EXACT[ecs_code]
    for prefix, cls in _PREFIXES:
        if ecs_code.startswith(prefix):
            return cls
    if ecs_code.startswith("Invalid") and ecs_code.endswith(".NotFound"):
        return EcsNotFound
    if ecs_code.endswith(".Malformed"):
        return EcsInvalidArgument
    if http_status == 429:
        return EcsThrottled
    if http_status == 400 and not ecs_code.startswith("SDK."):
        return EcsInvalidArgument
    if http_status is not None and 400 <= http_status < 500:
        return EcsFailedPrecondition
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
    cls = _BY_ACTION.get((action, ecs_code)) or class_for_code(ecs_code, http_status)
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
    if ecs_code in ("SignatureDoesNotMatch", "IncompleteSignature"):
        # ECS echoes the whole string-to-sign (with the access key id) in this message.
        message = "the request signature does not match: check the access key secret"
    elif ecs_code.startswith("SDK.") and http_status is not None:
        # No ECS error in the body (an HTML page from a proxy, or nothing): its text says
        # nothing useful and may be long.
        message = f"the endpoint answered HTTP {http_status} without an ECS error"
    text = f"ECS {action or 'call'} failed: {ecs_code}: {message}"
    return cls(
        text, ecs_code=ecs_code, request_id=request_id, http_status=http_status, action=action
    )


# What the SDK raises before any answer from ECS (ClientException codes but SDK.HttpError,
# which the adapter reads itself), and whether the request can have reached ECS.
_SDK_CODES: dict[str, tuple[type[EcsError], bool]] = {
    # The region or endpoint cannot be resolved: a configuration to fix, nothing was sent.
    "SDK.InvalidRegionId": (EcsFailedPrecondition, True),
    "SDK.EndpointResolvingError": (EcsFailedPrecondition, True),
    "SDK.MissingEndpointsFiler": (EcsFailedPrecondition, True),
    "SDK.EndpointTestability": (EcsFailedPrecondition, True),
    "SDK.ServerUnreachable": (EcsUnavailable, True),
    # Credentials the SDK could not obtain or use.
    "SDK.InvalidCredential": (EcsPermissionDenied, True),
    "SDK.GetSessionCredentialFailed": (EcsUnavailable, True),
    "SDK.InvalidSessionExpiration": (EcsUnavailable, True),
    # A request this driver built wrong: a bug here.
    "SDK.InvalidRequest": (EcsInternal, True),
    "SDK.InvalidParams": (EcsInternal, True),
    "SDK.InvalidParameter": (EcsInternal, True),
    "SDK.NotSupport": (EcsInternal, True),
}


def from_sdk_code(sdk_code: str, message: str, *, action: str = "") -> EcsError:
    """Build the domain error for a failure the SDK reports before ECS answers. A code not
    known here may come from anywhere in the SDK: retried as unavailable, not as sent."""
    cls, not_sent = _SDK_CODES.get(sdk_code, (EcsUnavailable, False))
    error = cls(f"ECS {action or 'call'} failed in the SDK: {sdk_code}: {message}",
                ecs_code=sdk_code, action=action)  # fmt: skip
    error.not_applied = not_sent
    return error


def unreadable_answer(action: str, what: str) -> EcsError:
    """An answer the SDK or the adapter could not read (a body that is not ECS's JSON, or
    the SDK failing while parsing an error): ECS may have acted, so only calls that are
    safe to repeat are retried."""
    return EcsUnavailable(f"ECS {action} failed: {what}", action=action)


def is_retryable(err: BaseException) -> bool:
    return isinstance(err, EcsError) and err.retryable


def is_unsupported_here(err: BaseException) -> bool:
    return isinstance(err, EcsError) and err.unsupported_here


# --- what a refusal says about the state the caller assumed ------------------------------
# Attach, detach and delete ask ECS first and describe only when it refuses; these say what
# a refusal means, so handlers never match ECS codes themselves.


def _code(err: BaseException) -> str:
    return err.ecs_code if isinstance(err, EcsError) else ""


# Besides IncorrectDiskStatus and its variants, what AttachDisk answers for a disk that is
# not Available: "DiskError" (message "IncorrectDiskStatus."), DiskId.StatusNotSupported,
# and InvalidDisk.InUse (the disk is attached already).
_DISK_STATUS_REFUSALS = frozenset({"DiskError", "DiskId.StatusNotSupported", "InvalidDisk.InUse"})


def refused_for_disk_status(err: BaseException) -> bool:
    """The disk's status does not allow the call now: attached, creating or in transition."""
    code = _code(err)
    return code.startswith("IncorrectDiskStatus") or code in _DISK_STATUS_REFUSALS


def says_not_attached(err: BaseException) -> bool:
    """DetachDisk: the disk is not attached to that instance."""
    return _code(err) == "DependencyViolation"


def names_missing_instance(err: BaseException) -> bool:
    return _code(err) == "InvalidInstanceId.NotFound"


def says_instance_changed(err: BaseException) -> bool:
    """The instance is not what an earlier look at it showed: gone, or in another status."""
    code = _code(err)
    return code == "InvalidInstanceId.NotFound" or code.startswith("IncorrectInstanceStatus")


def says_other_zone(err: BaseException) -> bool:
    return _code(err) == "ResourcesNotInSameZone"
