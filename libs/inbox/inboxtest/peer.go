// Package inboxtest measures the transactional inbox on its own: the raw
// inbox rate, the peer every consumer benchmark reports its own rate next to.
package inboxtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
)

// Units of the consumer benchmarks' figures.
const (
	// PeerMetric is the raw inbox rate.
	PeerMetric = "peer-inbox-events/s"
	// CPUMetric is the benchmark process's CPU time (user and system, all
	// threads, garbage collection included) per event, in microseconds.
	// Unlike a rate it barely depends on how much of the machine the run
	// got; on PostgreSQL it leaves out the server's own CPU.
	CPUMetric = "cpu-us/event"
	// PeerCPUMetric is CPUMetric of the raw inbox.
	PeerCPUMetric = "peer-cpu-us/event"
)

// CPUTime is the CPU time the process has used so far.
func CPUTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// MicrosPer is d in microseconds per one of n events.
func MicrosPer(d time.Duration, n int) float64 {
	return float64(d) / float64(time.Microsecond) / float64(max(n, 1))
}

// Rate applies n events through Inbox.ApplyBatch in batches of batch, with
// an apply that writes nothing, on db (migrated here), and returns the events
// per second: what the inbox alone (dedup mark per event, offsets, one
// transaction per batch) allows on that database. Messages are built before
// the clock starts; each call uses a consumer name of its own.
func Rate(tb testing.TB, db *sqlstore.DB, n, batch int) float64 {
	tb.Helper()
	rate, _ := RateCPU(tb, db, n, batch)
	return rate
}

// RateCPU is Rate that also returns the process's CPU time per event in
// microseconds (CPUMetric).
func RateCPU(tb testing.TB, db *sqlstore.DB, n, batch int) (rate, cpuPerEvent float64) {
	tb.Helper()
	ctx := context.Background()
	if err := inbox.Migrate(ctx, db); err != nil {
		tb.Fatalf("migrate inbox: %v", err)
	}
	if n < 1 || batch < 1 {
		tb.Fatalf("inboxtest.Rate: n %d and batch %d must be positive", n, batch)
	}
	var salt [6]byte
	if _, err := rand.Read(salt[:]); err != nil {
		tb.Fatal(err)
	}
	ib := inbox.New(db, "inbox-peer-"+hex.EncodeToString(salt[:]), nil, nil)
	msgs := make([]*bus.Message, n)
	for i := range msgs {
		m := &bus.Message{Topic: "peer", Partition: int32(i % 10), Offset: int64(i / 10)}
		m.SetHeader(inbox.HeaderEventID, fmt.Sprintf("%s-%012d", hex.EncodeToString(salt[:]), i))
		msgs[i] = m
	}
	none := func(context.Context, *sql.Tx, *bus.Message, string) error { return nil }
	cpu, start := CPUTime(tb), time.Now()
	for i := 0; i < n; i += batch {
		if err := ib.ApplyBatch(ctx, msgs[i:min(i+batch, n)], none); err != nil {
			tb.Fatalf("inbox peer: %v", err)
		}
	}
	return float64(n) / time.Since(start).Seconds(), MicrosPer(CPUTime(tb)-cpu, n)
}
