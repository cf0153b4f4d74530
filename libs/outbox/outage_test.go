package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// ackRecorder is the real producer; it notes when each event was
// acknowledged.
type ackRecorder struct {
	outbox.KafkaPublisher
	mu    sync.Mutex
	acked map[string]time.Time // event id -> acknowledgement
	key   map[string]string    // event id -> message key
}

func (a *ackRecorder) Publish(ctx context.Context, m *bus.Message) error {
	err := a.KafkaPublisher.Publish(ctx, m)
	if err == nil {
		a.mu.Lock()
		id := m.Headers[events.HeaderEventID]
		if _, ok := a.acked[id]; !ok {
			a.acked[id], a.key[id] = time.Now(), m.Key
		}
		a.mu.Unlock()
	}
	return err
}

func (a *ackRecorder) ackedAt(id string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.acked[id]
	return at, ok
}

// outagePartitions is the partition count of the test's topics: partition p
// is led by broker p+1 (index p) until that broker dies.
const outagePartitions = 3

// createLedTopics creates the relay's topics under prefix, partition p led
// by node p+1, with two replicas and min ISR 1: the last partition's
// follower is the first broker, the others have theirs on the first two
// brokers only, so that the death of the last broker leaves their leader
// and in-sync replicas alone. (With the dead broker in a partition's ISR,
// as with replication 3 on three brokers, an acks=all write waits on every
// partition, whoever leads it, until Kafka fences the dead broker after
// broker.session.timeout.ms: the test would measure Kafka's replication,
// not the relay.) After the kill the last partition moves to the first
// broker once Kafka fenced the dead one. It waits until every partition is
// led by its preferred leader with a full ISR.
func createLedTopics(t *testing.T, brokers []string, prefix string) {
	t.Helper()
	cfg, err := kafkabus.ClientConfig(kafkabus.Connection{Brokers: brokers})
	require.NoError(t, err)
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	require.NoError(t, err)
	defer admin.Close()
	minISR := "1"
	var names []string
	for _, name := range []string{events.TopicJobLifecycle, events.TopicJobMetrics, events.TopicAuditTrail} {
		assign := map[int32][]int32{}
		for p := range int32(outagePartitions) {
			if p == outagePartitions-1 {
				assign[p] = []int32{p + 1, 1}
			} else {
				assign[p] = []int32{p + 1, (p+1)%(outagePartitions-1) + 1}
			}
		}
		require.NoError(t, admin.CreateTopic(prefix+name, &sarama.TopicDetail{NumPartitions: -1, ReplicationFactor: -1,
			ReplicaAssignment: assign, ConfigEntries: map[string]*string{"min.insync.replicas": &minISR}}, false))
		names = append(names, prefix+name)
	}
	require.Eventually(t, func() bool {
		mds, err := admin.DescribeTopics(names)
		if err != nil {
			return false
		}
		for _, md := range mds {
			if md.Err != sarama.ErrNoError || len(md.Partitions) != outagePartitions {
				return false
			}
			for _, p := range md.Partitions {
				if p.Leader != p.ID+1 || len(p.Isr) != len(p.Replicas) {
					return false
				}
			}
		}
		return true
	}, time.Minute, 100*time.Millisecond, "every partition led by its preferred leader with a full ISR")
}

// jobsOn returns n job ids (owner-<i>) whose events go to a partition that
// keep accepts.
func jobsOn(owner string, n int, keep func(partition int32) bool) []string {
	var ids []string
	for i := 0; len(ids) < n; i++ {
		id := fmt.Sprintf("%s-%d", owner, i)
		if keep(kafkabus.PartitionFor(id, outagePartitions)) {
			ids = append(ids, id)
		}
	}
	return ids
}

// A broker outage delays only the partitions that broker led: with one of
// three brokers SIGKILLed, the events of jobs on partitions led by the live
// brokers are all acknowledged while the dead broker's partitions have no
// leader yet, although more jobs of those partitions than the relay used to
// have workers were written first. The latencies from the write of a job to
// the acknowledgement of its events are printed per partition.
func TestOutageBrokerDelaysOnlyItsPartitions(t *testing.T) {
	cluster := testinfra.StartKafkaCluster(t, 3)
	brokers := cluster.Brokers()
	prefix := relaytest.RandomName(t, "outage-") + "-"
	createLedTopics(t, brokers, prefix)

	producer, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(kafkabus.Connection{Brokers: brokers}), discard(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = producer.Close() })
	rec := &ackRecorder{KafkaPublisher: producer, acked: map[string]time.Time{}, key: map[string]string{}}

	wake := make(chan struct{}, 1)
	db := sqlstoretest.Databases(t)[0].Open(t)
	s := openStore(t, db, wake)
	w := newWriter()
	cfg := outbox.DefaultRelayConfig()
	cfg.TopicPrefix, cfg.Wake = prefix, wake
	runRelay(t, cfg, s, rec, nil)

	// Warm up: one job per partition, so that the producer knows every
	// leader and is connected to every broker, as in steady operation.
	owner := relaytest.RandomName(t, "user-")
	for p := range int32(outagePartitions) {
		w.job(t, s, jobsOn(owner+"-warm", 1, func(q int32) bool { return q == p })[0], owner)
	}
	waitDrained(t, s)

	const deadPartition, perSide = int32(outagePartitions - 1), 48
	dead := jobsOn(owner+"-dead", perSide, func(p int32) bool { return p == deadPartition })
	live := jobsOn(owner+"-live", perSide, func(p int32) bool { return p != deadPartition })
	cluster.Kill(int(deadPartition))
	killed := time.Now()
	t.Logf("SIGKILLed broker %d, leader of partition %d", deadPartition+1, deadPartition)

	// The dead partition's jobs first: they are the oldest rows, claimed first.
	written := map[string]time.Time{}
	for _, id := range slices.Concat(dead, live) {
		written[id] = time.Now()
		w.job(t, s, id, owner)
	}
	eventsOf := func(jobs []string) []string {
		var ids []string
		for _, j := range jobs {
			ids = append(ids, w.order[j]...)
		}
		return ids
	}
	liveEvents, deadEvents := eventsOf(live), eventsOf(dead)
	firstDeadAck := func() (time.Time, bool) {
		var first time.Time
		for _, id := range deadEvents {
			if at, ok := rec.ackedAt(id); ok && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
		return first, !first.IsZero()
	}
	var liveDone time.Time
	require.Eventually(t, func() bool {
		for _, id := range liveEvents {
			if _, ok := rec.ackedAt(id); !ok {
				return false
			}
		}
		liveDone = time.Now()
		return true
	}, 2*time.Minute, 10*time.Millisecond, "the live brokers' partitions are published while a broker is down")
	// latencies prints write->ack per partition of every acknowledged event of jobs.
	latencies := func(when string, jobs []string) {
		per := map[int32][]time.Duration{}
		for _, j := range jobs {
			p := kafkabus.PartitionFor(j, outagePartitions)
			for _, id := range w.order[j] {
				if at, ok := rec.ackedAt(id); ok {
					per[p] = append(per[p], at.Sub(written[j]))
				}
			}
		}
		var report strings.Builder
		for p := range int32(outagePartitions) {
			l := per[p]
			if len(l) == 0 {
				continue
			}
			slices.Sort(l)
			state := "leader alive"
			if p == deadPartition {
				state = "leader killed"
			}
			fmt.Fprintf(&report, "\n  partition %d (%s): %d events, write->ack p50 %s, p99 %s, max %s", p, state, len(l),
				l[len(l)/2].Round(time.Millisecond), l[len(l)*99/100].Round(time.Millisecond), l[len(l)-1].Round(time.Millisecond))
		}
		t.Logf("latency per partition %s:%s", when, report.String())
	}
	latencies("while the broker is down", slices.Concat(dead, live))
	deadAck, deadAcked := firstDeadAck()
	if deadAcked {
		t.Logf("the dead broker's partition got a new leader %s after the kill", deadAck.Sub(killed).Round(time.Millisecond))
	}
	require.False(t, deadAcked && deadAck.Before(liveDone),
		"every event of the live brokers' partitions was acknowledged while the dead broker's partition had no leader "+
			"(all live events by %s after the kill, first event of the dead partition at %s)",
		liveDone.Sub(killed).Round(time.Millisecond), deadAck.Sub(killed).Round(time.Millisecond))

	cluster.Restart(int(deadPartition))
	waitDrained(t, s)
	deadAck, _ = firstDeadAck()
	t.Logf("all events of the live partitions acknowledged %s after the kill; first of the dead partition %s after it",
		liveDone.Sub(killed).Round(time.Millisecond), deadAck.Sub(killed).Round(time.Millisecond))
	latencies("in all", slices.Concat(dead, live))
	w.verifyKafka(t, brokers, prefix)
}
