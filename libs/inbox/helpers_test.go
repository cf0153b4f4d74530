package inbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

// migrateAll creates the inbox tables and the effect tables of the tests:
// effects counts how many times each event was applied, totals sums them.
func migrateAll(t testing.TB, db *sqlstore.DB) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, inbox.Migrate(ctx, db))
	sqlstoretest.MustExec(t, db, "CREATE TABLE IF NOT EXISTS effects (event_id TEXT PRIMARY KEY, applied INTEGER NOT NULL)")
	sqlstoretest.MustExec(t, db, "CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, n BIGINT NOT NULL)")
}

// recordEffect is the ApplyFunc of the tests: one effect row per event,
// counting applications, and a running total per topic.
func recordEffect(db *sqlstore.DB) inbox.ApplyFunc {
	effect := db.Rebind(`INSERT INTO effects (event_id, applied) VALUES (?, 1)
ON CONFLICT (event_id) DO UPDATE SET applied = effects.applied + 1`)
	total := db.Rebind(`INSERT INTO totals (name, n) VALUES (?, 1)
ON CONFLICT (name) DO UPDATE SET n = totals.n + 1`)
	return func(ctx context.Context, tx *sql.Tx, msg *bus.Message, eventID string) error {
		if _, err := tx.ExecContext(ctx, effect, eventID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, total, msg.Topic)
		return err
	}
}

func message(id string, partition int32, offset int64) *bus.Message {
	m := &bus.Message{Topic: "job-lifecycle", Key: "job-1", Value: []byte("payload"), Partition: partition, Offset: offset}
	if id != "" {
		m.SetHeader(inbox.HeaderEventID, id)
	}
	return m
}

func eventIDs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}

// applied returns how many times each event was applied.
func applied(t testing.TB, db *sqlstore.DB) map[string]int {
	t.Helper()
	rows, err := db.Writer().QueryContext(context.Background(), "SELECT event_id, applied FROM effects")
	require.NoError(t, err)
	defer rows.Close()
	out := make(map[string]int)
	for rows.Next() {
		var id string
		var n int
		require.NoError(t, rows.Scan(&id, &n))
		out[id] = n
	}
	require.NoError(t, rows.Err())
	return out
}

func processedIDs(t testing.TB, db *sqlstore.DB, consumer string) map[string]bool {
	t.Helper()
	rows, err := db.Writer().QueryContext(context.Background(), db.Rebind("SELECT event_id FROM inbox_processed WHERE consumer = ?"), consumer)
	require.NoError(t, err)
	defer rows.Close()
	out := make(map[string]bool)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		out[id] = true
	}
	require.NoError(t, rows.Err())
	return out
}

func counterValue(t testing.TB, reg *prometheus.Registry, name, consumer string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "consumer" && l.GetValue() == consumer {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func onceEach(ids []string) map[string]int {
	out := make(map[string]int, len(ids))
	for _, id := range ids {
		out[id] = 1
	}
	return out
}
