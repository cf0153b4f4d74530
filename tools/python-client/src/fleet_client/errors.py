"""Exceptions of the fleet client, one class per gRPC status code the JobService answers.

Every failed call raises a :class:`FleetError` subclass chosen by the status code, carrying the
server's message. :class:`InvalidArgument` also carries the field violations of the
``google.rpc.BadRequest`` detail the orchestrator attaches to invalid input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple, Type

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field: its path (``spec.resources.walltime``) and what is wrong."""

    field: str
    description: str


class FleetError(Exception):
    """A JobService call failed. ``code`` is the gRPC status code, ``message`` the server's text."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgument(FleetError):
    """The request was rejected as invalid and changed nothing; ``field_violations`` say why."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 field_violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(code, message)
        self.field_violations: Tuple[FieldViolation, ...] = tuple(field_violations)

    @property
    def fields(self) -> Tuple[str, ...]:
        """The paths of the invalid fields, in the server's order."""
        return tuple(v.field for v in self.field_violations)

    def __str__(self) -> str:
        # The orchestrator's message usually names the violations already.
        if not self.field_violations or self.field_violations[0].field in self.message:
            return super().__str__()
        lines = "; ".join(f"{v.field}: {v.description}" for v in self.field_violations)
        return f"{super().__str__()} ({lines})"


class NotFound(FleetError):
    """The job does not exist, or belongs to another user."""


class FailedPrecondition(FleetError):
    """The job's state forbids the call, for example cancelling a finished job."""


class AlreadyExists(FleetError):
    """The resource already exists."""


class Unauthenticated(FleetError):
    """The token is missing, malformed or expired."""


class PermissionDenied(FleetError):
    """The token's user may not make this call."""


class ResourceExhausted(FleetError):
    """A limit or quota was reached; retry later."""


class Unavailable(FleetError):
    """The orchestrator could not be reached or is shutting down; the call may be retried."""


class DeadlineExceeded(FleetError):
    """The call took longer than its timeout."""


class Unimplemented(FleetError):
    """The orchestrator does not implement this call (an older server)."""


class ChecksumMismatch(Exception):
    """A downloaded file's SHA-256 differs from the one the server sent; nothing was kept."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(f"download of {path!r}: SHA-256 {actual} does not match the server's {expected}")
        self.path = path
        self.expected = expected
        self.actual = actual


class ProtocolError(Exception):
    """The server's answer broke the contract (for example a download without a checksum)."""


_BY_CODE: Dict[grpc.StatusCode, Type[FleetError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def from_rpc_error(err: grpc.RpcError) -> FleetError:
    """Converts a failed call into the :class:`FleetError` subclass for its status code.

    The field violations of a ``google.rpc.BadRequest`` detail become
    :attr:`InvalidArgument.field_violations`.
    """
    # A failed call's error is also a grpc.Call with its code and message.
    code: grpc.StatusCode = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    message: str = (err.details() if isinstance(err, grpc.Call) else str(err)) or ""
    cls = _BY_CODE.get(code, FleetError)
    if cls is InvalidArgument:
        return InvalidArgument(code, message, _field_violations(err))
    return cls(code, message)


def _field_violations(err: grpc.RpcError) -> Tuple[FieldViolation, ...]:
    if not isinstance(err, grpc.Call):
        return ()
    try:
        status = rpc_status.from_call(err)
    except ValueError:
        # The rich status disagreed with the call's code or message: keep the plain error.
        return ()
    if status is None:
        return ()
    out: List[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out.extend(FieldViolation(v.field, v.description) for v in br.field_violations)
    return tuple(out)
