// Command job-orchestrator runs the fleet's job-orchestrator service: accepts HPC jobs over gRPC and streams their lifecycle events.
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
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "job-orchestrator: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	return service.Run(ctx, os.LookupEnv, os.Stdout)
}
