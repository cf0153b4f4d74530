// Package schedulertest is the contract suite of the app.Scheduler port.
// Every scheduler backend runs it from its own tests:
//
//	schedulertest.Run(t, func(t *testing.T) app.Scheduler { ... }, schedulertest.Options{...})
//
// The suite submits real jobs and checks: a job that exits 0 completes with
// its times set; a job that exits 3 fails with NON_ZERO_EXIT and exit code
// 3; a job past its time limit fails with TIMEOUT; a job cancelled while
// pending and one cancelled while running end as cancelled (and the running
// one's process tree is gone); unknown references, including a known id with
// another submit time, return ErrUnknownJob; and the job's environment
// reaches the process verbatim, with shell metacharacters never executed.
//
// The scripts are bash scripts that write into the job's WorkDir, so the
// user the backend runs jobs as must be able to write there (Options.WorkDir).
package schedulertest
