package outbox

import (
	"context"
	"fmt"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// Router returns the RabbitMQ routing key of an event on the given topic,
// or "" when the event goes to Kafka only.
type Router func(topic, eventType string) string

// KafkaOnly routes every event to Kafka alone.
func KafkaOnly(string, string) string { return "" }

// JobEvents routes the job-lifecycle events of job jobID, owned by owner,
// to the job.events exchange (amqpbus.JobRoutingKey); other events go to
// Kafka only.
func JobEvents(owner, jobID string) Router {
	return func(topic, eventType string) string {
		if topic != events.TopicJobLifecycle {
			return ""
		}
		return amqpbus.JobRoutingKey(owner, jobID, eventType)
	}
}

// Encode turns events into outbox rows: the codec's Kafka message
// (catalogue topic, key, Avro value, headers), the trace context of ctx
// (the request or pass that caused the change) added to the headers it
// does not set already, so that the relay publishes each event inside that
// trace, and the routing key route gives it.
func Encode(ctx context.Context, codec *events.Codec, route Router, evs ...events.Event) ([]Row, error) {
	if route == nil {
		route = KafkaOnly
	}
	trace := map[string]string{}
	telemetry.Inject(ctx, trace)
	out := make([]Row, 0, len(evs))
	for _, ev := range evs {
		msg, err := codec.Message(ev)
		if err != nil {
			return nil, fmt.Errorf("encode %s event %s: %w", ev.EventType, ev.EventID, err)
		}
		for k, v := range trace {
			if _, set := msg.Headers[k]; !set {
				msg.Headers[k] = v
			}
		}
		out = append(out, Row{EventID: ev.EventID, EventType: ev.EventType, Message: msg, RoutingKey: route(msg.Topic, ev.EventType)})
	}
	return out, nil
}
