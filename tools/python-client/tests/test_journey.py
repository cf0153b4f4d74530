"""A researcher's journey with the client against a real orchestrator, on whichever backend it
runs (tools/e2e runs it on the local scheduler and on Slurm): submit a small sweep (a re-run
submits nothing twice), follow one job's output live, read why the long point failed, resubmit
it with more walltime and download its output file.

The long point works longer than the sweep's walltime, so it ends with TIMEOUT:

  FLEET_CLIENT_TEST_WALLTIME       the sweep's walltime in seconds [3]
  FLEET_CLIENT_TEST_LONG_WORK      seconds the long point works [6]
  FLEET_CLIENT_TEST_MORE_WALLTIME  the resubmission's walltime in seconds [60]
  FLEET_CLIENT_TEST_JOURNEY_WAIT   how long each wait may take, in seconds [60]
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from fleet_client import FleetClient, TERMINAL, pb, status_name

WALLTIME = int(os.environ.get("FLEET_CLIENT_TEST_WALLTIME", "3"))
LONG_WORK = int(os.environ.get("FLEET_CLIENT_TEST_LONG_WORK", "6"))
MORE_WALLTIME = int(os.environ.get("FLEET_CLIENT_TEST_MORE_WALLTIME", "60"))
WAIT = float(os.environ.get("FLEET_CLIENT_TEST_JOURNEY_WAIT", "60"))

SCRIPT = """#!/bin/sh
echo "working for {work}s"
i=1
while [ $i -le {work} ]; do echo "step $i"; sleep 1; i=$((i+1)); done
echo "work={work} done" > result.txt
echo "finished"
"""


def _submit_sweep(fleet: FleetClient, sweep: str, works: list[int]) -> dict[int, pb.Job]:
    """Submits one job per point, each with a key of its own point: a re-run returns the jobs of
    the first run."""
    return {w: fleet.submit(idempotency_key=f"{sweep}-work-{w}", name=f"{sweep}-work{w}", agent="custom",
                            system=os.environ.get("FLEET_CLIENT_TEST_SYSTEM", "frontera"),
                            partition=os.environ.get("FLEET_CLIENT_TEST_PARTITION", "development"),
                            script=SCRIPT.format(work=w), walltime=WALLTIME, tags=["sweep:" + sweep])
            for w in works}


def test_journey(fleet: FleetClient, tmp_path: Path) -> None:
    sweep = "journey-" + uuid.uuid4().hex[:8]
    works = [1, LONG_WORK]
    jobs = _submit_sweep(fleet, sweep, works)
    again = _submit_sweep(fleet, sweep, works)
    assert {w: j.job_id for w, j in again.items()} == {w: j.job_id for w, j in jobs.items()}, \
        "a re-run submitted a job twice"
    assert len({j.job_id for j in fleet.list(tags=["sweep:" + sweep])}) == len(works)
    long = jobs[LONG_WORK].job_id

    # Follow the long job's output live: the second line arrives while it runs.
    received = b""
    status_at_step2 = None
    for chunk in fleet.logs(long, follow=True, timeout=WAIT):
        assert chunk.offset == len(received), "a chunk out of place"
        received += chunk.data
        if status_at_step2 is None and b"step 2\n" in received:
            status_at_step2 = fleet.get(long).status
    assert received.startswith(f"working for {LONG_WORK}s\nstep 1\nstep 2\n".encode()), received
    assert b"finished" not in received, "the job was not stopped at its walltime"
    assert status_at_step2 == pb.JOB_STATUS_RUNNING, status_name(status_at_step2 or 0)

    # Why it failed: the researcher's sentence next to the scheduler's own code.
    failed = fleet.wait(long, timeout=WAIT)
    assert failed.status == pb.JOB_STATUS_FAILED
    assert failed.error_code == "TIMEOUT"
    last = fleet.history(long).events[-1]
    assert status_name(last.to_status) == "FAILED"
    assert last.error_code == "TIMEOUT"
    assert last.scheduler_code, "the scheduler's own code"
    assert last.reason.startswith("The job ran longer than its walltime and was stopped; "
                                  "resubmit with a longer walltime"), last.reason
    short = fleet.wait(jobs[1].job_id, timeout=WAIT)
    assert short.status == pb.JOB_STATUS_COMPLETED

    # Resubmitted with more walltime it completes, in the sweep by its tag.
    new = fleet.resubmit(long, idempotency_key=sweep + "-more", walltime=MORE_WALLTIME)
    assert new.resubmitted_from == long
    assert new.spec.resources.walltime.seconds == MORE_WALLTIME
    done = fleet.wait(new.job_id, timeout=WAIT + MORE_WALLTIME)
    assert done.status == pb.JOB_STATUS_COMPLETED, status_name(done.status)
    listed = {j.job_id: j.status for j in fleet.list(tags=["sweep:" + sweep])}
    assert listed == {jobs[1].job_id: pb.JOB_STATUS_COMPLETED, long: pb.JOB_STATUS_FAILED,
                      new.job_id: pb.JOB_STATUS_COMPLETED}
    assert all(s in TERMINAL for s in listed.values())

    # Its output file.
    assert "result.txt" in {f.path for f in fleet.outputs(new.job_id)}
    got = fleet.download(new.job_id, "result.txt", tmp_path / "result.txt")
    assert (tmp_path / "result.txt").read_bytes() == f"work={LONG_WORK} done\n".encode()
    assert got.size_bytes == len(f"work={LONG_WORK} done\n")
    out = b"".join(c.data for c in fleet.logs(new.job_id))
    assert out.endswith(f"step {LONG_WORK}\nfinished\n".encode()), out
