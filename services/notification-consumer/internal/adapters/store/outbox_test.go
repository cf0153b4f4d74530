package store_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

// TestMigrationMovesPendingOutbox: messages waiting in the outbox of before
// migration 0003 are in the new outbox afterwards, in the order written,
// each under its delivery, with its bytes and headers.
func TestMigrationMovesPendingOutbox(t *testing.T) {
	t.Parallel()
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		// The schema of before 0003.
		old := fstest.MapFS{}
		for _, name := range []string{"0001_init.sql", "0002_delivery_trace.sql"} {
			b, err := fs.ReadFile(os.DirFS("migrations"), name)
			require.NoError(t, err)
			old["migrations/"+name] = &fstest.MapFile{Data: b}
		}
		require.NoError(t, sqlstore.Migrate(ctx, db, old, "migrations", sqlstore.WithComponent(store.MigrationComponent)))
		insert := func(id, topic string, value []byte, headers string, created int64) {
			sqlstoretest.MustExec(t, db, `INSERT INTO outbox (id, topic, msg_key, value, headers, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
				id, topic, "", base64.StdEncoding.EncodeToString(value), headers, created)
		}
		insert("m2", "notifications.dlq", []byte{2}, `{"event_id":"e1","event_type":"notification.failed","delivery_id":"d1"}`, 20)
		insert("m1", "notifications", []byte{1, 0xff}, `{"event_id":"e1","event_type":"notification.failed","delivery_id":"d1"}`, 20)
		insert("m0", "notifications", []byte{0}, `{"event_id":"e0","event_type":"notification.sent","delivery_id":"d0"}`, 10)

		require.NoError(t, store.Migrate(ctx, db))
		st := store.New(db)
		got, err := st.ClaimOutbox(ctx, outbox.LegKafka, "relay", 10, time.Minute)
		require.NoError(t, err)
		require.Len(t, got, 3)
		require.Equal(t, []string{"d0", "d1", "d1"}, []string{got[0].JobID, got[1].JobID, got[2].JobID})
		require.Equal(t, []string{"e0", "e1", "e1.dlq"}, []string{got[0].EventID, got[1].EventID, got[2].EventID})
		require.Equal(t, &bus.Message{Topic: "notifications", Key: "", Value: []byte{1, 0xff},
			Headers: map[string]string{"event_id": "e1", "event_type": "notification.failed", "delivery_id": "d1"}}, got[1].Message)
		require.Equal(t, "notification.failed", got[1].EventType)
		require.Zero(t, sqlstoretest.Count(t, db, "SELECT COUNT(*) FROM outbox_legacy"))
		require.NoError(t, store.Migrate(ctx, db), "migrating again moves nothing twice")
		require.EqualValues(t, 3, sqlstoretest.Count(t, db, "SELECT COUNT(*) FROM outbox"))
	})
}

// TestOutcomeEventsOrderedPerDelivery: the outcome events of a delivery's
// attempts are published in the order recorded; a later delivery's are
// not held back by them.
func TestOutcomeEventsOrderedPerDelivery(t *testing.T) {
	t.Parallel()
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		st := open(t, db)
		now := time.Now()
		for _, d := range []string{"d1", "d2"} {
			require.True(t, insert(t, st, delivery(d, "ev-"+d, domain.ChannelEmail, d+"@example.org", now)))
		}
		record := func(id string, attempt int, status domain.Status, eventID string) {
			t.Helper()
			ok, err := st.Claim(ctx, id, now, now.Add(time.Minute))
			require.NoError(t, err)
			require.True(t, ok)
			msg := &bus.Message{Topic: "notifications", Value: []byte(eventID), Headers: map[string]string{"event_id": eventID}}
			applied, err := st.Record(ctx, domain.Outcome{ID: id, Attempt: attempt, Status: status, NextAttemptAt: now}, []*bus.Message{msg})
			require.NoError(t, err)
			require.True(t, applied)
		}
		record("d1", 1, domain.StatusPending, "d1-failed")
		// The first event of d1 fails to publish: the key waits, d2 does not.
		a, err := st.ClaimOutbox(ctx, outbox.LegKafka, "relay", 10, time.Minute)
		require.NoError(t, err)
		require.Len(t, a, 1)
		_, err = st.CompleteOutbox(ctx, outbox.LegKafka, "relay", []outbox.Result{{ID: a[0].ID, JobID: "d1", Err: bus.Permanent(errors.New("message too large")), Park: true}})
		require.NoError(t, err)
		record("d1", 2, domain.StatusSent, "d1-sent")
		record("d2", 1, domain.StatusSent, "d2-sent")
		b, err := st.ClaimOutbox(ctx, outbox.LegKafka, "relay", 10, time.Minute)
		require.NoError(t, err)
		require.Len(t, b, 1)
		require.Equal(t, "d2-sent", b[0].EventID)
		n, err := st.RetryParked(ctx, "d1-failed")
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		c, err := st.ClaimOutbox(ctx, outbox.LegKafka, "relay-2", 10, time.Minute)
		require.NoError(t, err)
		require.Len(t, c, 2)
		require.Equal(t, []string{"d1-failed", "d1-sent"}, []string{c[0].EventID, c[1].EventID})
		require.Equal(t, []int64{1, 2}, []int64{c[0].Seq, c[1].Seq})
	})
}
