package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

const consumer = "metrics"

type fixture struct {
	db    *sqlstore.DB
	reg   *prometheus.Registry
	inbox *inbox.Inbox
	apply inbox.ApplyFunc
}

func newFixture(t *testing.T, d sqlstoretest.NamedDB, opts ...inbox.Option) fixture {
	t.Helper()
	db := d.Open(t)
	migrateAll(t, db)
	reg := prometheus.NewRegistry()
	return fixture{db: db, reg: reg, inbox: inbox.New(db, consumer, nil, reg, opts...), apply: recordEffect(db)}
}

func (f fixture) duplicates(t *testing.T) float64 {
	return counterValue(t, f.reg, "fleet_inbox_duplicates_total", consumer)
}

func (f fixture) processed(t *testing.T) float64 {
	return counterValue(t, f.reg, "fleet_inbox_processed_total", consumer)
}

func TestHandler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()

			t.Run("first delivery applies once, redelivery changes nothing", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				h := f.inbox.Handler(f.apply)
				require.NoError(t, h(ctx, message("e1", 0, 5)))
				require.NoError(t, h(ctx, message("e2", 0, 7)))
				require.NoError(t, h(ctx, message("e1", 0, 5)))
				require.NoError(t, h(ctx, message("e1", 1, 9)), "same event published again elsewhere")

				require.Equal(t, map[string]int{"e1": 1, "e2": 1}, applied(t, f.db))
				require.EqualValues(t, 2, sqlstoretest.Count(t, f.db, "SELECT n FROM totals"))
				require.Equal(t, 2.0, f.duplicates(t))
				require.Equal(t, 2.0, f.processed(t))
				offsets, err := f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Equal(t, map[int32]int64{0: 7}, offsets, "duplicates move no offset")
			})

			t.Run("offsets keep the highest", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				h := f.inbox.Handler(f.apply)
				require.NoError(t, h(ctx, message("a", 0, 10)))
				require.NoError(t, h(ctx, message("b", 0, 4)))
				require.NoError(t, h(ctx, message("c", 3, 2)))
				offsets, err := f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Equal(t, map[int32]int64{0: 10, 3: 2}, offsets)
				offsets, err = f.inbox.Offsets(ctx, "other-topic")
				require.NoError(t, err)
				require.Empty(t, offsets)
			})

			t.Run("apply error rolls back effect and mark, retry applies once", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				errFlaky := errors.New("downstream unavailable")
				calls := 0
				h := f.inbox.Handler(func(ctx context.Context, tx *sql.Tx, msg *bus.Message, id string) error {
					calls++
					if err := f.apply(ctx, tx, msg, id); err != nil {
						return err
					}
					if calls == 1 {
						return errFlaky
					}
					return nil
				})
				err := h(ctx, message("e1", 0, 1))
				require.ErrorIs(t, err, errFlaky)
				require.False(t, bus.IsPermanent(err))
				require.Empty(t, applied(t, f.db))
				require.Empty(t, processedIDs(t, f.db, consumer))
				offsets, err := f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Empty(t, offsets)

				require.NoError(t, h(ctx, message("e1", 0, 1)))
				require.Equal(t, map[string]int{"e1": 1}, applied(t, f.db))
				require.Equal(t, 0.0, f.duplicates(t))
			})

			t.Run("permanent apply error passes through", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				errBad := errors.New("unknown job state")
				h := f.inbox.Handler(func(context.Context, *sql.Tx, *bus.Message, string) error { return bus.Permanent(errBad) })
				err := h(ctx, message("e1", 0, 1))
				require.True(t, bus.IsPermanent(err))
				require.ErrorIs(t, err, errBad)
				require.Empty(t, processedIDs(t, f.db, consumer))
			})

			t.Run("message without event id is permanent", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				err := f.inbox.Handler(f.apply)(ctx, message("", 0, 1))
				require.True(t, bus.IsPermanent(err))
				require.ErrorIs(t, err, inbox.ErrNoEventID)
				require.Empty(t, applied(t, f.db))
			})

			t.Run("consumers deduplicate independently", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				other := inbox.New(f.db, "notifications", nil, f.reg)
				require.NoError(t, f.inbox.Handler(f.apply)(ctx, message("e1", 0, 1)))
				var otherCalls int
				h := other.Handler(func(context.Context, *sql.Tx, *bus.Message, string) error { otherCalls++; return nil })
				require.NoError(t, h(ctx, message("e1", 0, 1)))
				require.NoError(t, h(ctx, message("e1", 0, 1)))
				require.Equal(t, 1, otherCalls)
				require.Equal(t, 0.0, f.duplicates(t))
				require.Equal(t, 1.0, counterValue(t, f.reg, "fleet_inbox_duplicates_total", "notifications"))
			})

			t.Run("without offsets", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d, inbox.WithoutOffsets())
				require.NoError(t, f.inbox.Handler(f.apply)(ctx, message("e1", 0, 42)))
				require.NoError(t, f.inbox.ApplyBatch(ctx, []*bus.Message{message("e2", 0, 43)}, f.apply))
				offsets, err := f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Empty(t, offsets)
				require.Equal(t, onceEach([]string{"e1", "e2"}), applied(t, f.db))
			})

			t.Run("concurrent deliveries of one event apply it once", func(t *testing.T) {
				t.Parallel()
				// Two handles on one database stand for two consumer processes
				// that both received the event (a rebalance hand-over).
				url := d.URL(t)
				reg := prometheus.NewRegistry()
				var handlers []bus.Handler
				for range 2 {
					db := sqlstoretest.OpenURL(t, url)
					migrateAll(t, db)
					handlers = append(handlers, inbox.New(db, consumer, nil, reg).Handler(recordEffect(db)))
				}
				db := sqlstoretest.OpenURL(t, url)
				ids := eventIDs("evt", 50)
				errs := make(chan error, 2*len(ids))
				for i, id := range ids {
					start := make(chan struct{})
					var wg sync.WaitGroup
					for _, h := range handlers {
						wg.Go(func() {
							<-start
							errs <- h(ctx, message(id, 0, int64(i)))
						})
					}
					close(start)
					wg.Wait()
				}
				close(errs)
				for err := range errs {
					require.NoError(t, err)
				}
				require.Equal(t, onceEach(ids), applied(t, db))
				require.Equal(t, float64(len(ids)), counterValue(t, reg, "fleet_inbox_duplicates_total", consumer))
				require.Equal(t, float64(len(ids)), counterValue(t, reg, "fleet_inbox_processed_total", consumer))
			})
		})
	}
}

func TestApplyBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()

			t.Run("duplicates within and across batches", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				require.NoError(t, f.inbox.ApplyBatch(ctx, []*bus.Message{
					message("a", 0, 1), message("b", 1, 1), message("a", 0, 2), message("c", 0, 3),
				}, f.apply))
				require.NoError(t, f.inbox.ApplyBatch(ctx, []*bus.Message{
					message("c", 0, 3), message("d", 1, 2), message("b", 1, 1),
				}, f.apply))
				require.NoError(t, f.inbox.Handler(f.apply)(ctx, message("d", 1, 2)))

				require.Equal(t, onceEach([]string{"a", "b", "c", "d"}), applied(t, f.db))
				require.Equal(t, 4.0, f.duplicates(t))
				require.Equal(t, 4.0, f.processed(t))
				offsets, err := f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Equal(t, map[int32]int64{0: 3, 1: 2}, offsets)
			})

			t.Run("a failing event rolls the batch back, one by one isolates it", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				errPoison := errors.New("cannot decode")
				apply := func(ctx context.Context, tx *sql.Tx, msg *bus.Message, id string) error {
					if err := f.apply(ctx, tx, msg, id); err != nil {
						return err
					}
					if id == "poison" {
						return bus.Permanent(errPoison)
					}
					return nil
				}
				batch := []*bus.Message{message("a", 0, 1), message("poison", 0, 2), message("c", 0, 3)}
				err := f.inbox.ApplyBatch(ctx, batch, apply)
				var batchErr *inbox.BatchError
				require.ErrorAs(t, err, &batchErr)
				require.Equal(t, 1, batchErr.Index)
				require.Equal(t, "poison", batchErr.EventID)
				require.ErrorIs(t, err, errPoison)
				require.Empty(t, applied(t, f.db))
				require.Empty(t, processedIDs(t, f.db, consumer))

				h := f.inbox.Handler(apply)
				var failed []string
				for _, msg := range batch {
					if err := h(ctx, msg); err != nil {
						require.True(t, bus.IsPermanent(err))
						failed = append(failed, msg.Header(inbox.HeaderEventID))
					}
				}
				require.Equal(t, []string{"poison"}, failed)
				require.Equal(t, onceEach([]string{"a", "c"}), applied(t, f.db))
			})

			t.Run("a message without event id fails the batch", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				err := f.inbox.ApplyBatch(ctx, []*bus.Message{message("a", 0, 1), message("", 0, 2)}, f.apply)
				var batchErr *inbox.BatchError
				require.ErrorAs(t, err, &batchErr)
				require.Equal(t, 1, batchErr.Index)
				require.True(t, bus.IsPermanent(err))
				require.Empty(t, applied(t, f.db))
			})

			t.Run("cancel mid-batch keeps nothing, the retry applies everything once", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				ids := eventIDs("evt", 500)
				batch := make([]*bus.Message, len(ids))
				for i, id := range ids {
					batch[i] = message(id, int32(i%4), int64(i))
				}
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				seen := 0
				err := f.inbox.ApplyBatch(cctx, batch, func(ctx context.Context, tx *sql.Tx, msg *bus.Message, id string) error {
					seen++
					if seen == 250 {
						cancel()
					}
					return f.apply(ctx, tx, msg, id)
				})
				require.ErrorIs(t, err, context.Canceled)
				require.Empty(t, applied(t, f.db))
				require.Empty(t, processedIDs(t, f.db, consumer))
				offsets, err := f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Empty(t, offsets)

				require.NoError(t, f.inbox.ApplyBatch(ctx, batch, f.apply))
				require.Equal(t, onceEach(ids), applied(t, f.db))
				require.EqualValues(t, 500, sqlstoretest.Count(t, f.db, "SELECT n FROM totals"))
				offsets, err = f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Equal(t, map[int32]int64{0: 496, 1: 497, 2: 498, 3: 499}, offsets)
			})

			t.Run("concurrent batches with overlapping events apply each once", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				ids := eventIDs("evt", 200)
				var wg sync.WaitGroup
				errs := make(chan error, 2)
				for g := range 2 {
					wg.Go(func() {
						// The goroutines walk the ids in opposite orders, so on
						// PostgreSQL the batches deadlock and one is retried.
						batch := make([]*bus.Message, 0, len(ids))
						for i := range ids {
							j := i
							if g == 1 {
								j = len(ids) - 1 - i
							}
							batch = append(batch, message(ids[j], 0, int64(j)))
						}
						errs <- f.inbox.ApplyBatch(ctx, batch, f.apply)
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					require.NoError(t, err)
				}
				require.Equal(t, onceEach(ids), applied(t, f.db))
			})
		})
	}
}

func TestResetAndPrune(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()

			t.Run("reset forgets marks and offsets of this consumer only", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				other := inbox.New(f.db, "auditor", nil, nil)
				require.NoError(t, f.inbox.Handler(f.apply)(ctx, message("e1", 0, 3)))
				require.NoError(t, other.Handler(func(context.Context, *sql.Tx, *bus.Message, string) error { return nil })(ctx, message("e1", 0, 3)))

				require.NoError(t, f.inbox.Reset(ctx))
				require.Empty(t, processedIDs(t, f.db, consumer))
				offsets, err := f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Empty(t, offsets)
				require.Len(t, processedIDs(t, f.db, "auditor"), 1)
				offsets, err = other.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Equal(t, map[int32]int64{0: 3}, offsets)
			})

			t.Run("reset inside the caller's transaction", func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, d)
				require.NoError(t, f.inbox.Handler(f.apply)(ctx, message("e1", 0, 3)))
				errAbort := errors.New("abort rebuild")
				err := f.db.InTx(ctx, func(tx *sql.Tx) error {
					if _, err := tx.ExecContext(ctx, "DELETE FROM effects"); err != nil {
						return err
					}
					if err := f.inbox.ResetTx(ctx, tx); err != nil {
						return err
					}
					return errAbort
				})
				require.ErrorIs(t, err, errAbort)
				require.Len(t, processedIDs(t, f.db, consumer), 1, "rolled back with the caller")
				require.Len(t, applied(t, f.db), 1)

				require.NoError(t, f.db.InTx(ctx, func(tx *sql.Tx) error {
					if _, err := tx.ExecContext(ctx, "DELETE FROM effects"); err != nil {
						return err
					}
					return f.inbox.ResetTx(ctx, tx)
				}))
				require.NoError(t, f.inbox.Handler(f.apply)(ctx, message("e1", 0, 3)))
				require.Equal(t, map[string]int{"e1": 1}, applied(t, f.db), "a rebuild applies the replayed event again")
			})

			t.Run("prune deletes old marks only", func(t *testing.T) {
				t.Parallel()
				now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
				var mu sync.Mutex
				clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
				advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
				f := newFixture(t, d, inbox.WithClock(clock))
				other := inbox.New(f.db, "auditor", nil, nil, inbox.WithClock(clock))
				noop := func(context.Context, *sql.Tx, *bus.Message, string) error { return nil }

				old := eventIDs("old", 3)
				msgs := make([]*bus.Message, 0, len(old))
				for i, id := range old {
					msgs = append(msgs, message(id, 0, int64(i)))
				}
				require.NoError(t, f.inbox.ApplyBatch(ctx, msgs, f.apply))
				require.NoError(t, other.Handler(noop)(ctx, message("old-other", 0, 1)))
				advance(2 * time.Hour)
				require.NoError(t, f.inbox.Handler(f.apply)(ctx, message("new", 0, 10)))
				advance(time.Hour)

				deleted, err := f.inbox.PruneProcessed(ctx, 90*time.Minute)
				require.NoError(t, err)
				require.EqualValues(t, 3, deleted)
				require.Equal(t, map[string]bool{"new": true}, processedIDs(t, f.db, consumer))
				require.Len(t, processedIDs(t, f.db, "auditor"), 1)

				deleted, err = f.inbox.PruneProcessed(ctx, 90*time.Minute)
				require.NoError(t, err)
				require.Zero(t, deleted)

				_, err = f.inbox.PruneProcessed(ctx, 0)
				require.Error(t, err)
			})

			t.Run("prune works in chunks", func(t *testing.T) {
				t.Parallel()
				now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
				f := newFixture(t, d, inbox.WithClock(func() time.Time { return now }))
				ids := eventIDs("evt", 12000)
				for start := 0; start < len(ids); start += 1000 {
					batch := make([]*bus.Message, 0, 1000)
					for i := start; i < start+1000; i++ {
						batch = append(batch, message(ids[i], 0, int64(i)))
					}
					require.NoError(t, f.inbox.ApplyBatch(ctx, batch, f.apply))
				}
				later := inbox.New(f.db, consumer, nil, nil, inbox.WithClock(func() time.Time { return now.Add(48 * time.Hour) }))
				deleted, err := later.PruneProcessed(ctx, 24*time.Hour)
				require.NoError(t, err)
				require.EqualValues(t, len(ids), deleted)
				require.Empty(t, processedIDs(t, f.db, consumer))
			})
		})
	}
}

// TestApplyBatchWholeChunksAcrossTransactions: batches of whole mark chunks
// (whose marking statement stays prepared across transactions) apply each
// event exactly once, across commits, a rolled-back batch, redeliveries and a
// second consumer on the same database.
func TestApplyBatchWholeChunksAcrossTransactions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, d)
			batch := func(ids []string) []*bus.Message {
				out := make([]*bus.Message, len(ids))
				for i, id := range ids {
					out[i] = message(id, 0, int64(i))
				}
				return out
			}
			ids := eventIDs("evt", 2000)
			require.NoError(t, f.inbox.ApplyBatch(ctx, batch(ids[:1000]), f.apply))

			// A batch that fails rolls back its marks with it.
			boom := errors.New("boom")
			failing := func(ctx context.Context, tx *sql.Tx, msg *bus.Message, id string) error {
				if id == ids[1999] {
					return boom
				}
				return f.apply(ctx, tx, msg, id)
			}
			require.ErrorIs(t, f.inbox.ApplyBatch(ctx, batch(ids[1000:]), failing), boom)
			require.Len(t, processedIDs(t, f.db, consumer), 1000)

			// Half redelivered, half new, in whole chunks.
			require.NoError(t, f.inbox.ApplyBatch(ctx, batch(ids[500:1500]), f.apply))
			require.NoError(t, f.inbox.ApplyBatch(ctx, batch(ids[1000:]), f.apply))
			require.NoError(t, f.inbox.ApplyBatch(ctx, batch(ids[:1000]), f.apply))
			require.Equal(t, onceEach(ids), applied(t, f.db))
			require.EqualValues(t, 2000, f.processed(t))
			require.EqualValues(t, 500+500+1000, f.duplicates(t))

			// Another consumer's marks are its own.
			other := inbox.New(f.db, "other", nil, nil)
			var n int
			count := func(context.Context, *sql.Tx, *bus.Message, string) error { n++; return nil }
			require.NoError(t, other.ApplyBatch(ctx, batch(ids[:500]), count))
			require.Equal(t, 500, n)
			require.Len(t, processedIDs(t, f.db, "other"), 500)
		})
	}
}
