//go:build chaos

package chaos_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	healthpb "github.com/cosmic-horizons/fleet/proto/fleet/health/v1"
)

// record is one record of a tailed topic as the run's reader saw it.
type record struct {
	topic     string
	partition int32
	offset    int64
	arrived   time.Time
	key       string
	ev        events.Event
	decodeErr error
}

// tail reads topics from their start while the run goes on, so that each
// record's arrival time is known.
type tail struct {
	client sarama.Client
	mu     sync.Mutex
	recs   []record
	next   map[string]map[int32]int64 // topic -> partition -> next offset
}

func newClient(t *testing.T, brokers string) sarama.Client {
	t.Helper()
	addrs := strings.Split(brokers, ",")
	cfg, err := kafkabus.ClientConfig(kafkabus.Connection{Brokers: addrs})
	require.NoError(t, err)
	cfg.Metadata.Retry.Max = 1000
	cfg.Consumer.Retry.Backoff = 200 * time.Millisecond
	client, err := sarama.NewClient(addrs, cfg)
	require.NoError(t, err)
	return client
}

// startTail reads every partition of the topics (prefixed names; the
// records are decoded with the unprefixed name unprefixed).
func startTail(t *testing.T, ctx context.Context, brokers, prefix string, topics ...string) *tail {
	t.Helper()
	tl := &tail{client: newClient(t, brokers), next: map[string]map[int32]int64{}}
	consumer, err := sarama.NewConsumerFromClient(tl.client)
	require.NoError(t, err)
	codec, err := events.NewCodec()
	require.NoError(t, err)
	t.Cleanup(func() { _ = consumer.Close(); _ = tl.client.Close() })
	for _, name := range topics {
		topic := prefix + name
		parts, err := tl.client.Partitions(topic)
		require.NoError(t, err, "partitions of %s", topic)
		tl.next[topic] = map[int32]int64{}
		for _, p := range parts {
			pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
			require.NoError(t, err)
			go func(name string) {
				for {
					select {
					case <-ctx.Done():
						return
					case m, ok := <-pc.Messages():
						if !ok {
							return
						}
						msg := &bus.Message{Topic: name, Key: string(m.Key), Value: m.Value, Partition: m.Partition,
							Offset: m.Offset, Timestamp: m.Timestamp, Headers: map[string]string{}}
						for _, h := range m.Headers {
							msg.Headers[string(h.Key)] = string(h.Value)
						}
						ev, err := codec.FromMessage(msg)
						tl.mu.Lock()
						tl.recs = append(tl.recs, record{topic: name, partition: m.Partition, offset: m.Offset,
							arrived: time.Now(), key: msg.Key, ev: ev, decodeErr: err})
						tl.next[m.Topic][m.Partition] = m.Offset + 1
						tl.mu.Unlock()
					}
				}
			}(name)
		}
	}
	return tl
}

// caughtUp reports whether the tail has read every partition to its
// current high-water mark.
func (tl *tail) caughtUp() bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for topic, parts := range tl.next {
		ps, err := tl.client.Partitions(topic)
		if err != nil {
			return false
		}
		for _, p := range ps {
			hw, err := tl.client.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil || parts[p] < hw {
				return false
			}
		}
	}
	return true
}

// topics returns the unprefixed names of the topics tl reads.
func (tl *tail) topics() []string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, r := range tl.recs {
		if !seen[r.topic] {
			seen[r.topic] = true
			out = append(out, r.topic)
		}
	}
	return out
}

func (tl *tail) records(topic string) []record {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var out []record
	for _, r := range tl.recs {
		if r.topic == topic {
			out = append(out, r)
		}
	}
	return out
}

// recordCount is the number of records on topic (high-water minus oldest,
// summed over partitions).
func recordCount(client sarama.Client, topic string) (int64, error) {
	parts, err := client.Partitions(topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range parts {
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return 0, err
		}
		newest, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return 0, err
		}
		n += newest - oldest
	}
	return n, nil
}

// leaderOf returns the index of the broker leading partition 0 of topic.
func leaderOf(t *testing.T, k *kafkaCluster, topic string) int {
	t.Helper()
	client := newClient(t, k.Bootstrap())
	defer client.Close()
	require.NoError(t, client.RefreshMetadata(topic))
	leader, err := client.Leader(topic, 0)
	require.NoError(t, err)
	return int(leader.ID()) - 1
}

// ledBy returns the partitions of topic that broker index i leads.
func ledBy(t *testing.T, k *kafkaCluster, topic string, i int) map[int32]bool {
	t.Helper()
	client := newClient(t, k.Bootstrap())
	defer client.Close()
	require.NoError(t, client.RefreshMetadata(topic))
	parts, err := client.Partitions(topic)
	require.NoError(t, err)
	led := map[int32]bool{}
	for _, p := range parts {
		if b, err := client.Leader(topic, p); err == nil && int(b.ID())-1 == i {
			led[p] = true
		}
	}
	return led
}

// healthSample is a component the health-monitor reported not healthy.
type healthSample struct {
	at     time.Time
	id     string
	status healthpb.HealthStatus
	detail string
}

type healthLog struct {
	mu      sync.Mutex
	samples []healthSample
}

func watchHealth(ctx context.Context, f *fleet) *healthLog {
	h := &healthLog{}
	go func() {
		for ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := f.status.GetFleetStatus(cctx, &healthpb.GetFleetStatusRequest{})
			cancel()
			if err == nil {
				now := time.Now()
				h.mu.Lock()
				for _, c := range resp.GetStatus().GetComponents() {
					if c.GetStatus() != healthpb.HealthStatus_HEALTH_STATUS_HEALTHY {
						h.samples = append(h.samples, healthSample{at: now, id: c.GetId(), status: c.GetStatus(), detail: c.GetDetail()})
					}
				}
				h.mu.Unlock()
			}
			time.Sleep(time.Second)
		}
	}()
	return h
}

// worst returns, per component id, the most severe sample in [from, to).
func (h *healthLog) worst(from, to time.Time) map[string]healthSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]healthSample{}
	for _, s := range h.samples {
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		if cur, ok := out[s.id]; !ok || s.status > cur.status {
			out[s.id] = s
		}
	}
	return out
}

// first returns the first sample of component id in [from, to) whose
// detail contains substr.
func (h *healthLog) first(from, to time.Time, id, substr string) (healthSample, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.samples {
		if s.id == id && !s.at.Before(from) && s.at.Before(to) && strings.Contains(s.detail, substr) {
			return s, true
		}
	}
	return healthSample{}, false
}

// existingDLQs returns the run's dead-letter topics that exist.
func existingDLQs(t *testing.T, k *kafkaCluster, prefix string) []string {
	t.Helper()
	client := newClient(t, k.Bootstrap())
	defer client.Close()
	var out []string
	for _, name := range []string{events.TopicJobLifecycle, events.TopicJobMetrics, events.TopicAuditTrail,
		events.TopicNotifications, events.TopicSystemHealth} {
		if _, err := client.Partitions(prefix + events.DLQTopic(name)); err == nil {
			out = append(out, events.DLQTopic(name))
		}
	}
	return out
}

// waitDLQsEverywhere waits until every broker's metadata lists the
// dead-letter topics the orchestrator created under prefix: a consumer
// refuses to start without its DLQs, and a broker answers from metadata that
// may lag the controller's for a moment after the topics are created.
func waitDLQsEverywhere(t *testing.T, k *kafkaCluster, prefix string) {
	t.Helper()
	names := []string{events.TopicJobLifecycle, events.TopicJobMetrics, events.TopicAuditTrail}
	for i := range k.Brokers() {
		require.Eventually(t, func() bool {
			topics, err := kafkabus.ListTopics(context.Background(), kafkabus.Connection{Brokers: []string{k.Addr(i)}})
			if err != nil {
				return false
			}
			have := map[string]bool{}
			for _, name := range topics {
				have[name] = true
			}
			for _, name := range names {
				if !have[prefix+events.DLQTopic(name)] {
					return false
				}
			}
			return true
		}, time.Minute, 200*time.Millisecond, "broker %s lists the dead-letter topics", k.Addr(i))
	}
}

// ensureNotificationTopics creates the notifications topic and its
// dead-letter topic under their catalogue names: the notification-consumer
// publishes its outcome events there (it has no topic prefix), and the
// orchestrator creates only the run's prefixed topics.
func ensureNotificationTopics(t *testing.T, k *kafkaCluster) {
	t.Helper()
	specs, err := events.Catalogue(events.CatalogueConfig{ReplicationFactor: 3, MinInsyncReplicas: 2, AuditMinInsyncReplicas: 2})
	require.NoError(t, err)
	var want []events.TopicSpec
	for _, s := range specs {
		if s.Name == events.TopicNotifications || s.Name == events.DLQTopic(events.TopicNotifications) {
			want = append(want, s)
		}
	}
	require.NotEmpty(t, want, "the catalogue has the notifications topic")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = kafkabus.EnsureTopics(ctx, k.Brokers(), want, slog.New(slog.DiscardHandler))
	require.NoError(t, err, "create the notifications topics")
}

// scrapeUnmarked samples the orchestrator's
// fleet_outbox_unmarked{destination="kafka"} ten times over half a second
// and returns the largest value (-1 when it never answered): what a kill
// right after the last sample may publish again.
func scrapeUnmarked(httpAddr string) float64 {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	best := -1.0
	for i := 0; i < 10; i++ {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		resp, err := client.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if rest, ok := strings.CutPrefix(line, `fleet_outbox_unmarked{destination="kafka"} `); ok {
				if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil && v > best {
					best = v
				}
			}
		}
	}
	return best
}
