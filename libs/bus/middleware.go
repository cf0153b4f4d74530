package bus

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// The middleware below is what the Kafka and AMQP consumers compose around
// a handler, in the manner of watermill's router middleware; a runner itself
// only translates deliveries into Messages and acks or marks them. A chain,
// outermost first, reads: Tracing → Outcomes → Logging → (settle or
// DeadLetter) → Duration → Recover → Retry → Timeout → handler.

// DLQSuffix is appended to a topic name to form its dead-letter topic.
const DLQSuffix = ".dlq"

// DLQTopic returns the dead-letter topic of topic.
func DLQTopic(topic string) string { return topic + DLQSuffix }

// HeaderEventID carries the event id of an event message.
const HeaderEventID = "event_id"

type deadLettered struct{ err error }

func (e deadLettered) Error() string { return "dead-lettered: " + e.err.Error() }
func (e deadLettered) Unwrap() error { return e.err }

// DeadLettered marks err, the failure of a message, as settled: the message
// went to its dead-letter destination, so the runner acks or marks it.
// DeadLettered(nil) is nil.
func DeadLettered(err error) error {
	if err == nil {
		return nil
	}
	return deadLettered{err: err}
}

// IsDeadLettered reports whether err was marked DeadLettered.
func IsDeadLettered(err error) bool {
	var d deadLettered
	return errors.As(err, &d)
}

// Settled reports whether a handler chain's result lets the runner ack or
// mark the message: it was handled, or it was dead-lettered.
func Settled(err error) bool { return err == nil || IsDeadLettered(err) }

// DeadLetter sends a message whose handler failed to its dead-letter
// destination with publish and returns DeadLettered(err) once publish
// succeeded; publish's own failure is returned joined with err (the message
// stays unsettled). A failure after ctx ended is returned as it is: the
// message is handled again by the partition's or queue's next consumer.
func DeadLetter(publish func(ctx context.Context, msg *Message, cause error) error) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, msg *Message) error {
			err := next(ctx, msg)
			if err == nil || ctx.Err() != nil {
				return err
			}
			if perr := publish(ctx, msg, err); perr != nil {
				return errors.Join(err, perr)
			}
			return DeadLettered(err)
		}
	}
}

// Tracing runs the handler in a consumer span named name(msg), a child of
// the trace context carried by the message's headers (whose correlation id
// the context also receives). A failure is recorded on the span.
func Tracing(tracer trace.Tracer, name func(*Message) string, attrs func(*Message) []attribute.KeyValue) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, msg *Message) error {
			ctx = telemetry.Extract(ctx, msg.Headers)
			ctx, span := tracer.Start(ctx, name(msg), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs(msg)...))
			defer span.End()
			err := next(ctx, msg)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			return err
		}
	}
}

// Duration observes the time spent in the rest of the chain, labelled by
// label(msg).
func Duration(h *prometheus.HistogramVec, label func(*Message) string) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, msg *Message) error {
			start := time.Now()
			err := next(ctx, msg)
			h.WithLabelValues(label(msg)).Observe(time.Since(start).Seconds())
			return err
		}
	}
}

// OutcomeLabels name the outcomes Outcomes counts.
type OutcomeLabels struct {
	OK           string // handled
	DeadLettered string // settled by dead-lettering
	Failed       string // left unsettled
}

// Outcomes counts each message by its outcome, labelled by label(msg) and
// the outcome's label.
func Outcomes(c *prometheus.CounterVec, label func(*Message) string, names OutcomeLabels) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, msg *Message) error {
			err := next(ctx, msg)
			outcome := names.Failed
			switch {
			case err == nil:
				outcome = names.OK
			case IsDeadLettered(err):
				outcome = names.DeadLettered
			}
			c.WithLabelValues(label(msg), outcome).Inc()
			return err
		}
	}
}

// Logging logs each handled message at debug level as "<prefix> message
// handled" and each dead-lettered one at error level as "<prefix> message
// dead-lettered", with attrs(msg), the event type and the duration; ctx
// carries the message's trace and correlation id.
func Logging(logger *slog.Logger, prefix string, attrs func(*Message) []any) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, msg *Message) error {
			start := time.Now()
			err := next(ctx, msg)
			switch {
			case err == nil && logger.Enabled(ctx, slog.LevelDebug):
				logger.DebugContext(ctx, prefix+" message handled", append(attrs(msg), HeaderEventType, msg.Header(HeaderEventType),
					"duration_ms", float64(time.Since(start).Microseconds())/1000)...)
			case IsDeadLettered(err):
				logger.ErrorContext(ctx, prefix+" message dead-lettered", append(attrs(msg), "error", err, "permanent", IsPermanent(err),
					"attempts", msg.Attempt, HeaderEventType, msg.Header(HeaderEventType))...)
			}
			return err
		}
	}
}
