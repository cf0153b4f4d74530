"""Python client of the Cosmic Horizons Fleet's job orchestrator (JobService over gRPC).

::

    from fleet_client import FleetClient

    with FleetClient() as fleet:  # $FLEET_JOB_ADDR and $FLEET_TOKEN, as chctl
        job = fleet.submit(name="hello", agent="custom", system="frontera",
                           partition="development", command="echo hello")
        print(fleet.wait(job.job_id).status)

The generated messages and stubs are in :mod:`fleet_client.pb` (``job_pb2``) and
:mod:`fleet_client.pb_grpc`.
"""

from fleet_client._proto.fleet.job.v1 import job_pb2 as pb
from fleet_client._proto.fleet.job.v1 import job_pb2_grpc as pb_grpc
from fleet_client.client import (ENV_ADDR, ENV_ALLOCATION, ENV_TOKEN, TERMINAL, Downloaded,
                                 FleetClient, History, job_spec, parse_agent, parse_priority,
                                 parse_status, parse_system, receive_download, status_name)
from fleet_client.errors import (AlreadyExists, ChecksumMismatch, DeadlineExceeded,
                                 FailedPrecondition, FieldViolation, FleetError, InvalidArgument,
                                 NotFound, PermissionDenied, ProtocolError, ResourceExhausted,
                                 Unauthenticated, Unavailable, Unimplemented)

__all__ = [
    "FleetClient", "History", "Downloaded", "job_spec", "receive_download", "parse_agent",
    "parse_priority", "parse_status", "parse_system", "status_name", "TERMINAL", "ENV_ADDR",
    "ENV_ALLOCATION", "ENV_TOKEN", "pb", "pb_grpc",
    "FleetError", "InvalidArgument", "FieldViolation", "NotFound", "FailedPrecondition",
    "AlreadyExists", "Unauthenticated", "PermissionDenied", "ResourceExhausted", "Unavailable",
    "DeadlineExceeded", "Unimplemented", "ChecksumMismatch", "ProtocolError",
]
