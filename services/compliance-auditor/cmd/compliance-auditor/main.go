// Command compliance-auditor runs the fleet's compliance-auditor service: keeps the tamper-evident audit trail.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "compliance-auditor: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	return service.Run(ctx, os.LookupEnv, os.Stdout)
}
