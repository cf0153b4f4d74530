package watchfeed_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/watchfeed"
)

type woken []string

func (w *woken) NotifyWatchers(id string) { *w = append(*w, id) }

func TestHandlerWakesTheWatchersOfTheEventsJob(t *testing.T) {
	codec, err := events.NewCodec()
	require.NoError(t, err)
	var w woken
	h := watchfeed.Handler(codec, &w)

	ev, err := events.NewEvent(events.JobCancelled{JobID: "job-7", UserID: "u", CancelledBy: "u",
		FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusCancelled}, events.Meta{Producer: "job-orchestrator", UserID: "u", Sequence: 4})
	require.NoError(t, err)
	msg, err := codec.Message(ev)
	require.NoError(t, err)
	msg.Topic = "" // as received from RabbitMQ
	require.NoError(t, h(context.Background(), msg))
	require.Equal(t, woken{"job-7"}, w)

	err = h(context.Background(), &bus.Message{Value: []byte("not avro")})
	require.Error(t, err)
	require.True(t, bus.IsPermanent(err), "a message that does not decode is not retried")
	require.Len(t, w, 1, "nobody woken for it")
}

func TestQueueNamesAreUniquePerProcessStart(t *testing.T) {
	a, b := watchfeed.QueueName(), watchfeed.QueueName()
	require.NotEqual(t, a, b)
	require.True(t, strings.HasPrefix(a, "job-orchestrator.watch."), a)
	require.NotContains(t, strings.TrimPrefix(a, "job-orchestrator.watch."), ".", "the host part is one word")
}
