package service_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/auditchain/chainpb"
	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/audittest"
)

// kafkaEnv is what every integration test needs: brokers, fresh topics, a
// built binary and a signing key.
type kafkaEnv struct {
	brokers            []string
	auditTopic, jobTop string
	alertTopic, group  string
	bin                string
	priv               []byte
	pub                []byte
}

func newKafkaEnv(t *testing.T) *kafkaEnv {
	t.Helper()
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		testinfra.Unavailable(t, "Kafka: KAFKA_BROKERS is not set")
	}
	e := &kafkaEnv{
		brokers: []string{brokers}, auditTopic: kafkabustest.Name("audit-trail-it"), jobTop: kafkabustest.Name("job-lifecycle-it"),
		alertTopic: kafkabustest.Name("system-health-it"), group: kafkabustest.Name("compliance-auditor-it"),
	}
	kafkabustest.TopicsWithDLQ(t, e.brokers, 3, e.auditTopic, e.jobTop, e.alertTopic)
	pub, priv, err := auditchain.GenerateKey(rand.Reader)
	require.NoError(t, err)
	e.priv, e.pub = priv.Seed(), pub
	e.bin = servicetest.Build(t, "../../cmd/compliance-auditor")
	return e
}

// publish sends msgs, each to the test topic standing for its own topic, and
// waits for every acknowledgement.
func (e *kafkaEnv) publish(t *testing.T, msgs []*bus.Message) {
	t.Helper()
	p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(kafkabus.Connection{Brokers: e.brokers}), slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	defer p.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, m := range msgs {
		out := *m
		out.Topic = e.auditTopic
		if m.Topic == events.TopicJobLifecycle {
			out.Topic = e.jobTop
		}
		wg.Add(1)
		require.NoError(t, p.PublishAsync(context.Background(), &out, func(err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}))
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
}

// auditor is a running service binary.
type auditor struct {
	cmd    *exec.Cmd
	out    *bytes.Buffer
	client auditpb.AuditServiceClient
	exited chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func (e *kafkaEnv) start(t *testing.T, dbURL string) *auditor {
	t.Helper()
	grpcAddr := freeAddr(t)
	cmd := exec.Command(e.bin)
	cmd.Env = append(os.Environ(),
		"GRPC_ADDR="+grpcAddr, "HTTP_ADDR="+freeAddr(t), "LOG_LEVEL=info", "SHUTDOWN_DRAIN=50ms",
		"DATABASE_URL="+dbURL, "KAFKA_BROKERS="+e.brokers[0],
		"AUDIT_TOPICS="+e.auditTopic+","+e.jobTop, "AUDIT_ALERT_TOPIC="+e.alertTopic,
		"AUDIT_CONSUMER_GROUP="+e.group, "AUDIT_CHECKPOINT_INTERVAL=200ms", "AUDIT_BATCH_SIZE=200",
		"AUDIT_SIGNING_KEY="+base64.StdEncoding.EncodeToString(e.priv), "AUTH_HS256_SECRET="+authSecret,
	)
	out := &bytes.Buffer{}
	var mu sync.Mutex
	cmd.Stdout = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	a := &auditor{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			mu.Lock()
			t.Logf("auditor output:\n%s", out.String())
			mu.Unlock()
		}
	})
	// The AuditService admits admins only: every call carries an admin JWT.
	tok, err := auth.NewHS256Token(authSecret, "auditor-it-admin", true, time.Hour)
	require.NoError(t, err)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.BearerCredentials(tok, true)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	}, 60*time.Second, 50*time.Millisecond, "auditor did not serve")
	a.client = auditpb.NewAuditServiceClient(conn)
	return a
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// kill ends the process with SIGKILL: no shutdown code runs.
func (a *auditor) kill() {
	select {
	case <-a.exited:
	default:
		_ = a.cmd.Process.Signal(syscall.SIGKILL)
		<-a.exited
	}
}

func (a *auditor) verify(t *testing.T) *auditpb.VerifyResponse {
	t.Helper()
	resp, err := a.client.Verify(context.Background(), &auditpb.VerifyRequest{})
	require.NoError(t, err)
	return resp
}

// exportFile writes the gRPC export as an NDJSON file's bytes.
func (a *auditor) exportFile(t *testing.T, keyID string) []byte {
	t.Helper()
	stream, err := a.client.Export(context.Background(), &auditpb.ExportRequest{})
	require.NoError(t, err)
	var buf bytes.Buffer
	w, err := auditchain.NewWriter(&buf, keyID)
	require.NoError(t, err)
	_, err = chainpb.WriteExport(stream, w, nil)
	require.NoError(t, err)
	return buf.Bytes()
}

func offlineVerify(data []byte, pub []byte) auditchain.Result {
	res, err := auditchain.Verify(auditchain.NewReader(bytes.NewReader(data), auditchain.ReaderOptions{}).Entries(),
		auditchain.VerifyOptions{PublicKey: pub})
	if err != nil {
		return auditchain.Result{Reason: auditchain.ReasonHashMismatch, Detail: err.Error()}
	}
	return res
}

func count(t *testing.T, db *sqlstore.DB) int64 { return audittest.Count(t, db) }

func TestAuditTrailOverKafka(t *testing.T) {
	codec, err := events.NewCodec()
	require.NoError(t, err)
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			e := newKafkaEnv(t)
			url := d.URL(t)
			db := sqlstoretest.OpenURL(t, url)
			msgs := audittest.Messages(t, codec, 40)
			for i, seq := range []int64{1, 2, 5} { // job-gap misses 3 and 4
				msgs = append(msgs, audittest.Message(t, codec, audittest.Lifecycle(t, "job-gap-"+d.Name, seq), int64(100+i)))
			}
			e.publish(t, msgs)
			e.publish(t, msgs[:10]) // duplicates
			a := e.start(t, url)

			require.Eventually(t, func() bool { return count(t, db) == 43 }, 60*time.Second, 100*time.Millisecond)
			e.publish(t, msgs[10:20]) // late duplicates, after the first were applied
			time.Sleep(time.Second)
			require.EqualValues(t, 43, count(t, db), "duplicates add nothing")

			res := a.verify(t)
			require.True(t, res.GetOk(), res.GetReason())
			require.EqualValues(t, 43, res.GetCheckedCount())

			page, err := a.client.Query(context.Background(), &auditpb.QueryRequest{Action: "job.cancel", PageSize: 15})
			require.NoError(t, err)
			require.Len(t, page.GetRecords(), 15)
			require.NotEmpty(t, page.GetNextPageToken())
			page, err = a.client.Query(context.Background(), &auditpb.QueryRequest{Action: "job.cancel", PageSize: 15, PageToken: page.GetNextPageToken()})
			require.NoError(t, err)
			require.Len(t, page.GetRecords(), 5)
			require.Empty(t, page.GetNextPageToken())

			// The gap is stored once and its alert published (alerted_at is
			// set only after Kafka acknowledged the alert).
			require.Eventually(t, func() bool {
				return sqlstoretest.Count(t, db, "SELECT count(*) FROM audit_sequence_gaps WHERE alerted_at IS NOT NULL AND first_missing = 3 AND last_missing = 4") == 1
			}, 30*time.Second, 100*time.Millisecond)

			keyID := auditchain.KeyID(e.pub)
			data := a.exportFile(t, keyID)
			off := offlineVerify(data, e.pub)
			require.True(t, off.OK, off.String())
			require.EqualValues(t, 43, off.Records)
			tampered := bytes.Replace(data, []byte(`"actor":"u-2"`), []byte(`"actor":"u-3"`), 1)
			require.NotEqual(t, data, tampered)
			off = offlineVerify(tampered, e.pub)
			require.False(t, off.OK)

			// The missing events arrive late: the gap fills up and its alert
			// is resolved (resolve_alerted_at is set once Kafka acknowledged
			// the alert.resolved).
			e.publish(t, []*bus.Message{audittest.Message(t, codec, audittest.Lifecycle(t, "job-gap-"+d.Name, 3), 200)})
			require.Eventually(t, func() bool {
				return sqlstoretest.Count(t, db, "SELECT count(*) FROM audit_sequence_gaps WHERE filled = 1 AND resolved_at IS NULL") == 1
			}, 30*time.Second, 100*time.Millisecond, "one of two missing events arrived")
			e.publish(t, []*bus.Message{audittest.Message(t, codec, audittest.Lifecycle(t, "job-gap-"+d.Name, 4), 201)})
			require.Eventually(t, func() bool {
				return sqlstoretest.Count(t, db, "SELECT count(*) FROM audit_sequence_gaps WHERE filled = 2 AND resolve_alerted_at IS NOT NULL") == 1
			}, 30*time.Second, 100*time.Millisecond, "the gap was resolved")
			require.EqualValues(t, 45, count(t, db), "late events are appended like any other")

			// Tampering directly in the database, past the append-only triggers.
			audittest.DropGuards(t, db)
			sqlstoretest.MustExec(t, db, "DELETE FROM audit_records WHERE sequence > 40")
			sqlstoretest.MustExec(t, db, "UPDATE audit_head SET sequence = 40, hash = (SELECT hash FROM audit_records WHERE sequence = 40)")
			res = a.verify(t)
			require.False(t, res.GetOk())
			require.EqualValues(t, 41, res.GetFirstBadSequence())
			require.Contains(t, res.GetReason(), "truncated")

			sqlstoretest.MustExec(t, db, "UPDATE audit_records SET resource_id = 'x' || substr(resource_id, 2) WHERE sequence = 5")
			res = a.verify(t)
			require.False(t, res.GetOk())
			require.EqualValues(t, 5, res.GetFirstBadSequence())
			require.Contains(t, res.GetReason(), "hash mismatch")
		})
	}
}

func TestKillMidBatchLeavesNoGapAndNoDuplicate(t *testing.T) {
	e := newKafkaEnv(t)
	codec, err := events.NewCodec()
	require.NoError(t, err)
	const total = 20000
	msgs := audittest.Messages(t, codec, total)
	e.publish(t, msgs)
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			e.group += "-" + d.Name
			url := d.URL(t)
			db := sqlstoretest.OpenURL(t, url)
			a := e.start(t, url)
			require.Eventually(t, func() bool { return count(t, db) > 0 }, 60*time.Second, 5*time.Millisecond)
			a.kill()
			killedAt := count(t, db)
			require.Less(t, killedAt, int64(total), "killed after the whole stream was applied; nothing was interrupted")
			t.Logf("killed with %d of %d records", killedAt, total)

			a = e.start(t, url)
			require.Eventually(t, func() bool { return count(t, db) >= total }, 120*time.Second, 100*time.Millisecond)
			time.Sleep(500 * time.Millisecond)
			require.EqualValues(t, total, count(t, db))
			require.EqualValues(t, total, sqlstoretest.Count(t, db, "SELECT count(DISTINCT event_id) FROM audit_records"))
			require.EqualValues(t, total, sqlstoretest.Count(t, db, "SELECT max(sequence) FROM audit_records"))
			res := a.verify(t)
			require.True(t, res.GetOk(), res.GetReason())
			require.EqualValues(t, total, res.GetCheckedCount())
		})
	}
}
