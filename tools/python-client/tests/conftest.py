"""Fixtures of the fleet client's suite, which runs against a real job orchestrator.

tools/e2e (TestPythonClient, part of `make test`) starts an orchestrator with the local
scheduler and runs this suite with:

  FLEET_JOB_ADDR                the orchestrator's gRPC address
  FLEET_TOKEN                   a user's JWT
  FLEET_CLIENT_TEST_USER        that user's id (the token's subject)
  FLEET_CLIENT_TEST_OTHER_TOKEN another user's JWT
  FLEET_CLIENT_TEST_SYSTEM      the system jobs are submitted to [frontera]
  FLEET_CLIENT_TEST_PARTITION   its partition [development]

Without them the tests that need a server fail with a message naming the missing variables;
they never skip.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from fleet_client import FleetClient, pb

REQUIRED = ("FLEET_JOB_ADDR", "FLEET_TOKEN", "FLEET_CLIENT_TEST_USER", "FLEET_CLIENT_TEST_OTHER_TOKEN")

# How long a short job may take from submission to its end on the local scheduler.
JOB_TIMEOUT = 60.0


def _require_env() -> None:
    missing = [k for k in REQUIRED if not os.environ.get(k)]
    if missing:
        pytest.fail("the suite needs a running orchestrator (go test ./tools/e2e -run TestPythonClient "
                    "starts one); unset: " + ", ".join(missing), pytrace=False)


@pytest.fixture(scope="session")
def fleet() -> Iterator[FleetClient]:
    """The client of the test user, configured from the environment as chctl is."""
    _require_env()
    with FleetClient() as c:
        yield c


@pytest.fixture(scope="session")
def other() -> Iterator[FleetClient]:
    """A client of another user."""
    _require_env()
    with FleetClient(token=os.environ["FLEET_CLIENT_TEST_OTHER_TOKEN"]) as c:
        yield c


@pytest.fixture(scope="session")
def user_id() -> str:
    _require_env()
    return os.environ["FLEET_CLIENT_TEST_USER"]


@pytest.fixture
def submit(fleet: FleetClient):
    """Submits a custom job whose batch script is ``script`` (shell lines) and returns it; the
    name is unique unless given."""

    def _submit(script: str, **fields: object) -> pb.Job:
        fields.setdefault("name", "py-" + uuid.uuid4().hex[:8])
        return fleet.submit(agent="custom", system=os.environ.get("FLEET_CLIENT_TEST_SYSTEM", "frontera"),
                            partition=os.environ.get("FLEET_CLIENT_TEST_PARTITION", "development"),
                            script="#!/bin/sh\n" + script + "\n", walltime=600, **fields)

    return _submit
