package service_test

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	notificationpb "github.com/cosmic-horizons/fleet/proto/fleet/notification/v1"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/testutil"
)

// BenchmarkTerminalEventToEmailAccepted measures, through the real binary,
// Kafka, SQLite and mailpit, the time from a job.completed event's
// occurred_at to mailpit's acceptance of the email (mailpit stamps it in
// milliseconds). Events are published open-loop, one every 5ms (BENCH_INTERVAL
// overrides); run with
// -benchtime=Nx (N <= 400). Reports p50-ms, p99-ms and max-ms.
func BenchmarkTerminalEventToEmailAccepted(b *testing.B) {
	s := newStack(b)
	conn := testutil.KafkaConn(b)
	proc := testutil.StartBinary(b, servicetest.Build(b, pkgDir), s.env)
	c := client(b, proc.GRPCAddr)
	user := testutil.UniqueID("bench")
	addr := testutil.UniqueAddress("bench")
	_, err := c.CreateSubscription(as(b, user), &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_EMAIL,
		Target: addr, EventTypes: []string{"job.terminal"}})
	require.NoError(b, err)
	prod := testutil.Producer(b, conn)
	n := min(b.N, 400) // mailpit keeps 500 messages by default
	occurred := make(map[string]time.Time, n)

	interval := 5 * time.Millisecond
	if v := os.Getenv("BENCH_INTERVAL"); v != "" {
		interval, err = time.ParseDuration(v)
		require.NoError(b, err)
	}
	b.ResetTimer()
	tick := time.NewTicker(interval)
	for i := range n {
		<-tick.C
		job := testutil.UniqueID("bjob")
		ev := testutil.Publish(b, prod, s.codec, s.topic, events.JobCompleted{JobID: job, UserID: user, RunTimeMS: int64(i),
			FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusCompleted}, 1)
		occurred[job] = ev.OccurredAt
	}
	tick.Stop()
	var mails []testutil.Summary
	require.Eventually(b, func() bool { mails = s.mail.To(b, addr); return len(mails) >= n }, 120*time.Second, 200*time.Millisecond)
	b.StopTimer()

	var lat []float64
	for _, m := range mails {
		job := strings.TrimSuffix(strings.TrimPrefix(m.Subject, "[Fleet] Job "), " completed")
		at, ok := occurred[job]
		require.True(b, ok, "unexpected subject %q", m.Subject)
		lat = append(lat, float64(m.Created.Sub(at).Microseconds())/1000)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
	b.ReportMetric(0, "ns/op")
}
