package telemetry

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/propagation"
)

// Header names that carry trace context and the correlation id on messages.
const (
	HeaderTraceparent   = "traceparent"
	HeaderTracestate    = "tracestate"
	HeaderBaggage       = "baggage"
	HeaderCorrelationID = "correlation_id"
)

// Propagator returns the propagator the fleet uses everywhere: W3C
// TraceContext followed by W3C Baggage. Setup installs it as the global one.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// HeaderCarrier adapts message headers held as a map to the OpenTelemetry
// TextMapCarrier interface. Get matches a key exactly first and then
// case-insensitively, since brokers and clients differ in header casing.
type HeaderCarrier map[string]string

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the value stored under key, or "".
func (c HeaderCarrier) Get(key string) string {
	if v, ok := c[key]; ok {
		return v
	}
	for k, v := range c {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// Set stores value under key.
func (c HeaderCarrier) Set(key, value string) {
	c[key] = value
}

// Keys lists the keys stored in the carrier.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes the trace context (traceparent, tracestate, baggage) and the
// correlation id carried by ctx into headers. headers must be non-nil; a nil
// map is left untouched.
func Inject(ctx context.Context, headers map[string]string) {
	if headers == nil {
		return
	}
	Propagator().Inject(ctx, HeaderCarrier(headers))
	if id := CorrelationID(ctx); id != "" {
		headers[HeaderCorrelationID] = id
	}
}

// Extract returns ctx carrying the remote span context, baggage and
// correlation id found in headers. Missing headers leave ctx as it is.
func Extract(ctx context.Context, headers map[string]string) context.Context {
	if len(headers) == 0 {
		return ctx
	}
	carrier := HeaderCarrier(headers)
	ctx = Propagator().Extract(ctx, carrier)
	return WithCorrelationID(ctx, carrier.Get(HeaderCorrelationID))
}
