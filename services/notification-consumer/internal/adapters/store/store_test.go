package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

func open(t *testing.T, db *sqlstore.DB) *store.Store {
	t.Helper()
	require.NoError(t, store.Migrate(context.Background(), db))
	require.NoError(t, store.Migrate(context.Background(), db), "migrating twice is a no-op")
	return store.New(db)
}

func delivery(id, eventID string, ch domain.Channel, target string, created time.Time) domain.Delivery {
	return domain.Delivery{ID: id, EventID: eventID, EventType: "job.completed", UserID: "u1", JobID: "j1",
		SubscriptionID: "s1", Channel: ch, Target: target, TargetKey: string(ch) + ":" + target, Subject: "subj",
		Body: "body", Status: domain.StatusPending, NextAttemptAt: created, CreatedAt: created}
}

func insert(t *testing.T, st *store.Store, d domain.Delivery) bool {
	t.Helper()
	var inserted bool
	require.NoError(t, st.DB().InTx(context.Background(), func(tx *sql.Tx) error {
		var err error
		inserted, err = st.InsertDeliveryTx(context.Background(), tx, d)
		return err
	}))
	return inserted
}

func TestStoreContract(t *testing.T) {
	t.Parallel()
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		st := open(t, db)
		t0 := time.Now().Truncate(time.Microsecond)

		t.Run("deliveries are deduplicated on event, channel and target", func(t *testing.T) {
			require.True(t, insert(t, st, delivery("d1", "e1", domain.ChannelEmail, "a@example.org", t0)))
			require.False(t, insert(t, st, delivery("d2", "e1", domain.ChannelEmail, "a@example.org", t0)))
			require.True(t, insert(t, st, delivery("d3", "e1", domain.ChannelWebhook, "a@example.org", t0)))
			got, err := st.DeliveriesOfEvent(ctx, "e1")
			require.NoError(t, err)
			require.Len(t, got, 2)
		})

		t.Run("claim, fail transiently, claim again, succeed with outbox", func(t *testing.T) {
			now := t0.Add(time.Second)
			due, err := st.Due(ctx, now, 10, []string{"WEBHOOK:a@example.org"})
			require.NoError(t, err)
			require.Len(t, due, 1)
			require.Equal(t, "d1", due[0].ID)
			ok, err := st.Claim(ctx, "d1", now, now.Add(time.Minute))
			require.NoError(t, err)
			require.True(t, ok)
			ok, err = st.Claim(ctx, "d1", now, now.Add(time.Minute))
			require.NoError(t, err)
			require.False(t, ok, "a leased delivery cannot be claimed twice")

			applied, err := st.Record(ctx, domain.Outcome{ID: "d1", Attempt: 1, Status: domain.StatusPending,
				NextAttemptAt: now.Add(time.Second), LastError: "503"}, nil)
			require.NoError(t, err)
			require.True(t, applied)
			due, err = st.Due(ctx, now, 10, []string{"WEBHOOK:a@example.org"})
			require.NoError(t, err)
			require.Empty(t, due, "not due before its next attempt")

			later := now.Add(2 * time.Second)
			ok, err = st.Claim(ctx, "d1", later, later.Add(time.Minute))
			require.NoError(t, err)
			require.True(t, ok)
			stale, err := st.Record(ctx, domain.Outcome{ID: "d1", Attempt: 1, Status: domain.StatusSent, SentAt: later}, nil)
			require.NoError(t, err)
			require.False(t, stale, "an outcome of a superseded attempt is dropped")
			msg := &bus.Message{Topic: "notifications", Value: []byte{0xC3, 0x01, 0xff}, Headers: map[string]string{"event_id": "x"}}
			applied, err = st.Record(ctx, domain.Outcome{ID: "d1", Attempt: 2, Status: domain.StatusSent, SentAt: later}, []*bus.Message{msg})
			require.NoError(t, err)
			require.True(t, applied)

			d, err := st.Delivery(ctx, "d1")
			require.NoError(t, err)
			require.Equal(t, domain.StatusSent, d.Status)
			require.Equal(t, 2, d.Attempts)
			pending, err := st.ClaimOutbox(ctx, outbox.LegKafka, "relay", 10, time.Minute)
			require.NoError(t, err)
			require.Len(t, pending, 1)
			require.Equal(t, msg.Value, pending[0].Message.Value)
			require.Equal(t, "x", pending[0].Message.Headers["event_id"])
			lost, err := st.CompleteOutbox(ctx, outbox.LegKafka, "relay", []outbox.Result{{ID: pending[0].ID, JobID: pending[0].JobID, At: time.Now()}})
			require.NoError(t, err)
			require.Zero(t, lost)
			pending, err = st.ClaimOutbox(ctx, outbox.LegKafka, "relay", 10, time.Minute)
			require.NoError(t, err)
			require.Empty(t, pending)
		})

		t.Run("a lease is renewed by its attempt only, and due again when it ends", func(t *testing.T) {
			now := t0.Add(time.Minute)
			claimed, err := st.ClaimBatch(ctx, []string{"d1", "d3", "missing"}, now, now.Add(time.Hour))
			require.NoError(t, err)
			require.Equal(t, map[string]int{"d3": 1}, claimed, "d1 is sent, missing does not exist")
			claimed, err = st.ClaimBatch(ctx, []string{"d3"}, now, now.Add(time.Hour))
			require.NoError(t, err)
			require.Empty(t, claimed, "leased")
			later := now.Add(2 * time.Hour)
			require.NoError(t, st.Renew(ctx, "d3", 2, later.Add(time.Hour)), "a stale attempt renews nothing")
			due, err := st.Due(ctx, later, 10, nil)
			require.NoError(t, err)
			require.Len(t, due, 1, "the lease ran out")
			require.NoError(t, st.Renew(ctx, "d3", 1, later.Add(time.Hour)))
			due, err = st.Due(ctx, later, 10, nil)
			require.NoError(t, err)
			require.Empty(t, due, "renewed by its attempt")
			d, err := st.Delivery(ctx, "d3")
			require.NoError(t, err)
			require.Equal(t, 1, d.Attempts)
		})

		t.Run("subscriptions page oldest first and delete only the owner's", func(t *testing.T) {
			for i := range 5 {
				require.NoError(t, st.CreateSubscription(ctx, domain.Subscription{ID: fmt.Sprintf("s%d", i), UserID: "u-sub",
					Channel: domain.ChannelEmail, Target: "a@example.org", EventTypes: []string{"job.completed", "job.failed"},
					Enabled: true, CreatedAt: t0.Add(time.Duration(i) * time.Millisecond)}))
			}
			var ids []string
			token := ""
			for {
				page, next, err := st.ListSubscriptions(ctx, "u-sub", "", 2, token)
				require.NoError(t, err)
				for _, s := range page {
					ids = append(ids, s.ID)
					require.Equal(t, []string{"job.completed", "job.failed"}, s.EventTypes)
				}
				if next == "" {
					break
				}
				token = next
			}
			require.Equal(t, []string{"s0", "s1", "s2", "s3", "s4"}, ids)
			require.ErrorIs(t, st.DeleteSubscription(ctx, "someone-else", "s0"), domain.ErrNotFound)
			require.NoError(t, st.DeleteSubscription(ctx, "u-sub", "s0"))
			require.ErrorIs(t, st.DeleteSubscription(ctx, "u-sub", "s0"), domain.ErrNotFound)
			_, _, err := st.ListSubscriptions(ctx, "u-sub", "", 2, "garbage!")
			require.ErrorIs(t, err, store.ErrBadPageToken)
		})

		t.Run("in-app notifications list newest first and mark read", func(t *testing.T) {
			for i := range 3 {
				d := delivery(fmt.Sprintf("n%d", i), fmt.Sprintf("ev-n%d", i), domain.ChannelInApp, "user:u-in", t0.Add(time.Duration(i)*time.Second))
				d.UserID = "u-in"
				require.True(t, insert(t, st, d))
			}
			list, next, unread, err := st.ListNotifications(ctx, "u-in", "", false, 2, "")
			require.NoError(t, err)
			require.Equal(t, []string{"n2", "n1"}, []string{list[0].ID, list[1].ID})
			require.EqualValues(t, 3, unread)
			list, next, _, err = st.ListNotifications(ctx, "u-in", "", false, 2, next)
			require.NoError(t, err)
			require.Len(t, list, 1)
			require.Empty(t, next)

			n, err := st.MarkRead(ctx, "u-in", []string{"n0", "n1", "not-mine"}, false, t0)
			require.NoError(t, err)
			require.EqualValues(t, 2, n)
			n, err = st.MarkRead(ctx, "u-in", []string{"n0"}, false, t0)
			require.NoError(t, err)
			require.Zero(t, n, "marking a read notification changes nothing")
			list, _, unread, err = st.ListNotifications(ctx, "u-in", "", true, 10, "")
			require.NoError(t, err)
			require.Len(t, list, 1)
			require.EqualValues(t, 1, unread)
			n, err = st.MarkRead(ctx, "u-in", nil, true, t0)
			require.NoError(t, err)
			require.EqualValues(t, 1, n)
		})
	})
}
