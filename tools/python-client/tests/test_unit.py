"""Checks of the client that need no server: argument parsing, download verification, token."""

from __future__ import annotations

import hashlib
import io

import pytest

from fleet_client import (ChecksumMismatch, FleetClient, ProtocolError, job_spec, parse_agent,
                          parse_status, parse_system, pb, receive_download)


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
