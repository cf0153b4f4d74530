// Command metrics-consumer runs the fleet's metrics-consumer service: aggregates job metrics from the event stream.
//
// Usage:
//
//	metrics-consumer           serve (gRPC MetricsService, /metrics) and consume
//	metrics-consumer rebuild   with the service stopped: rebuild the store from Kafka, then exit
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
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "metrics-consumer: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	switch {
	case len(args) == 0:
		return service.Run(ctx, os.LookupEnv, os.Stdout)
	case len(args) == 1 && args[0] == "rebuild":
		_, err := service.Rebuild(ctx, os.LookupEnv, os.Stdout)
		return err
	}
	return fmt.Errorf("unknown arguments %q (want none, or \"rebuild\")", args)
}
