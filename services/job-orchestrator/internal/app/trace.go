package app

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

const tracerName = "github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"

// traceParent returns the W3C traceparent of ctx's span, "" without one.
func traceParent(ctx context.Context) string {
	h := map[string]string{}
	telemetry.Inject(ctx, h)
	return h[telemetry.HeaderTraceparent]
}

// jobContext returns ctx for recording a change of j found by the
// reconciler: a span named name in the trace of j's submission (so that one
// trace follows the job through all its events), linked to the span of ctx,
// and j's correlation id for logs and events. Call end when done.
func jobContext(ctx context.Context, j *domain.Job, name string) (_ context.Context, end func(error)) {
	ctx = telemetry.WithCorrelationID(ctx, j.CorrelationID)
	parent := ctx
	var opts []trace.SpanStartOption
	if j.TraceParent != "" {
		parent = telemetry.Extract(ctx, map[string]string{telemetry.HeaderTraceparent: j.TraceParent})
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	opts = append(opts, trace.WithAttributes(attribute.String("job.id", j.ID), attribute.String("job.status", string(j.Status))))
	ctx, span := otel.Tracer(tracerName).Start(parent, name, opts...)
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
