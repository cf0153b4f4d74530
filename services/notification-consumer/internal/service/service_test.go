package service_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	notificationpb "github.com/cosmic-horizons/fleet/proto/fleet/notification/v1"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/inapp"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/adapters/webhook"
	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/testutil"
)

const (
	pkgDir        = "../../cmd/notification-consumer"
	webhookSecret = "integration-secret"
	// authSecret is the HS256 secret the service verifies callers' JWTs with.
	authSecret = "notification-consumer-test-secret-0123456789"
)

// stack is the real infrastructure one test runs against.
type stack struct {
	mail  *testutil.Mailpit
	topic string
	codec *events.Codec
	env   map[string]string
}

func newStack(t testing.TB) *stack {
	t.Helper()
	mail := testutil.NewMailpit(t)
	conn := testutil.KafkaConn(t)
	if os.Getenv("AMQP_URL") == "" {
		testutil.AMQPConn(t) // marks the test unavailable
	}
	codec, err := events.NewCodec()
	require.NoError(t, err)
	topic := testutil.LifecycleTopic(t, conn)
	return &stack{mail: mail, topic: topic, codec: codec, env: map[string]string{
		"DATABASE_URL":             "sqlite:" + filepath.Join(t.TempDir(), "notifications.db"),
		"KAFKA_LIFECYCLE_TOPIC":    topic,
		"KAFKA_CONSUMER_GROUP":     testutil.UniqueID("nc-test-group"),
		"SMTP_STARTTLS":            "off",
		"SMTP_TIMEOUT":             "2s",
		"WEBHOOK_TIMEOUT":          "2s",
		"DELIVERY_LEASE":           "3s",
		"DELIVERY_POLL_INTERVAL":   "50ms",
		"DELIVERY_BACKOFF_INITIAL": "100ms",
		"DELIVERY_BACKOFF_MAX":     "200ms",
		"DELIVERY_MAX_ATTEMPTS":    "5",
		"WEBHOOK_ALLOW_PRIVATE":    "true",
		"WEBHOOK_SECRET_HOOK":      webhookSecret,
		"AUTH_HS256_SECRET":        authSecret,
	}}
}

// trustServer makes the service trust srv's certificate.
func (s *stack) trustServer(t *testing.T, srv *httptest.Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "webhook-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	require.NoError(t, os.WriteFile(path, pemBytes, 0o600))
	s.env["WEBHOOK_CA_FILE"] = path
}

func client(t testing.TB, addr string) notificationpb.NotificationServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return notificationpb.NewNotificationServiceClient(conn)
}

// as is a call context carrying a bearer JWT of user, signed with secret
// (default authSecret); admin adds the admin role.
func as(t testing.TB, user string) context.Context {
	return asWith(t, authSecret, user, false)
}

func asWith(t testing.TB, secret, user string, admin bool) context.Context {
	t.Helper()
	tok, err := auth.NewHS256Token(secret, user, admin, time.Hour)
	require.NoError(t, err)
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func subscribe(t *testing.T, c notificationpb.NotificationServiceClient, user string, req *notificationpb.CreateSubscriptionRequest) {
	t.Helper()
	_, err := c.CreateSubscription(as(t, user), req)
	require.NoError(t, err)
}

func completeJob(t *testing.T, s *stack, prod *kafkabus.Producer, user, jobID, name string) events.Event {
	t.Helper()
	testutil.Publish(t, prod, s.codec, s.topic, events.JobSubmitted{JobID: jobID, UserID: user, JobName: name,
		Agent: "AlphaCal", TaccSystem: events.TaccSystemFrontera, Priority: events.JobPriorityNormal, ToStatus: events.JobStatusSubmitted}, 1)
	return testutil.Publish(t, prod, s.codec, s.topic, events.JobCompleted{JobID: jobID, UserID: user, RunTimeMS: 93_000,
		FromStatus: events.JobStatusRunning, ToStatus: events.JobStatusCompleted}, 4)
}

func TestBinaryServesAndShutsDownOnSIGTERM(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	servicetest.RequireLifecycle(t, pkgDir, s.env)
}

func TestCompletedJobNotifiesOnEveryChannel(t *testing.T) {
	t.Parallel()
	for _, db := range sqlstoretest.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t)
			s.env["DATABASE_URL"] = db.URL(t)
			completedJobNotifiesOnEveryChannel(t, s)
		})
	}
}

func completedJobNotifiesOnEveryChannel(t *testing.T, s *stack) {
	conn := testutil.KafkaConn(t)
	watcher := testutil.WatchTopic(t, conn, s.codec, events.TopicNotifications)

	type hit struct {
		body      []byte
		verifyErr error
		eventID   string
	}
	hits := make(chan hit, 16)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hits <- hit{body: b, eventID: r.Header.Get(webhook.HeaderEventID),
			verifyErr: webhook.VerifySignature([]byte(webhookSecret), r.Header.Get(webhook.HeaderSignature), b, time.Minute)}
	}))
	t.Cleanup(srv.Close)
	s.trustServer(t, srv)

	user := testutil.UniqueID("ada")
	addr := testutil.UniqueAddress("ada")
	inbox := testutil.UserQueue(t, testutil.AMQPConn(t), user)
	proc := testutil.StartBinary(t, servicetest.Build(t, pkgDir), s.env)
	c := client(t, proc.GRPCAddr)
	subscribe(t, c, user, &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_EMAIL, Target: addr, EventTypes: []string{"job.terminal"}})
	subscribe(t, c, user, &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_WEBHOOK, Target: srv.URL + "/hook",
		EventTypes: []string{"job.completed", "job.failed"}, WebhookSecretRef: "hook"})
	subscribe(t, c, user, &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_IN_APP, EventTypes: []string{"job.terminal"}})

	jobID := testutil.UniqueID("job")
	ev := completeJob(t, s, testutil.Producer(t, conn), user, jobID, "calibrate-vlass-7")

	// One email, with the job's name, status and run time.
	var mails []testutil.Summary
	require.Eventually(t, func() bool { mails = s.mail.To(t, addr); return len(mails) >= 1 }, 30*time.Second, 100*time.Millisecond)
	msg := s.mail.Get(t, mails[0].ID)
	require.Equal(t, "[Fleet] Job calibrate-vlass-7 completed", msg.Subject)
	require.Contains(t, msg.Text, jobID)
	require.Contains(t, msg.Text, "COMPLETED")
	require.Contains(t, msg.Text, "Run time: 1m33s")

	// One webhook whose signature verifies.
	select {
	case h := <-hits:
		require.NoError(t, h.verifyErr)
		require.Equal(t, ev.EventID, h.eventID)
		var body map[string]any
		require.NoError(t, json.Unmarshal(h.body, &body))
		require.Equal(t, jobID, body["job_id"])
		require.Equal(t, "COMPLETED", body["status"])
		require.Equal(t, "job.completed", body["event_type"])
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook received")
	}

	// One in-app message, published and stored.
	select {
	case m := <-inbox:
		var n inapp.Message
		require.NoError(t, json.Unmarshal(m.Value, &n))
		require.Equal(t, jobID, n.JobID)
	case <-time.After(30 * time.Second):
		t.Fatal("no in-app message on the user's queue")
	}
	var list *notificationpb.ListNotificationsResponse
	require.Eventually(t, func() bool {
		var err error
		list, err = c.ListNotifications(as(t, user), &notificationpb.ListNotificationsRequest{})
		return err == nil && len(list.GetNotifications()) == 1 &&
			list.GetNotifications()[0].GetStatus() == notificationpb.NotificationStatus_NOTIFICATION_STATUS_SENT
	}, 10*time.Second, 50*time.Millisecond)
	require.EqualValues(t, 1, list.GetUnreadCount())
	mr, err := c.MarkRead(as(t, user), &notificationpb.MarkReadRequest{Ids: []string{list.GetNotifications()[0].GetId()}})
	require.NoError(t, err)
	require.EqualValues(t, 1, mr.GetUpdatedCount())

	// Every outcome is announced on the notifications topic.
	require.Eventually(t, func() bool {
		return len(watcher.Events(testutil.ForRecipient(user))) == 3
	}, 20*time.Second, 100*time.Millisecond)
	channels := map[events.NotificationChannel]bool{}
	for _, e := range watcher.Events(testutil.ForRecipient(user)) {
		sent, ok := e.Payload.(events.NotificationSent)
		require.True(t, ok, "%T", e.Payload)
		require.Equal(t, ev.CorrelationID, e.CorrelationID, "outcome events carry the job's correlation id")
		require.NotNil(t, e.CausationID)
		require.Equal(t, ev.EventID, *e.CausationID)
		channels[sent.Channel] = true
	}
	require.Len(t, channels, 3)

	// Nothing more arrives: exactly one of each.
	time.Sleep(300 * time.Millisecond)
	require.Len(t, s.mail.To(t, addr), 1)
	require.Empty(t, hits)
	require.Empty(t, inbox)
	proc.Terminate(t, 15*time.Second)
}

func TestWebhookFailingTwiceThenSucceedingMakesThreeAttempts(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	conn := testutil.KafkaConn(t)
	watcher := testutil.WatchTopic(t, conn, s.codec, events.TopicNotifications)
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	s.trustServer(t, srv)
	proc := testutil.StartBinary(t, servicetest.Build(t, pkgDir), s.env)
	c := client(t, proc.GRPCAddr)
	user := testutil.UniqueID("grace")
	subscribe(t, c, user, &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_WEBHOOK, Target: srv.URL,
		EventTypes: []string{"job.terminal"}, WebhookSecretRef: "hook"})
	completeJob(t, s, testutil.Producer(t, conn), user, testutil.UniqueID("job"), "retry-me")

	require.Eventually(t, func() bool { return len(watcher.Events(testutil.ForRecipient(user))) == 3 }, 30*time.Second, 50*time.Millisecond)
	evs := watcher.Events(testutil.ForRecipient(user))
	var failed, sent []int32
	for _, e := range evs {
		switch p := e.Payload.(type) {
		case events.NotificationFailed:
			require.False(t, p.Permanent)
			failed = append(failed, p.Attempt)
		case events.NotificationSent:
			sent = append(sent, p.Attempt)
		}
	}
	require.ElementsMatch(t, []int32{1, 2}, failed)
	require.Equal(t, []int32{3}, sent)
	time.Sleep(300 * time.Millisecond)
	require.EqualValues(t, 3, calls.Load())
}

func TestBadSubscriptionInputIsRefusedWithFieldDetails(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	proc := testutil.StartBinary(t, servicetest.Build(t, pkgDir), s.env)
	c := client(t, proc.GRPCAddr)
	tests := []struct {
		name   string
		req    *notificationpb.CreateSubscriptionRequest
		fields []string
	}{
		{name: "bad email address", req: &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_EMAIL,
			Target: "not-an-address", EventTypes: []string{"job.completed"}}, fields: []string{"target"}},
		{name: "header injection in address", req: &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_EMAIL,
			Target: "a@example.org\r\nBcc: b@example.org", EventTypes: []string{"job.completed"}}, fields: []string{"target"}},
		{name: "non-https webhook", req: &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_WEBHOOK,
			Target: "http://hooks.example.org/x", EventTypes: []string{"job.completed"}, WebhookSecretRef: "hook"}, fields: []string{"target"}},
		{name: "unknown event type", req: &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_IN_APP,
			EventTypes: []string{"job.completed", "job.exploded"}}, fields: []string{"event_types[1]"}},
		{name: "webhook without secret, no event types", req: &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_WEBHOOK,
			Target: "https://hooks.example.org/x"}, fields: []string{"webhook_secret_ref", "event_types"}},
		{name: "unconfigured secret", req: &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_WEBHOOK,
			Target: "https://hooks.example.org/x", EventTypes: []string{"job.failed"}, WebhookSecretRef: "nope"}, fields: []string{"webhook_secret_ref"}},
		{name: "no channel", req: &notificationpb.CreateSubscriptionRequest{EventTypes: []string{"job.failed"}}, fields: []string{"channel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.CreateSubscription(as(t, "mallory"), tt.req)
			st := status.Convert(err)
			require.Equal(t, codes.InvalidArgument, st.Code(), "%v", err)
			var fields []string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, fv := range br.GetFieldViolations() {
						fields = append(fields, fv.GetField())
						require.NotEmpty(t, fv.GetDescription())
					}
				}
			}
			require.ElementsMatch(t, tt.fields, fields)
		})
	}
	list, err := c.ListSubscriptions(as(t, "mallory"), &notificationpb.ListSubscriptionsRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetSubscriptions(), "a refused request changes nothing")

	_, err = c.ListSubscriptions(context.Background(), &notificationpb.ListSubscriptionsRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "no token")
	_, err = c.ListSubscriptions(asWith(t, "another-secret-another-secret-0123456789", "mallory", true), &notificationpb.ListSubscriptionsRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "a token signed with another secret")
	_, err = c.ListSubscriptions(metadata.AppendToOutgoingContext(context.Background(), "x-user-id", "mallory"), &notificationpb.ListSubscriptionsRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "an unverified user header is not an identity")
	_, err = c.ListSubscriptions(as(t, "mallory"), &notificationpb.ListSubscriptionsRequest{UserId: "someone-else"})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = c.ListSubscriptions(asWith(t, authSecret, "root", true), &notificationpb.ListSubscriptionsRequest{UserId: "someone-else"})
	require.NoError(t, err, "an admin lists anyone's subscriptions")
	_, err = c.DeleteSubscription(as(t, "mallory"), &notificationpb.DeleteSubscriptionRequest{Id: "no-such"})
	require.Equal(t, codes.NotFound, status.Code(err))
}

func TestKilledConsumerLosesNothingAndSendsNothingTwice(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	conn := testutil.KafkaConn(t)
	// The service reaches mailpit through a proxy that holds back the end of
	// the fifth message and of every later one: the service is killed in the
	// middle of delivering, before mailpit accepted those messages.
	proxy := testutil.NewSMTPProxy(t, s.mail.SMTPAddr, 5)
	s.env["SMTP_ADDR"] = proxy.Addr
	bin := servicetest.Build(t, pkgDir)
	proc := testutil.StartBinary(t, bin, s.env)
	c := client(t, proc.GRPCAddr)

	const jobs = 40
	user := testutil.UniqueID("kill")
	addr := testutil.UniqueAddress("kill")
	subscribe(t, c, user, &notificationpb.CreateSubscriptionRequest{Channel: notificationpb.Channel_CHANNEL_EMAIL, Target: addr, EventTypes: []string{"job.terminal"}})
	prod := testutil.Producer(t, conn)
	for i := range jobs {
		testutil.Publish(t, prod, s.codec, s.topic, events.JobCompleted{JobID: testutil.UniqueID("kjob"), UserID: user,
			RunTimeMS: int64(i), ToStatus: events.JobStatusCompleted, FromStatus: events.JobStatusRunning}, 1)
	}
	select {
	case <-proxy.Holding():
	case <-time.After(30 * time.Second):
		t.Fatal("the service never reached the fifth email")
	}
	// Let the outcomes of the messages mailpit already accepted commit; no
	// further message can be accepted while the proxy holds.
	time.Sleep(300 * time.Millisecond)
	proc.Kill()
	killedAt := len(s.mail.To(t, addr))
	require.Less(t, killedAt, jobs)
	t.Logf("killed after %d of %d emails", killedAt, jobs)

	proxy.Release()
	testutil.StartBinary(t, bin, s.env)
	require.Eventually(t, func() bool { return len(s.mail.To(t, addr)) >= jobs }, 60*time.Second, 100*time.Millisecond)
	time.Sleep(4 * time.Second) // longer than DELIVERY_LEASE: a lost outcome would have been resent by now
	mails := s.mail.To(t, addr)
	perID := map[string]int{}
	for _, m := range mails {
		perID[m.MessageID]++
	}
	require.Len(t, perID, jobs, "every job gave one distinct email")
	for id, n := range perID {
		require.Equal(t, 1, n, "message %s sent %d times", id, n)
	}
	require.Contains(t, mails[0].Subject, "completed")
}
