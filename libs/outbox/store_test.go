package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fixture is an outbox on the reference tables of one dialect.
type fixture struct {
	db  *sqlstore.DB
	s   *outbox.Store
	clk *clock
	// seq is the last seq appended per key.
	seq map[string]int64
}

func newFixture(t *testing.T, db *sqlstore.DB, tables outbox.Tables) *fixture {
	t.Helper()
	require.NoError(t, sqlstore.Migrate(context.Background(), db, os.DirFS("testdata"), ".", sqlstore.WithComponent("outbox-test")))
	clk := &clock{now: t0}
	s := outbox.NewStore(db, outbox.Options{Tables: tables, Now: clk.Now})
	return &fixture{db: db, s: s, clk: clk, seq: map[string]int64{}}
}

// row returns an event of key; routed when rk is set.
func row(key, name, rk string) outbox.Row {
	id := key + "/" + name
	return outbox.Row{EventID: id, EventType: "test." + name, RoutingKey: rk, Message: &bus.Message{
		Topic: "fleet.test", Key: key, Value: []byte("v-" + id), Headers: map[string]string{"event_id": id}}}
}

// append appends rows to key in one transaction.
func (f *fixture) append(t *testing.T, key string, rows ...outbox.Row) {
	t.Helper()
	require.NoError(t, f.db.InTx(context.Background(), func(tx *sql.Tx) error {
		return f.s.Append(context.Background(), tx, outbox.Batch{Key: key, After: f.seq[key], Rows: rows})
	}))
	f.seq[key] += int64(len(rows))
}

func (f *fixture) claim(t *testing.T, leg outbox.Leg, owner string, maxKeys int) []outbox.PendingEvent {
	t.Helper()
	rows, err := f.s.ClaimOutbox(context.Background(), leg, owner, maxKeys, time.Minute)
	require.NoError(t, err)
	return rows
}

func (f *fixture) complete(t *testing.T, leg outbox.Leg, owner string, results ...outbox.Result) int {
	t.Helper()
	lost, err := f.s.CompleteOutbox(context.Background(), leg, owner, results)
	require.NoError(t, err)
	return lost
}

func (f *fixture) done(rows ...outbox.PendingEvent) []outbox.Result {
	out := make([]outbox.Result, len(rows))
	for i, r := range rows {
		out[i] = outbox.Result{ID: r.ID, JobID: r.JobID, At: f.clk.Now()}
	}
	return out
}

func eventIDs(evs []outbox.PendingEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

var both = outbox.Tables{Outbox: "outbox", AMQP: "outbox_amqp", Key: "job_id"}

// TestStoreAppendsInOrderAndRoundTrips: appended rows come back claimed in
// (key, seq) order, with their message, routing key and creation time; a
// batch appends for several keys, continuing each key's seq.
func TestStoreAppendsInOrderAndRoundTrips(t *testing.T) {
	t.Parallel()
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newFixture(t, db, both)
		f.append(t, "a", row("a", "1", "rk.a.1"), row("a", "2", ""))
		require.NoError(t, db.InTx(context.Background(), func(tx *sql.Tx) error {
			return f.s.Append(context.Background(), tx,
				outbox.Batch{Key: "a", After: 2, Rows: []outbox.Row{row("a", "3", "")}},
				outbox.Batch{Key: "b", Rows: []outbox.Row{row("b", "1", "rk.b.1")}})
		}))
		got := f.claim(t, outbox.LegKafka, "r", 10)
		require.Equal(t, []string{"a/1", "a/2", "a/3", "b/1"}, eventIDs(got))
		for i, want := range []int64{1, 2, 3, 1} {
			require.Equal(t, want, got[i].Seq)
		}
		require.Equal(t, "rk.a.1", got[0].RoutingKey)
		require.Empty(t, got[1].RoutingKey)
		require.Equal(t, &bus.Message{Topic: "fleet.test", Key: "a", Value: []byte("v-a/1"), Headers: map[string]string{"event_id": "a/1"}}, got[0].Message)
		require.True(t, got[0].CreatedAt.Equal(t0))
		require.Zero(t, got[0].Attempts)

		amqp := f.claim(t, outbox.LegAMQP, "r", 10)
		require.Equal(t, []string{"a/1", "b/1"}, eventIDs(amqp), "only routed rows have a RabbitMQ leg")

		// A duplicate event id fails the append and writes nothing.
		before := sqlstoretest.RowCounts(t, db)
		err := db.InTx(context.Background(), func(tx *sql.Tx) error {
			return f.s.Append(context.Background(), tx, outbox.Batch{Key: "c", Rows: []outbox.Row{row("c", "1", "x"), row("a", "1", "")}})
		})
		require.Error(t, err)
		require.Equal(t, before, sqlstoretest.RowCounts(t, db))
	})
}

// TestStoreLeasesAndPerKeyOrder: one relay at a time holds a key; a row
// appended while its key is held waits for the holder; an expired lease
// frees the key for another relay, whose marks then win.
func TestStoreLeasesAndPerKeyOrder(t *testing.T) {
	t.Parallel()
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newFixture(t, db, both)
		f.append(t, "a", row("a", "1", ""), row("a", "2", ""))
		f.append(t, "b", row("b", "1", ""))

		a := f.claim(t, outbox.LegKafka, "relay-a", 1)
		require.Equal(t, []string{"a/1", "a/2"}, eventIDs(a), "a claim takes every pending row of its keys")
		f.append(t, "a", row("a", "3", ""))
		b := f.claim(t, outbox.LegKafka, "relay-b", 10)
		require.Equal(t, []string{"b/1"}, eventIDs(b), "a leased key is nobody else's, rows appended to it included")

		// a/1 done, a/2 failed: a/3 is released, and no relay takes it
		// before a/2 (the key's head).
		require.Zero(t, f.complete(t, outbox.LegKafka, "relay-a", append(f.done(a[0]),
			outbox.Result{ID: a[1].ID, JobID: "a", Err: errors.New("broker down")})...))
		again := f.claim(t, outbox.LegKafka, "relay-b", 10)
		require.Equal(t, []string{"a/2", "a/3"}, eventIDs(again), "the failed head first, then its successors")
		require.Equal(t, 1, again[0].Attempts)

		// relay-b stalls past its lease: relay-c takes the key over, and
		// relay-b's late marks are lost.
		f.clk.Add(2 * time.Minute)
		c := f.claim(t, outbox.LegKafka, "relay-c", 10)
		require.Equal(t, []string{"a/2", "a/3", "b/1"}, eventIDs(c))
		require.Equal(t, 3, f.complete(t, outbox.LegKafka, "relay-b", f.done(append(again, b...)...)...))
		require.Zero(t, f.complete(t, outbox.LegKafka, "relay-c", f.done(c...)...))
		require.Empty(t, f.claim(t, outbox.LegKafka, "relay-a", 10))

		// Not a claim: bad arguments.
		for _, bad := range []struct {
			owner string
			n     int
			lease time.Duration
		}{{"", 1, time.Minute}, {"r", 0, time.Minute}, {"r", 1, 0}} {
			_, err := f.s.ClaimOutbox(context.Background(), outbox.LegKafka, bad.owner, bad.n, bad.lease)
			require.Error(t, err)
		}
	})
}

// TestStoreBackoffHoldsBackOnlyItsKey: a failure with RetryAt keeps its key
// off the leg until then; other keys are claimed meanwhile.
func TestStoreBackoffHoldsBackOnlyItsKey(t *testing.T) {
	t.Parallel()
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newFixture(t, db, both)
		f.append(t, "a", row("a", "1", ""))
		a := f.claim(t, outbox.LegKafka, "r", 10)
		f.complete(t, outbox.LegKafka, "r", outbox.Result{ID: a[0].ID, JobID: "a", Err: errors.New("timeout"), RetryAt: t0.Add(10 * time.Second)})
		f.append(t, "b", row("b", "1", ""))
		require.Equal(t, []string{"b/1"}, eventIDs(f.claim(t, outbox.LegKafka, "r", 10)))
		f.clk.Add(11 * time.Second)
		require.Equal(t, []string{"a/1"}, eventIDs(f.claim(t, outbox.LegKafka, "r", 10)))
	})
}

// TestStoreParking: a parked row holds back its key's later rows on its leg
// only, is listed with its error, and goes again after RetryParked.
func TestStoreParking(t *testing.T) {
	t.Parallel()
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		f := newFixture(t, db, both)
		f.append(t, "a", row("a", "1", "rk"), row("a", "2", "rk"))
		f.append(t, "b", row("b", "1", ""))
		a := f.claim(t, outbox.LegKafka, "r", 1)
		f.complete(t, outbox.LegKafka, "r", outbox.Result{ID: a[0].ID, JobID: "a", Err: errors.New("message too large"), Park: true},
			outbox.Result{ID: a[1].ID, JobID: "a"})

		f.clk.Add(time.Hour)
		require.Equal(t, []string{"b/1"}, eventIDs(f.claim(t, outbox.LegKafka, "r", 10)), "a waits behind its parked head")
		require.Equal(t, []string{"a/1", "a/2"}, eventIDs(f.claim(t, outbox.LegAMQP, "r", 10)), "the other leg goes on")

		parked, err := f.s.ListParked(context.Background())
		require.NoError(t, err)
		require.Len(t, parked, 1)
		require.Equal(t, outbox.ParkedEvent{ID: a[0].ID, EventID: "a/1", EventType: "test.1", JobID: "a", Seq: 1, Leg: outbox.LegKafka,
			Attempts: 1, LastError: "message too large", ParkedAt: t0}, parked[0])

		n, err := f.s.RetryParked(context.Background(), "no-such-event")
		require.NoError(t, err)
		require.Zero(t, n)
		n, err = f.s.RetryParked(context.Background(), "a/1")
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		require.Equal(t, []string{"a/1", "a/2"}, eventIDs(f.claim(t, outbox.LegKafka, "r2", 10)))
		parked, err = f.s.ListParked(context.Background())
		require.NoError(t, err)
		require.Empty(t, parked)
	})
}

// TestStoreMarksBacklogAndPurge: the backlog counts what each leg has left;
// purge deletes only rows every leg finished before the cutoff.
func TestStoreMarksBacklogAndPurge(t *testing.T) {
	t.Parallel()
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, both)
		f.append(t, "a", row("a", "1", "rk"), row("a", "2", ""))
		backlog := func() int64 {
			n, err := f.s.OutboxBacklog(ctx)
			require.NoError(t, err)
			return n
		}
		require.EqualValues(t, 3, backlog(), "two rows on Kafka, one on RabbitMQ")
		require.Zero(t, f.complete(t, outbox.LegKafka, "r", f.done(f.claim(t, outbox.LegKafka, "r", 10)...)...))
		require.EqualValues(t, 1, backlog())
		require.EqualValues(t, 2, sqlstoretest.Count(t, db, "SELECT COUNT(*) FROM outbox WHERE published_kafka_at = ? AND sent_at = ?", t0.UnixNano(), t0.UnixNano()))

		f.clk.Add(time.Minute)
		n, err := f.s.PurgeOutbox(ctx, f.clk.Now())
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "a/1 waits for its RabbitMQ leg")
		require.Zero(t, f.complete(t, outbox.LegAMQP, "r", f.done(f.claim(t, outbox.LegAMQP, "r", 10)...)...))
		require.Zero(t, backlog())
		n, err = f.s.PurgeOutbox(ctx, t0)
		require.NoError(t, err)
		require.Zero(t, n, "finished after the cutoff")
		n, err = f.s.PurgeOutbox(ctx, f.clk.Now().Add(time.Nanosecond))
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		require.Zero(t, sqlstoretest.Count(t, db, "SELECT COUNT(*) FROM outbox_amqp"))
	})
}

// TestStoreKafkaOnly: without an AMQP table the store keeps the Kafka leg
// alone, drops routing keys and refuses the RabbitMQ leg.
func TestStoreKafkaOnly(t *testing.T) {
	t.Parallel()
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, outbox.Tables{Outbox: "outbox", Key: "job_id"})
		require.Equal(t, []outbox.Leg{outbox.LegKafka}, f.s.Legs())
		f.append(t, "a", row("a", "1", "rk"))
		require.Zero(t, sqlstoretest.Count(t, db, "SELECT COUNT(*) FROM outbox_amqp"))
		got := f.claim(t, outbox.LegKafka, "r", 10)
		require.Equal(t, []string{"a/1"}, eventIDs(got))
		require.Empty(t, got[0].RoutingKey)
		_, err := f.s.ClaimOutbox(ctx, outbox.LegAMQP, "r", 10, time.Minute)
		require.Error(t, err)
		n, err := f.s.OutboxBacklog(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
	})
}

// TestStoreWrapsErrors: a failing database reaches the caller through
// Options.WrapErr.
func TestStoreWrapsErrors(t *testing.T) {
	t.Parallel()
	sentinel := errors.New("unavailable")
	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		s := outbox.NewStore(db, outbox.Options{WrapErr: func(op string, err error) error { return fmt.Errorf("%s: %w: %w", op, sentinel, err) }})
		// No tables: every call fails.
		_, err := s.ClaimOutbox(context.Background(), outbox.LegKafka, "r", 1, time.Minute)
		require.ErrorIs(t, err, sentinel)
		_, err = s.OutboxBacklog(context.Background())
		require.ErrorIs(t, err, sentinel)
	})
}
