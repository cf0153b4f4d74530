package probes

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// LagConfig selects the consumer groups whose lag is measured.
type LagConfig struct {
	// Prefix keeps the groups whose id starts with it; empty keeps all.
	Prefix string
	// Exclude lists group ids never measured (the monitor's own canary group).
	Exclude []string
	// Threshold is the lag on one topic above which a group is degraded.
	Threshold int64
	// StallAfter is how long a group's committed offset on a partition may
	// stay the same while the partition has records beyond it before the
	// group is degraded as stalled, whatever its lag; 0 disables the check.
	// A consumer retrying a transient failure keeps its offset, so this is
	// how such a consumer shows, with the partition it is stuck on.
	StallAfter time.Duration
}

// LagProbe measures the lag of consumer groups: per topic, the sum over
// partitions of the high-water mark minus the committed offset. Partitions
// without a committed offset are not counted. It also remembers since when
// each lagging partition's committed offset has not moved, to report
// stalled groups.
type LagProbe struct {
	k   *KafkaClient
	cfg LagConfig
	now func() time.Time

	mu sync.Mutex
	// still holds, per group and lagging partition, the committed offset
	// and when the probe first saw it there.
	still map[string]map[topicPartition]stillOffset
}

type stillOffset struct {
	offset int64
	since  time.Time
}

// NewLagProbe returns a lag probe using k.
func NewLagProbe(k *KafkaClient, cfg LagConfig) *LagProbe {
	return &LagProbe{k: k, cfg: cfg, now: time.Now, still: map[string]map[topicPartition]stillOffset{}}
}

// GroupComponentID is the component id of consumer group g.
func GroupComponentID(g string) string { return "group:" + g }

// Name implements app.Probe.
func (p *LagProbe) Name() string { return "kafka:consumer-groups" }

// Type implements app.Probe.
func (p *LagProbe) Type() domain.ComponentType { return domain.TypeConsumerGroup }

type topicPartition struct {
	topic     string
	partition int32
}

// Probe implements app.Probe.
func (p *LagProbe) Probe(ctx context.Context) app.Outcome {
	start := time.Now()
	client, admin, err := p.k.get()
	if err != nil {
		return p.failed(start, err)
	}
	all, err := admin.ListConsumerGroups()
	if err != nil {
		p.k.reset()
		return p.failed(start, fmt.Errorf("list consumer groups: %w", err))
	}
	request := make(map[string]map[string][]int32)
	for g := range all {
		if strings.HasPrefix(g, p.cfg.Prefix) && !slices.Contains(p.cfg.Exclude, g) {
			request[g] = nil // nil: every partition with a committed offset
		}
	}
	if len(request) == 0 {
		return app.Outcome{}
	}
	groups, err := admin.ListConsumerGroupOffsetsBatch(request)
	if err != nil {
		return p.failed(start, fmt.Errorf("fetch committed offsets: %w", err))
	}
	committed := make(map[string]map[topicPartition]int64, len(groups))
	wanted := make(map[topicPartition]bool)
	for g, resp := range groups {
		committed[g] = make(map[topicPartition]int64)
		for topic, parts := range resp.Blocks {
			for part, b := range parts {
				if b == nil || b.Offset < 0 || b.Err != sarama.ErrNoError {
					continue
				}
				tp := topicPartition{topic, part}
				committed[g][tp] = b.Offset
				wanted[tp] = true
			}
		}
	}
	if ctx.Err() != nil {
		return p.failed(start, ctx.Err())
	}
	highWater := highWaterMarks(client, wanted)

	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	still := make(map[string]map[topicPartition]stillOffset, len(committed))
	var out app.Outcome
	for g, offsets := range committed {
		perTopic := make(map[string]int64)
		unknown := 0
		var stalled []string
		still[g] = make(map[topicPartition]stillOffset)
		for tp, off := range offsets {
			hw, ok := highWater[tp]
			if !ok {
				unknown++
				continue
			}
			lag := max(hw-off, 0)
			perTopic[tp.topic] += lag
			if lag == 0 {
				continue
			}
			s := stillOffset{offset: off, since: now}
			if prev, ok := p.still[g][tp]; ok && prev.offset == off {
				s.since = prev.since
			}
			still[g][tp] = s
			if d := now.Sub(s.since); p.cfg.StallAfter > 0 && d >= p.cfg.StallAfter {
				stalled = append(stalled, fmt.Sprintf("%s/%d at offset %d for %s (lag %d)", tp.topic, tp.partition, off, d.Round(time.Second), lag))
			}
		}
		c := domain.Component{
			ID: GroupComponentID(g), Type: domain.TypeConsumerGroup, Status: domain.StatusHealthy,
			Checked: now, Latency: now.Sub(start), DependsOn: KafkaClusterID, Metrics: map[string]float64{},
		}
		var behind []string
		var total int64
		for topic, lag := range perTopic {
			out.Lags = append(out.Lags, domain.GroupLag{Group: g, Topic: topic, Lag: lag})
			c.Metrics["lag."+topic] = float64(lag)
			total += lag
			if lag > p.cfg.Threshold {
				behind = append(behind, fmt.Sprintf("%s lag %d", topic, lag))
			}
		}
		slices.Sort(behind)
		slices.Sort(stalled)
		c.Metrics["stalled_partitions"] = float64(len(stalled))
		c.Detail = fmt.Sprintf("total lag %d", total)
		if len(behind) > 0 {
			c.Status = domain.StatusDegraded
			c.Detail = fmt.Sprintf("behind by more than %d: %s", p.cfg.Threshold, strings.Join(behind, ", "))
		}
		if len(stalled) > 0 {
			c.Status = domain.StatusDegraded
			stall := fmt.Sprintf("group %s stalled: %s", g, strings.Join(stalled, ", "))
			if len(behind) > 0 {
				c.Detail += "; " + stall
			} else {
				c.Detail = stall
			}
		}
		if unknown > 0 {
			c.Detail += fmt.Sprintf("; %d partitions without a high-water mark", unknown)
		}
		out.Components = append(out.Components, c)
	}
	p.still = still
	return out
}

func (p *LagProbe) failed(start time.Time, err error) app.Outcome {
	return app.Outcome{Components: []domain.Component{{
		ID: p.Name(), Type: domain.TypeConsumerGroup, Status: domain.StatusUnhealthy,
		Detail: err.Error(), Checked: time.Now(), Latency: time.Since(start), DependsOn: KafkaClusterID,
	}}}
}

// highWaterMarks asks each partition leader, in one request per broker, for
// the log-end offsets of tps. Partitions it cannot resolve are left out.
func highWaterMarks(client sarama.Client, tps map[topicPartition]bool) map[topicPartition]int64 {
	requests := make(map[*sarama.Broker]*sarama.OffsetRequest)
	members := make(map[*sarama.Broker][]topicPartition)
	for tp := range tps {
		leader, err := client.Leader(tp.topic, tp.partition)
		if err != nil {
			continue
		}
		req := requests[leader]
		if req == nil {
			req = sarama.NewOffsetRequest(client.Config().Version)
			requests[leader] = req
		}
		req.AddBlock(tp.topic, tp.partition, sarama.OffsetNewest, 1)
		members[leader] = append(members[leader], tp)
	}
	out := make(map[topicPartition]int64, len(tps))
	for broker, req := range requests {
		resp, err := broker.GetAvailableOffsets(req)
		if err != nil {
			continue
		}
		for _, tp := range members[broker] {
			b := resp.GetBlock(tp.topic, tp.partition)
			if b == nil || b.Err != sarama.ErrNoError {
				continue
			}
			off := b.Offset
			if len(b.Offsets) > 0 && off == 0 {
				off = b.Offsets[0]
			}
			out[tp] = off
		}
	}
	return out
}
