package telemetry

import "context"

type correlationKey struct{}

// WithCorrelationID returns a context that carries the correlation id: the id
// that ties together every event and log line caused by one user request.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the correlation id carried by ctx, or "" if none.
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}
