package service

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/IBM/sarama"

	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	svcruntime "github.com/cosmic-horizons/fleet/libs/service"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// RebuildPoll is how often a rebuild checks the group's committed offsets.
const RebuildPoll = 250 * time.Millisecond

// RebuildReport says what a rebuild consumed.
type RebuildReport struct {
	// HighWater is, per topic and partition, the offset the rebuild
	// consumed up to (exclusive), read before it started.
	HighWater map[string]map[int32]int64
	Jobs      int
	Took      time.Duration
}

// Rebuild rebuilds the store from Kafka alone. With the service stopped
// (the consumer group must have no members), it deletes the group's
// committed offsets so that consumption restarts at the earliest offsets,
// clears the job records and the inbox (dedup marks and offsets) in one
// transaction, reads the high-water marks of the topics, consumes with the
// same handler as the service until the group has committed every
// partition up to its mark, and returns. The configuration is the
// service's (DATABASE_URL, KAFKA_*, METRICS_*).
func Rebuild(ctx context.Context, lookup svcruntime.LookupFunc, logOut io.Writer) (RebuildReport, error) {
	var report RebuildReport
	rcfg, err := svcruntime.LoadConfig(svcruntime.DefaultConfig(Name, DefaultGRPCAddr, DefaultHTTPAddr), lookup)
	if err != nil {
		return report, err
	}
	logger := telemetry.NewLogger(logOut, rcfg.LogLevel, Name).With("command", "rebuild")
	cfg, err := LoadConfig(lookup)
	if err != nil {
		return report, err
	}
	start := time.Now()
	scfg, err := kafkabus.ClientConfig(cfg.Kafka)
	if err != nil {
		return report, err
	}
	client, err := sarama.NewClient(cfg.Kafka.Brokers, scfg)
	if err != nil {
		return report, fmt.Errorf("rebuild: connect to kafka: %w", err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return report, fmt.Errorf("rebuild: kafka admin: %w", err)
	}
	if err := resetGroup(admin, cfg.Group); err != nil {
		return report, err
	}

	p, err := build(ctx, cfg, logger, nil)
	if err != nil {
		return report, err
	}
	defer p.close()
	if err := p.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := p.jobs.ResetTx(ctx, tx); err != nil {
			return err
		}
		return p.inbox.ResetTx(ctx, tx)
	}); err != nil {
		return report, fmt.Errorf("rebuild: clear store: %w", err)
	}
	logger.InfoContext(ctx, "store cleared, group reset to the earliest offsets", "group", cfg.Group)

	low, high, err := marks(client, cfg.Topics)
	if err != nil {
		return report, err
	}
	report.HighWater = high

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- p.consumer.Run(runCtx) }()
	ticker := time.NewTicker(RebuildPoll)
	defer ticker.Stop()
	for caughtUp := false; !caughtUp; {
		select {
		case <-ctx.Done():
			stop()
			return report, errors.Join(ctx.Err(), <-done)
		case err := <-done:
			return report, fmt.Errorf("rebuild: consumer stopped: %w", err)
		case <-ticker.C:
		}
		if caughtUp, err = committedUpTo(admin, cfg.Group, low, high); err != nil {
			logger.WarnContext(ctx, "rebuild: read committed offsets", "error", err)
		}
	}
	stop()
	if err := <-done; err != nil {
		return report, fmt.Errorf("rebuild: consumer: %w", err)
	}
	jobs, err := p.jobs.Jobs(ctx)
	if err != nil {
		return report, err
	}
	report.Jobs, report.Took = len(jobs), time.Since(start)
	logger.InfoContext(ctx, "rebuild complete", "jobs", report.Jobs, "took", report.Took.String())
	return report, nil
}

// resetGroup deletes group, refusing while it has members.
func resetGroup(admin sarama.ClusterAdmin, group string) error {
	desc, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		return fmt.Errorf("rebuild: describe group %s: %w", group, err)
	}
	for _, d := range desc {
		if len(d.Members) > 0 {
			return fmt.Errorf("rebuild: consumer group %s has %d active members (state %s); stop the service first", group, len(d.Members), d.State)
		}
	}
	err = admin.DeleteConsumerGroup(group)
	if err != nil && !errors.Is(err, sarama.ErrGroupIDNotFound) {
		return fmt.Errorf("rebuild: reset group %s: %w", group, err)
	}
	return nil
}

// marks returns the earliest and the high-water offsets of every partition.
func marks(client sarama.Client, topics []string) (low, high map[string]map[int32]int64, err error) {
	low, high = map[string]map[int32]int64{}, map[string]map[int32]int64{}
	for _, t := range topics {
		parts, err := client.Partitions(t)
		if err != nil {
			return nil, nil, fmt.Errorf("rebuild: partitions of %s: %w", t, err)
		}
		low[t], high[t] = map[int32]int64{}, map[int32]int64{}
		for _, p := range parts {
			if low[t][p], err = client.GetOffset(t, p, sarama.OffsetOldest); err != nil {
				return nil, nil, fmt.Errorf("rebuild: earliest offset of %s/%d: %w", t, p, err)
			}
			if high[t][p], err = client.GetOffset(t, p, sarama.OffsetNewest); err != nil {
				return nil, nil, fmt.Errorf("rebuild: high-water mark of %s/%d: %w", t, p, err)
			}
		}
	}
	return low, high, nil
}

// committedUpTo reports whether group committed every partition up to its
// high-water mark (empty partitions need nothing).
func committedUpTo(admin sarama.ClusterAdmin, group string, low, high map[string]map[int32]int64) (bool, error) {
	want := map[string][]int32{}
	for t, ps := range high {
		for p := range ps {
			want[t] = append(want[t], p)
		}
	}
	resp, err := admin.ListConsumerGroupOffsets(group, want)
	if err != nil {
		return false, err
	}
	for t, ps := range high {
		for p, hw := range ps {
			if hw <= low[t][p] {
				continue
			}
			b := resp.GetBlock(t, p)
			if b == nil || b.Offset < hw {
				return false, nil
			}
		}
	}
	return true, nil
}
