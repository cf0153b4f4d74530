"""A small typed client of the fleet's JobService (proto/fleet/job/v1/job.proto)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import (IO, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, TypeVar,
                    Union, cast)

import grpc
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from fleet_client._proto.fleet.job.v1 import job_pb2 as pb
from fleet_client._proto.fleet.job.v1 import job_pb2_grpc as pb_grpc
from fleet_client.errors import (ChecksumMismatch, DeadlineExceeded, FleetError, ProtocolError,
                                 from_rpc_error)

# The environment variables chctl reads (tools/cmd/chctl): the orchestrator's address, the
# bearer JWT and the allocation charged by default.
ENV_ADDR = "FLEET_JOB_ADDR"
ENV_TOKEN = "FLEET_TOKEN"
ENV_ALLOCATION = "FLEET_ALLOCATION"
DEFAULT_ADDR = "127.0.0.1:50051"
DEFAULT_ALLOCATION = "AST21001"

TERMINAL = frozenset({pb.JOB_STATUS_COMPLETED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED})

Walltime = Union[_dt.timedelta, int, float]
"""A walltime: a timedelta or a number of seconds."""

_T = TypeVar("_T")

_AGENTS = {
    "alphacal": pb.AGENT_ALPHA_CAL,
    "imagereconstruction": pb.AGENT_IMAGE_RECONSTRUCTION,
    "anomalydetection": pb.AGENT_ANOMALY_DETECTION,
    "custom": pb.AGENT_CUSTOM,
}


def _enum_key(s: str) -> str:
    return s.replace("-", "").replace("_", "").replace(" ", "").lower()


def _enum(value: Union[str, int], prefix: str, table: Mapping[str, int], what: str, choices: str) -> int:
    if isinstance(value, int):
        return value
    key = _enum_key(value)
    if key in table:
        return table[key]
    for name, number in table.items():
        if _enum_key(prefix + name) == key:
            return number
    raise ValueError(f"unknown {what} {value!r} ({choices})")


def _names(enum: object, prefix: str) -> Mapping[str, int]:
    return {_enum_key(name[len(prefix):]): number
            for name, number in enum.items() if number != 0}  # type: ignore[attr-defined]


_SYSTEMS = _names(pb.TaccSystem, "TACC_SYSTEM_")
_STATUSES = _names(pb.JobStatus, "JOB_STATUS_")
_PRIORITIES = _names(pb.Priority, "PRIORITY_")


def parse_agent(value: Union[str, int]) -> "pb.Agent":
    """Returns the Agent enum value for ``AlphaCal``, ``ImageReconstruction``,
    ``AnomalyDetection``, ``custom`` (chctl's names), an enum name or number."""
    return cast("pb.Agent", _enum(value, "agent", _AGENTS, "agent",
                                            "AlphaCal, ImageReconstruction, AnomalyDetection or custom"))


def parse_system(value: Union[str, int]) -> "pb.TaccSystem":
    """Returns the TaccSystem enum value for ``frontera``, ``stampede3``, ``lonestar6`` or ``vista``."""
    return cast("pb.TaccSystem",
                _enum(value, "taccsystem", _SYSTEMS, "system", "frontera, stampede3, lonestar6 or vista"))


def parse_status(value: Union[str, int]) -> "pb.JobStatus":
    """Returns the JobStatus enum value for ``queued``, ``running``, ``completed`` and so on."""
    return cast("pb.JobStatus", _enum(value, "jobstatus", _STATUSES, "status",
                                                "submitted, queued, running, completed, failed or cancelled"))


def parse_priority(value: Union[str, int]) -> "pb.Priority":
    """Returns the Priority enum value for ``low``, ``normal`` or ``high``."""
    return cast("pb.Priority", _enum(value, "priority", _PRIORITIES, "priority", "low, normal or high"))


def status_name(status: int) -> str:
    """``COMPLETED`` for JOB_STATUS_COMPLETED, as chctl prints it."""
    return pb.JobStatus.Name(status).removeprefix("JOB_STATUS_")


def _duration(d: Walltime) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    if isinstance(d, _dt.timedelta):
        out.FromTimedelta(d)
    else:
        out.FromNanoseconds(int(round(float(d) * 1e9)))
    return out


def _timestamp(t: _dt.datetime) -> timestamp_pb2.Timestamp:
    if t.tzinfo is None:
        raise ValueError(f"timestamp {t!r} has no time zone")
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(t)
    return out


def job_spec(*, name: str, agent: Union[str, int], system: Union[str, int], partition: str,
             command: Optional[str] = None, script: Optional[str] = None,
             dataset_id: str = "", nodes: int = 1, cores_per_node: int = 0, gpus_per_node: int = 0,
             memory_mb: int = 0, walltime: Optional[Walltime] = None,
             environment: Optional[Mapping[str, str]] = None, tags: Sequence[str] = (),
             priority: Union[str, int, None] = None, allocation: Optional[str] = None) -> pb.JobSpec:
    """Builds a JobSpec with chctl's defaults.

    A custom job gets one core and one hour of walltime unless told otherwise; ``allocation``
    defaults to ``$FLEET_ALLOCATION``, else ``AST21001``. Exactly one of ``command`` and
    ``script`` is expected; the server validates the rest and answers
    :class:`~fleet_client.errors.InvalidArgument` with the offending fields.
    """
    if command is not None and script is not None:
        raise ValueError("set command or script, not both")
    agent_v = parse_agent(agent)
    custom = agent_v == pb.AGENT_CUSTOM
    if cores_per_node == 0 and custom:
        cores_per_node = 1
    res = pb.Resources(nodes=nodes, cores_per_node=cores_per_node, gpus_per_node=gpus_per_node,
                       memory_mb=memory_mb)
    if walltime is not None:
        res.walltime.CopyFrom(_duration(walltime))
    elif custom:
        res.walltime.CopyFrom(_duration(_dt.timedelta(hours=1)))
    spec = pb.JobSpec(
        name=name, agent=agent_v, dataset_id=dataset_id, tacc_system=parse_system(system),
        partition=partition, resources=res, environment=dict(environment or {}), tags=list(tags),
        priority=parse_priority(priority) if priority is not None else pb.PRIORITY_UNSPECIFIED,
        allocation=allocation if allocation is not None else (os.environ.get(ENV_ALLOCATION) or DEFAULT_ALLOCATION),
    )
    if command is not None:
        spec.command = command
    if script is not None:
        spec.script = script
    return spec


@dataclass(frozen=True)
class Downloaded:
    """A file fetched by :meth:`FleetClient.download`, its checksum verified."""

    path: str
    """The file's path in the job's output directory."""
    size_bytes: int
    """The number of bytes written."""
    sha256: str
    """The lower-case hexadecimal SHA-256 of the bytes, as the server computed it."""
    destination: Optional[str]
    """Where the file was written; None when it went to a file object."""


@dataclass(frozen=True)
class History:
    """A job's current state and every transition it went through, in sequence order."""

    job: pb.Job
    events: Tuple[pb.JobEvent, ...]


class FleetClient:
    """A connection to the job orchestrator's JobService.

    The address and token default to chctl's environment variables, ``$FLEET_JOB_ADDR``
    (else ``127.0.0.1:50051``) and ``$FLEET_TOKEN``. Every call carries the token as a bearer
    JWT; users see only their own jobs. Failed calls raise a
    :class:`~fleet_client.errors.FleetError` subclass for the gRPC status code. The client is a
    context manager that closes its channel::

        with FleetClient() as fleet:
            job = fleet.submit(name="hello", agent="custom", system="frontera",
                               partition="development", command="echo hello")
            print(fleet.wait(job.job_id).status)
    """

    def __init__(self, address: Optional[str] = None, token: Optional[str] = None, *,
                 tls: bool = False, ca_file: Optional[str] = None,
                 server_name: Optional[str] = None, timeout: float = 30.0,
                 channel: Optional[grpc.Channel] = None) -> None:
        """Connects lazily to ``address`` with ``token``.

        ``tls`` selects a TLS channel, verified against ``ca_file`` (PEM) or the system's roots;
        ``server_name`` overrides the name the certificate must carry. Without ``tls`` the
        channel is plaintext, as chctl's. ``timeout`` (seconds) bounds each unary call;
        streams run until they end or are closed. ``channel`` replaces the channel built from
        these settings (for interceptors or custom options).
        """
        self.address = address or os.environ.get(ENV_ADDR) or DEFAULT_ADDR
        token = (token if token is not None else os.environ.get(ENV_TOKEN, "")).strip()
        if not token:
            raise ValueError(f"no token: pass token= or set ${ENV_TOKEN} "
                             f"(development: export {ENV_TOKEN}=$(chctl token -secret S -user U))")
        self._metadata = (("authorization", "Bearer " + token),)
        self.timeout = timeout
        if channel is None:
            if tls or ca_file is not None:
                roots = None
                if ca_file is not None:
                    with open(ca_file, "rb") as f:
                        roots = f.read()
                options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
                channel = grpc.secure_channel(self.address, grpc.ssl_channel_credentials(roots), options)
            else:
                channel = grpc.insecure_channel(self.address)
        self._channel = channel
        self._stub = pb_grpc.JobServiceStub(channel)

    @classmethod
    def from_env(cls) -> "FleetClient":
        """A client configured only from ``$FLEET_JOB_ADDR`` and ``$FLEET_TOKEN``."""
        return cls()

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> "FleetClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls -----------------------------------------------------------------------------

    def _unary(self, method: Callable[..., _T], request: object) -> _T:
        try:
            return method(request, metadata=self._metadata, timeout=self.timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def _stream(self, method: Callable[..., Iterable[_T]], request: object,
                timeout: Optional[float] = None) -> Iterator[_T]:
        deadline = None if timeout is None else time.monotonic() + timeout
        call = method(request, metadata=self._metadata, timeout=timeout)
        try:
            for msg in call:
                yield msg
        except grpc.RpcError as err:
            if (deadline is not None and time.monotonic() >= deadline
                    and isinstance(err, grpc.Call) and err.code() == grpc.StatusCode.CANCELLED):
                # A server ends a stream at its deadline with RST_STREAM CANCEL, as the gRPC
                # protocol asks; when that reaches us before our own timer, the call reports
                # CANCELLED although it was the timeout that ended it (grpc-go's client maps
                # it the same way).
                raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED,
                                       f"deadline exceeded after {timeout:g}s ({err.details()})") from None
            raise from_rpc_error(err) from None
        finally:
            # A consumer that stops early (break, an exception) ends the server stream.
            call.cancel()  # type: ignore[attr-defined]

    def submit(self, spec: Optional[pb.JobSpec] = None, *, idempotency_key: Optional[str] = None,
               **fields: object) -> pb.Job:
        """Submits a job and returns it (status SUBMITTED).

        Pass a ready ``spec`` or the keyword arguments of :func:`job_spec` (``name``, ``agent``,
        ``system``, ``partition``, ``command`` ...). ``idempotency_key`` (default: a new UUID)
        makes a retried submission return the job created the first time.
        """
        if spec is None:
            spec = job_spec(**fields)  # type: ignore[arg-type]
        elif fields:
            raise TypeError("pass spec or its fields, not both")
        req = pb.SubmitJobRequest(idempotency_key=idempotency_key or str(uuid.uuid4()), spec=spec)
        resp: pb.SubmitJobResponse = self._unary(self._stub.SubmitJob, req)
        return resp.job

    def get(self, job_id: str) -> pb.Job:
        """Returns one job; :class:`~fleet_client.errors.NotFound` if unknown or another user's."""
        resp: pb.GetJobResponse = self._unary(self._stub.GetJob, pb.GetJobRequest(job_id=job_id))
        return resp.job

    def list(self, *, statuses: Sequence[Union[str, int]] = (), system: Union[str, int, None] = None,
             tags: Sequence[str] = (), created_after: Optional[_dt.datetime] = None,
             created_before: Optional[_dt.datetime] = None, page_size: int = 0,
             limit: Optional[int] = None) -> Iterator[pb.Job]:
        """Yields the caller's jobs (every user's for an admin), newest first, page after page.

        Filters combine with AND: ``statuses`` (any of them), ``system``, ``tags`` (every one
        of them), a creation window (time-zone aware datetimes). ``limit`` stops after that
        many jobs.
        """
        req = pb.ListJobsRequest(statuses=[parse_status(s) for s in statuses], tags=list(tags),
                                 page_size=page_size)
        if system is not None:
            req.tacc_system = parse_system(system)
        if created_after is not None:
            req.created_after.CopyFrom(_timestamp(created_after))
        if created_before is not None:
            req.created_before.CopyFrom(_timestamp(created_before))
        n = 0
        while True:
            resp: pb.ListJobsResponse = self._unary(self._stub.ListJobs, req)
            for job in resp.jobs:
                if limit is not None and n >= limit:
                    return
                n += 1
                yield job
            if not resp.next_page_token:
                return
            req.page_token = resp.next_page_token

    def cancel(self, job_id: str, reason: str = "") -> pb.Job:
        """Cancels a job that has not finished and returns it; cancelling a CANCELLED job again
        changes nothing, a COMPLETED or FAILED one raises
        :class:`~fleet_client.errors.FailedPrecondition`."""
        req = pb.CancelJobRequest(job_id=job_id, reason=reason)
        resp: pb.CancelJobResponse = self._unary(self._stub.CancelJob, req)
        return resp.job

    def watch(self, job_id: str, *, replay_history: bool = True,
              timeout: Optional[float] = None) -> Iterator[pb.JobEvent]:
        """Yields the job's transitions as they happen (first the recorded ones, unless
        ``replay_history`` is false); the iterator ends after the terminal transition.
        ``timeout`` (seconds) bounds the whole stream."""
        req = pb.WatchJobRequest(job_id=job_id, replay_history=replay_history)
        for resp in self._stream(self._stub.WatchJob, req, timeout):
            yield resp.event

    def wait(self, job_id: str, *, timeout: Optional[float] = None) -> pb.Job:
        """Watches the job until it reaches a terminal status and returns it then.

        A watch stream that ends early (the orchestrator restarted) is opened again;
        ``timeout`` (seconds) bounds the whole wait with
        :class:`~fleet_client.errors.DeadlineExceeded`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            for event in self.watch(job_id, replay_history=True, timeout=left):
                if event.to_status in TERMINAL:
                    break
            job = self.get(job_id)
            if job.status in TERMINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED,
                                       f"job {job_id} is still {status_name(job.status)}")

    def logs(self, job_id: str, *, stderr: bool = False, offset: int = 0,
             follow: bool = False, timeout: Optional[float] = None) -> Iterator[pb.StreamJobOutputResponse]:
        """Yields the job's standard output (or error, with ``stderr``) from byte ``offset`` in
        chunks (``data`` bytes with their ``offset``).

        Without ``follow`` the iterator ends at the output's current end; with it, it waits for
        more until the job has ended and everything was sent. To resume after an interruption,
        call again with the last chunk's offset plus its length: nothing is lost or repeated.
        """
        req = pb.StreamJobOutputRequest(
            job_id=job_id, stream=pb.OUTPUT_STREAM_STDERR if stderr else pb.OUTPUT_STREAM_STDOUT,
            offset=offset, follow=follow)
        return self._stream(self._stub.StreamJobOutput, req, timeout)

    def outputs(self, job_id: str) -> Sequence[pb.OutputFile]:
        """Lists the regular files under the job's output directory, in path order."""
        resp: pb.ListJobOutputsResponse = self._unary(self._stub.ListJobOutputs,
                                                      pb.ListJobOutputsRequest(job_id=job_id))
        return tuple(resp.files)

    def download(self, job_id: str, path: str, dest: Union[str, "os.PathLike[str]", IO[bytes]], *,
                 timeout: Optional[float] = None) -> Downloaded:
        """Downloads one output file (``path`` as :meth:`outputs` gives it) to ``dest``, a file
        name or a binary file object, and verifies the SHA-256 the server sends at the end.

        A file name is written through a temporary file in the same directory and renamed only
        after the checksum matched: on :class:`~fleet_client.errors.ChecksumMismatch` or any
        error nothing is left behind. A file object receives the bytes as they arrive.
        """
        req = pb.DownloadJobOutputRequest(job_id=job_id, path=path)
        stream = self._stream(self._stub.DownloadJobOutput, req, timeout)
        if not isinstance(dest, (str, os.PathLike)):
            size, digest = receive_download(stream, dest, path)
            return Downloaded(path, size, digest, None)
        dest = os.fspath(dest)
        fd, tmp = tempfile.mkstemp(prefix=".fleet-download-", dir=os.path.dirname(os.path.abspath(dest)))
        try:
            with os.fdopen(fd, "wb") as f:
                size, digest = receive_download(stream, f, path)
            os.replace(tmp, dest)
        except BaseException:
            os.unlink(tmp)
            raise
        return Downloaded(path, size, digest, dest)

    def history(self, job_id: str) -> History:
        """Returns the job and every transition with its time, actor, reason and scheduler code."""
        resp: pb.GetJobHistoryResponse = self._unary(self._stub.GetJobHistory,
                                                     pb.GetJobHistoryRequest(job_id=job_id))
        return History(resp.job, tuple(resp.events))

    def resubmit(self, job_id: str, *, idempotency_key: Optional[str] = None,
                 walltime: Optional[Walltime] = None, partition: Optional[str] = None,
                 overrides: Optional[pb.JobSpec] = None, update_mask: Sequence[str] = ()) -> pb.Job:
        """Creates a new job from an earlier one's specification and returns it; the new job's
        ``resubmitted_from`` names the earlier one.

        ``walltime`` and ``partition`` change those fields; for any other field pass
        ``overrides`` with the new values and name them in ``update_mask`` (JobSpec paths such
        as ``"environment"`` or ``"resources.nodes"``). Nothing changed resubmits as it was.
        """
        spec = pb.JobSpec()
        if overrides is not None:
            spec.CopyFrom(overrides)
        paths = list(update_mask)
        if walltime is not None:
            spec.resources.walltime.CopyFrom(_duration(walltime))
            paths.append("resources.walltime")
        if partition is not None:
            spec.partition = partition
            paths.append("partition")
        req = pb.ResubmitJobRequest(job_id=job_id, idempotency_key=idempotency_key or str(uuid.uuid4()),
                                    overrides=spec, update_mask=field_mask_pb2.FieldMask(paths=paths))
        resp: pb.ResubmitJobResponse = self._unary(self._stub.ResubmitJob, req)
        return resp.job


def receive_download(stream: Iterable[pb.DownloadJobOutputResponse], out: IO[bytes],
                     path: str = "") -> Tuple[int, str]:
    """Writes the chunks of a DownloadJobOutput stream to ``out`` and checks the order of its
    parts (description, chunks, checksum) and the SHA-256. Returns the size and the checksum."""
    h = hashlib.sha256()
    size = 0
    described = False
    expected: Optional[str] = None
    for msg in stream:
        part = msg.WhichOneof("part")
        if expected is not None:
            raise ProtocolError(f"download of {path!r}: a {part} after the checksum")
        if part == "file":
            if described or size:
                raise ProtocolError(f"download of {path!r}: a second file description")
            described = True
        elif part == "chunk":
            if not described:
                raise ProtocolError(f"download of {path!r}: content before the file description")
            h.update(msg.chunk)
            out.write(msg.chunk)
            size += len(msg.chunk)
        elif part == "sha256":
            expected = msg.sha256
        else:
            raise ProtocolError(f"download of {path!r}: an empty message")
    if expected is None:
        raise ProtocolError(f"download of {path!r}: the stream ended without a checksum")
    actual = h.hexdigest()
    if actual != expected.lower():
        raise ChecksumMismatch(path, expected, actual)
    return size, actual


__all__ = ["FleetClient", "History", "Downloaded", "job_spec", "receive_download", "parse_agent",
           "parse_system", "parse_status", "parse_priority", "status_name", "TERMINAL",
           "ENV_ADDR", "ENV_TOKEN", "ENV_ALLOCATION", "FleetError", "pb"]
