// Package probes holds the health-monitor's probes of Kafka, consumer-group
// lag, RabbitMQ, the services' grpc.health.v1 and databases.
package probes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// KafkaClusterID is the component id of the Kafka cluster.
const KafkaClusterID = "kafka:cluster"

// KafkaClient is a sarama client and admin connected on first use and
// reconnected after a failure. It is safe for concurrent use.
type KafkaClient struct {
	conn        kafkabus.Connection
	dialTimeout time.Duration

	mu     sync.Mutex
	client sarama.Client
	admin  sarama.ClusterAdmin
}

// NewKafkaClient returns a client of conn that connects on first use; one
// connection attempt is bounded by dialTimeout.
func NewKafkaClient(conn kafkabus.Connection, dialTimeout time.Duration) (*KafkaClient, error) {
	if err := conn.Validate(); err != nil {
		return nil, err
	}
	return &KafkaClient{conn: conn, dialTimeout: dialTimeout}, nil
}

// Connection returns the connection settings.
func (k *KafkaClient) Connection() kafkabus.Connection { return k.conn }

func (k *KafkaClient) get() (sarama.Client, sarama.ClusterAdmin, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.client != nil && !k.client.Closed() {
		return k.client, k.admin, nil
	}
	cfg, err := kafkabus.ClientConfig(k.conn)
	if err != nil {
		return nil, nil, err
	}
	cfg.Net.DialTimeout = k.dialTimeout
	cfg.Net.ReadTimeout = k.dialTimeout
	cfg.Net.WriteTimeout = k.dialTimeout
	cfg.Metadata.Retry.Max = 1
	cfg.Admin.Timeout = k.dialTimeout
	client, err := sarama.NewClient(k.conn.Brokers, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to kafka %v: %w", k.conn.Brokers, err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, nil, fmt.Errorf("kafka admin: %w", err)
	}
	k.client, k.admin = client, admin
	return client, admin, nil
}

// reset drops the connection so that the next use connects again.
func (k *KafkaClient) reset() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.admin != nil {
		_ = k.admin.Close() // closes the client too
	}
	k.client, k.admin = nil, nil
}

// Close releases the connection.
func (k *KafkaClient) Close() error {
	k.reset()
	return nil
}

// KafkaClusterProbe checks that the brokers answer, that there is a
// controller, and counts under-replicated and offline partitions.
type KafkaClusterProbe struct{ k *KafkaClient }

// NewKafkaClusterProbe returns a probe of the cluster behind k.
func NewKafkaClusterProbe(k *KafkaClient) *KafkaClusterProbe { return &KafkaClusterProbe{k: k} }

// Name implements app.Probe.
func (p *KafkaClusterProbe) Name() string { return KafkaClusterID }

// Type implements app.Probe.
func (p *KafkaClusterProbe) Type() domain.ComponentType { return domain.TypeBroker }

// Probe implements app.Probe.
func (p *KafkaClusterProbe) Probe(ctx context.Context) app.Outcome {
	start := time.Now()
	c := p.check(ctx)
	c.ID, c.Type, c.Latency, c.Checked = KafkaClusterID, domain.TypeBroker, time.Since(start), time.Now()
	return app.Outcome{Components: []domain.Component{c}}
}

func (p *KafkaClusterProbe) check(context.Context) domain.Component {
	client, admin, err := p.k.get()
	if err != nil {
		return domain.Component{Status: domain.StatusUnhealthy, Detail: err.Error()}
	}
	_, controller, err := admin.DescribeCluster()
	if err != nil {
		p.k.reset()
		return domain.Component{Status: domain.StatusUnhealthy, Detail: fmt.Sprintf("describe cluster: %v", err)}
	}
	if err := client.RefreshMetadata(); err != nil {
		p.k.reset()
		return domain.Component{Status: domain.StatusUnhealthy, Detail: fmt.Sprintf("refresh metadata: %v", err)}
	}
	brokers := client.Brokers()
	var down []string
	for _, b := range brokers {
		if ok, _ := b.Connected(); !ok {
			_ = b.Open(client.Config())
		}
		if ok, err := b.Connected(); !ok {
			down = append(down, fmt.Sprintf("%s (%v)", b.Addr(), err))
		}
	}
	urp, offline, err := partitionHealth(client)
	if err != nil {
		return domain.Component{Status: domain.StatusUnhealthy, Detail: err.Error()}
	}
	c := domain.Component{
		Status: domain.StatusHealthy,
		Detail: fmt.Sprintf("%d brokers, controller %d, %d under-replicated, %d offline partitions", len(brokers), controller, urp, offline),
		Metrics: map[string]float64{
			"brokers": float64(len(brokers)), "brokers_down": float64(len(down)), "controller_id": float64(controller),
			"under_replicated_partitions": float64(urp), "offline_partitions": float64(offline),
		},
	}
	switch {
	case controller < 0 || len(down) == len(brokers) || offline > 0:
		c.Status = domain.StatusUnhealthy
	case len(down) > 0 || urp > 0:
		c.Status = domain.StatusDegraded
	}
	if len(down) > 0 {
		c.Detail += "; unreachable: " + strings.Join(down, ", ")
	}
	return c
}

// partitionHealth counts partitions with fewer in-sync replicas than
// replicas, and partitions without a leader.
func partitionHealth(client sarama.Client) (urp, offline int, err error) {
	topics, err := client.Topics()
	if err != nil {
		return 0, 0, fmt.Errorf("list topics: %w", err)
	}
	for _, t := range topics {
		parts, err := client.Partitions(t)
		if err != nil {
			continue // deleted meanwhile
		}
		for _, part := range parts {
			replicas, rerr := client.Replicas(t, part)
			isr, ierr := client.InSyncReplicas(t, part)
			if _, lerr := client.Leader(t, part); lerr != nil {
				offline++
				continue
			}
			if rerr == nil && ierr == nil && len(isr) < len(replicas) {
				urp++
			}
		}
	}
	return urp, offline, nil
}

// TopicsProbe compares the topics with the catalogue through
// kafkabus.EnsureTopics in verify-only mode: the same comparison the topic
// tool makes, changing nothing. A missing topic is unhealthy (nothing can
// be published to it); one that differs from its spec is degraded.
type TopicsProbe struct {
	conn  kafkabus.Connection
	specs []events.TopicSpec
}

// NewTopicsProbe returns a probe of specs on the cluster of conn.
func NewTopicsProbe(conn kafkabus.Connection, specs []events.TopicSpec) *TopicsProbe {
	return &TopicsProbe{conn: conn, specs: specs}
}

// Name implements app.Probe.
func (p *TopicsProbe) Name() string { return "kafka:topics" }

// Type implements app.Probe.
func (p *TopicsProbe) Type() domain.ComponentType { return domain.TypeTopic }

// Probe implements app.Probe.
func (p *TopicsProbe) Probe(ctx context.Context) app.Outcome {
	start := time.Now()
	report, err := kafkabus.EnsureTopics(ctx, p.conn.Brokers, p.specs, slog.New(slog.DiscardHandler),
		kafkabus.EnsureOptions{VerifyOnly: true, TLS: p.conn.TLS, ClientID: p.conn.ClientID, Version: p.conn.Version})
	now := time.Now()
	var out app.Outcome
	add := func(name string, s domain.Status, detail string) {
		out.Components = append(out.Components, domain.Component{
			ID: "topic:" + name, Type: domain.TypeTopic, Status: s, Detail: detail,
			Checked: now, Latency: now.Sub(start), DependsOn: KafkaClusterID,
		})
	}
	if err != nil && !errors.Is(err, kafkabus.ErrTopicMismatch) {
		for _, s := range p.specs {
			add(s.Name, domain.StatusUnknown, fmt.Sprintf("catalogue check failed: %v", err))
		}
		return out
	}
	for _, name := range report.OK {
		add(name, domain.StatusHealthy, "matches the catalogue")
	}
	for _, name := range report.Missing {
		add(name, domain.StatusUnhealthy, `missing: create it with "chctl topics"`)
	}
	for _, m := range report.Mismatched {
		add(m.Topic, domain.StatusDegraded, "differs from the catalogue: "+strings.Join(m.Problems, "; "))
	}
	return out
}
