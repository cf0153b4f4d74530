package app_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/email"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/webhook"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/testutil"
)

func newStore(t *testing.T) *store.Store {
	t.Helper()
	db := sqlstoretest.OpenURL(t, "sqlite:"+filepath.Join(t.TempDir(), "n.db"))
	require.NoError(t, store.Migrate(context.Background(), db))
	return store.New(db)
}

func codec(t *testing.T) *events.Codec {
	t.Helper()
	c, err := events.NewCodec()
	require.NoError(t, err)
	return c
}

func webhookSender(t *testing.T, srv *httptest.Server) *webhook.Sender {
	t.Helper()
	s, err := webhook.NewSender(webhook.Config{TLS: srv.Client().Transport.(*http.Transport).TLSClientConfig, RatePerHost: 1000, Burst: 100, AllowPrivateNetworks: true},
		webhook.Secrets{Lookup: func(string) (string, bool) { return "k", true }})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func addDelivery(t *testing.T, st *store.Store, d domain.Delivery) {
	t.Helper()
	d.TargetKey = app.TargetKey(d)
	require.NoError(t, st.DB().InTx(context.Background(), func(tx *sql.Tx) error {
		_, err := st.InsertDeliveryTx(context.Background(), tx, d)
		return err
	}))
}

func runDispatcher(t *testing.T, cfg app.DispatcherConfig, st *store.Store, senders map[domain.Channel]app.Sender) *app.Dispatcher {
	t.Helper()
	d, err := app.NewDispatcher(cfg, st, senders, codec(t), nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return d
}

func fastConfig() app.DispatcherConfig {
	cfg := app.DefaultDispatcherConfig()
	cfg.PollInterval = 20 * time.Millisecond
	cfg.Retry = bus.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	return cfg
}

// TestSlowWebhookDoesNotDelayAnotherUsersEmail checks ordering, not timing:
// another user's email, due after twenty deliveries to a webhook host that
// does not answer, is accepted while none of those webhooks has completed.
func TestSlowWebhookDoesNotDelayAnotherUsersEmail(t *testing.T) {
	t.Parallel()
	mp := testutil.NewMailpit(t)
	release := make(chan struct{})
	var started, completed atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		<-release
		completed.Add(1)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	st := newStore(t)
	mailer, err := email.NewSender(email.Config{Addr: mp.SMTPAddr, From: "fleet@example.org", StartTLS: email.TLSOff})
	require.NoError(t, err)

	t0 := time.Now().Add(-time.Minute)
	for i := range 20 {
		addDelivery(t, st, domain.Delivery{ID: fmt.Sprintf("wh-%02d", i), EventID: fmt.Sprintf("e-%02d", i), EventType: "job.completed",
			UserID: "slow-user", JobID: "j", Channel: domain.ChannelWebhook, Target: srv.URL, SecretRef: "k", Payload: []byte(`{}`),
			NextAttemptAt: t0.Add(time.Duration(i) * time.Millisecond), CreatedAt: t0})
	}
	to := testutil.UniqueAddress("bystander")
	addDelivery(t, st, domain.Delivery{ID: "mail-1", EventID: "e-mail", EventType: "job.completed", UserID: "bystander", JobID: "j2",
		Channel: domain.ChannelEmail, Target: to, Subject: "done", Body: "done", NextAttemptAt: t0.Add(time.Second), CreatedAt: t0})

	cfg := fastConfig()
	cfg.BatchSize, cfg.QueueSize, cfg.PerTargetConcurrency = 5, 2, 1
	runDispatcher(t, cfg, st, map[domain.Channel]app.Sender{domain.ChannelWebhook: webhookSender(t, srv), domain.ChannelEmail: mailer})

	require.Eventually(t, func() bool { return len(mp.To(t, to)) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Zero(t, completed.Load(), "the email went out while every webhook was still stuck")
	require.LessOrEqual(t, started.Load(), int32(1), "one worker per target: at most one request in flight")
	close(release)
	require.Eventually(t, func() bool { return completed.Load() == 20 }, 20*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		d, err := st.Delivery(context.Background(), "wh-19")
		return err == nil && d.Status == domain.StatusSent && d.Attempts == 1
	}, 5*time.Second, 20*time.Millisecond)
}

func TestFailuresAreRecordedAndDeadLettered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		status       int
		wantAttempts int
		wantFailed   int // notification.failed events in the outbox
	}{
		{name: "permanent 4xx is not retried", status: http.StatusGone, wantAttempts: 1, wantFailed: 1},
		{name: "transient 5xx until max attempts", status: http.StatusBadGateway, wantAttempts: 3, wantFailed: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.WriteHeader(tt.status)
			}))
			t.Cleanup(srv.Close)
			st := newStore(t)
			addDelivery(t, st, domain.Delivery{ID: "d", EventID: "e", EventType: "job.failed", UserID: "u", JobID: "j",
				Channel: domain.ChannelWebhook, Target: srv.URL, SecretRef: "k", Payload: []byte(`{}`), NextAttemptAt: time.Now(), CreatedAt: time.Now()})
			runDispatcher(t, fastConfig(), st, map[domain.Channel]app.Sender{domain.ChannelWebhook: webhookSender(t, srv)})

			var d domain.Delivery
			require.Eventually(t, func() bool {
				var err error
				d, err = st.Delivery(context.Background(), "d")
				return err == nil && d.Status == domain.StatusFailed
			}, 10*time.Second, 10*time.Millisecond)
			require.Equal(t, tt.wantAttempts, d.Attempts)
			require.EqualValues(t, tt.wantAttempts, calls.Load())
			require.Contains(t, d.LastError, fmt.Sprint(tt.status))

			out, err := st.ClaimOutbox(context.Background(), outbox.LegKafka, "test", 100, time.Minute)
			require.NoError(t, err)
			c := codec(t)
			var failed, dlq int
			for _, m := range out {
				switch m.Message.Topic {
				case events.TopicNotifications:
					ev, err := c.FromMessage(m.Message)
					require.NoError(t, err)
					p, ok := ev.Payload.(events.NotificationFailed)
					require.True(t, ok)
					failed++
					require.Equal(t, int(p.Attempt) == tt.wantAttempts, p.Permanent, "attempt %d", p.Attempt)
				case events.DLQTopic(events.TopicNotifications):
					dlq++
					require.Equal(t, fmt.Sprint(tt.wantAttempts), m.Message.Headers[bus.HeaderDLQAttempts])
					require.Equal(t, "e", m.Message.Headers["source_event_id"])
				}
			}
			require.Equal(t, tt.wantFailed, failed)
			require.Equal(t, 1, dlq)
		})
	}
}

// TestResendAfterLostOutcomeKeepsMessageID documents the one duplicate
// window: a worker dies after the SMTP server accepted a message and before
// the outcome committed. After the lease the delivery is sent again, and the
// copy carries the same Message-ID, so it is recognisable as a resend.
func TestResendAfterLostOutcomeKeepsMessageID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mp := testutil.NewMailpit(t)
	st := newStore(t)
	mailer, err := email.NewSender(email.Config{Addr: mp.SMTPAddr, From: "fleet@example.org", StartTLS: email.TLSOff})
	require.NoError(t, err)
	to := testutil.UniqueAddress("window")
	now := time.Now()
	d := domain.Delivery{ID: "w", EventID: "e-window", EventType: "job.completed", UserID: "u", JobID: "j",
		Channel: domain.ChannelEmail, Target: to, Subject: "done", Body: "done", NextAttemptAt: now, CreatedAt: now}
	addDelivery(t, st, d)

	// The lost attempt: claimed with a short lease, sent, never recorded.
	claimed, err := st.ClaimBatch(ctx, []string{"w"}, now, now.Add(300*time.Millisecond))
	require.NoError(t, err)
	require.Equal(t, 1, claimed["w"])
	require.NoError(t, mailer.Send(ctx, d))

	runDispatcher(t, fastConfig(), st, map[domain.Channel]app.Sender{domain.ChannelEmail: mailer})
	require.Eventually(t, func() bool {
		got, err := st.Delivery(ctx, "w")
		return err == nil && got.Status == domain.StatusSent && got.Attempts == 2
	}, 10*time.Second, 20*time.Millisecond)
	mails := mp.To(t, to)
	require.Len(t, mails, 2)
	require.Equal(t, mails[0].MessageID, mails[1].MessageID)
}

// A slow target with a long queue: each send takes longer than a third of
// the lease and the queue holds far more than a lease's worth of sends.
// Every delivery is claimed when its send starts and kept while it runs, so
// each is sent exactly once, at its first attempt.
func TestSlowTargetWithALongQueueSendsEachDeliveryOnce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	requests := map[string]int{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(150 * time.Millisecond)
		mu.Lock()
		requests[r.Header.Get(webhook.HeaderDelivery)]++
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	st := newStore(t)
	t0 := time.Now().Add(-time.Minute)
	const n = 24
	for i := range n {
		addDelivery(t, st, domain.Delivery{ID: fmt.Sprintf("slow-%02d", i), EventID: fmt.Sprintf("e-%02d", i), EventType: "job.completed",
			UserID: "u", JobID: "j", Channel: domain.ChannelWebhook, Target: srv.URL, SecretRef: "k", Payload: []byte(`{}`),
			NextAttemptAt: t0.Add(time.Duration(i) * time.Millisecond), CreatedAt: t0})
	}
	cfg := fastConfig()
	cfg.Lease = 300 * time.Millisecond // 24 x 150 ms queued behind one worker: 12 leases
	cfg.QueueSize, cfg.PerTargetConcurrency = n, 1
	// Two dispatchers, as two replicas sharing the database.
	runDispatcher(t, cfg, st, map[domain.Channel]app.Sender{domain.ChannelWebhook: webhookSender(t, srv)})
	runDispatcher(t, cfg, st, map[domain.Channel]app.Sender{domain.ChannelWebhook: webhookSender(t, srv)})

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(requests) == n
	}, 30*time.Second, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	for id, count := range requests {
		require.Equal(t, 1, count, "delivery %s sent once", id)
	}
	mu.Unlock()
	for i := range n {
		d, err := st.Delivery(context.Background(), fmt.Sprintf("slow-%02d", i))
		require.NoError(t, err)
		require.Equal(t, domain.StatusSent, d.Status)
		require.Equal(t, 1, d.Attempts)
	}
}

// A delivery held by a consumer that died mid-send is sent by the next one
// as soon as the lease it took ran out: seconds, not minutes.
func TestHeldDeliveryResumesAfterALease(t *testing.T) {
	t.Parallel()
	var sent atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { sent.Add(1) }))
	t.Cleanup(srv.Close)
	st := newStore(t)
	now := time.Now()
	addDelivery(t, st, domain.Delivery{ID: "held", EventID: "e-held", EventType: "job.completed", UserID: "u", JobID: "j",
		Channel: domain.ChannelWebhook, Target: srv.URL, SecretRef: "k", Payload: []byte(`{}`), NextAttemptAt: now, CreatedAt: now})
	cfg := fastConfig()
	// The dead consumer's claim, with the default lease.
	claimed, err := st.ClaimBatch(context.Background(), []string{"held"}, now, now.Add(app.DefaultDispatcherConfig().Lease))
	require.NoError(t, err)
	require.Equal(t, map[string]int{"held": 1}, claimed)
	start := time.Now()
	runDispatcher(t, cfg, st, map[domain.Channel]app.Sender{domain.ChannelWebhook: webhookSender(t, srv)})
	require.Eventually(t, func() bool { return sent.Load() == 1 }, 30*time.Second, 50*time.Millisecond)
	t.Logf("resumed after %s (lease %s)", time.Since(start).Round(time.Millisecond), app.DefaultDispatcherConfig().Lease)
	d, err := st.Delivery(context.Background(), "held")
	require.NoError(t, err)
	require.Equal(t, 2, d.Attempts, "the dead consumer's attempt, then this one")
}

// blockingSender holds each send until release closes.
type blockingSender struct {
	started chan struct{}
	release chan struct{}
}

func (s *blockingSender) Send(context.Context, domain.Delivery) error {
	s.started <- struct{}{}
	<-s.release
	return nil
}

// TestShutdownDoesNotWaitOutRecordRetries: an outcome that cannot be
// written at shutdown (the database is gone) is tried once more and then
// left to its lease; the waits between record retries end with the
// dispatcher's context instead of holding up the shutdown.
func TestShutdownDoesNotWaitOutRecordRetries(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	addDelivery(t, st, domain.Delivery{ID: "d", EventID: "e", EventType: "job.failed", UserID: "u", JobID: "j",
		Channel: domain.ChannelWebhook, Target: "https://hooks.example/x", SecretRef: "k", Payload: []byte(`{}`), NextAttemptAt: time.Now(), CreatedAt: time.Now()})
	cfg := fastConfig()
	cfg.RecordRetry = bus.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Hour, MaxBackoff: time.Hour}
	sender := &blockingSender{started: make(chan struct{}, 1), release: make(chan struct{})}
	d, err := app.NewDispatcher(cfg, st, map[domain.Channel]app.Sender{domain.ChannelWebhook: sender}, codec(t), nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	select {
	case <-sender.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the delivery was never sent")
	}
	cancel()
	require.NoError(t, st.DB().Close()) // every outcome write fails from now on
	close(sender.release)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run still waits between record retries after shutdown")
	}
}
