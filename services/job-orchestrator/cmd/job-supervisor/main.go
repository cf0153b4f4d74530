// Command job-supervisor supervises one job of the local backend: the
// backend starts it once per job (LOCAL_JOB_SUPERVISOR, or found next to
// the job-orchestrator executable) with the job's run spec, and it starts
// the script, waits for it and records its exit (package jobsupervisor).
// It links only the standard library and x/sys, so it starts in a few
// milliseconds where the orchestrator's own executable, which can serve
// instead, first runs the init of every package it links.
package main

import (
	"fmt"
	"os"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local/jobsupervisor"
)

func main() {
	if !jobsupervisor.Invoked(os.Args) {
		fmt.Fprintf(os.Stderr, "usage: %s=<job id> %s %s <run spec>\n(started by the job orchestrator's local backend, not by hand)\n",
			jobsupervisor.Env, os.Args[0], jobsupervisor.Arg)
		os.Exit(2)
	}
	os.Exit(jobsupervisor.Run(os.Args[2]))
}
