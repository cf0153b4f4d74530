"""The JobService calls added for researchers (issue 17) against a real orchestrator: live
output, output files, history, resubmission and the tags filter of ListJobs."""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from pathlib import Path

import pytest

from conftest import JOB_TIMEOUT
from fleet_client import FleetClient, InvalidArgument, NotFound, TERMINAL, pb, status_name


def _text(chunks) -> bytes:
    return b"".join(c.data for c in chunks)


def test_list_by_tag(fleet: FleetClient, submit) -> None:
    sweep, other_sweep = "sweep-" + uuid.uuid4().hex[:8], "sweep-" + uuid.uuid4().hex[:8]
    a = submit("true", tags=[sweep, "point-a"])
    b = submit("true", tags=[sweep, "point-b"])
    c = submit("true", tags=[other_sweep])
    assert {j.job_id for j in fleet.list(tags=[sweep])} == {a.job_id, b.job_id}
    assert [j.job_id for j in fleet.list(tags=[sweep, "point-b"])] == [b.job_id]
    assert [j.job_id for j in fleet.list(tags=[other_sweep])] == [c.job_id]
    assert list(fleet.list(tags=["no-such-tag-" + uuid.uuid4().hex[:8]])) == []


def test_logs_of_a_finished_job(fleet: FleetClient, submit) -> None:
    job = fleet.wait(submit("echo line1; echo oops >&2; echo line2").job_id, timeout=JOB_TIMEOUT)
    assert job.status == pb.JOB_STATUS_COMPLETED
    assert _text(fleet.logs(job.job_id)) == b"line1\nline2\n"
    assert _text(fleet.logs(job.job_id, stderr=True)) == b"oops\n"
    # Resuming from an offset repeats and loses nothing.
    chunks = list(fleet.logs(job.job_id, offset=6))
    assert chunks and chunks[0].offset == 6
    assert _text(chunks) == b"line2\n"


def test_logs_follow_a_running_job(fleet: FleetClient, submit) -> None:
    job = submit("for i in 1 2 3; do echo step $i; sleep 1; done")
    received = b""
    status_at_first_chunk = None
    for chunk in fleet.logs(job.job_id, follow=True, timeout=JOB_TIMEOUT):
        if status_at_first_chunk is None:
            status_at_first_chunk = fleet.get(job.job_id).status
        assert chunk.offset == len(received), "a chunk out of place"
        received += chunk.data
    assert received == b"step 1\nstep 2\nstep 3\n"
    assert status_at_first_chunk is not None and status_at_first_chunk not in TERMINAL, \
        "the first output arrived only after the job had ended"
    assert fleet.get(job.job_id).status == pb.JOB_STATUS_COMPLETED


def test_outputs_and_download(fleet: FleetClient, submit, tmp_path: Path) -> None:
    job = fleet.wait(submit("printf 'flux 1.25 Jy\\n' > result.txt; mkdir -p maps; "
                            "head -c 200000 /dev/zero > maps/image.fits").job_id, timeout=JOB_TIMEOUT)
    assert job.status == pb.JOB_STATUS_COMPLETED
    files = {f.path: f for f in fleet.outputs(job.job_id)}
    assert files["result.txt"].size_bytes == len(b"flux 1.25 Jy\n")
    assert files["maps/image.fits"].size_bytes == 200000
    assert files["result.txt"].HasField("modified_at")

    got = fleet.download(job.job_id, "result.txt", tmp_path / "result.txt")
    assert (tmp_path / "result.txt").read_bytes() == b"flux 1.25 Jy\n"
    assert got.sha256 == hashlib.sha256(b"flux 1.25 Jy\n").hexdigest()

    buf = io.BytesIO()
    big = fleet.download(job.job_id, "maps/image.fits", buf)
    assert buf.getvalue() == bytes(200000)
    assert big.size_bytes == 200000
    assert sorted(os.listdir(tmp_path)) == ["result.txt"], "a temporary file was left behind"


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "maps/../../x"])
def test_download_outside_the_job_directory_is_invalid(fleet: FleetClient, submit, path: str,
                                                       tmp_path: Path) -> None:
    job = fleet.wait(submit("true").job_id, timeout=JOB_TIMEOUT)
    with pytest.raises(InvalidArgument) as exc:
        fleet.download(job.job_id, path, tmp_path / "x")
    assert "path" in exc.value.fields
    assert os.listdir(tmp_path) == [], "a rejected download left a file"


def test_history_of_a_failed_job(fleet: FleetClient, submit, user_id: str) -> None:
    job = fleet.wait(submit("exit 7").job_id, timeout=JOB_TIMEOUT)
    hist = fleet.history(job.job_id)
    assert hist.job.job_id == job.job_id
    assert [status_name(e.to_status) for e in hist.events] == ["SUBMITTED", "QUEUED", "RUNNING", "FAILED"]
    assert [e.sequence for e in hist.events] == [1, 2, 3, 4]
    assert hist.events[0].actor == user_id
    assert all(e.actor and e.HasField("occurred_at") for e in hist.events)
    assert hist.events[-1].error_code == job.error_code != ""
    assert hist.events[-1].reason


def test_resubmit_with_more_walltime(fleet: FleetClient, submit) -> None:
    first = fleet.wait(submit("echo again", tags=["resubmit"]).job_id, timeout=JOB_TIMEOUT)
    key = "py-resubmit-" + uuid.uuid4().hex
    again = fleet.resubmit(first.job_id, idempotency_key=key, walltime=7200)
    assert again.job_id != first.job_id
    assert again.resubmitted_from == first.job_id
    assert again.spec.resources.walltime.seconds == 7200
    assert again.spec.script == first.spec.script
    assert list(again.spec.tags) == list(first.spec.tags)
    assert fleet.resubmit(first.job_id, idempotency_key=key, walltime=7200).job_id == again.job_id
    assert fleet.wait(again.job_id, timeout=JOB_TIMEOUT).status == pb.JOB_STATUS_COMPLETED

    with pytest.raises(InvalidArgument) as exc:
        fleet.resubmit(first.job_id, update_mask=["no_such_field"])
    assert exc.value.field_violations


def test_new_calls_on_foreign_and_unknown_jobs_are_not_found(fleet: FleetClient, other: FleetClient,
                                                             submit, tmp_path: Path) -> None:
    job = fleet.wait(submit("echo private > secret.txt; echo private").job_id, timeout=JOB_TIMEOUT)
    for client, job_id in ((other, job.job_id), (fleet, str(uuid.uuid4()))):
        with pytest.raises(NotFound):
            list(client.logs(job_id))
        with pytest.raises(NotFound):
            client.outputs(job_id)
        with pytest.raises(NotFound):
            client.download(job_id, "secret.txt", tmp_path / "secret.txt")
        with pytest.raises(NotFound):
            client.history(job_id)
        with pytest.raises(NotFound):
            client.resubmit(job_id)
    assert not (tmp_path / "secret.txt").exists()


def test_logs_from_a_negative_offset_is_invalid(fleet: FleetClient, submit) -> None:
    job = submit("true")
    with pytest.raises(InvalidArgument) as exc:
        list(fleet.logs(job.job_id, offset=-1))
    assert "offset" in exc.value.fields
    fleet.wait(job.job_id, timeout=JOB_TIMEOUT)
