// Package slurm implements the app.Scheduler port over slurmrestd's REST API
// (OpenAPI versions v0.0.40, v0.0.41 and v0.0.42, as Slurm 24.11 serves them).
//
// Transport: plain net/http with keep-alive, to http(s)://host:port, or to a
// unix socket when BaseURL is unix:///path/to/socket. Requests carry
// X-SLURM-USER-NAME and X-SLURM-USER-TOKEN (JWT) when a token is configured;
// a TokenFile is re-read whenever its size or modification time changes, so
// a rotated token is picked up without a restart. The token is held as a
// telemetry.Secret and never logged.
//
// Version: Config.APIVersion, or else the newest of SupportedVersions that
// GET /openapi/v3 lists, chosen at start (Scheduler.APIVersion) or at the
// first request that reaches slurmrestd, and logged.
//
// Submit posts /slurm/{version}/job/submit. The job is named
// "<Name>-<JobID>", runs in the request's WorkDir (which the Slurm job user
// must be able to write) and writes <WorkDir>/<JobID>.out and .err. Its
// environment is exactly the request's environment plus PATH (when not
// given), FLEET_JOB_ID, FLEET_JOB_NAME and FLEET_WORK_DIR: values travel as
// JSON strings and are never interpreted by a shell. Cores per node become
// tasks_per_node=1 with cpus_per_task=N; GPUs per node become gpus_per_node
// (v0.0.38 rejects tres_per_node as an unknown key). After the submit the
// job is read back once to learn its submit time, which becomes part of the
// SchedulerRef.
//
// Status reads /slurm/{version}/job/{id} and maps job_state (a flag list)
// onto the fleet's phases (see MapState); failure and pending reasons carry
// one sentence of what to do (Advice). An ended job's status carries CPU
// time and max RSS from its slurmdbd record (Accounting). StatusMany answers
// for many jobs with one GET /jobs?update_time=... (app.BulkStatuser).
// A job whose submit_time differs from the
// reference's is a different job under a reused id and is reported as
// app.ErrUnknownJob, as is a job slurmctld no longer knows (error 2017,
// "Invalid job id specified"). A zero SubmittedAt in a reference is not
// compared.
//
// Cancel reads the job first (so a reused id is never cancelled), then sends
// DELETE /slurm/{version}/job/{id} (SIGKILL). A job that already ended is not
// an error.
//
// Errors: connection failures, timeouts, HTTP 502/503/504 and HTTP 5xx
// answers whose Slurm error codes are not request errors (communication
// errors, authentication failures reported as -1, malformed bodies) wrap
// app.ErrSchedulerUnavailable, so callers retry. Slurm request errors
// (codes 2000-2999 and 9000 and up, e.g. an invalid partition or an unknown
// field) and HTTP 4xx are returned as *APIError without that wrapping.
package slurm
