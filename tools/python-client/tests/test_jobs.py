"""The JobService calls of its first version against a real orchestrator: submit, get, list,
watch, cancel, and the errors for invalid input, unknown and foreign jobs."""

from __future__ import annotations

import uuid

import pytest

from conftest import JOB_TIMEOUT
from fleet_client import (AlreadyExists, DeadlineExceeded, FailedPrecondition, FleetClient, InvalidArgument, NotFound, TERMINAL,
                          Unauthenticated, pb, status_name)


def _statuses(events: list[pb.JobEvent]) -> list[str]:
    return [status_name(e.to_status) for e in events]


def test_submit_get_and_watch_to_completed(fleet: FleetClient, submit, user_id: str) -> None:
    job = submit("echo calibrated", tags=["py-suite"], environment={"BAND": "L"})
    assert job.status == pb.JOB_STATUS_SUBMITTED
    assert job.user_id == user_id

    got = fleet.get(job.job_id)
    assert got.job_id == job.job_id
    assert got.spec.script == "#!/bin/sh\necho calibrated\n"
    assert list(got.spec.tags) == ["py-suite"]
    assert dict(got.spec.environment) == {"BAND": "L"}
    assert got.spec.resources.walltime.seconds == 600

    events = list(fleet.watch(job.job_id, timeout=JOB_TIMEOUT))
    assert _statuses(events) == ["SUBMITTED", "QUEUED", "RUNNING", "COMPLETED"]
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    assert all(e.job_id == job.job_id for e in events)

    done = fleet.wait(job.job_id, timeout=JOB_TIMEOUT)
    assert done.status == pb.JOB_STATUS_COMPLETED
    assert done.HasField("exit_code") and done.exit_code == 0
    assert done.HasField("finished_at")


def test_submit_is_idempotent(fleet: FleetClient, submit) -> None:
    key, name = "py-" + uuid.uuid4().hex, "py-idem-" + uuid.uuid4().hex[:8]
    first = submit("true", idempotency_key=key, name=name)
    again = submit("true", idempotency_key=key, name=name)
    assert again.job_id == first.job_id
    # The same key with a different job is refused, not taken for a retry.
    with pytest.raises(AlreadyExists):
        submit("false", idempotency_key=key, name=name)


def test_a_failing_job_ends_failed_with_its_exit_code(fleet: FleetClient, submit) -> None:
    job = fleet.wait(submit("exit 3").job_id, timeout=JOB_TIMEOUT)
    assert job.status == pb.JOB_STATUS_FAILED
    assert job.exit_code == 3
    assert job.error_code


def test_list_returns_the_callers_jobs_with_filters(fleet: FleetClient, other: FleetClient, submit) -> None:
    done = fleet.wait(submit("true").job_id, timeout=JOB_TIMEOUT)
    mine = [j.job_id for j in fleet.list()]
    assert done.job_id in mine
    assert done.job_id in [j.job_id for j in fleet.list(statuses=["completed"], system="frontera")]
    assert done.job_id not in [j.job_id for j in fleet.list(statuses=["failed", "cancelled"])]
    assert done.job_id not in [j.job_id for j in fleet.list(system="vista")]
    assert done.job_id not in [j.job_id for j in other.list()]
    # Pages of one job each reach the same jobs as one page.
    assert [j.job_id for j in fleet.list(page_size=1, limit=3)] == mine[:3]


def test_cancel_a_running_job(fleet: FleetClient, submit) -> None:
    job = submit("sleep 300")
    for event in fleet.watch(job.job_id, timeout=JOB_TIMEOUT):
        if event.to_status == pb.JOB_STATUS_RUNNING:
            break
        assert event.to_status not in TERMINAL, status_name(event.to_status)
    cancelled = fleet.cancel(job.job_id, reason="wrong band")
    assert cancelled.status == pb.JOB_STATUS_CANCELLED
    events = list(fleet.watch(job.job_id, timeout=JOB_TIMEOUT))
    assert _statuses(events)[-1] == "CANCELLED"
    assert events[-1].reason == "wrong band"
    # Cancelling again changes nothing.
    assert fleet.cancel(job.job_id).status == pb.JOB_STATUS_CANCELLED


def test_cancel_a_finished_job_is_failed_precondition(fleet: FleetClient, submit) -> None:
    job = fleet.wait(submit("true").job_id, timeout=JOB_TIMEOUT)
    with pytest.raises(FailedPrecondition):
        fleet.cancel(job.job_id)
    assert fleet.get(job.job_id).status == pb.JOB_STATUS_COMPLETED


def test_invalid_input_is_invalid_argument_with_field_violations(fleet: FleetClient, submit) -> None:
    before = len(list(fleet.list()))
    with pytest.raises(InvalidArgument) as exc:
        submit("true", name="not a valid name!", nodes=0)
    err = exc.value
    assert "spec.name" in err.fields
    assert "spec.resources.nodes" in err.fields
    assert all(v.description for v in err.field_violations)
    assert "spec.name" in str(err)
    assert len(list(fleet.list())) == before, "a rejected submission created a job"

    with pytest.raises(InvalidArgument) as exc:
        fleet.submit(idempotency_key="", spec=None, name="n", agent="custom", system="frontera",
                     partition="no-such-partition", command="true")
    assert "spec.partition" in exc.value.fields


def test_unknown_and_foreign_jobs_are_not_found(fleet: FleetClient, other: FleetClient, submit) -> None:
    with pytest.raises(NotFound):
        fleet.get(str(uuid.uuid4()))
    job = submit("sleep 30")
    with pytest.raises(NotFound):
        other.get(job.job_id)
    with pytest.raises(NotFound):
        other.cancel(job.job_id)
    with pytest.raises(NotFound):
        list(other.watch(job.job_id, timeout=10))
    assert fleet.cancel(job.job_id).status == pb.JOB_STATUS_CANCELLED


def test_a_bad_token_is_unauthenticated(fleet: FleetClient) -> None:
    with FleetClient(address=fleet.address, token="not-a-jwt") as bad:
        with pytest.raises(Unauthenticated):
            bad.get(str(uuid.uuid4()))


def test_wait_gives_up_at_its_timeout(fleet: FleetClient, submit) -> None:
    job = submit("sleep 300")
    with pytest.raises(DeadlineExceeded):
        fleet.wait(job.job_id, timeout=1.5)
    assert fleet.get(job.job_id).status not in TERMINAL
    assert fleet.cancel(job.job_id).status == pb.JOB_STATUS_CANCELLED
