"""Domain errors.

Code below the handlers raises these where a failure is understood; the server interceptor
is the one place that turns them into gRPC status codes. Each class names the CSI code it
means, so ``cloud/`` and ``host/`` never import gRPC.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base class: a failure with a known meaning and a message safe to show a caller."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DriverError):
    code = "INVALID_ARGUMENT"


class NotFound(DriverError):
    code = "NOT_FOUND"


class AlreadyExists(DriverError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(DriverError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(DriverError):
    code = "RESOURCE_EXHAUSTED"


class Aborted(DriverError):
    """Another call on the same volume is in flight, or a state has not settled: retry."""

    code = "ABORTED"


class OutOfRange(DriverError):
    code = "OUT_OF_RANGE"


class Unavailable(DriverError):
    """The cloud or a host tool could not be reached; the caller should retry."""

    code = "UNAVAILABLE"


class DeadlineExceeded(DriverError):
    code = "DEADLINE_EXCEEDED"


class Unimplemented(DriverError):
    code = "UNIMPLEMENTED"


class Internal(DriverError):
    code = "INTERNAL"
