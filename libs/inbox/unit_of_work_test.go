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

// effects is the view use-case code gets of one inbox transaction: it
// records effects without seeing the transaction.
type effects interface {
	Record(ctx context.Context, msg *bus.Message, eventID string) error
}

// boundEffects is the adapter side: recordEffect over the transaction bind
// gave it, remembering what bind was told.
type boundEffects struct {
	apply inbox.ApplyFunc
	tx    *sql.Tx
	msgs  []*bus.Message
}

func (b *boundEffects) Record(ctx context.Context, msg *bus.Message, eventID string) error {
	return b.apply(ctx, b.tx, msg, eventID)
}

func TestUnitOfWork(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()

			newUnit := func(t *testing.T) (fixture, *inbox.UnitOfWork[effects], *[]*boundEffects) {
				f := newFixture(t, d)
				var bound []*boundEffects
				u := inbox.NewUnitOfWork(f.inbox, func(tx *sql.Tx, msgs []*bus.Message) effects {
					b := &boundEffects{apply: f.apply, tx: tx, msgs: msgs}
					bound = append(bound, b)
					return b
				})
				return f, u, &bound
			}
			record := func(ctx context.Context, e effects, msg *bus.Message, eventID string) error {
				return e.Record(ctx, msg, eventID)
			}

			t.Run("apply binds one view per message and skips duplicates", func(t *testing.T) {
				t.Parallel()
				f, u, bound := newUnit(t)
				require.Same(t, f.inbox, u.Inbox())
				require.NoError(t, u.Apply(ctx, message("e1", 0, 5), record))
				require.NoError(t, u.Apply(ctx, message("e2", 0, 6), record))
				require.NoError(t, u.Apply(ctx, message("e1", 0, 5), record))

				require.Equal(t, map[string]int{"e1": 1, "e2": 1}, applied(t, f.db))
				require.Equal(t, 1.0, f.duplicates(t))
				require.Len(t, *bound, 2, "a duplicate binds no view")
				require.Len(t, (*bound)[0].msgs, 1)
				require.Equal(t, "e1", (*bound)[0].msgs[0].Header(inbox.HeaderEventID))
				offsets, err := f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Equal(t, map[int32]int64{0: 6}, offsets)
			})

			t.Run("a failed apply keeps nothing and a retry applies once", func(t *testing.T) {
				t.Parallel()
				f, u, _ := newUnit(t)
				boom := errors.New("boom")
				err := u.Apply(ctx, message("e1", 0, 5), func(ctx context.Context, e effects, msg *bus.Message, id string) error {
					if err := e.Record(ctx, msg, id); err != nil {
						return err
					}
					return boom
				})
				require.ErrorIs(t, err, boom)
				require.Empty(t, applied(t, f.db))
				require.Empty(t, processedIDs(t, f.db, consumer))

				require.NoError(t, u.Apply(ctx, message("e1", 0, 5), record))
				require.Equal(t, map[string]int{"e1": 1}, applied(t, f.db))
			})

			t.Run("a batch shares one view and applies each event once", func(t *testing.T) {
				t.Parallel()
				f, u, bound := newUnit(t)
				require.NoError(t, u.Apply(ctx, message("b", 0, 1), record))
				msgs := []*bus.Message{message("a", 0, 2), message("b", 0, 3), message("c", 1, 4), message("a", 0, 5)}
				var seen []effects
				require.NoError(t, u.ApplyBatch(ctx, msgs, func(ctx context.Context, e effects, msg *bus.Message, id string) error {
					seen = append(seen, e)
					return e.Record(ctx, msg, id)
				}))

				require.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1}, applied(t, f.db))
				require.Len(t, seen, 2, "only the new events a and c are applied")
				require.Same(t, seen[0], seen[1], "one view for the whole transaction")
				require.Len(t, *bound, 2, "one view for the single message, one for the batch")
				require.Equal(t, msgs, (*bound)[1].msgs, "bind sees the batch's messages")
				offsets, err := f.inbox.Offsets(ctx, "job-lifecycle")
				require.NoError(t, err)
				require.Equal(t, map[int32]int64{0: 2, 1: 4}, offsets)
			})

			t.Run("a failing batch keeps nothing", func(t *testing.T) {
				t.Parallel()
				f, u, _ := newUnit(t)
				boom := errors.New("boom")
				msgs := []*bus.Message{message("a", 0, 1), message("b", 0, 2)}
				err := u.ApplyBatch(ctx, msgs, func(ctx context.Context, e effects, msg *bus.Message, id string) error {
					if id == "b" {
						return boom
					}
					return e.Record(ctx, msg, id)
				})
				var be *inbox.BatchError
				require.ErrorAs(t, err, &be)
				require.Equal(t, 1, be.Index)
				require.ErrorIs(t, err, boom)
				require.Empty(t, applied(t, f.db))
				require.Empty(t, processedIDs(t, f.db, consumer))
			})
		})
	}
}

func TestNewUnitOfWorkRejectsNil(t *testing.T) {
	t.Parallel()
	require.Panics(t, func() { inbox.NewUnitOfWork[effects](nil, func(*sql.Tx, []*bus.Message) effects { return nil }) })
}
