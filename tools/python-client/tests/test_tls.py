"""The client's TLS settings against a gRPC server on loopback that serves TLS with a
self-signed certificate (the orchestrator itself serves plaintext today). The server is a
stand-in for the JobService that answers GetJob only."""

from __future__ import annotations

import shutil
import subprocess
from concurrent import futures
from pathlib import Path
from typing import Iterator, Tuple

import grpc
import pytest

from fleet_client import FleetClient, Unavailable, pb, pb_grpc


class _GetJobOnly(pb_grpc.JobServiceServicer):
    def GetJob(self, request: pb.GetJobRequest, context: grpc.ServicerContext) -> pb.GetJobResponse:
        auth = dict(context.invocation_metadata()).get("authorization", "")
        return pb.GetJobResponse(job=pb.Job(job_id=request.job_id, user_id=auth))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, Path]]:
    """A TLS server for the name fleet.test; yields its address and its certificate."""
    if shutil.which("openssl") is None:
        pytest.fail("the TLS tests need the openssl command to make a certificate", pytrace=False)
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=fleet.test", "-addext", "subjectAltName=DNS:fleet.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_JobServiceServicer_to_server(_GetJobOnly(), server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())]))
    server.start()
    yield f"127.0.0.1:{port}", cert
    server.stop(None)


def test_tls_with_a_ca_file_and_server_name(tls_server: Tuple[str, Path]) -> None:
    addr, cert = tls_server
    with FleetClient(addr, token="t0ken", tls=True, ca_file=str(cert), server_name="fleet.test", timeout=5) as c:
        job = c.get("j-1")
    assert job.job_id == "j-1"
    assert job.user_id == "Bearer t0ken", "the token did not reach the server"


def test_tls_refuses_an_untrusted_certificate(tls_server: Tuple[str, Path]) -> None:
    addr, _ = tls_server
    with FleetClient(addr, token="t0ken", tls=True, server_name="fleet.test", timeout=5) as c:
        with pytest.raises(Unavailable):
            c.get("j-1")


def test_plaintext_does_not_reach_a_tls_server(tls_server: Tuple[str, Path]) -> None:
    addr, _ = tls_server
    with FleetClient(addr, token="t0ken", timeout=5) as c:
        with pytest.raises(Unavailable):
            c.get("j-1")
