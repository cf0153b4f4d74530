// Package local implements the app.Scheduler port by running each job's
// script as a child process of the service.
//
// Each job gets a directory <WorkRoot>/<jobID> holding:
//
//	job.sh        the script, mode 0700, executed directly (never through sh -c)
//	stdout.log    the script's standard output
//	stderr.log    the script's standard error
//	request.json  the submitted request (mode 0600), so queued jobs survive a restart
//	state.json    the job's state and, once it ended, its outcome
//
// The script starts from a minimal environment (PATH, HOME set to the job
// directory, LANG), overlaid with the request's environment and then with
// FLEET_JOB_ID, FLEET_JOB_NAME, FLEET_JOB_DIR and FLEET_WORK_DIR; nothing of
// the service's own environment (and so none of its secrets) is inherited.
// The working directory is the request's WorkDir when set, else the job
// directory.
//
// Every job runs in its own process group. The walltime is enforced with
// SIGTERM to the whole group, then SIGKILL after KillGrace; such a job ends
// as PhaseFailed with ErrorCodeTimeout. Cancel does the same and ends the
// job as PhaseCancelled. When the script exits, whatever it left running in
// its process group is killed. At most MaxConcurrent jobs run at once; the
// rest wait in FIFO order as PhaseQueued.
//
// Restart behaviour: New reads every state.json under WorkRoot.
//   - A job with a recorded outcome reports that outcome.
//   - A job that was still queued is queued again and runs.
//   - A job that was running when the previous process died reports
//     PhaseRunning while its process group is still alive (checked through
//     /proc), and PhaseFailed with ErrorCodeLost once it is gone, because its
//     exit code can no longer be known. Cancel still kills such a job.
//   - A job without a directory or state file is unknown: ErrUnknownJob.
//
// Close stops starting queued jobs (they stay queued on disk and resume
// after the next New) and terminates running jobs, which end as PhaseFailed
// with ErrorCodeLost.
//
// A SchedulerRef's ID is the fleet job id; its SubmittedAt is compared at
// second precision, and a zero SubmittedAt is not compared.
package local
