// Command health-monitor runs the fleet's health-monitor service: watches the health of the whole fleet.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "health-monitor: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	return service.Run(ctx, os.LookupEnv, os.Stdout)
}
