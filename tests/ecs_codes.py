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
    "InvalidInstanceType.NotSupportDiskCategory": EcsFailedPrecondition,
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
    # Requests this driver never sends wrong, or refusals it has no better code for.
    "InvalidAction.NotFound": EcsInternal,
    "InvalidVersion": EcsInternal,
    "UnsupportedHTTPMethod": EcsInternal,
    "InvalidTimeStamp.Format": EcsInternal,
    "InvalidTimeStamp.Expired": EcsInternal,
    "SignatureNonceUsed": EcsInternal,
    "IncompleteSignature": EcsInternal,
    "DryRunOperation": EcsInternal,
    "NoChangeInDiskCategoryAndPerformanceLevel": EcsInternal,
    "OperationDenied": EcsInternal,
    "InvalidOperation.MultiAttachDisk": EcsInternal,
    "InvalidOperation.MultiAttachDisabled": EcsInternal,
    # AttachDisk's Force and DescribeAvailableResource's InstanceType: the driver sends neither
    # wrong.
    "InvalidParameterForce.DiskCategoryNotSupported": EcsInvalidArgument,
    "InvalidParameterForce.MultiAttachDiskNotSupported": EcsInvalidArgument,
    "InvalidInstance.ZoneConflict": EcsInternal,
    "InvalidInstanceType.ValueNotSupported": EcsInternal,
    "SnapshotCreatedDisk": EcsInternal,
    # The tag, task and event APIs: the driver does not call them.
    "MissingParameter.ResourceType": EcsInternal,
    "MissingParameter.Tags": EcsInternal,
    "NumberExceed.ResourceIds": EcsInternal,
    "NumberExceed.Tags": EcsInternal,
    "Duplicate.TagKey": EcsInternal,
    "InvalidResourceId.NotSupported": EcsInternal,
    "InvalidTag.Mismatch": EcsInternal,
    "OperationDenied.QuotaExceed": EcsInternal,
    "EventIdLimitExceeded": EcsInternal,
    # Codes ECS documents that the emulator does not answer; the driver knows them.
    "InvalidInstanceType.NotFound": EcsNotFound,
    "Zone.NotOnSale": EcsNoStock,
    "DiskCreatingSnapshot": EcsAborted,
    "IdempotentProcessing": EcsAborted,
    "UnknownError": EcsUnavailable,
    "InvalidAccessKeySecret": EcsPermissionDenied,
}

# HTTP status and message of the codes above that the emulator's catalogue lacks.
NOT_EMULATED: dict[str, tuple[int, str]] = {
    "InvalidInstanceType.NotFound": (404, "The specified InstanceType does not exist."),
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


def ecs_error(code: str, message: str = "", action: str = "") -> EcsError:
    """The error the Cloud port raises when ECS answers ``code``, by this table."""
    text = f"ECS {action or 'call'} failed: {code}: {message or answer(code)[1]}"
    return MEANING[code](text, ecs_code=code, http_status=http_status(code), action=action)
