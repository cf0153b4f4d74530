package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

// deferred is a view that keeps its effects in memory and writes them in
// Flush, as a coalescing adapter does.
type deferred struct {
	apply   inbox.ApplyFunc
	tx      *sql.Tx
	pending []*bus.Message
	ids     []string
	flushes int
	fail    error
}

func (d *deferred) Record(_ context.Context, msg *bus.Message, eventID string) error {
	d.pending, d.ids = append(d.pending, msg), append(d.ids, eventID)
	return nil
}

func (d *deferred) Flush(ctx context.Context) error {
	d.flushes++
	if d.fail != nil {
		return d.fail
	}
	for i, msg := range d.pending {
		if err := d.apply(ctx, d.tx, msg, d.ids[i]); err != nil {
			return err
		}
	}
	d.pending, d.ids = nil, nil
	return nil
}

func TestUnitOfWorkFlushesDeferredWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	record := func(ctx context.Context, e effects, msg *bus.Message, eventID string) error {
		return e.Record(ctx, msg, eventID)
	}
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			newUnit := func(t *testing.T, fail error) (fixture, *inbox.UnitOfWork[effects], *[]*deferred) {
				f := newFixture(t, d)
				var bound []*deferred
				u := inbox.NewUnitOfWork(f.inbox, func(tx *sql.Tx, _ []*bus.Message) effects {
					v := &deferred{apply: f.apply, tx: tx, fail: fail}
					bound = append(bound, v)
					return v
				})
				return f, u, &bound
			}

			t.Run("a batch flushes once before commit, duplicates within it applied once", func(t *testing.T) {
				t.Parallel()
				f, u, bound := newUnit(t, nil)
				batch := []*bus.Message{message("e1", 0, 1), message("e2", 0, 2), message("e1", 0, 3), message("e3", 1, 7)}
				require.NoError(t, u.ApplyBatch(ctx, batch, record))
				require.Equal(t, map[string]int{"e1": 1, "e2": 1, "e3": 1}, applied(t, f.db))
				require.Len(t, *bound, 1)
				require.Equal(t, 1, (*bound)[0].flushes)
				offsets, err := f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Equal(t, map[int32]int64{0: 2, 1: 7}, offsets, "the duplicate's offset is not recorded")

				// A batch of duplicates only binds nothing and flushes nothing.
				require.NoError(t, u.ApplyBatch(ctx, batch[:2], record))
				require.Len(t, *bound, 1)
				require.Equal(t, map[string]int{"e1": 1, "e2": 1, "e3": 1}, applied(t, f.db))
			})

			t.Run("a single message is flushed too", func(t *testing.T) {
				t.Parallel()
				f, u, bound := newUnit(t, nil)
				require.NoError(t, u.Apply(ctx, message("e1", 0, 5), record))
				require.NoError(t, u.Apply(ctx, message("e1", 0, 5), record))
				require.Equal(t, map[string]int{"e1": 1}, applied(t, f.db))
				require.Len(t, *bound, 1)
				require.Equal(t, 1, (*bound)[0].flushes)
			})

			t.Run("a failing flush keeps nothing, marks and offsets included", func(t *testing.T) {
				t.Parallel()
				boom := errors.New("boom")
				f, u, _ := newUnit(t, boom)
				err := u.ApplyBatch(ctx, []*bus.Message{message("e1", 0, 1), message("e2", 0, 2)}, record)
				require.ErrorIs(t, err, boom)
				var be *inbox.BatchError
				require.ErrorAs(t, err, &be)
				require.ErrorIs(t, u.Apply(ctx, message("e3", 0, 3), record), boom)
				require.Empty(t, applied(t, f.db))
				require.Empty(t, processedIDs(t, f.db, consumer))
				offsets, err := f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Empty(t, offsets)

				// The same events through a working view apply once each.
				ok := inbox.NewUnitOfWork(f.inbox, func(tx *sql.Tx, _ []*bus.Message) effects {
					return &deferred{apply: f.apply, tx: tx}
				})
				require.NoError(t, ok.ApplyBatch(ctx, []*bus.Message{message("e1", 0, 1), message("e2", 0, 2)}, record))
				require.NoError(t, ok.Apply(ctx, message("e3", 0, 3), record))
				require.Equal(t, map[string]int{"e1": 1, "e2": 1, "e3": 1}, applied(t, f.db))
			})
		})
	}
}
