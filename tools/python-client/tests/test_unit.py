"""Checks of the client that need no server: argument parsing, download verification, token."""

from __future__ import annotations

import hashlib
import io
import time
from typing import Iterator

import grpc
import pytest

from fleet_client import (ChecksumMismatch, FleetClient, ProtocolError, job_spec, parse_agent,
                          parse_status, parse_system, pb, receive_download)
from fleet_client.errors import DeadlineExceeded, FleetError


def _download(data: bytes, checksum: str) -> list[pb.DownloadJobOutputResponse]:
    msgs = [pb.DownloadJobOutputResponse(file=pb.OutputFile(path="out.txt", size_bytes=len(data)))]
    msgs += [pb.DownloadJobOutputResponse(chunk=data[i:i + 3]) for i in range(0, len(data), 3)]
    msgs.append(pb.DownloadJobOutputResponse(sha256=checksum))
    return msgs


def test_receive_download_verifies_the_checksum() -> None:
    data = b"calibrated visibilities\n"
    out = io.BytesIO()
    size, digest = receive_download(_download(data, hashlib.sha256(data).hexdigest()), out, "out.txt")
    assert out.getvalue() == data
    assert size == len(data)
    assert digest == hashlib.sha256(data).hexdigest()


def test_receive_download_rejects_a_wrong_checksum() -> None:
    data = b"calibrated visibilities\n"
    with pytest.raises(ChecksumMismatch) as exc:
        receive_download(_download(data, hashlib.sha256(b"other").hexdigest()), io.BytesIO(), "out.txt")
    assert exc.value.actual == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name,msgs", [
    ("no checksum", [pb.DownloadJobOutputResponse(file=pb.OutputFile(path="a")),
                     pb.DownloadJobOutputResponse(chunk=b"x")]),
    ("chunk before description", [pb.DownloadJobOutputResponse(chunk=b"x"),
                                  pb.DownloadJobOutputResponse(sha256=hashlib.sha256(b"x").hexdigest())]),
    ("chunk after checksum", [pb.DownloadJobOutputResponse(file=pb.OutputFile(path="a")),
                              pb.DownloadJobOutputResponse(sha256=hashlib.sha256(b"").hexdigest()),
                              pb.DownloadJobOutputResponse(chunk=b"x")]),
])
def test_receive_download_rejects_a_broken_stream(name: str, msgs: list[pb.DownloadJobOutputResponse]) -> None:
    with pytest.raises(ProtocolError):
        receive_download(msgs, io.BytesIO(), "a")


def test_names_as_chctl_takes_them() -> None:
    assert parse_agent("AlphaCal") == pb.AGENT_ALPHA_CAL
    assert parse_agent("custom") == pb.AGENT_CUSTOM
    assert parse_system("frontera") == pb.TACC_SYSTEM_FRONTERA
    assert parse_system("TACC_SYSTEM_VISTA") == pb.TACC_SYSTEM_VISTA
    assert parse_status("completed") == pb.JOB_STATUS_COMPLETED
    with pytest.raises(ValueError, match="unknown system"):
        parse_system("summit")


def test_job_spec_applies_chctls_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_ALLOCATION", "AST99999")
    spec = job_spec(name="n", agent="custom", system="vista", partition="gg", command="true", tags=["a"])
    assert spec.resources.cores_per_node == 1
    assert spec.resources.walltime.seconds == 3600
    assert spec.allocation == "AST99999"
    assert spec.WhichOneof("payload") == "command"
    assert list(spec.tags) == ["a"]


def test_a_missing_token_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEET_TOKEN", raising=False)
    with pytest.raises(ValueError, match="no token.*FLEET_TOKEN"):
        FleetClient(address="127.0.0.1:1")


class _EndedStream(grpc.RpcError, grpc.Call):
    """A server stream that yields nothing and then fails with ``code`` after ``after`` seconds,
    as grpc's iterator does when the server resets the stream."""

    def __init__(self, code: grpc.StatusCode, after: float) -> None:
        self._code, self._after = code, after

    def __iter__(self) -> Iterator[pb.WatchJobResponse]:
        time.sleep(self._after)
        raise self

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "Stream removed (RST_STREAM (Received RST_STREAM with error code 8))"

    def initial_metadata(self) -> None: return None
    def trailing_metadata(self) -> None: return None
    def is_active(self) -> bool: return False
    def time_remaining(self) -> None: return None
    def cancel(self) -> bool: return False
    def add_callback(self, callback: object) -> bool: return False


def _watch_ending_with(code: grpc.StatusCode, after: float) -> FleetClient:
    client = FleetClient(address="127.0.0.1:1", token="t")
    client._stub.WatchJob = lambda request, metadata, timeout: _EndedStream(code, after)  # type: ignore[method-assign]
    return client


def test_a_stream_the_server_resets_at_its_deadline_is_deadline_exceeded() -> None:
    # A Go server resets a stream at its deadline with RST_STREAM CANCEL; when that arrives
    # before the client's own timer fires, grpc reports CANCELLED.
    with _watch_ending_with(grpc.StatusCode.CANCELLED, after=0.06) as client:
        with pytest.raises(DeadlineExceeded, match="deadline exceeded after 0.05s"):
            list(client.watch("j", timeout=0.05))


def test_a_stream_cancelled_before_its_deadline_stays_cancelled() -> None:
    with _watch_ending_with(grpc.StatusCode.CANCELLED, after=0) as client:
        with pytest.raises(FleetError) as exc:
            list(client.watch("j", timeout=30))
    assert exc.value.code == grpc.StatusCode.CANCELLED
    assert not isinstance(exc.value, DeadlineExceeded)
