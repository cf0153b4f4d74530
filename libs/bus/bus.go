// Package bus holds what the Kafka and AMQP buses share: the message shape a
// handler sees, the handler and middleware types, and the middleware that
// every consumer composes (recover, timeout, retry with backoff).
//
// A handler returns nil when the message's effect is durable; only then does a
// consumer mark the Kafka offset or ack the AMQP delivery. Errors are of two
// classes. One wrapped with Permanent (bytes that do not decode, a validation
// no retry changes) is never retried: the consumer sends the message to its
// dead-letter destination at once. Any other error is transient (a database,
// broker or network that is down, a timeout, a lock): the consumer keeps the
// message and retries it, backing off, until it succeeds or the consumer
// stops, so an outage dead-letters nothing and per-key order holds.
package bus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/cosmic-horizons/fleet/libs/retry"
)

// Message is one message as published to or received from a broker.
type Message struct {
	// Topic is the Kafka topic, or the AMQP exchange the message was published to.
	Topic string
	// Key is the Kafka message key, or the AMQP routing key.
	Key string
	// Value is the encoded payload (Avro single-object encoding for events).
	Value []byte
	// Headers carry trace context, correlation id, event type and content type.
	Headers map[string]string

	// Set on received messages only.
	Partition int32     // Kafka partition; 0 for AMQP
	Offset    int64     // Kafka offset; AMQP delivery tag
	Timestamp time.Time // broker or publisher timestamp
	// Attempt counts handler invocations for this delivery, starting at 1.
	Attempt int
}

// Header returns the value of header name, or "".
func (m *Message) Header(name string) string {
	if m.Headers == nil {
		return ""
	}
	return m.Headers[name]
}

// SetHeader sets header name, allocating the map when needed.
func (m *Message) SetHeader(name, value string) {
	if m.Headers == nil {
		m.Headers = make(map[string]string, 4)
	}
	m.Headers[name] = value
}

// Well-known header names besides the W3C trace context ones.
const (
	HeaderEventType   = "event_type"
	HeaderContentType = "content-type"
	// Dead-letter headers describe why and where a message failed.
	HeaderDLQError     = "dlq.error"
	HeaderDLQTopic     = "dlq.original_topic"
	HeaderDLQPartition = "dlq.original_partition"
	HeaderDLQOffset    = "dlq.original_offset"
	HeaderDLQAttempts  = "dlq.attempts"
	HeaderDLQGroup     = "dlq.consumer_group"
	HeaderDLQFailedAt  = "dlq.failed_at"
	// HeaderDLQTrimmed says what was cut from a dead-letter copy that was too
	// large for its topic (headers, never the value).
	HeaderDLQTrimmed = "dlq.trimmed"
)

// ContentTypeAvro is the content type of events: Avro single-object encoding.
const ContentTypeAvro = "application/vnd.apache.avro+binary; encoding=single-object"

// Handler processes one message. It returns nil once the message's effect is durable.
type Handler func(ctx context.Context, msg *Message) error

// Middleware wraps a Handler with behaviour such as retries or recovery.
type Middleware func(Handler) Handler

// Chain wraps h with mws; the first middleware is the outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as a failure that retrying cannot fix, such as a
// message that does not decode. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Recover turns a panic in the handler into a permanent error carrying the stack.
func Recover() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, msg *Message) (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = Permanent(fmt.Errorf("handler panic: %v\n%s", r, debug.Stack()))
				}
			}()
			return next(ctx, msg)
		}
	}
}

// Timeout bounds each handler invocation to d.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, msg *Message) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, msg)
		}
	}
}

// RetryPolicy paces the retries of a transient failure: exponential backoff
// with jitter from the shared retry package (each wait in [d/2, d], d
// doubling from InitialBackoff to MaxBackoff); MaxAttempts 0 means no bound.
type RetryPolicy = retry.Policy

// DefaultRetryPolicy retries a transient failure until it succeeds, waiting
// 100 ms at first and at most 10 s between attempts.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second}
}

// RetryObserver is told of each wait before a retry: the attempt that
// failed, its error and how long the retry waits. Consumers count and log
// these steps.
type RetryObserver func(ctx context.Context, msg *Message, attempt int, wait time.Duration, err error)

// Retry re-invokes the handler on transient errors with exponential backoff
// and jitter, until it succeeds, p.MaxAttempts invocations were made (when
// not 0) or ctx ends. It returns the last error; a permanent error ends the
// retries at once. observe, if not nil, is called before each wait.
func Retry(p RetryPolicy, observe RetryObserver) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, msg *Message) error {
			var notify retry.Notify
			if observe != nil {
				notify = func(attempt int, wait time.Duration, err error) { observe(ctx, msg, attempt, wait, err) }
			}
			return retry.Do(ctx, p, func(attempt int) error {
				msg.Attempt = attempt
				err := next(ctx, msg)
				if IsPermanent(err) {
					return retry.Permanent(err)
				}
				return err
			}, notify)
		}
	}
}
