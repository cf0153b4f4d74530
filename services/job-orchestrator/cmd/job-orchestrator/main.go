// Command job-orchestrator runs the fleet's job-orchestrator service: accepts HPC jobs over gRPC and streams their lifecycle events.
//
// Usage:
//
//	job-orchestrator                            serve
//	job-orchestrator outbox list                list the outbox events parked after a failure no retry changes
//	job-orchestrator outbox retry EVENT_ID...   unpark events (or -all) so the relay publishes them again
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "job-orchestrator: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "outbox" {
		return service.Outbox(ctx, os.LookupEnv, args[1:], os.Stdout)
	}
	if len(args) > 0 {
		return fmt.Errorf("unknown arguments %q (want none, or \"outbox list|retry\")", args)
	}
	return service.Run(ctx, os.LookupEnv, os.Stdout)
}
