package app_test

import (
	"context"
	"database/sql"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/inbox"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/render"
)

func sub(id, job string, ch domain.Channel, types ...string) domain.Subscription {
	return domain.Subscription{ID: id, UserID: "u", JobID: job, Channel: ch, Target: id, EventTypes: types, Enabled: true}
}

func TestSelectSubscriptions(t *testing.T) {
	t.Parallel()
	defaults := []domain.Subscription{
		sub("mail-default", "", domain.ChannelEmail, events.TypeJobCompleted, events.TypeJobFailed),
		sub("inapp-default", "", domain.ChannelInApp, events.TypeJobCompleted, events.TypeJobRunning),
	}
	override := sub("mail-job7", "job-7", domain.ChannelEmail, events.TypeJobRunning)
	paused := sub("inapp-paused", "job-7", domain.ChannelInApp, events.TypeJobCompleted)
	paused.Enabled = false
	tests := []struct {
		name     string
		subs     []domain.Subscription
		job, typ string
		wantIDs  []string
	}{
		{name: "defaults filter by event type", subs: defaults, job: "job-1", typ: events.TypeJobFailed, wantIDs: []string{"mail-default"}},
		{name: "running only where asked", subs: defaults, job: "job-1", typ: events.TypeJobRunning, wantIDs: []string{"inapp-default"}},
		{name: "a job override replaces the email default", subs: append(defaults, override), job: "job-7", typ: events.TypeJobCompleted, wantIDs: []string{"inapp-default"}},
		{name: "override asks for running", subs: append(defaults, override), job: "job-7", typ: events.TypeJobRunning, wantIDs: []string{"inapp-default", "mail-job7"}},
		{name: "override of another job is ignored", subs: append(defaults, override), job: "job-8", typ: events.TypeJobCompleted, wantIDs: []string{"mail-default", "inapp-default"}},
		{name: "a paused override silences the channel", subs: append(defaults, paused), job: "job-7", typ: events.TypeJobCompleted, wantIDs: []string{"mail-default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var ids []string
			for _, s := range app.SelectSubscriptions(tt.subs, tt.job, tt.typ) {
				ids = append(ids, s.ID)
			}
			require.Equal(t, tt.wantIDs, ids)
		})
	}
}

// TestRedeliveredEventRecordsOnce runs the recorder behind the inbox: the
// same Kafka message handled twice yields one delivery per target.
func TestRedeliveredEventRecordsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newStore(t)
	require.NoError(t, inbox.Migrate(ctx, st.DB()))
	n := app.NewNotifications(st, domain.ValidationRules{})
	p := app.Principal{UserID: "ada"}
	_, err := n.CreateSubscription(ctx, p, domain.Subscription{Channel: domain.ChannelEmail, Target: "ada@example.org", EventTypes: []string{"job.terminal"}})
	require.NoError(t, err)
	_, err = n.CreateSubscription(ctx, p, domain.Subscription{Channel: domain.ChannelInApp, EventTypes: []string{"job.failed"}})
	require.NoError(t, err)
	// A second default to the same address yields no second delivery.
	_, err = n.CreateSubscription(ctx, p, domain.Subscription{Channel: domain.ChannelEmail, Target: "ada@example.org", EventTypes: []string{"job.failed"}})
	require.NoError(t, err)

	c := codec(t)
	renderer, err := render.NewRenderer("", "")
	require.NoError(t, err)
	ib := inbox.New(st.DB(), "test", slog.New(slog.DiscardHandler), nil)
	rec := app.NewRecorder(inbox.NewUnitOfWork(ib, func(tx *sql.Tx, _ []*bus.Message) app.RecordTx { return st.Bind(tx) }), c, renderer, slog.New(slog.DiscardHandler))
	h := rec.Handle

	publish := func(payload events.Payload) events.Event {
		ev, err := events.NewEvent(payload, events.Meta{Producer: "test", UserID: "ada"})
		require.NoError(t, err)
		msg, err := c.Message(ev)
		require.NoError(t, err)
		require.NoError(t, h(ctx, msg))
		require.NoError(t, h(ctx, msg), "a redelivery is a no-op")
		return ev
	}
	publish(events.JobSubmitted{JobID: "job-1", UserID: "ada", JobName: "imaging-run",
		TaccSystem: events.TaccSystemVista, Priority: events.JobPriorityNormal, ToStatus: events.JobStatusSubmitted})
	code := int32(137)
	ev := publish(events.JobFailed{JobID: "job-1", UserID: "ada", ErrorCode: "OUT_OF_MEMORY", ErrorMessage: "killed", ExitCode: &code,
		RunTimeMS: 4000, FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusFailed})

	got, err := st.DeliveriesOfEvent(ctx, ev.EventID)
	require.NoError(t, err)
	require.Len(t, got, 2)
	for _, d := range got {
		require.Equal(t, "[Fleet] Job imaging-run failed", d.Subject)
		require.Contains(t, d.Body, "OUT_OF_MEMORY: killed")
		require.Contains(t, d.Body, "Run time: 4s")
		require.Equal(t, domain.StatusPending, d.Status)
	}
	require.Equal(t, domain.ChannelEmail, got[0].Channel)
	require.Equal(t, domain.ChannelInApp, got[1].Channel)
	require.Equal(t, domain.InAppTarget("ada"), got[1].Target)

	// Bytes that do not decode fail permanently (dead-lettered by the runner).
	err = h(ctx, &bus.Message{Topic: events.TopicJobLifecycle, Value: []byte("junk"), Headers: map[string]string{events.HeaderEventID: "0190c1c2-0000-7000-8000-0000000000ff"}})
	require.True(t, bus.IsPermanent(err), "%v", err)
}
