package events_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
)

func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()
	codec := newCodec(t, events.CodecConfig{})
	for _, p := range samplePayloads() {
		t.Run(p.EventType(), func(t *testing.T) {
			t.Parallel()
			ev := sampleEvent(t, p)
			msg, err := codec.Message(ev)
			require.NoError(t, err)
			require.Equal(t, ev.Topic(), msg.Topic)
			require.Equal(t, ev.Key(), msg.Key)
			require.Equal(t, ev.EventID, msg.Header(events.HeaderEventID))
			require.Equal(t, ev.EventType, msg.Header(bus.HeaderEventType))
			require.Equal(t, events.ContentType, msg.Header(bus.HeaderContentType))
			require.Equal(t, "corr-1", msg.Header("correlation_id"))

			got, err := codec.FromMessage(msg)
			require.NoError(t, err)
			require.Equal(t, ev, got)

			// A dead-lettered copy still decodes as its source topic's event.
			dead := *msg
			dead.Topic = events.DLQTopic(msg.Topic)
			got, err = codec.FromMessage(&dead)
			require.NoError(t, err)
			require.Equal(t, ev, got)
		})
	}
}

func TestFromMessageErrorIsPermanent(t *testing.T) {
	t.Parallel()
	codec := newCodec(t, events.CodecConfig{})
	_, err := codec.FromMessage(&bus.Message{Topic: events.TopicJobLifecycle, Value: []byte("not avro")})
	require.Error(t, err)
	require.True(t, bus.IsPermanent(err), "bad bytes cannot succeed on retry")
}
