package service_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/service"
)

func TestFullProbeCycleReportsHealthyComponents(t *testing.T) {
	cfg := testConfig(t)
	cfg.Kafka.Brokers = kafkaBrokers(t)
	cfg.AMQPURL = amqpURL(t)
	cfg.RabbitMQMgmtURL = envOr("RABBITMQ_MGMT_URL", "")
	svc := startHealthServer(t)
	cfg.Services = []service.Target{{Name: "orchestrator", Addr: svc.Addr}}
	cfg.Databases = []service.Target{
		{Name: "pg", Addr: postgresURL(t)},
		{Name: "lite", Addr: "sqlite:" + filepath.Join(t.TempDir(), "lite.db")},
	}
	hm, _ := newHealthMonitor(t, cfg)

	var st domain.FleetStatus
	require.Eventually(t, func() bool {
		st = hm.Monitor.RunCycle(t.Context())
		return st.Overall == domain.StatusHealthy
	}, 60*time.Second, 200*time.Millisecond, "not healthy: %v", func() []string { return unhealthyOnes(st) })

	for _, id := range []string{
		"kafka:cluster", "topic:job-lifecycle", "topic:system-health", "topic:audit-trail.dlq",
		"rabbitmq:" + hostOf(t, cfg.AMQPURL), "canary:kafka:" + cfg.CanaryTopic, "canary:amqp:job.events",
		"service:orchestrator", "database:pg", "database:lite",
	} {
		c, ok := component(st, id)
		require.True(t, ok, "component %s missing", id)
		require.Equal(t, domain.StatusHealthy, c.Status, "%s: %s", id, c.Detail)
		require.False(t, c.Checked.IsZero())
	}
	require.Len(t, st.Canaries, 2)
	for _, c := range st.Canaries {
		require.Positive(t, c.Samples, c.CanaryID)
		require.Positive(t, c.Latency, c.CanaryID)
	}
	require.Empty(t, st.OpenAlerts)
	require.Positive(t, st.CycleCPU)
	t.Logf("probe cycle %d: %d components, CPU %s, wall %s", st.Cycle, len(st.Components), st.CycleCPU, st.CycleDuration)
}

func TestLaggingConsumerGroupRaisesAlert(t *testing.T) {
	brokers := kafkaBrokers(t)
	id := suffix(t)
	topic, group := "hm-lag-"+id, "hm-lag-"+id+"-group"
	conn := kafkabus.Connection{Brokers: brokers}
	kafkabustest.TopicsWithDLQ(t, brokers, 2, topic)

	// Fill the topic: 30 messages on each partition.
	producer, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(conn), logger(t), nil)
	require.NoError(t, err)
	for i := range 60 {
		require.NoError(t, producer.Publish(t.Context(), &bus.Message{Topic: topic, Key: fmt.Sprintf("k%d", i%2), Value: []byte("x")}))
	}
	require.NoError(t, producer.Close())

	// The group committed offset 5 on every partition, then stopped consuming.
	commit := commitOffsets(t, brokers, group, topic)
	commit(5)
	t.Cleanup(func() { deleteGroup(t, brokers, group) })

	cfg := testConfig(t)
	cfg.Kafka.Brokers = brokers
	cfg.CanaryEnabled = false
	cfg.GroupPrefix = group
	cfg.LagThreshold = 20
	hm, rec := newHealthMonitor(t, cfg)

	st := hm.Monitor.RunCycle(t.Context())
	c, ok := component(st, "group:"+group)
	require.True(t, ok, "group component missing: %v", st.Components)
	require.Equal(t, domain.StatusDegraded, c.Status, c.Detail)
	var total int64
	for _, l := range st.Lags {
		require.Equal(t, group, l.Group)
		require.Equal(t, topic, l.Topic)
		total += l.Lag
	}
	require.Positive(t, total)
	require.Empty(t, st.OpenAlerts, "one bad cycle raises nothing")

	st = hm.Monitor.RunCycle(t.Context())
	require.Len(t, st.OpenAlerts, 1)
	require.Equal(t, "group:"+group, st.OpenAlerts[0].ComponentID)
	require.Equal(t, domain.SeverityWarning, st.OpenAlerts[0].Severity)
	raised, _ := rec.alerts()
	require.Equal(t, []string{"group:" + group}, raised)

	// The group catches up: the alert resolves after two good cycles.
	commit(1 << 40)
	for range 2 {
		st = hm.Monitor.RunCycle(t.Context())
	}
	require.Empty(t, st.OpenAlerts)
	raised, resolved := rec.alerts()
	require.Equal(t, []string{"group:" + group}, raised)
	require.Equal(t, []string{"group:" + group}, resolved)
}

// A group whose committed offset stays put while its partitions hold newer
// records (a consumer retrying a transient failure keeps its offset) is
// degraded as stalled, with its name and partition, although its lag is far
// below the lag threshold; it is healthy again once its offset moves.
func TestStalledConsumerGroupIsDegradedWithItsName(t *testing.T) {
	brokers := kafkaBrokers(t)
	id := suffix(t)
	topic, group := "hm-stall-"+id, "hm-stall-"+id+"-group"
	conn := kafkabus.Connection{Brokers: brokers}
	kafkabustest.TopicsWithDLQ(t, brokers, 1, topic)
	producer, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(conn), logger(t), nil)
	require.NoError(t, err)
	for range 10 {
		require.NoError(t, producer.Publish(t.Context(), &bus.Message{Topic: topic, Key: "k", Value: []byte("x")}))
	}
	require.NoError(t, producer.Close())
	commit := commitOffsets(t, brokers, group, topic)
	commit(4)
	t.Cleanup(func() { deleteGroup(t, brokers, group) })

	cfg := testConfig(t)
	cfg.Kafka.Brokers = brokers
	cfg.CanaryEnabled = false
	cfg.GroupPrefix = group
	cfg.LagThreshold = 1000
	cfg.StallAfter = time.Second
	hm, _ := newHealthMonitor(t, cfg)

	groupStatus := func() domain.Component {
		st := hm.Monitor.RunCycle(t.Context())
		c, ok := component(st, "group:"+group)
		require.True(t, ok, "group component missing: %v", st.Components)
		return c
	}
	c := groupStatus()
	require.Equal(t, domain.StatusHealthy, c.Status, "a lag of 6 that has not lasted is no stall: %s", c.Detail)

	require.Eventually(t, func() bool {
		c = groupStatus()
		return c.Status == domain.StatusDegraded
	}, 20*time.Second, 300*time.Millisecond, "group with an offset that does not move: %s", c.Detail)
	require.Contains(t, c.Detail, "group "+group+" stalled")
	require.Contains(t, c.Detail, topic+"/0 at offset 4")
	require.Equal(t, float64(1), c.Metrics["stalled_partitions"])

	// The consumer makes progress: no longer stalled, although it still lags.
	commit(7)
	c = groupStatus()
	require.Equal(t, domain.StatusHealthy, c.Status, c.Detail)
	require.Equal(t, float64(0), c.Metrics["stalled_partitions"])
}

// commitOffsets returns a function committing offset (capped at each
// partition's high-water mark) for group on every partition of topic,
// without joining the group.
func commitOffsets(t *testing.T, brokers []string, group, topic string) func(int64) {
	t.Helper()
	cfg, err := kafkabus.ClientConfig(kafkabus.Connection{Brokers: brokers})
	require.NoError(t, err)
	client, err := sarama.NewClient(brokers, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	return func(offset int64) {
		om, err := sarama.NewOffsetManagerFromClient(group, client)
		require.NoError(t, err)
		parts, err := client.Partitions(topic)
		require.NoError(t, err)
		for _, p := range parts {
			hw, err := client.GetOffset(topic, p, sarama.OffsetNewest)
			require.NoError(t, err)
			pom, err := om.ManagePartition(topic, p)
			require.NoError(t, err)
			pom.ResetOffset(min(offset, hw), "")
			pom.MarkOffset(min(offset, hw), "")
			om.Commit()
			require.NoError(t, pom.Close())
		}
		require.NoError(t, om.Close())
	}
}

func deleteGroup(t *testing.T, brokers []string, group string) {
	cfg, err := kafkabus.ClientConfig(kafkabus.Connection{Brokers: brokers})
	require.NoError(t, err)
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	require.NoError(t, err)
	defer admin.Close()
	_ = admin.DeleteConsumerGroup(group)
}

func TestKilledServiceTurnsUnhealthyAndRaisesAlertOnKafka(t *testing.T) {
	brokers := kafkaBrokers(t)
	svc := startHealthServer(t)
	name := "killed-" + suffix(t)
	cfg := testConfig(t)
	cfg.Kafka.Brokers = brokers
	cfg.CanaryEnabled = false
	cfg.Services = []service.Target{{Name: name, Addr: svc.Addr}}
	hm, rec := newHealthMonitor(t, cfg)
	id := "service:" + name
	from := highWater(t, brokers, events.TopicSystemHealth)

	st := hm.Monitor.RunCycle(t.Context())
	c, _ := component(st, id)
	require.Equal(t, domain.StatusHealthy, c.Status, c.Detail)

	svc.Kill()
	st = hm.Monitor.RunCycle(t.Context())
	c, _ = component(st, id)
	require.Equal(t, domain.StatusUnhealthy, c.Status)
	require.Empty(t, st.OpenAlerts)
	st = hm.Monitor.RunCycle(t.Context())
	require.Len(t, st.OpenAlerts, 1)
	require.Equal(t, id, st.OpenAlerts[0].ComponentID)
	require.Equal(t, domain.SeverityCritical, st.OpenAlerts[0].Severity)
	st = hm.Monitor.RunCycle(t.Context())
	require.Len(t, st.OpenAlerts, 1)
	raised, _ := rec.alerts()
	require.Equal(t, []string{id}, raised, "exactly one alert.raised")

	// The events reached the system-health topic, keyed by component id.
	got := readSystemHealth(t, brokers, from, id, 3)
	require.Equal(t, []string{events.TypeSystemHealthCheck, events.TypeSystemHealthCheck, events.TypeAlertRaised}, got[:3])
}

func highWater(t *testing.T, brokers []string, topic string) int64 {
	t.Helper()
	cfg, err := kafkabus.ClientConfig(kafkabus.Connection{Brokers: brokers})
	require.NoError(t, err)
	client, err := sarama.NewClient(brokers, cfg)
	require.NoError(t, err)
	defer client.Close()
	hw, err := client.GetOffset(topic, 0, sarama.OffsetNewest)
	require.NoError(t, err)
	return hw
}

// readSystemHealth reads system-health from offset and returns the event
// types of the first n events keyed by componentID.
func readSystemHealth(t *testing.T, brokers []string, from int64, componentID string, n int) []string {
	t.Helper()
	cfg, err := kafkabus.ClientConfig(kafkabus.Connection{Brokers: brokers})
	require.NoError(t, err)
	consumer, err := sarama.NewConsumer(brokers, cfg)
	require.NoError(t, err)
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(events.TopicSystemHealth, 0, from)
	require.NoError(t, err)
	defer pc.Close()
	codec, err := events.NewCodec()
	require.NoError(t, err)
	var types []string
	timeout := time.After(20 * time.Second)
	for len(types) < n {
		select {
		case m := <-pc.Messages():
			if string(m.Key) != componentID {
				continue
			}
			ev, err := codec.Decode(events.TopicSystemHealth, m.Value)
			require.NoError(t, err)
			types = append(types, ev.EventType)
		case <-timeout:
			require.FailNow(t, "events missing on system-health", "got %v", types)
		}
	}
	return types
}

func TestOutageRabbitMQRaisesOneAlertAndResolvesOnce(t *testing.T) {
	amqpAddr := amqpURL(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		testinfra.Unavailable(t, "rabbitmqctl is not installed: the outage needs the local broker")
	}
	cfg := testConfig(t)
	cfg.AMQPURL = amqpAddr
	cfg.RabbitMQMgmtURL = envOr("RABBITMQ_MGMT_URL", "")
	hm, rec := newHealthMonitor(t, cfg)
	id := "rabbitmq:" + hostOf(t, amqpAddr)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- hm.Monitor.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, hm, 30*time.Second, "broker and canary healthy", func(s domain.FleetStatus) bool {
		b, _ := component(s, id)
		c, _ := component(s, "canary:amqp:job.events")
		return b.Status == domain.StatusHealthy && c.Status == domain.StatusHealthy
	})

	started := false
	stopped := time.Now()
	rabbitmqctl(t, "stop_app")
	t.Cleanup(func() {
		if !started {
			rabbitmqctl(t, "start_app")
			rabbitmqctl(t, "await_startup")
		}
	})
	// Not healthy by the end of the next cycle: within one interval plus the probe timeout.
	waitFor(t, hm, cfg.Interval+cfg.ProbeTimeout+200*time.Millisecond, "broker not healthy", func(s domain.FleetStatus) bool {
		b, _ := component(s, id)
		return b.Status.Bad() && s.Overall.Bad()
	})
	t.Logf("rabbitmq reported bad %s after stop_app was called", time.Since(stopped).Round(time.Millisecond))
	waitFor(t, hm, time.Duration(cfg.RaiseAfter+1)*cfg.Interval+cfg.ProbeTimeout, "alert raised", func(s domain.FleetStatus) bool {
		return len(s.OpenAlerts) > 0
	})

	rabbitmqctl(t, "start_app")
	rabbitmqctl(t, "await_startup")
	started = true
	waitFor(t, hm, 60*time.Second, "alert resolved and canary healthy again", func(s domain.FleetStatus) bool {
		c, _ := component(s, "canary:amqp:job.events")
		return len(s.OpenAlerts) == 0 && c.Status == domain.StatusHealthy
	})
	// A few more cycles: nothing else is raised or resolved.
	time.Sleep(3 * cfg.Interval)

	raised, resolved := rec.alerts()
	require.Equal(t, []string{id}, raised, "exactly one alert.raised, for the broker (the canary depends on it)")
	require.Equal(t, []string{id}, resolved, "exactly one alert.resolved")
}

// waitFor waits until cond holds for the hub's latest status.
func waitFor(t *testing.T, hm *service.HealthMonitor, within time.Duration, what string, cond func(domain.FleetStatus) bool) {
	t.Helper()
	deadline := time.After(within)
	for {
		st, changed := hm.Hub.Current()
		if st.Cycle > 0 && cond(st) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			require.FailNow(t, "timed out waiting: "+what, "within %s; last status: %v", within, unhealthyOnes(st))
		}
	}
}

func TestCanaryRoundTripLatency(t *testing.T) {
	cfg := testConfig(t)
	cfg.Kafka.Brokers = kafkaBrokers(t)
	cfg.AMQPURL = amqpURL(t)
	cfg.CanaryTimeout = 5 * time.Second
	cfg.ProbeTimeout = 6 * time.Second
	cfg.Interval = 6 * time.Second
	hm, _ := newHealthMonitor(t, cfg)

	const rounds = 50
	// Wait for the Kafka canary's group assignment.
	require.Eventually(t, func() bool {
		out := hm.KafkaCanary.Probe(t.Context())
		return out.Components[0].Status == domain.StatusHealthy
	}, 60*time.Second, 200*time.Millisecond)

	for i := range rounds {
		k := hm.KafkaCanary.Probe(t.Context()).Components[0]
		require.Equal(t, domain.StatusHealthy, k.Status, "kafka round %d: %s", i, k.Detail)
		a := hm.AMQPCanary.Probe(t.Context()).Components[0]
		require.Equal(t, domain.StatusHealthy, a.Status, "amqp round %d: %s", i, a.Detail)
	}
	kp50, kp99, kn := hm.KafkaCanary.Latencies()
	ap50, ap99, an := hm.AMQPCanary.Latencies()
	t.Logf("kafka canary round trip over %d rounds: P50 %s, P99 %s", kn, kp50, kp99)
	t.Logf("amqp canary round trip over %d rounds: P50 %s, P99 %s", an, ap50, ap99)
	require.GreaterOrEqual(t, kn, rounds)
	require.GreaterOrEqual(t, an, rounds)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Host
}
