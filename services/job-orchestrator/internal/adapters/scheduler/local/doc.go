// Package local implements the app.Scheduler port by running each job's
// script as a child process of the service.
//
// Each job gets a directory <WorkRoot>/<jobID> holding:
//
//	job.sh        the script, mode 0700, executed directly (never through sh -c)
//	stdout.log    the script's standard output
//	stderr.log    the script's standard error
//	tmp/          the job's TMPDIR
//
// and the scheduler keeps its own record of the job in
// <WorkRoot>/.state/<jobID> (mode 0700, never the job's):
//
//	request.json  the submitted request (mode 0600), so queued jobs survive a restart
//	state.json    the job's state and, once it ended, its outcome
//	exit.json     the script's exit status and resource use, written by its supervisor
//	supervisor.log what the supervisor reported, if anything
//
// # Supervisor
//
// The scheduler does not start a script itself: it starts the job's
// supervisor (package jobsupervisor): Config.SupervisorPath, the small
// executable built from cmd/job-supervisor, or else its own executable
// again (/proc/self/exe) in supervisor mode, entered from this package's
// init. The scheduler takes a job's uid, cgroup and files and starts its
// supervisor outside its mutex. The supervisor runs as the service's
// user in a process group of its own, outside the job's cgroup, ignores
// SIGTERM, SIGINT and SIGHUP, starts the script as described below, waits
// for it and writes exit.json atomically (temporary file and rename) before
// it exits. It outlives the service, so the outcome of a job that ends while
// no scheduler runs is not lost; the job's uid can neither write the
// scheduler's directory nor signal the supervisor.
//
// # Isolation
//
// Jobs are hostile code. Unless Config.SingleUser is set:
//   - Each job runs under a uid and gid of Config.UIDs / Config.GIDs that
//     no process on the host runs under and no other scheduler holds (a
//     flock per uid in Config.LockDir), never the service's own, without
//     supplementary groups. Its directory is its own (mode 0700) while it
//     runs and is taken back when it ends, so a later job given the same
//     uid cannot read it; what it left under /tmp, /var/tmp and /dev/shm is
//     removed. WorkRoot is mode 0711: job users can reach their directory
//     but not list the others. Another uid cannot read the service's
//     environment (/proc/<pid>/environ) or memory.
//   - Each job has a cgroup (v2 when a v2 hierarchy offers cpu, memory and
//     pids, else v1 freezer, pids, memory and cpu) below
//     Config.CgroupParent. Ending, cancelling or timing out a job kills
//     every process in it, including those that called setsid or
//     daemonized: the cgroup is frozen, each member gets SIGKILL, it is
//     thawed, and removed once empty.
//   - Limits: cpu quota of nodes × cores_per_node, memory limit of nodes ×
//     memory_mb (Config.DefaultMemoryMB when the request has none; swap
//     included), pids.max and RLIMIT_NPROC of Config.MaxProcesses,
//     RLIMIT_NOFILE of Config.MaxOpenFiles, RLIMIT_FSIZE of
//     Config.MaxFileSize. A job whose process the kernel killed for its
//     memory limit ends PhaseFailed with ErrorCodeOutOfMemory.
//   - The cgroup and rlimits are in place before the job runs any code of
//     its own: the child is started traced (PTRACE_TRACEME), so it stops
//     right after execve; the supervisor moves it into its cgroup, sets its
//     rlimits and detaches. See startStopped and setRlimits.
//
// New refuses to start (ErrNotIsolated) when the process cannot switch
// users (Config.Privileges), no cgroup hierarchy is usable, or job users
// cannot search every directory above WorkRoot. In single-user mode jobs
// run as the service's user, in a cgroup if one can be created, and New
// logs that they run unisolated.
//
// The script starts from a minimal environment (PATH, HOME set to the job
// directory, LANG, TMPDIR, and USER and LOGNAME when it has its own uid),
// overlaid with the request's environment and then with FLEET_JOB_ID,
// FLEET_JOB_NAME, FLEET_JOB_DIR and FLEET_WORK_DIR; nothing of the
// service's own environment (and so none of its secrets) is inherited. The
// working directory is the request's WorkDir when set (the job's uid must
// be able to enter it), else the job directory.
//
// Every job runs in its own process group. The walltime is enforced with
// SIGTERM to every process of the job, then SIGKILL after KillGrace; such a
// job ends as PhaseFailed with ErrorCodeTimeout. Cancel does the same and
// ends the job as PhaseCancelled. When the script exits, whatever it left
// running is killed. At most MaxConcurrent jobs run at once; the rest wait
// in FIFO order as PhaseQueued.
//
// Restart behaviour: New reads every state.json under WorkRoot/.state (and
// moves those an earlier version kept in the job directory).
//   - A job with a recorded outcome reports that outcome.
//   - A job that was still queued is queued again and runs.
//   - A job that was running when the previous process died reports
//     PhaseRunning while a process of it is alive (its cgroup has members,
//     or its supervisor is alive, recognised through /proc by the job id in
//     its environment so that a reused pid does not count). Once none is,
//     it ends with the outcome in exit.json (completed on exit 0, failed
//     with its exit code otherwise, out of memory when its cgroup says so),
//     or, without that file (a job started by a version without
//     supervisors, or a supervisor killed), PhaseFailed with ErrorCodeLost.
//     Cancel still kills such a job.
//   - A job without a directory or state file is unknown: ErrUnknownJob.
//
// Close stops starting queued jobs (they stay queued on disk and resume
// after the next New) and terminates running jobs, which end as PhaseFailed
// with ErrorCodeLost.
//
// A SchedulerRef's ID is the fleet job id; its SubmittedAt is compared at
// second precision, and a zero SubmittedAt is not compared.
package local
