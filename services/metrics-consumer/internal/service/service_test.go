package service_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	metricspb "github.com/cosmic-horizons/fleet/proto/fleet/metrics/v1"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/testgen"
)

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestBinaryServesAndShutsDownOnSIGTERM(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	servicetest.RequireLifecycle(t, pkgDir, f.env())
}

// shuffledWithDuplicates returns the stream with every job's events in a
// random order and a tenth of the events published twice.
func shuffledWithDuplicates(plans []testgen.Plan, seed uint64) ([]events.Event, error) {
	r := rand.New(rand.NewPCG(seed, seed))
	var out []events.Event
	for _, p := range plans {
		evs, err := p.Events()
		if err != nil {
			return nil, err
		}
		r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		for _, ev := range evs {
			out = append(out, ev)
			if r.IntN(10) == 0 {
				out = append(out, ev)
			}
		}
	}
	return out, nil
}

// TestAggregatesRebuildPoisonAndQueries runs the real binary over a
// generated stream with out-of-order and duplicated events and a poison
// message, then checks the gRPC answers and /metrics against the known
// answers, bad arguments, the dead-letter topic, and that the rebuild
// command reproduces the incrementally built state exactly.
func TestAggregatesRebuildPoisonAndQueries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	plans := testgen.Plans(42, 1500, base)
	evs, err := shuffledWithDuplicates(plans, 42)
	require.NoError(t, err)

	// A poison message in the middle of the lifecycle stream.
	half := len(evs) / 2
	f.publishEvents(t, evs[:half])
	poisonID := uuid.NewString()
	f.publish(t, []*bus.Message{{Topic: f.lifecycle, Key: plans[0].JobID, Value: []byte("\xc3\x01not avro at all"),
		Headers: map[string]string{events.HeaderEventID: poisonID}}})
	f.publishEvents(t, evs[half:])

	p := servicetest.RunBinary(t, pkgDir, f.env())
	db := f.openDB(t)
	// The poison message's id is never recorded: it was dead-lettered.
	waitProcessed(t, db, f.uniqueEvents()-1)

	dead := readDLQ(t, f)
	require.Equal(t, poisonID, dead.Header(events.HeaderEventID))
	require.Contains(t, dead.Header(bus.HeaderDLQError), "decode")

	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := metricspb.NewMetricsServiceClient(conn)
	ctx := bearer(t, authSecret, "user-2", false)
	all := &metricspb.TimeWindow{Start: timestamppb.New(base), End: timestamppb.New(base.Add(24 * time.Hour))}

	t.Run("job metrics match the known answers", func(t *testing.T) {
		resp, err := client.GetJobMetrics(ctx, &metricspb.GetJobMetricsRequest{Window: all})
		require.NoError(t, err)
		requireStats(t, testgen.Expect(plans, nil), resp.GetStats())

		from, to := base.Add(300*time.Second), base.Add(900*time.Second)
		resp, err = client.GetJobMetrics(ctx, &metricspb.GetJobMetricsRequest{
			Window: &metricspb.TimeWindow{Start: timestamppb.New(from), End: timestamppb.New(to)},
			Agent:  jobpb.Agent_AGENT_ALPHA_CAL, TaccSystem: jobpb.TaccSystem_TACC_SYSTEM_FRONTERA,
		})
		require.NoError(t, err)
		requireStats(t, testgen.Expect(plans, func(p testgen.Plan) bool {
			return p.Agent == "AlphaCal" && p.System == "FRONTERA" && !p.SubmittedAt.Before(from) && p.SubmittedAt.Before(to)
		}), resp.GetStats())
	})

	t.Run("one job's metrics for its owner only", func(t *testing.T) {
		var mine, theirs testgen.Plan
		for _, p := range plans {
			if p.UserID == "user-2" && mine.JobID == "" {
				mine = p
			}
			if p.UserID != "user-2" && theirs.JobID == "" {
				theirs = p
			}
		}
		require.NotEmpty(t, mine.JobID)
		require.NotEmpty(t, theirs.JobID)
		resp, err := client.GetJobMetrics(ctx, &metricspb.GetJobMetricsRequest{Window: all, JobId: mine.JobID})
		require.NoError(t, err)
		require.EqualValues(t, 1, resp.GetStats().GetSubmittedCount())

		_, err = client.GetJobMetrics(ctx, &metricspb.GetJobMetricsRequest{Window: all, JobId: theirs.JobID})
		require.Equal(t, codes.NotFound, status.Code(err), "another user's job")
		_, errMissing := client.GetJobMetrics(ctx, &metricspb.GetJobMetricsRequest{Window: all, JobId: "job-that-does-not-exist"})
		require.Equal(t, codes.NotFound, status.Code(errMissing))
		require.Equal(t, status.Convert(errMissing).Message(), status.Convert(err).Message(), "indistinguishable from a missing job")

		admin := bearer(t, authSecret, "operator", true)
		resp, err = client.GetJobMetrics(admin, &metricspb.GetJobMetricsRequest{Window: all, JobId: theirs.JobID})
		require.NoError(t, err, "an admin sees every job")
		require.EqualValues(t, 1, resp.GetStats().GetSubmittedCount())
	})

	t.Run("system stats", func(t *testing.T) {
		resp, err := client.GetSystemStats(ctx, &metricspb.GetSystemStatsRequest{Window: all})
		require.NoError(t, err)
		require.Len(t, resp.GetSystems(), 4)
		for _, s := range resp.GetSystems() {
			name := strings.TrimPrefix(s.GetTaccSystem().String(), "TACC_SYSTEM_")
			requireStats(t, testgen.Expect(plans, func(p testgen.Plan) bool { return p.System == name }), s.GetStats())
		}
	})

	t.Run("user usage", func(t *testing.T) {
		for _, req := range []*metricspb.GetUserUsageRequest{{Window: all, UserId: "user-2"}, {Window: all}} {
			resp, err := client.GetUserUsage(ctx, req)
			require.NoError(t, err)
			require.Equal(t, "user-2", resp.GetUserId(), "an empty user_id is the caller")
			exp := testgen.Expect(plans, func(p testgen.Plan) bool { return p.UserID == "user-2" })
			requireStats(t, exp, resp.GetStats())
			require.Len(t, resp.GetAllocations(), 1)
			require.Equal(t, exp.Submitted, resp.GetAllocations()[0].GetJobCount())
		}
	})

	t.Run("callers are authenticated and see only their own usage", func(t *testing.T) {
		admin := bearer(t, authSecret, "root", true)
		resp, err := client.GetUserUsage(admin, &metricspb.GetUserUsageRequest{Window: all, UserId: "user-3"})
		require.NoError(t, err, "an admin reads anyone's usage")
		requireStats(t, testgen.Expect(plans, func(p testgen.Plan) bool { return p.UserID == "user-3" }), resp.GetStats())

		tests := []struct {
			name string
			call func() error
			want codes.Code
		}{
			{name: "another user's usage", want: codes.PermissionDenied, call: func() error {
				_, err := client.GetUserUsage(ctx, &metricspb.GetUserUsageRequest{Window: all, UserId: "user-3"})
				return err
			}},
			{name: "usage without a token", want: codes.Unauthenticated, call: func() error {
				_, err := client.GetUserUsage(context.Background(), &metricspb.GetUserUsageRequest{Window: all})
				return err
			}},
			{name: "job metrics without a token", want: codes.Unauthenticated, call: func() error {
				_, err := client.GetJobMetrics(context.Background(), &metricspb.GetJobMetricsRequest{Window: all})
				return err
			}},
			{name: "system stats with a token of another secret", want: codes.Unauthenticated, call: func() error {
				_, err := client.GetSystemStats(bearer(t, "another-secret-another-secret-0123456789", "root", true),
					&metricspb.GetSystemStatsRequest{Window: all})
				return err
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				require.Equal(t, tt.want, status.Code(tt.call()))
			})
		}
	})

	t.Run("bad arguments are InvalidArgument with field violations", func(t *testing.T) {
		ts := timestamppb.New
		tests := []struct {
			name      string
			call      func() error
			wantField string
		}{
			{name: "no window", wantField: "window", call: func() error {
				_, err := client.GetJobMetrics(ctx, &metricspb.GetJobMetricsRequest{})
				return err
			}},
			{name: "start after end", wantField: "window.end", call: func() error {
				_, err := client.GetSystemStats(ctx, &metricspb.GetSystemStatsRequest{Window: &metricspb.TimeWindow{Start: ts(base), End: ts(base.Add(-time.Hour))}})
				return err
			}},
			{name: "window too large", wantField: "window.end", call: func() error {
				_, err := client.GetJobMetrics(ctx, &metricspb.GetJobMetricsRequest{Window: &metricspb.TimeWindow{Start: ts(base), End: ts(base.Add(400 * 24 * time.Hour))}})
				return err
			}},
			{name: "missing start", wantField: "window.start", call: func() error {
				_, err := client.GetJobMetrics(ctx, &metricspb.GetJobMetricsRequest{Window: &metricspb.TimeWindow{End: ts(base)}})
				return err
			}},
			{name: "user id too long", wantField: "user_id", call: func() error {
				_, err := client.GetUserUsage(ctx, &metricspb.GetUserUsageRequest{Window: all, UserId: strings.Repeat("u", 129)})
				return err
			}},
			{name: "unknown system", wantField: "tacc_system", call: func() error {
				_, err := client.GetSystemStats(ctx, &metricspb.GetSystemStatsRequest{Window: all, TaccSystem: 99})
				return err
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := tt.call()
				st, ok := status.FromError(err)
				require.True(t, ok)
				require.Equal(t, codes.InvalidArgument, st.Code(), "%v", err)
				var fields []string
				for _, d := range st.Details() {
					if br, ok := d.(*errdetails.BadRequest); ok {
						for _, v := range br.GetFieldViolations() {
							fields = append(fields, v.GetField())
						}
					}
				}
				require.Contains(t, fields, tt.wantField)
			})
		}
	})

	t.Run("prometheus metrics", func(t *testing.T) {
		body := scrape(t, p.HTTPAddr)
		exp := testgen.Expect(plans, nil)
		require.InDelta(t, float64(exp.Submitted), sumSeries(t, body, `fleet_jobs_total{`, `status="SUBMITTED"`), 0)
		require.InDelta(t, float64(exp.Completed), sumSeries(t, body, `fleet_jobs_total{`, `status="COMPLETED"`), 0)
		require.InDelta(t, float64(exp.Active), sumSeries(t, body, `fleet_jobs_active{`, ""), 0)
		require.InDelta(t, float64(exp.Pending), sumSeries(t, body, `fleet_jobs_pending{`, ""), 0)
		require.InDelta(t, exp.NodeHours, sumSeries(t, body, `fleet_node_hours_total{`, ""), 1e-3)
		require.InDelta(t, float64(len(exp.QueueWaitsMS)), sumSeries(t, body, `fleet_job_queue_wait_seconds_count{`, ""), 0)
		require.InDelta(t, float64(len(exp.RunTimesMS)), sumSeries(t, body, `fleet_job_run_time_seconds_count{`, ""), 0)
		require.Contains(t, body, `fleet_kafka_consumer_lag{group="`+f.group+`"`)
		require.Contains(t, body, "fleet_inbox_duplicates_total")
	})

	// Incremental state, then the rebuild command, then the same state.
	p.Terminate(t)
	incremental := dump(t, db)
	require.Len(t, incremental, len(plans))
	want := fold(evs)
	for _, j := range incremental {
		require.Equal(t, want[j.ID], j)
	}

	cmd := exec.Command(servicetest.Build(t, pkgDir), "rebuild")
	cmd.Env = append(os.Environ(), f.envList()...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "rebuild:\n%s", out)
	require.Contains(t, string(out), "rebuild complete")
	require.Equal(t, incremental, dump(t, db), "the rebuilt state equals the incremental state")
	require.Equal(t, f.uniqueEvents()-1, processed(t, db))
}

// bearer is a call context with a JWT of sub signed with secret.
func bearer(t *testing.T, secret, sub string, admin bool) context.Context {
	t.Helper()
	tok, err := auth.NewHS256Token(secret, sub, admin, time.Hour)
	require.NoError(t, err)
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func requireStats(t *testing.T, exp testgen.Expected, got *metricspb.JobStats) {
	t.Helper()
	require.Equal(t, exp.Submitted, got.GetSubmittedCount())
	require.Equal(t, exp.Completed, got.GetCompletedCount())
	require.Equal(t, exp.Failed, got.GetFailedCount())
	require.Equal(t, exp.Cancelled, got.GetCancelledCount())
	require.Equal(t, exp.Active, got.GetActiveCount())
	require.Equal(t, exp.Pending, got.GetPendingCount())
	require.InDelta(t, exp.NodeHours, got.GetNodeHours(), 1e-6)
	require.InDelta(t, exp.GPUHours, got.GetGpuHours(), 1e-6)
	if terminal := exp.Completed + exp.Failed + exp.Cancelled; terminal > 0 {
		require.InDelta(t, float64(exp.Completed)/float64(terminal), got.GetSuccessRate(), 1e-12)
	}
	check := func(values []int64, p *metricspb.Percentiles) {
		if len(values) == 0 {
			require.Nil(t, p)
			return
		}
		slices.Sort(values)
		for q, d := range map[float64]time.Duration{0.5: p.GetP50().AsDuration(), 0.95: p.GetP95().AsDuration(), 0.99: p.GetP99().AsDuration()} {
			want := float64(testgen.NearestRank(values, q))
			require.InDelta(t, want, float64(d)/float64(time.Millisecond), want*domain.MaxRelativeError+1, "q=%v", q)
		}
	}
	check(exp.QueueWaitsMS, got.GetQueueWait())
	check(exp.RunTimesMS, got.GetRunTime())
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// sumSeries adds the values of the series whose line starts with prefix
// and contains match.
func sumSeries(t *testing.T, body, prefix, match string) float64 {
	t.Helper()
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, prefix) || !strings.Contains(line, match) {
			continue
		}
		var v float64
		_, err := fmtSscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
		require.NoError(t, err)
		sum += v
	}
	return sum
}

// readDLQ returns the first message of the lifecycle dead-letter topic.
func readDLQ(t *testing.T, f *fixture) *bus.Message {
	t.Helper()
	got := make(chan *bus.Message, 1)
	cfg := kafkabus.DefaultConsumerConfig(f.conn, f.group+"-dlq-reader", events.DLQTopic(f.lifecycle))
	cfg.DLQ = f.producer
	c, err := kafkabus.NewConsumer(cfg, func(_ context.Context, m *bus.Message) error {
		select {
		case got <- m:
		default:
		}
		return nil
	}, slogDiscard(), nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	select {
	case m := <-got:
		return m
	case <-time.After(waitLong):
		t.Fatal("no message on the dead-letter topic")
		return nil
	}
}
