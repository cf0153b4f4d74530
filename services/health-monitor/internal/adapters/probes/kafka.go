// Package probes holds the health-monitor's probes of Kafka, consumer-group
// lag, RabbitMQ, the services' grpc.health.v1 and databases.
package probes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// KafkaClusterProbe checks that the brokers serve, that there is a
// controller, and counts under-replicated and offline partitions. It uses a
// client of its own (no other probe can close it) over every bootstrap
// address, and remembers every broker it has seen: a broker that leaves the
// cluster is named (id and address) and makes the cluster DEGRADED while a
// majority of the known brokers serves, UNHEALTHY when none or only a
// minority does.
type KafkaClusterProbe struct {
	k *KafkaClient

	mu    sync.Mutex
	known map[int32]string // every broker seen serving: id -> address
}

// NewKafkaClusterProbe returns a probe of the cluster behind k, which must
// not be shared with another probe.
func NewKafkaClusterProbe(k *KafkaClient) *KafkaClusterProbe {
	return &KafkaClusterProbe{k: k, known: map[int32]string{}}
}

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

// clusterView is what one look at the cluster found.
type clusterView struct {
	serving      map[int32]string // brokers the cluster lists as serving: id -> address
	controller   int32
	urp, offline int
}

func (p *KafkaClusterProbe) check(ctx context.Context) domain.Component {
	view, err := p.look(ctx)
	if err != nil {
		// A broker that went away may have been the one the client used: one
		// more look with a new connection, which tries every bootstrap address.
		p.k.reset()
		if view, err = p.look(ctx); err != nil {
			p.k.reset()
			return domain.Component{Status: domain.StatusUnhealthy, Detail: err.Error()}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, addr := range view.serving {
		p.known[id] = addr
	}
	return clusterStatus(p.known, view)
}

func (p *KafkaClusterProbe) look(ctx context.Context) (clusterView, error) {
	client, _, err := p.k.get()
	if err != nil {
		return clusterView{}, err
	}
	md, err := describeCluster(ctx, client)
	if err != nil {
		return clusterView{}, err
	}
	view := clusterView{serving: make(map[int32]string, len(md.Brokers)), controller: md.ControllerID}
	for _, b := range md.Brokers {
		view.serving[b.ID()] = b.Addr()
	}
	view.urp, view.offline = partitionHealth(md)
	return view, nil
}

// describeCluster asks every broker the client knows, at once, for the
// cluster's metadata and returns the first answer. Asking one broker (the
// one sarama's ClusterAdmin.DescribeCluster takes for the controller, which
// under KRaft is any broker) makes the cluster look down when that broker
// died, or wait for a timeout when it is cut off by the network, while the
// others serve.
func describeCluster(ctx context.Context, client sarama.Client) (*sarama.MetadataResponse, error) {
	brokers := client.Brokers()
	if len(brokers) == 0 {
		return nil, errors.New("describe cluster: the client knows no broker")
	}
	type answer struct {
		md  *sarama.MetadataResponse
		err error
	}
	answers := make(chan answer, len(brokers)) // buffered: late answers never block
	for _, b := range brokers {
		go func() {
			if err := b.Open(client.Config()); err != nil && !errors.Is(err, sarama.ErrAlreadyConnected) {
				answers <- answer{err: fmt.Errorf("broker %d (%s): %w", b.ID(), b.Addr(), err)}
				return
			}
			md, err := b.GetMetadata(sarama.NewMetadataRequest(client.Config().Version, nil))
			if err != nil {
				err = fmt.Errorf("broker %d (%s): %w", b.ID(), b.Addr(), err)
			}
			answers <- answer{md: md, err: err}
		}()
	}
	var errs []error
	for range brokers {
		select {
		case a := <-answers:
			if a.err == nil {
				return a.md, nil
			}
			errs = append(errs, a.err)
		case <-ctx.Done():
			return nil, fmt.Errorf("describe cluster: %w", errors.Join(append(errs, ctx.Err())...))
		}
	}
	return nil, fmt.Errorf("describe cluster: no broker answered: %w", errors.Join(errs...))
}

// clusterStatus judges the cluster from the brokers ever seen and one view.
func clusterStatus(known map[int32]string, v clusterView) domain.Component {
	var missing []string
	for id, addr := range known {
		if _, ok := v.serving[id]; !ok {
			missing = append(missing, fmt.Sprintf("broker %d (%s)", id, addr))
		}
	}
	slices.Sort(missing)
	c := domain.Component{
		Status: domain.StatusHealthy,
		Detail: fmt.Sprintf("%d of %d brokers serving, controller %d, %d under-replicated, %d offline partitions",
			len(v.serving), len(known), v.controller, v.urp, v.offline),
		Metrics: map[string]float64{
			"brokers": float64(len(v.serving)), "brokers_known": float64(len(known)), "brokers_down": float64(len(missing)),
			"controller_id": float64(v.controller), "under_replicated_partitions": float64(v.urp), "offline_partitions": float64(v.offline),
		},
	}
	majority := len(v.serving) > len(known)/2
	switch {
	case v.controller < 0 || len(v.serving) == 0 || !majority || v.offline > 0:
		c.Status = domain.StatusUnhealthy
	case len(missing) > 0 || v.urp > 0:
		c.Status = domain.StatusDegraded
	}
	if len(missing) > 0 {
		c.Detail = strings.Join(missing, ", ") + " not serving; " + c.Detail
	}
	return c
}

// partitionHealth counts, in one metadata answer, partitions with fewer
// in-sync replicas than replicas, and partitions without a leader.
func partitionHealth(md *sarama.MetadataResponse) (urp, offline int) {
	for _, t := range md.Topics {
		if t.Err != sarama.ErrNoError {
			continue // deleted meanwhile
		}
		for _, part := range t.Partitions {
			if part.Leader < 0 || part.Err == sarama.ErrLeaderNotAvailable {
				offline++
				continue
			}
			if len(part.Isr) < len(part.Replicas) {
				urp++
			}
		}
	}
	return urp, offline
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
