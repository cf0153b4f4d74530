package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/cosmic-horizons/fleet/libs/events"
)

// ErrTopicMismatch is wrapped by EnsureTopics' error when an existing topic
// differs from its spec and was not (or could not be) fixed.
var ErrTopicMismatch = errors.New("kafka topic differs from its spec")

// Topic configuration keys managed by EnsureTopics.
const (
	configRetention   = "retention.ms"
	configCompression = "compression.type"
	configMinISR      = "min.insync.replicas"
	configCleanup     = "cleanup.policy"
)

var managedConfigs = []string{configRetention, configCompression, configMinISR, configCleanup}

// TopicMismatch lists how an existing topic differs from its spec.
type TopicMismatch struct {
	Topic string
	// Problems are readable differences, e.g. "partitions: have 3, want 10".
	Problems []string
	// Fixable is true when every problem is a config that EnsureOptions.Apply
	// can alter; partition count and replication factor never are.
	Fixable bool
}

// Report is the outcome of EnsureTopics.
type Report struct {
	Created []string
	// Missing are the topics that do not exist, with EnsureOptions.VerifyOnly.
	Missing    []string
	OK         []string
	Altered    []string // configs changed because of EnsureOptions.Apply
	Mismatched []TopicMismatch
}

// String renders the report for logs and command-line output.
func (r Report) String() string {
	var b strings.Builder
	line := func(label string, topics []string) {
		if len(topics) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", label, strings.Join(topics, ", "))
		}
	}
	line("created", r.Created)
	line("missing", r.Missing)
	line("ok", r.OK)
	line("altered", r.Altered)
	for _, m := range r.Mismatched {
		fmt.Fprintf(&b, "mismatch %s: %s\n", m.Topic, strings.Join(m.Problems, "; "))
	}
	return strings.TrimRight(b.String(), "\n")
}

// EnsureOptions tune EnsureTopics.
type EnsureOptions struct {
	// Apply alters the retention, compression and min.insync.replicas of
	// existing topics that differ from their spec. Partition count and
	// replication factor are only reported: adding partitions would move
	// keys to other partitions and break per-key ordering.
	Apply bool
	// VerifyOnly changes nothing: a missing topic is reported in
	// Report.Missing (and the error wraps ErrTopicMismatch) instead of
	// created. Apply is ignored.
	VerifyOnly bool
	// TLS and ClientID are used for the admin connection.
	TLS      TLSConfig
	ClientID string
	// Version is the Kafka protocol version; default DefaultKafkaVersion.
	Version string
}

// EnsureTopics creates the topics of specs that do not exist and verifies
// the ones that do. It returns once created topics have a leader for every
// partition. The error wraps ErrTopicMismatch when an existing topic differs
// from its spec (after Apply, if set); the report is complete either way.
func EnsureTopics(ctx context.Context, brokers []string, specs []events.TopicSpec, logger *slog.Logger, opts ...EnsureOptions) (Report, error) {
	var opt EnsureOptions
	if len(opts) > 0 {
		opt = opts[len(opts)-1]
	}
	var report Report
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			return report, fmt.Errorf("ensure topics: %w", err)
		}
	}
	cfg, err := ClientConfig(Connection{Brokers: brokers, ClientID: opt.ClientID, Version: opt.Version, TLS: opt.TLS})
	if err != nil {
		return report, fmt.Errorf("ensure topics: %w", err)
	}
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		return report, fmt.Errorf("ensure topics: connect to %v: %w", brokers, err)
	}
	defer admin.Close()

	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	existing, err := describeTopics(admin, names)
	if err != nil {
		return report, fmt.Errorf("ensure topics: %w", err)
	}

	var created []string
	for _, spec := range specs {
		if err := ctx.Err(); err != nil {
			return report, fmt.Errorf("ensure topics: %w", err)
		}
		md, ok := existing[spec.Name]
		if !ok && opt.VerifyOnly {
			report.Missing = append(report.Missing, spec.Name)
			continue
		}
		if !ok {
			err := admin.CreateTopic(spec.Name, topicDetail(spec), false)
			switch {
			case err == nil:
				logger.InfoContext(ctx, "kafka topic created", "topic", spec.Name,
					"partitions", spec.Partitions, "replication_factor", spec.ReplicationFactor)
				report.Created = append(report.Created, spec.Name)
				created = append(created, spec.Name)
				continue
			case errors.Is(err, sarama.ErrTopicAlreadyExists):
				// Created concurrently: verify it like any existing topic.
				again, derr := describeTopics(admin, []string{spec.Name})
				if derr != nil {
					return report, fmt.Errorf("ensure topics: %w", derr)
				}
				if md, ok = again[spec.Name]; !ok {
					return report, fmt.Errorf("ensure topics: topic %s exists but has no metadata", spec.Name)
				}
			default:
				return report, fmt.Errorf("ensure topics: create %s: %w", spec.Name, err)
			}
		}
		if err := verifyTopic(ctx, admin, spec, md, opt.Apply && !opt.VerifyOnly, logger, &report); err != nil {
			return report, fmt.Errorf("ensure topics: %w", err)
		}
	}

	if err := waitForLeaders(ctx, admin, created); err != nil {
		return report, fmt.Errorf("ensure topics: %w", err)
	}
	if len(report.Mismatched) > 0 || len(report.Missing) > 0 {
		var bad []string
		for _, name := range report.Missing {
			bad = append(bad, name+" (missing)")
		}
		for _, m := range report.Mismatched {
			bad = append(bad, m.Topic+" ("+strings.Join(m.Problems, "; ")+")")
		}
		return report, fmt.Errorf("ensure topics: %w: %s", ErrTopicMismatch, strings.Join(bad, ", "))
	}
	return report, nil
}

func topicConfigs(spec events.TopicSpec) map[string]string {
	cfg := map[string]string{
		configRetention:   strconv.FormatInt(spec.Retention.Milliseconds(), 10),
		configCompression: spec.Compression,
		configMinISR:      strconv.Itoa(int(spec.MinInsyncReplicas)),
		configCleanup:     "delete",
	}
	if spec.Compacted {
		cfg[configRetention], cfg[configCleanup] = "-1", "compact"
	}
	return cfg
}

func topicDetail(spec events.TopicSpec) *sarama.TopicDetail {
	entries := make(map[string]*string, len(managedConfigs))
	for k, v := range topicConfigs(spec) {
		entries[k] = &v
	}
	return &sarama.TopicDetail{
		NumPartitions:     spec.Partitions,
		ReplicationFactor: spec.ReplicationFactor,
		ConfigEntries:     entries,
	}
}

// describeTopics returns the metadata of the named topics that exist.
func describeTopics(admin sarama.ClusterAdmin, names []string) (map[string]*sarama.TopicMetadata, error) {
	mds, err := admin.DescribeTopics(names)
	if err != nil {
		return nil, fmt.Errorf("describe topics: %w", err)
	}
	out := make(map[string]*sarama.TopicMetadata, len(mds))
	for _, md := range mds {
		switch {
		case errors.Is(md.Err, sarama.ErrNoError):
			out[md.Name] = md
		case errors.Is(md.Err, sarama.ErrUnknownTopicOrPartition):
		default:
			return nil, fmt.Errorf("describe topic %s: %w", md.Name, md.Err)
		}
	}
	return out, nil
}

// verifyTopic compares an existing topic with spec and records the outcome in report.
func verifyTopic(ctx context.Context, admin sarama.ClusterAdmin, spec events.TopicSpec, md *sarama.TopicMetadata,
	apply bool, logger *slog.Logger, report *Report) error {
	var structural, configs []string
	if have := int32(len(md.Partitions)); have != spec.Partitions {
		structural = append(structural, fmt.Sprintf("partitions: have %d, want %d", have, spec.Partitions))
	}
	if len(md.Partitions) > 0 {
		if have := int16(len(md.Partitions[0].Replicas)); have != spec.ReplicationFactor {
			structural = append(structural, fmt.Sprintf("replication factor: have %d, want %d", have, spec.ReplicationFactor))
		}
	}

	entries, err := admin.DescribeConfig(sarama.ConfigResource{
		Type:        sarama.TopicResource,
		Name:        spec.Name,
		ConfigNames: managedConfigs,
	})
	if err != nil {
		return fmt.Errorf("describe configs of %s: %w", spec.Name, err)
	}
	have := make(map[string]string, len(entries))
	for _, e := range entries {
		have[e.Name] = e.Value
	}
	want := topicConfigs(spec)
	alter := make(map[string]sarama.IncrementalAlterConfigsEntry)
	for _, key := range managedConfigs {
		if have[key] != want[key] {
			configs = append(configs, fmt.Sprintf("%s: have %q, want %q", key, have[key], want[key]))
			v := want[key]
			alter[key] = sarama.IncrementalAlterConfigsEntry{Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v}
		}
	}

	if apply && len(alter) > 0 {
		if err := admin.IncrementalAlterConfig(sarama.TopicResource, spec.Name, alter, false); err != nil {
			return fmt.Errorf("alter configs of %s: %w", spec.Name, err)
		}
		logger.InfoContext(ctx, "kafka topic configs altered", "topic", spec.Name, "changes", configs)
		report.Altered = append(report.Altered, spec.Name)
		configs = nil
	}
	if problems := append(structural, configs...); len(problems) > 0 {
		logger.WarnContext(ctx, "kafka topic differs from its spec", "topic", spec.Name, "problems", problems)
		report.Mismatched = append(report.Mismatched, TopicMismatch{
			Topic: spec.Name, Problems: problems, Fixable: len(structural) == 0,
		})
		return nil
	}
	if !apply || len(alter) == 0 {
		report.OK = append(report.OK, spec.Name)
	}
	return nil
}

// waitForLeaders polls the metadata until every partition of topics has a leader.
func waitForLeaders(ctx context.Context, admin sarama.ClusterAdmin, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		mds, err := describeTopics(admin, topics)
		if err == nil && allLed(mds, topics) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leaders of %v: %w (last error: %v)", topics, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func allLed(mds map[string]*sarama.TopicMetadata, topics []string) bool {
	for _, t := range topics {
		md, ok := mds[t]
		if !ok || len(md.Partitions) == 0 {
			return false
		}
		for _, p := range md.Partitions {
			if p.Leader < 0 || !errors.Is(p.Err, sarama.ErrNoError) {
				return false
			}
		}
	}
	return true
}

// ListTopics returns the names of the cluster's topics, internal ones
// included. It is meant for tests and tooling.
func ListTopics(ctx context.Context, conn Connection) ([]string, error) {
	cfg, err := ClientConfig(conn)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	client, err := sarama.NewClient(conn.Brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("list topics: connect to %v: %w", conn.Brokers, err)
	}
	defer client.Close()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	names, err := client.Topics()
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	return names, nil
}

// DeleteTopics deletes the named topics; topics that do not exist are ignored.
// It is meant for tests and tooling, never for the service path.
func DeleteTopics(ctx context.Context, conn Connection, topics ...string) error {
	cfg, err := ClientConfig(conn)
	if err != nil {
		return fmt.Errorf("delete topics: %w", err)
	}
	admin, err := sarama.NewClusterAdmin(conn.Brokers, cfg)
	if err != nil {
		return fmt.Errorf("delete topics: connect to %v: %w", conn.Brokers, err)
	}
	defer admin.Close()
	var errs []error
	for _, t := range topics {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("delete topics: %w", err)
		}
		if err := admin.DeleteTopic(t); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			errs = append(errs, fmt.Errorf("delete topic %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}
