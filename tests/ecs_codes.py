"""What each ECS error code means to the driver, stated apart from csi_disk.cloud.errors.

The fake cloud raises its errors from this table, and the mapping tests hold the driver's
own table to it through raw ECS answers (JSON envelopes through the real SDK): a wrong
mapping can no longer be wrong on both sides and pass. Every code the emulator can answer
has a line here; the HTTP status travels with it as ECS sends it (the emulator's catalogue).
"""

from __future__ import annotations

from csi_disk.cloud.errors import (
    EcsAborted,
    EcsAlreadyExists,
    EcsCredentialsExpired,
    EcsError,
    EcsFailedPrecondition,
    EcsInternal,
    EcsInvalidArgument,
    EcsNoStock,
    EcsNotFound,
    EcsPermissionDenied,
    EcsResourceExhausted,
    EcsServiceUnavailable,
    EcsThrottled,
    EcsUnavailable,
    EcsUnsupportedHere,
)
from csi_disk_emulator.actions import load_actions
from csi_disk_emulator.errors import CATALOGUE

load_actions()  # action modules add their own codes to the catalogue

# Codes that mean the driver sent a request it should never form: the only ECS answers
# that may reach a caller as INTERNAL.
DRIVER_BUGS = frozenset({"InvalidVersion", "UnsupportedHTTPMethod", "InvalidTimeStamp.Format",
                         "DryRunOperation"})  # fmt: skip

MEANING: dict[str, type[EcsError]] = {
    # A resource the call names is not there.
    "InvalidDiskId.NotFound": EcsNotFound,
    "InvalidInstanceId.NotFound": EcsNotFound,
    "InvalidSnapshotId.NotFound": EcsNotFound,
    "InvalidRegionId.NotFound": EcsNotFound,
    "InvalidTaskId.NotFound": EcsNotFound,
    "InvalidResourceId.NotFound": EcsNotFound,
    "InvalidResourceType.NotFound": EcsNotFound,
    # A zone is an argument of CreateDisk, not the resource asked about.
    "InvalidZoneId.NotFound": EcsInvalidArgument,
    # Not possible here (this zone, category, size or level): CreateVolume tries the next.
    "InvalidDataDiskCategory.NotSupported": EcsUnsupportedHere,
    "InvalidDiskCategory.NotSupported": EcsUnsupportedHere,
    "InvalidDiskCategory.ValueNotSupported": EcsUnsupportedHere,
    "InvalidDiskSize.NotSupported": EcsUnsupportedHere,
    "InvalidPerformanceLevel.Malformed": EcsUnsupportedHere,
    "OperationDenied.NoStock": EcsNoStock,
    # Wrong for this disk whatever the zone: another category would not help.
    "InvalidDiskSize.TooSmall": EcsInvalidArgument,
    "OperationDenied.PerformanceLevelNotMatch": EcsInvalidArgument,
    "InvalidParameter": EcsInvalidArgument,
    "MissingParameter": EcsInvalidArgument,
    "InvalidDiskIds.Malformed": EcsInvalidArgument,
    "InvalidInstanceIds.Malformed": EcsInvalidArgument,
    "InvalidSnapshotIds.Malformed": EcsInvalidArgument,
    "InvalidTagKey.Malformed": EcsInvalidArgument,
    "InvalidTagValue.Malformed": EcsInvalidArgument,
    "InvalidParameter.TagValue": EcsInvalidArgument,
    "InvalidParameter.TimeEndBeforeStart": EcsInvalidArgument,
    # The resources are not in a state for this call.
    "IncorrectDiskStatus": EcsFailedPrecondition,
    "IncorrectDiskStatus.Initializing": EcsFailedPrecondition,
    "IncorrectInstanceStatus": EcsFailedPrecondition,
    "ResourcesNotInSameZone": EcsFailedPrecondition,
    "DependencyViolation": EcsFailedPrecondition,
    "IdempotentParameterMismatch": EcsAlreadyExists,
    # Something is settling on the resource: retry later.
    "InvalidOperation.Conflict": EcsAborted,
    "OperationConflict.DisksAttachingParallellyExceed": EcsAborted,
    "LastTokenProcessing": EcsAborted,
    "InvalidSnapshot.NotReady": EcsAborted,
    "DiskInCoolingPeriod": EcsAborted,
    "InstanceDiskLimitExceeded": EcsResourceExhausted,
    "QuotaExceed.Snapshot": EcsResourceExhausted,
    # ECS did not act and may later: retried.
    "Throttling": EcsThrottled,
    "Throttling.User": EcsThrottled,
    "ServiceUnavailable": EcsServiceUnavailable,
    "InternalError": EcsUnavailable,
    "InvalidSecurityToken.Expired": EcsCredentialsExpired,
    # The credentials are refused: an operator has to act.
    "Forbidden.RAM": EcsPermissionDenied,
    "InvalidAccessKeyId.NotFound": EcsPermissionDenied,
    "SignatureDoesNotMatch": EcsPermissionDenied,
    "InvalidSecurityToken.Malformed": EcsPermissionDenied,
    "InvalidSecurityToken.MismatchWithAccessKey": EcsPermissionDenied,
    # The request is fine but the volume is not one it can apply to: its category cannot
    # be resized online, it is attached elsewhere without multi-attach, a disk was restored
    # from the snapshot (the spec's FAILED_PRECONDITION for a snapshot in use).
    "OperationDenied": EcsFailedPrecondition,
    "InvalidOperation.MultiAttachDisabled": EcsFailedPrecondition,
    "SnapshotCreatedDisk": EcsFailedPrecondition,
    # A spec change no volume of this kind can have (multi-attach disks keep their spec,
    # the instance it is attached to takes no such category): infeasible, not retried.
    "InvalidOperation.MultiAttachDisk": EcsInvalidArgument,
    "InvalidInstanceType.NotSupportDiskCategory": EcsInvalidArgument,
    # The spec is already what was asked: a racing call changed it; the retry sees it done.
    "NoChangeInDiskCategoryAndPerformanceLevel": EcsAborted,
    # Signing and the way to ECS: a bad secret, a clock off by more than ECS's window
    # (an operator must fix either), a signed request resent (each attempt signs anew).
    "IncompleteSignature": EcsPermissionDenied,
    "InvalidTimeStamp.Expired": EcsFailedPrecondition,
    "SignatureNonceUsed": EcsUnavailable,
    # An endpoint that does not serve the ECS API: --ecs-endpoint names something else.
    "InvalidAction.NotFound": EcsFailedPrecondition,
    # Requests this driver forms wrong whatever its caller asked: a bug here, INTERNAL.
    "InvalidVersion": EcsInternal,
    "UnsupportedHTTPMethod": EcsInternal,
    "InvalidTimeStamp.Format": EcsInternal,
    "DryRunOperation": EcsInternal,
    # The tag, task and event APIs, which the driver does not call: arguments refused, and
    # the 20-tag quota of a resource.
    "MissingParameter.ResourceType": EcsInvalidArgument,
    "MissingParameter.Tags": EcsInvalidArgument,
    "NumberExceed.ResourceIds": EcsInvalidArgument,
    "NumberExceed.Tags": EcsInvalidArgument,
    "Duplicate.TagKey": EcsInvalidArgument,
    "InvalidResourceId.NotSupported": EcsInvalidArgument,
    "InvalidTag.Mismatch": EcsInvalidArgument,
    "EventIdLimitExceeded": EcsInvalidArgument,
    "OperationDenied.QuotaExceed": EcsResourceExhausted,
    # AttachDisk's Force, which the driver does not send, and DescribeAvailableResource's
    # InstanceType, which it reads from the metadata service.
    "InvalidParameterForce.DiskCategoryNotSupported": EcsInvalidArgument,
    "InvalidParameterForce.MultiAttachDiskNotSupported": EcsInvalidArgument,
    "InvalidInstance.ZoneConflict": EcsFailedPrecondition,
    "InvalidInstanceType.ValueNotSupported": EcsInvalidArgument,
    # Codes ECS documents that the emulator does not answer; the driver knows them.
    "InvalidInstanceType.NotFound": EcsNotFound,
    "DiskError": EcsFailedPrecondition,
    "DiskId.StatusNotSupported": EcsFailedPrecondition,
    "InvalidDisk.InUse": EcsFailedPrecondition,
    "Zone.NotOnSale": EcsNoStock,
    "DiskCreatingSnapshot": EcsAborted,
    "IdempotentProcessing": EcsAborted,
    "UnknownError": EcsUnavailable,
    "InvalidAccessKeySecret": EcsPermissionDenied,
}

# HTTP status and message of the codes above that the emulator's catalogue lacks.
NOT_EMULATED: dict[str, tuple[int, str]] = {
    "InvalidInstanceType.NotFound": (404, "The specified InstanceType does not exist."),
    "DiskError": (403, "IncorrectDiskStatus."),
    "DiskId.StatusNotSupported": (403, "The specified disk status is not supported."),
    "InvalidDisk.InUse": (404, "The specified disk has been occupied."),
    "Zone.NotOnSale": (403, "The specified zone is not available for purchase."),
    "DiskCreatingSnapshot": (403, "The operation is denied because a snapshot is being created."),
    "IdempotentProcessing": (403, "The previous idempotent request is being processed."),
    "UnknownError": (500, "The request processing has failed due to some unknown error."),
    "InvalidAccessKeySecret": (400, "The specified AccessKeySecret is not valid."),
}


def answer(code: str) -> tuple[int, str]:
    """The HTTP status and message ECS answers ``code`` with."""
    return CATALOGUE.get(code) or NOT_EMULATED[code]


def http_status(code: str) -> int:
    return answer(code)[0]


# Codes that mean something else to one action: an instance family that cannot attach the
# category is the node's condition at AttachDisk, a spec change's argument elsewhere.
MEANING_AT: dict[tuple[str, str], type[EcsError]] = {
    ("AttachDisk", "InvalidInstanceType.NotSupportDiskCategory"): EcsFailedPrecondition,
}


def ecs_error(code: str, message: str = "", action: str = "") -> EcsError:
    """The error the Cloud port raises when ECS answers ``code``, by this table."""
    text = f"ECS {action or 'call'} failed: {code}: {message or answer(code)[1]}"
    meaning = MEANING_AT.get((action, code)) or MEANING[code]
    return meaning(text, ecs_code=code, http_status=http_status(code), action=action)
