"""The ECS code table and message scrubbing."""

from __future__ import annotations

import pytest

from csi_disk.cloud import errors
from csi_disk.cloud.errors import (
    PermissionDenied,
    from_ecs_code,
    is_retryable,
    is_unsupported_here,
    register_secret,
    scrub,
)
from csi_disk.errors import DriverError, NotFound

TABLE = [
    ("InvalidDiskId.NotFound", "NOT_FOUND", False, False),
    ("InvalidInstanceId.NotFound", "NOT_FOUND", False, False),
    ("InvalidSnapshotId.NotFound", "NOT_FOUND", False, False),
    ("OperationDenied.NoStock", "RESOURCE_EXHAUSTED", False, True),
    ("InstanceDiskLimitExceeded", "RESOURCE_EXHAUSTED", False, False),
    ("QuotaExceed.PostPaidDisk", "RESOURCE_EXHAUSTED", False, False),
    ("InvalidDiskCategory.NotSupported", "INVALID_ARGUMENT", False, True),
    ("InvalidDataDiskCategory.NotSupported", "INVALID_ARGUMENT", False, True),
    ("InvalidDiskSize.NotSupported", "INVALID_ARGUMENT", False, True),
    ("InvalidPerformanceLevel.Malformed", "INVALID_ARGUMENT", False, True),
    ("IncorrectDiskStatus", "FAILED_PRECONDITION", False, False),
    ("IncorrectDiskStatus.Initializing", "FAILED_PRECONDITION", False, False),
    ("IncorrectInstanceStatus", "FAILED_PRECONDITION", False, False),
    ("ResourcesNotInSameZone", "FAILED_PRECONDITION", False, False),
    ("DependencyViolation", "FAILED_PRECONDITION", False, False),
    ("IdempotentParameterMismatch", "ALREADY_EXISTS", False, False),
    ("InvalidOperation.Conflict", "ABORTED", False, False),
    ("OperationConflict", "ABORTED", False, False),
    ("LastTokenProcessing", "ABORTED", False, False),
    ("Throttling", "UNAVAILABLE", True, False),
    ("Throttling.User", "UNAVAILABLE", True, False),
    ("ServiceUnavailable", "UNAVAILABLE", True, False),
    ("InternalError", "UNAVAILABLE", True, False),
    ("InvalidSecurityToken.Expired", "UNAVAILABLE", False, False),
    ("Forbidden.RAM", "PERMISSION_DENIED", False, False),
    ("InvalidAccessKeyId.NotFound", "PERMISSION_DENIED", False, False),
    ("SignatureDoesNotMatch", "PERMISSION_DENIED", False, False),
    ("SomethingNobodyKnows.Yet", "INVALID_ARGUMENT", False, False),  # as its 400 says
    ("InvalidAction.NotFound", "FAILED_PRECONDITION", False, False),
    ("IncompleteSignature", "PERMISSION_DENIED", False, False),
    ("SignatureNonceUsed", "UNAVAILABLE", True, False),
    ("InvalidVersion", "INTERNAL", False, False),
]


@pytest.mark.parametrize(("ecs_code", "code", "retryable", "unsupported"), TABLE)
def test_code_table(ecs_code: str, code: str, retryable: bool, unsupported: bool) -> None:
    err = from_ecs_code(ecs_code, "msg", request_id="r-1", http_status=400, action="CreateDisk")
    assert isinstance(err, DriverError)
    assert err.code == code
    assert is_retryable(err) is retryable
    assert is_unsupported_here(err) is unsupported
    assert err.ecs_code == ecs_code
    assert err.request_id == "r-1"
    assert err.http_status == 400
    assert ecs_code in err.message


def test_not_found_is_catchable_as_the_domain_class() -> None:
    with pytest.raises(NotFound):
        raise from_ecs_code("InvalidDiskId.NotFound", "gone")


def test_permission_denied_is_a_driver_error() -> None:
    err = from_ecs_code("Forbidden.RAM", "no")
    assert isinstance(err, PermissionDenied)
    assert PermissionDenied.code == "PERMISSION_DENIED"


def test_throttling_and_service_unavailable_prove_nothing_happened() -> None:
    assert from_ecs_code("Throttling.Api", "").not_applied
    assert from_ecs_code("ServiceUnavailable", "").not_applied
    assert not from_ecs_code("InternalError", "").not_applied


def test_expired_token_asks_for_a_refresh() -> None:
    assert from_ecs_code("InvalidSecurityToken.Expired", "").credentials_expired
    assert not from_ecs_code("InvalidSecurityToken.Malformed", "").credentials_expired


def test_helpers_reject_foreign_exceptions() -> None:
    assert not is_retryable(ValueError("Throttling"))
    assert not is_unsupported_here(RuntimeError("x"))


def test_signature_mismatch_drops_the_string_to_sign() -> None:
    echoed = (
        "Specified signature is not matched. server string to sign is:"
        "GET&%2F&AccessKeyId%3DLTAIsecretish"
    )
    err = from_ecs_code("SignatureDoesNotMatch", echoed)
    assert "LTAIsecretish" not in err.message
    assert "string to sign" not in err.message


@pytest.mark.parametrize(
    "text",
    [
        "HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: "
        "/?AccessKeyId=LTAIkey&Signature=c2lnbmF0dXJl&SecurityToken=tok",
        "GET https://ecs.aliyuncs.com/?Action=X&Signature=abc failed",
        "params AccessKeyId%3DLTAIkey%26Signature%3Dabc%26SecurityToken%3Dtok",
        "{'AccessKeySecret': 'sekret', 'SecurityToken': 'tok'}",
    ],
)
def test_scrub_removes_urls_signatures_and_keys(text: str) -> None:
    out = scrub(text)
    for leaked in (
        "LTAIkey",
        "c2lnbmF0dXJl",
        "tok",
        "sekret",
        "https://",
        "/?Action",
        "Signature=abc",
    ):
        assert leaked not in out, out


def test_scrub_masks_registered_secrets_anywhere() -> None:
    register_secret("Zk9aV3ry5ecret")
    assert "Zk9aV3ry5ecret" not in scrub("the value Zk9aV3ry5ecret leaked in prose")
    assert scrub("plain words stay") == "plain words stay"


def test_messages_on_errors_are_scrubbed() -> None:
    err = errors.EcsInternal("boom at http://10.0.0.1/?Signature=abc&AccessKeyId=LTAIx")
    assert "http://" not in err.message
    assert "LTAIx" not in err.message
    assert "boom" in err.message


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("SDK.UnknownServerError", 502, True),
        ("Some.UndocumentedCode", 503, True),
        ("Some.UndocumentedCode", 400, False),
        ("InvalidAction.NotFound", 500, False),  # a known code keeps its meaning
    ],
)
def test_an_unknown_code_with_a_5xx_is_transient(code: str, status: int, retryable: bool) -> None:
    err = from_ecs_code(code, "ServerResponseBody: <html>bad gateway</html>", http_status=status)
    assert is_retryable(err) is retryable
    assert (err.code == "UNAVAILABLE") is retryable
    assert not err.not_applied  # a gateway may have passed the call on
    if code.startswith("SDK."):
        assert "<html>" not in err.message


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "INVALID_ARGUMENT"),
        (403, "FAILED_PRECONDITION"),
        # Never NOT_FOUND: DeleteVolume would take the refusal for "deleted already".
        (404, "FAILED_PRECONDITION"),
        (409, "FAILED_PRECONDITION"),
        (429, "UNAVAILABLE"),
        (None, "INTERNAL"),
    ],
)
def test_an_unknown_code_means_what_its_http_status_says(status: int | None, code: str) -> None:
    assert from_ecs_code("Brand.NewRefusal", "no idea", http_status=status).code == code
    # A body the SDK could not read is no ECS refusal: never the caller's argument.
    unread = from_ecs_code("SDK.UnknownServerError", "ServerResponseBody: <html>", http_status=400)
    assert unread.code == "FAILED_PRECONDITION" and "<html>" not in unread.message


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("IncorrectDiskStatus", True),
        ("IncorrectDiskStatus.Initializing", True),
        ("DiskError", True),
        ("DiskId.StatusNotSupported", True),
        ("InvalidDisk.InUse", True),
        ("InvalidOperation.Conflict", False),
        ("DependencyViolation", False),
        ("InvalidDiskId.NotFound", False),
    ],
)
def test_refusals_for_the_disk_s_status_are_told_apart(code: str, status: bool) -> None:
    err = from_ecs_code(code, "", action="AttachDisk")
    assert errors.refused_for_disk_status(err) is status
    assert errors.says_not_attached(err) is (code == "DependencyViolation")
    assert not errors.refused_for_disk_status(RuntimeError(code))  # only ECS answers count


@pytest.mark.parametrize(
    ("code", "missing", "changed", "other_zone"),
    [
        ("InvalidInstanceId.NotFound", True, True, False),
        ("IncorrectInstanceStatus", False, True, False),
        ("ResourcesNotInSameZone", False, False, True),
        ("InvalidDiskId.NotFound", False, False, False),
        ("IncorrectDiskStatus", False, False, False),
    ],
)
def test_refusals_about_the_instance_are_told_apart(
    code: str, missing: bool, changed: bool, other_zone: bool
) -> None:
    err = from_ecs_code(code, "", action="AttachDisk")
    assert errors.names_missing_instance(err) is missing
    assert errors.says_instance_changed(err) is changed
    assert errors.says_other_zone(err) is other_zone


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("AttachDisk", "FAILED_PRECONDITION"),
        ("ModifyDiskSpec", "INVALID_ARGUMENT"),
        ("", "INVALID_ARGUMENT"),
    ],
)
def test_a_family_that_cannot_take_the_category_means_what_the_action_asked(
    action: str, code: str
) -> None:
    """At AttachDisk the node cannot take the disk (no retry helps); at a spec change the
    change is infeasible, which the resizer reads from INVALID_ARGUMENT."""
    err = from_ecs_code("InvalidInstanceType.NotSupportDiskCategory", "", action=action)
    assert err.code == code
