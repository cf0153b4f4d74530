//go:build chaos

package chaos_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	healthpb "github.com/cosmic-horizons/fleet/proto/fleet/health/v1"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	metricspb "github.com/cosmic-horizons/fleet/proto/fleet/metrics/v1"
	notificationpb "github.com/cosmic-horizons/fleet/proto/fleet/notification/v1"
)

const (
	authSecret  = "chaos-development-secret-0123456789abcdef"
	servicesDir = "../../services/"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func durationEnv(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// fleet is the chaos run's five services, each restartable on its ports.
type fleet struct {
	kafka                                *kafkaCluster
	prefix                               string
	orch, metrics, notify, audit, health *proc
	// slurmOrch, when the run has a Slurm cluster of its own, is a second
	// orchestrator on the Slurm backend (its own database, the same topics).
	slurmOrch          *proc
	grpcAddr, httpAddr map[string]string

	jobs      jobpb.JobServiceClient
	slurmJobs jobpb.JobServiceClient
	stats     metricspb.MetricsServiceClient
	trail     auditpb.AuditServiceClient
	status    healthpb.HealthMonitorServiceClient
	subs      notificationpb.NotificationServiceClient
}

// backing is where the services keep their state and publish in real
// time: the run's own PostgreSQL for the orchestrator and the
// metrics-consumer and its own RabbitMQ node for the orchestrator and the
// notification-consumer when it could start them, else SQLite and the
// shared RabbitMQ.
type backing struct {
	orchDB, metricsDB, amqp string
	// slurm, when set, is the Slurm cluster of the run's own.
	slurm *ownSlurm
}

func startFleet(t *testing.T, k *kafkaCluster, dir string, b backing) *fleet {
	t.Helper()
	amqp, smtp := b.amqp, os.Getenv("SMTP_ADDR")
	f := &fleet{kafka: k, prefix: "chaos-" + randomHex(4) + "-", grpcAddr: map[string]string{}, httpAddr: map[string]string{}}
	topic := func(name string) string { return f.prefix + name }
	base := append(os.Environ(),
		"KAFKA_BROKERS="+k.Bootstrap(), "KAFKA_REPLICATION_FACTOR=3", "KAFKA_MIN_INSYNC_REPLICAS=2",
		"KAFKA_AUDIT_MIN_INSYNC_REPLICAS=2", "AUTH_HS256_SECRET="+authSecret, "LOG_LEVEL=info",
		"SHUTDOWN_DRAIN=200ms", "SHUTDOWN_TIMEOUT=10s", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_TRACES_EXPORTER=none")
	mk := func(name, pkg string, env ...string) *proc {
		grpcAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		f.grpcAddr[name], f.httpAddr[name] = grpcAddr, httpAddr
		return &proc{
			name: name, path: servicetest.Build(t, servicesDir+pkg+"/cmd/"+pkg),
			env:     append(append(append([]string{}, base...), "GRPC_ADDR="+grpcAddr, "HTTP_ADDR="+httpAddr), env...),
			logPath: filepath.Join(dir, name+".log"),
			ready:   httpReady(httpAddr),
		}
	}
	f.orch = mk("job-orchestrator", "job-orchestrator",
		"AMQP_URL="+amqp,
		"DATABASE_URL="+b.orchDB,
		"STATE_DIRECTORY="+servicetest.StateDir(t),
		"PAGE_TOKEN_KEY=chaos-page-token-key-0123456789abcdef",
		"RECONCILE_INTERVAL=500ms",
		"ORCHESTRATOR_TOPIC_PREFIX="+f.prefix,
		"ORCHESTRATOR_ENSURE_TOPICS=true",
		"SCHEDULER=local", "LOCAL_MAX_JOBS=8")
	f.metrics = mk("metrics-consumer", "metrics-consumer",
		"DATABASE_URL="+b.metricsDB,
		"METRICS_TOPICS=job-lifecycle="+topic("job-lifecycle")+",job-metrics="+topic("job-metrics"),
		"METRICS_GROUP="+topic("metrics-consumer"))
	f.notify = mk("notification-consumer", "notification-consumer",
		"DATABASE_URL=sqlite:"+filepath.Join(dir, "notifications.db"),
		"AMQP_URL="+amqp, "SMTP_ADDR="+smtp,
		"KAFKA_CONSUMER_GROUP="+topic("notification-consumer"),
		"KAFKA_LIFECYCLE_TOPIC="+topic("job-lifecycle"),
		"DELIVERY_POLL_INTERVAL=200ms")
	// One checkpoint signing key across the auditor's restarts, as in
	// production (a key of the process only would not verify after one).
	seed := make([]byte, 32)
	_, _ = rand.Read(seed)
	f.audit = mk("compliance-auditor", "compliance-auditor",
		"AUDIT_SIGNING_KEY="+base64.StdEncoding.EncodeToString(seed),
		"DATABASE_URL=sqlite:"+filepath.Join(dir, "audit.db"),
		"AUDIT_CONSUMER_GROUP="+topic("compliance-auditor"),
		"AUDIT_TOPICS="+topic("audit-trail")+","+topic("job-lifecycle"),
		"AUDIT_ALERT_TOPIC="+topic("system-health"),
		"AUDIT_CHECKPOINT_INTERVAL=1s")
	f.health = mk("health-monitor", "health-monitor",
		"AMQP_URL="+os.Getenv("AMQP_URL"), "RABBITMQ_MGMT_URL="+os.Getenv("RABBITMQ_MGMT_URL"),
		"HEALTH_SERVICES="+strings.Join([]string{
			"job-orchestrator=" + f.grpcAddr["job-orchestrator"], "metrics-consumer=" + f.grpcAddr["metrics-consumer"],
			"notification-consumer=" + f.grpcAddr["notification-consumer"], "compliance-auditor=" + f.grpcAddr["compliance-auditor"],
		}, ","),
		"HEALTH_GROUP_PREFIX="+f.prefix,
		"HEALTH_JOBS_TOPIC="+topic("job-lifecycle"),
		"HEALTH_JOBS_GROUP="+topic("health-monitor-jobs"),
		"HEALTH_INTERVAL=2s", "HEALTH_PROBE_TIMEOUT=1900ms", "HEALTH_CANARY_TIMEOUT=1500ms", "HEALTH_STALL_AFTER=10s",
		"HEALTH_RAISE_AFTER=2", "HEALTH_RESOLVE_AFTER=1")

	all := []*proc{f.orch, f.metrics, f.notify, f.audit, f.health}
	if s := b.slurm; s != nil {
		f.slurmOrch = mk("job-orchestrator-slurm", "job-orchestrator",
			"AMQP_URL="+amqp,
			"DATABASE_URL=sqlite:"+filepath.Join(dir, "orchestrator-slurm.db"),
			"STATE_DIRECTORY="+servicetest.StateDir(t),
			"PAGE_TOKEN_KEY=chaos-page-token-key-0123456789abcdef",
			"RECONCILE_INTERVAL=500ms",
			"ORCHESTRATOR_TOPIC_PREFIX="+f.prefix,
			"ORCHESTRATOR_ENSURE_TOPICS=true",
			"SCHEDULER=slurm", "SLURMRESTD_URL="+s.url, "SLURM_USER="+s.user, "SLURM_JWT_TOKEN="+s.token,
			"SLURM_JWT_TOKEN_FILE=", "SLURM_API_VERSION=",
			"JOB_WORK_DIR="+testinfra.DirFor(t, testinfra.Shared),
			"SYSTEM_CATALOGUE_FILE="+s.catalogue(t, dir))
		all = append(all, f.slurmOrch)
	}
	// The orchestrator creates the topics (and their dead-letter companions)
	// that the consumers verify at startup.
	for i, p := range all {
		p.start(t)
		if i == 0 {
			p.waitReady(t, 2*time.Minute)
			waitDLQsEverywhere(t, k, f.prefix)
			ensureNotificationTopics(t, k)
		}
	}
	for _, p := range all[1:] {
		p.waitReady(t, 2*time.Minute)
	}
	t.Cleanup(func() {
		for _, p := range all {
			p.stop(15 * time.Second)
		}
	})
	dial := func(name string) *grpc.ClientConn {
		conn, err := grpc.NewClient(f.grpcAddr[name], grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	f.jobs = jobpb.NewJobServiceClient(dial("job-orchestrator"))
	if f.slurmOrch != nil {
		f.slurmJobs = jobpb.NewJobServiceClient(dial("job-orchestrator-slurm"))
	}
	f.stats = metricspb.NewMetricsServiceClient(dial("metrics-consumer"))
	f.trail = auditpb.NewAuditServiceClient(dial("compliance-auditor"))
	f.status = healthpb.NewHealthMonitorServiceClient(dial("health-monitor"))
	f.subs = notificationpb.NewNotificationServiceClient(dial("notification-consumer"))
	return f
}

func token(t *testing.T, user string, admin bool) string {
	t.Helper()
	tok, err := auth.NewHS256Token(authSecret, user, admin, 2*time.Hour)
	require.NoError(t, err)
	return tok
}

func withToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// fault is one injected failure: when it started and how long the killed
// process took to serve again after its restart.
type fault struct {
	name     string
	start    time.Time
	recovery time.Duration
	// led is, for a broker fault, the lifecycle partitions the broker led;
	// broker is that broker's id.
	led    map[int32]bool
	broker int
	// restarted is when the killed process was started again.
	restarted time.Time
	// notRun says why the fault was not injected.
	notRun string
	// unmarked is, for an orchestrator kill, the relay's
	// fleet_outbox_unmarked{destination="kafka"} just before the kill (the
	// most of a few samples), or -1.
	unmarked float64
	notes    []string
}

// submission is one job the load generator asked for.
type submission struct {
	key, user string
	jobID     string
	at        time.Time
	acked     bool
	attempts  int
	// jobs is the orchestrator asked; slurm: the one on the Slurm backend.
	jobs  jobpb.JobServiceClient
	slurm bool
}

// load submits jobs of spec at rate per second to jobs, each retried with
// its idempotency key until the orchestrator answers (at most retryFor).
type load struct {
	jobs    jobpb.JobServiceClient
	spec    func() *jobpb.JobSpec
	slurm   bool
	users   []string
	tokens  map[string]string
	mu      sync.Mutex
	subs    []*submission
	wg      sync.WaitGroup
	stopped chan struct{}
}

func (l *load) run(ctx context.Context, rate float64, retryFor time.Duration) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	sem := make(chan struct{}, 16)
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-l.stopped:
			return
		case <-tick.C:
		}
		s := &submission{key: "chaos-" + randomHex(8), user: l.users[i%len(l.users)], at: time.Now(), jobs: l.jobs, slurm: l.slurm}
		l.mu.Lock()
		l.subs = append(l.subs, s)
		l.mu.Unlock()
		l.wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer l.wg.Done()
			defer func() { <-sem }()
			l.submit(ctx, s, retryFor)
		}()
	}
}

// jobSpec is the load's job: command on partition of frontera.
func jobSpec(partition, command string) func() *jobpb.JobSpec {
	return func() *jobpb.JobSpec {
		return &jobpb.JobSpec{
			Name: "chaos", Agent: jobpb.Agent_AGENT_CUSTOM, DatasetId: "ds-chaos",
			TaccSystem: jobpb.TaccSystem_TACC_SYSTEM_FRONTERA, Partition: partition,
			Resources:  &jobpb.Resources{Nodes: 1, CoresPerNode: 1, Walltime: durationpb.New(10 * time.Minute)},
			Allocation: "AST21001", Payload: &jobpb.JobSpec_Command{Command: command},
		}
	}
}

func (l *load) submit(ctx context.Context, s *submission, retryFor time.Duration) {
	deadline := time.Now().Add(retryFor)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s.attempts++
		cctx, cancel := context.WithTimeout(withToken(ctx, l.tokens[s.user]), 5*time.Second)
		resp, err := l.jobs.SubmitJob(cctx, &jobpb.SubmitJobRequest{IdempotencyKey: s.key, Spec: l.spec()})
		cancel()
		if err == nil {
			l.mu.Lock()
			s.jobID, s.acked = resp.GetJob().GetJobId(), true
			l.mu.Unlock()
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestChaos is `make chaos`. It fails when an acknowledged job is lost or
// ends in a wrong state, when a consumer does not equal the stream, when an
// event is reordered or dead-lettered, or when the audit chain does not
// verify; the table reports duplicates, duplicate emails and stalls.
func TestChaos(t *testing.T) {
	classpath := os.Getenv("KAFKA_CLASSPATH")
	for name, v := range map[string]string{"KAFKA_CLASSPATH": classpath, "AMQP_URL": os.Getenv("AMQP_URL"),
		"SMTP_ADDR": os.Getenv("SMTP_ADDR"), "MAILPIT_URL": os.Getenv("MAILPIT_URL")} {
		if v == "" {
			testinfra.Unavailable(t, "the chaos run needs the local stack (eval \"$(tools/stack/stack.sh env)\"); %s is unset", name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("/var/tmp", "fleet-chaos-")
	require.NoError(t, err)
	// PostgreSQL and RabbitMQ run as their own users below dir.
	require.NoError(t, os.Chmod(dir, 0o711))
	t.Logf("logs and data in %s", dir)
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("CHAOS_KEEP") == "" {
			_ = os.RemoveAll(dir)
		}
	})

	runStart := time.Now()
	want, err := faultSet(os.Getenv("CHAOS_FAULTS"))
	require.NoError(t, err)
	var pn *partitionNet
	noPartition := "CHAOS_PARTITION=0"
	if want["partition"] && os.Getenv("CHAOS_PARTITION") != "0" {
		pn, noPartition = newPartitionNet(t)
	} else if !want["partition"] {
		noPartition = "not in CHAOS_FAULTS"
	}
	k := startKafka(t, dir, 3, pn)
	t.Logf("3 brokers at %s in %s", k.Bootstrap(), time.Since(runStart).Round(time.Second))

	// The run's own PostgreSQL and RabbitMQ, so that stopping them never
	// touches the shared ones.
	b := backing{orchDB: "sqlite:" + filepath.Join(dir, "orchestrator.db"), metricsDB: "sqlite:" + filepath.Join(dir, "metrics.db"),
		amqp: os.Getenv("AMQP_URL")}
	var pg *ownPostgres
	noPG := "not in CHAOS_FAULTS"
	if want["postgres"] {
		if pg, noPG = startPostgres(t, dir, "orchestrator", "metrics"); pg != nil {
			b.orchDB, b.metricsDB = pg.url("orchestrator"), pg.url("metrics")
			t.Logf("own PostgreSQL on port %s", pg.port)
		}
	}
	var rmq *ownRabbit
	noRMQ := "not in CHAOS_FAULTS"
	if want["rabbitmq"] {
		if rmq, noRMQ = startRabbit(t, dir); rmq != nil {
			b.amqp = rmq.url()
			t.Logf("own RabbitMQ node on port %d", rmq.port)
		}
	}
	// A Slurm cluster of the run's own: the shared ones are left alone.
	var sl *ownSlurm
	noSlurm := "not in CHAOS_FAULTS"
	if want["slurmctld"] {
		if sl, noSlurm = startSlurm(t); sl != nil {
			b.slurm = sl
			t.Logf("own Slurm cluster %s, slurmrestd %s", sl.name, sl.url)
		}
	}
	f := startFleet(t, k, dir, b)
	t.Logf("fleet ready, topic prefix %s", f.prefix)

	tail := startTail(t, ctx, k.Bootstrap(), f.prefix, events.TopicJobLifecycle, events.TopicAuditTrail, events.TopicJobMetrics)
	dlq := startTail(t, ctx, k.Bootstrap(), f.prefix, existingDLQs(t, k, f.prefix)...)

	// Users, each with an e-mail subscription to job.completed.
	l := &load{jobs: f.jobs, spec: jobSpec("development", "sleep 1"), tokens: map[string]string{}, stopped: make(chan struct{})}
	mailDomain := f.prefix + "example.org"
	for i := 0; i < 4; i++ {
		u := fmt.Sprintf("%suser-%d", f.prefix, i)
		l.users = append(l.users, u)
		l.tokens[u] = token(t, u, false)
		_, err := f.subs.CreateSubscription(withToken(ctx, l.tokens[u]), &notificationpb.CreateSubscriptionRequest{
			Channel: notificationpb.Channel_CHANNEL_EMAIL, Target: u + "@" + mailDomain, EventTypes: []string{"job.completed"},
		})
		require.NoError(t, err)
	}
	health := watchHealth(ctx, f)

	rate := 3.0
	loadDone := make(chan struct{})
	go func() { l.run(ctx, rate, 2*time.Minute); close(loadDone) }()

	var faults []*fault
	begin := func(name string) *fault {
		fl := &fault{name: name, start: time.Now(), unmarked: -1}
		faults = append(faults, fl)
		t.Logf("fault: %s", name)
		return fl
	}
	skip := func(name, why string) {
		faults = append(faults, &fault{name: name, start: time.Now(), unmarked: -1, notRun: why})
		t.Logf("fault not run: %s: %s", name, why)
	}
	restart := func(fl *fault, p *proc) {
		fl.restarted = time.Now()
		p.start(t)
		fl.recovery = p.waitReady(t, 3*time.Minute)
	}
	// serveAgain waits, after a dependency came back at fl.restarted, until
	// each service serves; one that exited meanwhile is noted and started
	// again.
	serveAgain := func(fl *fault, ps ...*proc) {
		for _, p := range ps {
			select {
			case <-p.exited:
				fl.notes = append(fl.notes, p.name+" exited during the outage (restarted)")
				p.start(t)
			default:
			}
			p.waitReady(t, 3*time.Minute)
		}
		fl.recovery = time.Since(fl.restarted)
	}
	settle := durationEnv("CHAOS_SETTLE", 10*time.Second)
	depDown := durationEnv("CHAOS_DEPENDENCY_DOWN", 30*time.Second)

	begin("baseline (no fault)")
	time.Sleep(settle)

	lifecycle := f.prefix + events.TopicJobLifecycle
	down := durationEnv("CHAOS_BROKER_DOWN", 20*time.Second)
	if want["broker"] {
		// The broker leading partition 0 of the lifecycle topic, down for 20 s.
		leader := leaderOf(t, k, lifecycle)
		led := ledBy(t, k, lifecycle, leader)
		fl := begin(fmt.Sprintf("SIGKILL broker %d (leader), restart after %s", leader+1, down))
		fl.led, fl.broker = led, leader+1
		k.Kill(leader)
		time.Sleep(down)
		fl.restarted = time.Now()
		k.Restart(leader)
		fl.recovery = time.Since(fl.restarted)
		time.Sleep(settle)
	}

	// The last broker in its own network namespace, its link cut for 20 s.
	if pn != nil {
		last := len(k.Brokers()) - 1
		led := ledBy(t, k, lifecycle, last)
		fl := begin(fmt.Sprintf("partition broker %d (netns, link cut %s)", last+1, down))
		fl.led, fl.broker = led, last+1
		pn.cut(t, true)
		time.Sleep(down)
		fl.restarted = time.Now()
		pn.cut(t, false)
		for !portOpen(k.Addr(last)) && time.Since(fl.restarted) < time.Minute {
			time.Sleep(50 * time.Millisecond)
		}
		fl.recovery = time.Since(fl.restarted)
		time.Sleep(settle)
	} else {
		skip("partition one broker (netns)", "not run: "+noPartition)
	}

	if want["consumers"] {
		for _, p := range []*proc{f.metrics, f.notify, f.audit} {
			fl := begin("SIGKILL " + p.name + ", restart")
			p.kill()
			time.Sleep(time.Second)
			restart(fl, p)
			time.Sleep(settle)
		}
	}
	if want["orchestrator"] {
		for i := 0; i < 2; i++ {
			// Sampled first: the fault's window starts at the kill.
			unmarked := scrapeUnmarked(f.httpAddr["job-orchestrator"])
			assert.GreaterOrEqual(t, unmarked, 0.0, "the orchestrator exports no fleet_outbox_unmarked{destination=\"kafka\"}: no bound for the kill's duplicates")
			fl := begin("SIGKILL job-orchestrator, restart")
			fl.unmarked = unmarked
			f.orch.kill()
			time.Sleep(2 * time.Second)
			restart(fl, f.orch)
			// Long enough for the dead process's dispatch claims to expire
			// (the reconciler's 15 s lease) before the next fault.
			time.Sleep(max(settle, 20*time.Second))
		}
	}

	pgName := fmt.Sprintf("PostgreSQL stopped %s (orchestrator, metrics-consumer)", depDown)
	if pg != nil {
		fl := begin(pgName)
		require.NoError(t, pg.stop())
		time.Sleep(depDown)
		fl.restarted = time.Now()
		require.NoError(t, pg.start())
		serveAgain(fl, f.orch, f.metrics)
		time.Sleep(settle)
	} else {
		skip(pgName, "not run: "+noPG)
	}

	rmqName := fmt.Sprintf("RabbitMQ stopped %s (orchestrator, notification-consumer)", depDown)
	if rmq != nil {
		fl := begin(rmqName)
		rmq.kill()
		time.Sleep(depDown)
		fl.restarted = time.Now()
		rmq.start(t)
		rmq.waitReady(t, 2*time.Minute)
		if f.slurmOrch != nil {
			serveAgain(fl, f.orch, f.notify, f.slurmOrch)
		} else {
			serveAgain(fl, f.orch, f.notify)
		}
		time.Sleep(settle)
	} else {
		skip(rmqName, "not run: "+noRMQ)
	}

	// The Slurm cluster's slurmctld stopped and started again while the
	// orchestrator on it has jobs both running and pending there; a load of
	// Slurm jobs (each `sleep 8`, one core, on a node of nproc cores) runs
	// from the fault's start until a settle time after the restart.
	slurmName := "slurmctld restarted, jobs queued and running"
	var slurmLoad *load
	if sl != nil {
		sig, sigName := syscall.SIGTERM, "SIGTERM"
		if os.Getenv("CHAOS_SLURMCTLD_SIGNAL") == "KILL" {
			sig, sigName = syscall.SIGKILL, "SIGKILL"
		}
		ctldDown := durationEnv("CHAOS_SLURMCTLD_DOWN", 10*time.Second)
		slurmName = fmt.Sprintf("%s slurmctld, restart after %s, jobs queued and running", sigName, ctldDown)
		fl := begin(slurmName)
		slurmLoad = &load{jobs: f.slurmJobs, spec: jobSpec(slurmPartition, "sleep 8"), slurm: true,
			users: l.users, tokens: l.tokens, stopped: make(chan struct{})}
		slurmDone := make(chan struct{})
		go func() { slurmLoad.run(ctx, 0.5, 2*time.Minute); close(slurmDone) }()
		// At least CHAOS_SLURM_RAMP (20 s) of load, so that the pending jobs
		// wait for the node, not only for the next scheduling pass.
		ramp := durationEnv("CHAOS_SLURM_RAMP", 20*time.Second)
		var q map[string]int
		for deadline := time.Now().Add(ramp + 2*time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			if q, err = sl.queue(); err == nil && q["RUNNING"] > 0 && q["PENDING"] > 0 && time.Since(fl.start) >= ramp {
				break
			}
		}
		require.NoError(t, err)
		slurmLoad.mu.Lock()
		sent := len(slurmLoad.subs)
		slurmLoad.mu.Unlock()
		fl.notes = append(fl.notes, fmt.Sprintf("at the %s Slurm held %d RUNNING and %d PENDING jobs of the run (%d Slurm jobs submitted by then)",
			sigName, q["RUNNING"], q["PENDING"], sent))
		assert.True(t, q["RUNNING"] > 0 && q["PENDING"] > 0, "Slurm held no running and pending jobs at the restart: %v", q)
		require.NoError(t, sl.stopCtld(sig))
		time.Sleep(ctldDown)
		fl.restarted = time.Now()
		_, err = sl.up()
		require.NoError(t, err, "slurmctld of %s starts again", sl.name)
		fl.recovery = time.Since(fl.restarted)
		time.Sleep(max(settle, 15*time.Second))
		close(slurmLoad.stopped)
		<-slurmDone
		slurmLoad.wg.Wait()
		fl.notes = append(fl.notes, fmt.Sprintf("%d of the window's jobs went to the orchestrator on Slurm cluster %s", len(slurmLoad.subs), sl.name))
	} else {
		skip(slurmName, "not run: "+noSlurm)
	}

	close(l.stopped)
	<-loadDone
	l.wg.Wait()
	loadEnd := time.Now()
	if slurmLoad != nil {
		l.subs = append(l.subs, slurmLoad.subs...)
	}
	t.Logf("load stopped: %d submissions", len(l.subs))

	r := collect(t, ctx, f, l, tail, dlq, faults, health, runStart, loadEnd, mailDomain)
	r.store = "SQLite"
	if pg != nil {
		r.store = "orchestrator and metrics-consumer on PostgreSQL, the others on SQLite"
	}
	if sl != nil {
		r.scheduler = "local scheduler; the slurmctld fault: a second orchestrator on Slurm cluster " + sl.name
		n, mismatch, err := slurmCheck(sl, l.subs, r.final)
		assert.NoError(t, err, "sacct")
		r.slurmChecked, r.slurmMismatch = n, len(mismatch)
		for id, d := range mismatch {
			r.wrongDetail = append(r.wrongDetail, "Slurm disagrees: "+d)
			// A job the fleet ended COMPLETED is not counted wrong yet.
			if j := r.final[id]; j != nil && j.GetStatus() == jobpb.JobStatus_JOB_STATUS_COMPLETED {
				r.wrong++
				for i := range r.rows {
					if r.rows[i].name == slurmName {
						r.rows[i].wrong++
					}
				}
			}
		}
		assert.Zero(t, len(mismatch), "jobs whose Slurm state (sacct) differs from the fleet's")
	}
	r.print(os.Stdout)
	r.assert(t)
}

// faultSet parses CHAOS_FAULTS, a comma-separated list of broker,
// partition, consumers, orchestrator, postgres, rabbitmq and slurmctld;
// empty: all.
func faultSet(v string) (map[string]bool, error) {
	all := []string{"broker", "partition", "consumers", "orchestrator", "postgres", "rabbitmq", "slurmctld"}
	out := map[string]bool{}
	if strings.TrimSpace(v) == "" {
		for _, n := range all {
			out[n] = true
		}
		return out, nil
	}
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(all, n) {
			return nil, fmt.Errorf("CHAOS_FAULTS: unknown fault %q (known: %s)", n, strings.Join(all, ", "))
		}
		out[n] = true
	}
	return out, nil
}
