package inapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/amqpbus"
	"github.com/cosmic-horizons/fleet/libs/bus"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/inapp"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/testutil"
)

func TestSendPublishesToUserKey(t *testing.T) {
	t.Parallel()
	conn := testutil.AMQPConn(t)
	user := "user-" + time.Now().Format("150405.000000000")
	other := testutil.UserQueue(t, conn, user+"-other")
	got := testutil.UserQueue(t, conn, user)
	pub, err := amqpbus.NewPublisher(conn, amqpbus.DefaultPublisherConfig(), slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pub.Close() })
	s, err := inapp.NewSender(pub, "")
	require.NoError(t, err)

	d := domain.Delivery{ID: "d-9", EventID: "e-9", EventType: "job.completed", UserID: user, JobID: "j-9",
		Channel: domain.ChannelInApp, Subject: "done", Body: "body", CreatedAt: time.Now()}
	require.NoError(t, s.Send(context.Background(), d))
	select {
	case m := <-got:
		var body inapp.Message
		require.NoError(t, json.Unmarshal(m.Value, &body))
		require.Equal(t, "d-9", body.ID)
		require.Equal(t, "j-9", body.JobID)
		require.Equal(t, "done", body.Subject)
	case <-time.After(5 * time.Second):
		t.Fatal("no in-app message on the user's queue")
	}
	select {
	case m := <-other:
		t.Fatalf("another user's queue received %s", m.Value)
	case <-time.After(100 * time.Millisecond):
	}
}

type failingPublisher struct{}

func (failingPublisher) Publish(context.Context, string, string, *bus.Message) error {
	return errors.New("broker down")
}

func TestSendFailureIsTransient(t *testing.T) {
	t.Parallel()
	s, err := inapp.NewSender(failingPublisher{}, "")
	require.NoError(t, err)
	err = s.Send(context.Background(), domain.Delivery{UserID: "u"})
	require.Error(t, err)
	permanent, _ := domain.Classify(err)
	require.False(t, permanent)
}
