package events

import (
	"fmt"

	"github.com/cosmic-horizons/fleet/libs/bus"
)

// HeaderEventID carries the event id on every published event, so that
// consumers can deduplicate without decoding the body first.
const HeaderEventID = bus.HeaderEventID

// headerCorrelationID matches telemetry.HeaderCorrelationID; events carry
// their own correlation id even when the publishing context has none.
const headerCorrelationID = "correlation_id"

// Message encodes ev into a bus message for its topic, keyed as the topic
// catalogue says, with the event id, event type, correlation id and content
// type in headers.
func (c *Codec) Message(ev Event) (*bus.Message, error) {
	value, err := c.Encode(ev)
	if err != nil {
		return nil, err
	}
	headers := map[string]string{
		HeaderEventID:         ev.EventID,
		bus.HeaderEventType:   ev.EventType,
		bus.HeaderContentType: ContentType,
	}
	if ev.CorrelationID != "" {
		headers[headerCorrelationID] = ev.CorrelationID
	}
	return &bus.Message{Topic: ev.Topic(), Key: ev.Key(), Value: value, Headers: headers}, nil
}

// FromMessage decodes the event of a message received from topic. A message
// read from a dead-letter topic decodes as an event of its source topic.
// The error is permanent (retrying cannot make bad bytes decode) unless the
// schema source could not be asked.
func (c *Codec) FromMessage(msg *bus.Message) (Event, error) {
	topic := msg.Topic
	if src, ok := sourceOfDLQ(topic); ok {
		topic = src
	}
	ev, err := c.Decode(topic, msg.Value)
	if err != nil {
		return Event{}, DecodeFailure(fmt.Errorf("decode %s message at partition %d offset %d: %w", msg.Topic, msg.Partition, msg.Offset, err))
	}
	return ev, nil
}

func sourceOfDLQ(topic string) (string, bool) {
	if n := len(topic) - len(DLQSuffix); n > 0 && topic[n:] == DLQSuffix {
		return topic[:n], true
	}
	return "", false
}
