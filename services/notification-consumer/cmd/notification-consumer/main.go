// Command notification-consumer runs the fleet's notification-consumer service: notifies users of job lifecycle changes.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "notification-consumer: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	return service.Run(ctx, os.LookupEnv, os.Stdout)
}
