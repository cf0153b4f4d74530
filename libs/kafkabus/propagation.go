package kafkabus

import (
	"context"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// injectContext writes the trace context and correlation id of ctx into headers.
func injectContext(ctx context.Context, headers map[string]string) {
	telemetry.Inject(ctx, headers)
}

// extractContext returns ctx with the trace context and correlation id carried by headers.
func extractContext(ctx context.Context, headers map[string]string) context.Context {
	return telemetry.Extract(ctx, headers)
}
