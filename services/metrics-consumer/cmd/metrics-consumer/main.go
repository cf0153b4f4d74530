// Command metrics-consumer runs the fleet's metrics-consumer service: aggregates job metrics from the event stream.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "metrics-consumer: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	return service.Run(ctx, os.LookupEnv, os.Stdout)
}
