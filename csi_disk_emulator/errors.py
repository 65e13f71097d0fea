"""ECS error codes with the HTTP status and message ECS answers them with.

One catalogue, so a code always travels with the same status: clients (and the driver's
retry policy) key on both, and a status that drifts per call site would hide bugs.
"""

from __future__ import annotations

# code -> (HTTP status, default message)
CATALOGUE: dict[str, tuple[int, str]] = {
    # Gateway (POP) level: authentication, signing, throttling, common parameters.
    "MissingParameter": (
        400,
        "The input parameter that is mandatory for processing this request is not supplied.",
    ),
    "InvalidParameter": (400, "The specified parameter is not valid."),
    "InvalidAction.NotFound": (
        404,
        "Specified api is not found, please check your url and method.",
    ),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "UnsupportedHTTPMethod": (400, "This http method is not supported."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "InvalidSecurityToken.Expired": (400, "Specified SecurityToken is expired."),
    "InvalidSecurityToken.Malformed": (400, "Specified SecurityToken is malformed."),
    "InvalidSecurityToken.MismatchWithAccessKey": (
        400,
        "Specified SecurityToken mismatch with the AccessKey.",
    ),
    "Forbidden.RAM": (
        403,
        "User not authorized to operate on the specified resource, "
        "or this API doesn't support RAM.",
    ),
    "Throttling": (400, "Request was denied due to request throttling."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "InternalError": (
        500,
        "The request processing has failed due to some unknown error, exception or failure.",
    ),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
    # ECS resource level.
    "InvalidRegionId.NotFound": (404, "The specified RegionId does not exist."),
    "InvalidZoneId.NotFound": (404, "The specified zone does not exist."),
    "InvalidDiskId.NotFound": (404, "The specified disk does not exist."),
    "InvalidInstanceId.NotFound": (404, "The specified InstanceId does not exist."),
    "InvalidSnapshotId.NotFound": (404, "The specified snapshot does not exist."),
    "InvalidDiskIds.Malformed": (400, "The specified parameter DiskIds is not valid."),
    "InvalidInstanceIds.Malformed": (400, "The specified parameter InstanceIds is not valid."),
    "IncorrectDiskStatus": (403, "The current disk status does not support this operation."),
    "IncorrectDiskStatus.Initializing": (
        403,
        "The specified disk is being initialized, please try again later.",
    ),
    "IncorrectInstanceStatus": (
        403,
        "The current status of the resource does not support this operation.",
    ),
    "ResourcesNotInSameZone": (403, "The specified instance and disk are not in the same zone."),
    "InstanceDiskLimitExceeded": (
        403,
        "The amount of the disk on instance in question reach its limits.",
    ),
    "DependencyViolation": (403, "The specified disk is not attached to the specified instance."),
    "InvalidDiskCategory.ValueNotSupported": (
        400,
        "The specified parameter DiskCategory is not valid.",
    ),
    "InvalidDiskCategory.NotSupported": (
        403,
        "The specified disk category is not supported by the instance type.",
    ),
    # AttachDisk: the instance's family cannot attach the category.
    "InvalidInstanceType.NotSupportDiskCategory": (
        403,
        "The instanceType of the specified instance does not support this disk category.",
    ),
    # AttachDisk with Force=true: only regional ESSDs, not multi-attach ones, and only from an
    # instance in another zone.
    "InvalidParameterForce.DiskCategoryNotSupported": (
        400,
        "The specified disk category does not support force attach operation.",
    ),
    "InvalidParameterForce.MultiAttachDiskNotSupported": (
        400,
        "The multi attach disk does not support force attach operation.",
    ),
    "InvalidInstance.ZoneConflict": (
        403,
        "The force attach operation is not supported when both the current and target "
        "instances are in the same zone.",
    ),
    "InvalidInstanceType.ValueNotSupported": (
        400,
        "The specified InstanceType does not exist or beyond the permitted range.",
    ),
    "InvalidDataDiskCategory.NotSupported": (
        403,
        "The specified zone does not support this disk category.",
    ),
    "InvalidPerformanceLevel.Malformed": (
        400,
        "The specified parameter PerformanceLevel is not valid.",
    ),
    "InvalidDiskSize.NotSupported": (
        400,
        "The specified disk size is not supported for this disk category and performance level.",
    ),
    # CreateDisk from a larger snapshot and ResizeDisk to a smaller size both answer this.
    "InvalidDiskSize.TooSmall": (
        403,
        "The specified disk size is less than the size of the original disk or snapshot.",
    ),
    "OperationDenied.NoStock": (
        403,
        "The resource is out of stock in the specified zone. "
        "Please try other types of resources or other regions and zones.",
    ),
    "IdempotentParameterMismatch": (
        400,
        "The specified parameters are different from the last request with the same ClientToken.",
    ),
    "LastTokenProcessing": (403, "The last token request is processing."),
    "InvalidOperation.Conflict": (
        403,
        "Another detach operation is in progress on this instance, please try again later.",
    ),
    "OperationConflict.DisksAttachingParallellyExceed": (
        403,
        "The number of disks being attached to the instance at the same time exceeds the limit.",
    ),
    "InvalidOperation.MultiAttachDisabled": (
        403,
        "The disk is attached to another instance and does not have multi-attach enabled.",
    ),
}


class EcsError(Exception):
    """An ECS API error: rendered by the server as the ECS JSON error envelope."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        default_status, default_message = CATALOGUE.get(code, (400, code))
        self.code = code
        self.message = message or default_message
        self.status = status or default_status
        super().__init__(f"{code}: {self.message}")


def invalid_parameter(name: str, reason: str = "") -> EcsError:
    """The InvalidParameter error naming the parameter, as ECS phrases it."""
    tail = f" {reason}" if reason else ""
    return EcsError("InvalidParameter", f'The specified parameter "{name}" is not valid.{tail}')


def missing_parameter(name: str) -> EcsError:
    """The MissingParameter error naming the parameter."""
    return EcsError(
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request '
        "is not supplied.",
    )
