package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

// TestStoreClaimOfTailsAndMarksNeverDeadlock: a relay's claim that takes
// its keys' tails (renewing the lease of the rows it holds) runs while its
// mark of those held rows commits, as the relay's claimer and mark loop do.
// Neither waits for the other in a cycle: on PostgreSQL both lock their
// rows in id order, so the one that comes second waits for the first to
// commit, and no transaction fails with a deadlock (which PostgreSQL finds
// only after deadlock_timeout, a second by default, stalling the leg's
// claims that long before the retry). The database gets one attempt per
// transaction, so a deadlock fails the test instead of being retried.
func TestStoreClaimOfTailsAndMarksNeverDeadlock(t *testing.T) {
	t.Parallel()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := sqlstoretest.OpenConfig(t, sqlstore.Config{URL: d.URL(t), TxMaxAttempts: 1})
			f := newFixture(t, db, both)
			s := outbox.NewStore(db, outbox.Options{Tables: both}) // the real clock: leases of a minute
			const keys, rounds = 40, 60
			appendAll := func(round int) {
				var batches []outbox.Batch
				for k := range keys {
					key := fmt.Sprintf("k%02d", k)
					batches = append(batches, outbox.Batch{Key: key, After: f.seq[key], Rows: []outbox.Row{row(key, fmt.Sprint(round), "rk")}})
					f.seq[key]++
				}
				require.NoError(t, db.InTx(ctx, func(tx *sql.Tx) error { return s.Append(ctx, tx, batches...) }))
			}
			appendAll(0)
			held := map[outbox.Leg][]outbox.PendingEvent{}
			for _, leg := range s.Legs() {
				var err error
				held[leg], err = s.ClaimOutbox(ctx, leg, "relay", 100, time.Minute)
				require.NoError(t, err)
				require.NotEmpty(t, held[leg])
			}
			for round := 1; round <= rounds; round++ {
				appendAll(round)
				for _, leg := range s.Legs() {
					// The mark acknowledges the held rows, highest id first;
					// the claim takes the new rows and renews the held ones.
					results := make([]outbox.Result, len(held[leg]))
					for i, r := range held[leg] {
						results[len(results)-1-i] = outbox.Result{ID: r.ID, JobID: r.JobID, At: time.Now()}
					}
					var (
						wg       sync.WaitGroup
						markErr  error
						claimErr error
						claimed  []outbox.PendingEvent
					)
					wg.Go(func() { _, markErr = s.CompleteOutbox(ctx, leg, "relay", results) })
					wg.Go(func() { claimed, claimErr = s.ClaimOutbox(ctx, leg, "relay", 100, time.Minute) })
					wg.Wait()
					require.NoError(t, markErr, "round %d, %s: mark", round, leg)
					require.NoError(t, claimErr, "round %d, %s: claim", round, leg)
					require.NotEmpty(t, claimed, "round %d, %s: the new rows are claimed, as tails or heads", round, leg)
					held[leg] = claimed
				}
			}
			for _, leg := range s.Legs() {
				var results []outbox.Result
				for _, r := range held[leg] {
					results = append(results, outbox.Result{ID: r.ID, JobID: r.JobID, At: time.Now()})
				}
				lost, err := s.CompleteOutbox(ctx, leg, "relay", results)
				require.NoError(t, err)
				require.Zero(t, lost)
			}
			n, err := s.OutboxBacklog(ctx)
			require.NoError(t, err)
			require.Zero(t, n, "every row was marked on both legs")
		})
	}
}
