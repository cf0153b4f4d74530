package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// defaultReplayGroup is the consumer group whose committed offsets record how
// far chctl dlq replay got in each dead-letter topic.
const defaultReplayGroup = "chctl-dlq-replay"

// dlqHeaderPrefix starts every header the dead-letter copy adds (bus.HeaderDLQ*).
const dlqHeaderPrefix = "dlq."

// dlqIdleTimeout bounds the wait for the next message below the high-water
// mark taken at start; past it the partition is reported as stuck.
const dlqIdleTimeout = 15 * time.Second

// dlqStepTimeout bounds the publish of one message and the commit after it.
const dlqStepTimeout = time.Minute

const dlqUsage = `usage:
  chctl dlq list -topic TOPIC.dlq [-max N] [-group G]
      print the dead-lettered messages still in TOPIC.dlq, oldest first: DLQ
      partition:offset, original topic/partition@offset, the consumer group
      that gave up, when, after how many attempts, the first line of the error
      and the key. Reads without a consumer group and commits nothing; the last
      line says how far the replay group G (default ` + defaultReplayGroup + `) got.
  chctl dlq replay -topic TOPIC.dlq [-group G] [-consumer-group NAME] [-max N] [-dry-run]
      re-publish each dead-lettered message to its dlq.original_topic with its
      original key, value and headers (every dlq.* header removed) through the
      fleet's idempotent producer (acks=all, murmur2 partitioning by key: a job's
      events land on the job's partition again). Reads TOPIC.dlq from where
      group G (default ` + defaultReplayGroup + `) stopped up to its end at start and
      commits a DLQ offset only once the re-publish of that message was
      acknowledged: an interrupted run re-publishes at most the message in
      flight again and never loses one. Every consumer group of the original
      topic receives the message again; the stateful consumers drop an event
      they already processed by its event_id (libs/inbox), so re-publishing is
      harmless. A message without dlq.original_topic, or whose original topic is
      a .dlq topic or does not exist, stops the run with exit 1 before anything
      of it is published; what was replayed before it stays committed.

Both take -brokers (default $KAFKA_BROKERS); TLS comes from $KAFKA_TLS_*.
Replayed messages stay in TOPIC.dlq until its retention removes them.`

func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, dlqUsage)
		if len(args) == 0 {
			return usageError{"dlq: missing subcommand (list or replay)"}
		}
		return nil
	}
	switch args[0] {
	case "list":
		return runDLQList(ctx, args[1:], stdout, stderr)
	case "replay":
		return runDLQReplay(ctx, args[1:], stdout, stderr)
	default:
		return usageError{fmt.Sprintf("dlq: unknown subcommand %q (list or replay)", args[0])}
	}
}

// dlqFlags are the flags list and replay share.
type dlqFlags struct {
	conn    kafkabus.Connection
	brokers *string
	topic   *string
	group   *string
	max     *int
}

func addDLQFlags(fs *flag.FlagSet, groupHelp string) dlqFlags {
	conn := kafkabus.ConnectionFromEnv()
	return dlqFlags{
		conn:    conn,
		brokers: fs.String("brokers", strings.Join(conn.Brokers, ","), "Kafka bootstrap addresses (default $KAFKA_BROKERS)"),
		topic:   fs.String("topic", "", "the dead-letter topic, e.g. job-lifecycle.dlq"),
		group:   fs.String("group", defaultReplayGroup, groupHelp),
		max:     fs.Int("max", 0, "handle at most N dead-lettered messages (0: all up to the end of the topic at start)"),
	}
}

// validate checks the shared flags and returns the connection to use.
func (f dlqFlags) validate(cmd string) (kafkabus.Connection, error) {
	conn := withBrokers(f.conn, *f.brokers)
	switch {
	case *f.topic == "":
		return conn, usageError{cmd + ": -topic is required (a dead-letter topic, e.g. job-lifecycle.dlq)"}
	case !strings.HasSuffix(*f.topic, events.DLQSuffix) || *f.topic == events.DLQSuffix:
		return conn, usageError{fmt.Sprintf("%s: -topic %q is not a dead-letter topic (its name must end in %q)", cmd, *f.topic, events.DLQSuffix)}
	case len(conn.Brokers) == 0:
		return conn, usageError{cmd + ": no Kafka brokers: set KAFKA_BROKERS or -brokers"}
	case strings.TrimSpace(*f.group) == "":
		return conn, usageError{cmd + ": -group must not be empty"}
	case *f.max < 0:
		return conn, usageError{fmt.Sprintf("%s: -max %d is negative", cmd, *f.max)}
	}
	if err := conn.Validate(); err != nil {
		return conn, usageError{fmt.Sprintf("%s: %v", cmd, err)}
	}
	return conn, nil
}

// topicReader reads a topic partition by partition, from a given
// offset up to the high-water mark taken when it was opened, and keeps the
// consumer group offsets of the replay.
type topicReader struct {
	cfg      *sarama.Config
	client   sarama.Client
	admin    sarama.ClusterAdmin
	consumer sarama.Consumer
	topic    string
	stderr   io.Writer
	// partitions in order, with their oldest offset and high-water mark at open.
	partitions []int32
	oldest     map[int32]int64
	hwm        map[int32]int64
}

func openTopic(conn kafkabus.Connection, topic string, stderr io.Writer) (*topicReader, error) {
	cfg, err := kafkabus.ClientConfig(conn)
	if err != nil {
		return nil, err
	}
	// Looking up a missing topic must not create it.
	cfg.Metadata.AllowAutoTopicCreation = false
	cfg.Consumer.Return.Errors = true
	// Closing a partition consumer waits for its fetch in flight, which the
	// broker holds up to MaxWaitTime when the partition has nothing new.
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	client, err := sarama.NewClient(conn.Brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %v: %w", conn.Brokers, err)
	}
	d := &topicReader{cfg: cfg, client: client, topic: topic, stderr: stderr,
		oldest: make(map[int32]int64), hwm: make(map[int32]int64)}
	if d.admin, err = sarama.NewClusterAdminFromClient(client); err != nil {
		client.Close()
		return nil, fmt.Errorf("connect to %v: %w", conn.Brokers, err)
	}
	if d.consumer, err = sarama.NewConsumerFromClient(client); err != nil {
		client.Close()
		return nil, fmt.Errorf("connect to %v: %w", conn.Brokers, err)
	}
	if ok, err := d.topicExists(topic); err != nil || !ok {
		d.Close()
		if err != nil {
			return nil, fmt.Errorf("topic %s: %w", topic, err)
		}
		return nil, fmt.Errorf("topic %s does not exist", topic)
	}
	if d.partitions, err = client.Partitions(topic); err != nil {
		d.Close()
		return nil, fmt.Errorf("topic %s: %w", topic, err)
	}
	slices.Sort(d.partitions)
	for _, p := range d.partitions {
		if d.oldest[p], err = client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
			d.Close()
			return nil, fmt.Errorf("topic %s partition %d: oldest offset: %w", topic, p, err)
		}
		if d.hwm[p], err = client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
			d.Close()
			return nil, fmt.Errorf("topic %s partition %d: high-water mark: %w", topic, p, err)
		}
	}
	return d, nil
}

// Close closes the consumer and the client (the admin shares the client).
func (d *topicReader) Close() {
	_ = d.consumer.Close()
	_ = d.client.Close()
}

// topicExists reports whether topic exists. It asks the controller directly:
// the client's cached lookup would retry a missing topic for seconds and
// keep it in its metadata refreshes.
func (d *topicReader) topicExists(topic string) (bool, error) {
	mds, err := d.admin.DescribeTopics([]string{topic})
	if err != nil {
		return false, err
	}
	for _, md := range mds {
		if md.Name != topic {
			continue
		}
		switch {
		case errors.Is(md.Err, sarama.ErrNoError):
			return true, nil
		case errors.Is(md.Err, sarama.ErrUnknownTopicOrPartition):
			return false, nil
		default:
			return false, md.Err
		}
	}
	return false, fmt.Errorf("no metadata for topic %s", topic)
}

// errStopReading ends read early without an error (-max reached).
var errStopReading = errors.New("stop reading")

// read hands fn the messages of partition p from offset from up to the
// high-water mark taken at open.
func (d *topicReader) read(ctx context.Context, p int32, from int64, fn func(*sarama.ConsumerMessage) error) error {
	hwm := d.hwm[p]
	if from >= hwm {
		return nil
	}
	pc, err := d.consumer.ConsumePartition(d.topic, p, from)
	if err != nil {
		return fmt.Errorf("read %s partition %d from offset %d: %w", d.topic, p, from, err)
	}
	defer pc.AsyncClose()
	idle := time.NewTimer(dlqIdleTimeout)
	defer idle.Stop()
	next := from
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case err := <-pc.Errors():
			// The partition consumer retries by itself; a stuck one ends in the idle timeout.
			fmt.Fprintf(d.stderr, "warning: reading %s partition %d: %v\n", d.topic, p, err)
		case m, ok := <-pc.Messages():
			if !ok {
				return fmt.Errorf("read %s partition %d: consumer closed at offset %d", d.topic, p, next)
			}
			if m.Offset >= hwm {
				return nil
			}
			if err := fn(m); err != nil {
				return err
			}
			next = m.Offset + 1
			if next >= hwm {
				return nil
			}
			idle.Reset(dlqIdleTimeout)
		case <-idle.C:
			return fmt.Errorf("read %s partition %d: no message at offset %d or later for %s, below the high-water mark %d",
				d.topic, p, next, dlqIdleTimeout, hwm)
		}
	}
}

// committed returns the offsets group committed for the topic's partitions;
// a partition without one is absent.
func (d *topicReader) committed(group string) (map[int32]int64, error) {
	resp, err := d.admin.ListConsumerGroupOffsets(group, map[string][]int32{d.topic: d.partitions})
	if err != nil {
		return nil, fmt.Errorf("offsets of group %s: %w", group, err)
	}
	out := make(map[int32]int64, len(d.partitions))
	for _, p := range d.partitions {
		b := resp.GetBlock(d.topic, p)
		if b == nil {
			continue
		}
		if !errors.Is(b.Err, sarama.ErrNoError) {
			return nil, fmt.Errorf("offset of group %s on %s partition %d: %w", group, d.topic, p, b.Err)
		}
		if b.Offset >= 0 {
			out[p] = b.Offset
		}
	}
	return out, nil
}

// startOffset is where group resumes on partition p: its committed offset,
// or the oldest one still in the topic.
func (d *topicReader) startOffset(committed map[int32]int64, group string, p int32) int64 {
	c, ok := committed[p]
	if !ok {
		return d.oldest[p]
	}
	if c < d.oldest[p] {
		fmt.Fprintf(d.stderr, "warning: %s partition %d: offsets %d..%d expired before group %s reached them\n",
			d.topic, p, c, d.oldest[p]-1, group)
		return d.oldest[p]
	}
	return c
}

// requireNoMembers refuses a group with active members: its offsets belong to
// them, and the broker would reject commits from outside the group anyway.
func (d *topicReader) requireNoMembers(group string) error {
	descs, err := d.admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		return fmt.Errorf("describe group %s: %w", group, err)
	}
	for _, g := range descs {
		if g.GroupId != group {
			continue
		}
		if !errors.Is(g.Err, sarama.ErrNoError) && !errors.Is(g.Err, sarama.ErrGroupIDNotFound) {
			return fmt.Errorf("describe group %s: %w", group, g.Err)
		}
		if len(g.Members) > 0 {
			return fmt.Errorf("group %s has %d active member(s) (state %s); replay needs a group of its own, see -group", group, len(g.Members), g.State)
		}
	}
	return nil
}

// commit stores next as group's offset of partition p, checking the
// broker's answer. The group commits as a simple consumer (no membership).
func (d *topicReader) commit(ctx context.Context, group string, p int32, next int64) error {
	var last error
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return errors.Join(last, context.Cause(ctx))
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
			_ = d.client.RefreshCoordinator(group)
		}
		coord, err := d.client.Coordinator(group)
		if err != nil {
			last = err
			continue
		}
		req := sarama.NewOffsetCommitRequest(d.cfg, group)
		req.AddBlockWithLeaderEpoch(d.topic, p, next, -1, 0, "chctl dlq replay")
		resp, err := coord.CommitOffset(req)
		if err != nil {
			last = err
			continue
		}
		kerr, ok := resp.Errors[d.topic][p]
		if !ok {
			return fmt.Errorf("commit: no answer for %s partition %d", d.topic, p)
		}
		if errors.Is(kerr, sarama.ErrNoError) {
			return nil
		}
		last = kerr
		switch {
		case errors.Is(kerr, sarama.ErrNotCoordinatorForConsumer),
			errors.Is(kerr, sarama.ErrConsumerCoordinatorNotAvailable),
			errors.Is(kerr, sarama.ErrOffsetsLoadInProgress),
			errors.Is(kerr, sarama.ErrRequestTimedOut):
			continue
		}
		return kerr
	}
	return last
}

// dlqEntry is a dead-lettered message as list and replay show it.
type dlqEntry struct {
	partition int32
	offset    int64
	key       string
	value     []byte
	headers   map[string]string
}

func newDLQEntry(m *sarama.ConsumerMessage) dlqEntry {
	e := dlqEntry{partition: m.Partition, offset: m.Offset, key: string(m.Key), value: m.Value,
		headers: make(map[string]string, len(m.Headers))}
	for _, h := range m.Headers {
		if h != nil {
			e.headers[string(h.Key)] = string(h.Value)
		}
	}
	return e
}

func (e dlqEntry) at() string { return fmt.Sprintf("%d:%d", e.partition, e.offset) }

func (e dlqEntry) originalTopic() string { return e.headers[bus.HeaderDLQTopic] }

// origin is "topic/partition@offset" of the message before it failed.
func (e dlqEntry) origin() string {
	return fmt.Sprintf("%s/%s@%s", dashIfEmpty(e.originalTopic()),
		dashIfEmpty(e.headers[bus.HeaderDLQPartition]), dashIfEmpty(e.headers[bus.HeaderDLQOffset]))
}

// republished returns the message to publish again: the original topic, key,
// value and headers, without the dlq.* headers.
func (e dlqEntry) republished() *bus.Message {
	headers := make(map[string]string, len(e.headers))
	for k, v := range e.headers {
		if !strings.HasPrefix(strings.ToLower(k), dlqHeaderPrefix) {
			headers[k] = v
		}
	}
	return &bus.Message{Topic: e.originalTopic(), Key: e.key, Value: e.value, Headers: headers}
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// dlqFirstLine returns the first line of s, shortened to n runes.
func dlqFirstLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "..."
	}
	return s
}

func runDLQList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dlq list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := addDLQFlags(fs, "the replay group whose position the last line reports (read only)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("dlq list: unexpected argument %q", fs.Arg(0))}
	}
	conn, err := f.validate("dlq list")
	if err != nil {
		return err
	}
	d, err := openTopic(conn, *f.topic, stderr)
	if err != nil {
		return fmt.Errorf("dlq list: %w", err)
	}
	defer d.Close()

	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ OFFSET\tORIGINAL\tCONSUMER GROUP\tFAILED AT\tATTEMPTS\tKEY\tERROR")
	shown, total := 0, int64(0)
	for _, p := range d.partitions {
		total += d.hwm[p] - d.oldest[p]
		err := d.read(ctx, p, d.oldest[p], func(m *sarama.ConsumerMessage) error {
			if *f.max > 0 && shown >= *f.max {
				return errStopReading
			}
			e := newDLQEntry(m)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.at(), e.origin(),
				dashIfEmpty(e.headers[bus.HeaderDLQGroup]), dashIfEmpty(e.headers[bus.HeaderDLQFailedAt]),
				dashIfEmpty(e.headers[bus.HeaderDLQAttempts]), dashIfEmpty(e.key),
				dashIfEmpty(dlqFirstLine(e.headers[bus.HeaderDLQError], 160)))
			shown++
			return nil
		})
		if errors.Is(err, errStopReading) {
			break
		}
		if err != nil {
			tw.Flush()
			return fmt.Errorf("dlq list: %w", err)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d message(s) shown of %d in %s\n", shown, total, d.topic)
	committed, err := d.committed(*f.group)
	if err != nil {
		fmt.Fprintf(stderr, "warning: %v\n", err)
		return nil
	}
	var pos []string
	left := int64(0)
	for _, p := range d.partitions {
		c, ok := committed[p]
		if !ok {
			c = d.oldest[p]
		}
		c = max(c, d.oldest[p])
		left += max(d.hwm[p]-c, 0)
		if ok {
			pos = append(pos, fmt.Sprintf("%d:%d", p, committed[p]))
		} else {
			pos = append(pos, fmt.Sprintf("%d:none", p))
		}
	}
	fmt.Fprintf(stdout, "replay group %s at %s: %d message(s) not yet replayed\n", *f.group, strings.Join(pos, " "), left)
	return nil
}

// replayStats counts what a replay did.
type replayStats struct {
	replayed int
	skipped  int
	byTopic  map[string]int
}

func runDLQReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dlq replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := addDLQFlags(fs, "consumer group that records the replay's position in the DLQ; it must have no active members")
	consumerGroup := fs.String("consumer-group", "", "replay only the messages this consumer group dead-lettered (dlq.consumer_group). "+
		"The others are not replayed, but -group still moves past them (they are reported as skipped and stay in the DLQ, "+
		"see dlq list); to replay them later, run with another -group")
	dryRun := fs.Bool("dry-run", false, "print what would be replayed; publish and commit nothing")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("dlq replay: unexpected argument %q", fs.Arg(0))}
	}
	conn, err := f.validate("dlq replay")
	if err != nil {
		return err
	}
	group := *f.group

	d, err := openTopic(conn, *f.topic, stderr)
	if err != nil {
		return fmt.Errorf("dlq replay: %w", err)
	}
	defer d.Close()
	if err := d.requireNoMembers(group); err != nil {
		return fmt.Errorf("dlq replay: %w", err)
	}
	committed, err := d.committed(group)
	if err != nil {
		return fmt.Errorf("dlq replay: %w", err)
	}

	var producer *kafkabus.Producer
	if !*dryRun {
		logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		producer, err = kafkabus.NewProducer(kafkabus.DefaultProducerConfig(conn), logger, nil)
		if err != nil {
			return fmt.Errorf("dlq replay: %w", err)
		}
		defer producer.Close()
	}

	verb, skipVerb := "replayed", "skipped"
	if *dryRun {
		verb, skipVerb = "would replay", "would skip"
	}
	st := replayStats{byTopic: make(map[string]int)}
	exists := make(map[string]bool)
	seen := 0
	var runErr error
	for _, p := range d.partitions {
		from := d.startOffset(committed, group, p)
		runErr = d.read(ctx, p, from, func(m *sarama.ConsumerMessage) error {
			if *f.max > 0 && seen >= *f.max {
				return errStopReading
			}
			seen++
			e := newDLQEntry(m)
			if *consumerGroup != "" && e.headers[bus.HeaderDLQGroup] != *consumerGroup {
				fmt.Fprintf(stdout, "%s %s %s: dead-lettered by %s, not %s\n", skipVerb, d.topic, e.at(),
					dashIfEmpty(e.headers[bus.HeaderDLQGroup]), *consumerGroup)
				if err := d.commitUnlessDry(ctx, *dryRun, group, e); err != nil {
					return err
				}
				st.skipped++
				return nil
			}
			if err := d.checkReplayable(e, exists); err != nil {
				return err
			}
			msg := e.republished()
			if !*dryRun {
				// The message in hand is finished even when ctx ends: an
				// acknowledged publish gets its commit.
				pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dlqStepTimeout)
				defer cancel()
				if err := producer.Publish(telemetry.Extract(pctx, msg.Headers), msg); err != nil {
					return fmt.Errorf("re-publish %s %s to %s (nothing committed for it): %w", d.topic, e.at(), msg.Topic, err)
				}
				if err := d.commit(pctx, group, e.partition, e.offset+1); err != nil {
					return fmt.Errorf("%s %s was re-published to %s but its offset is not committed; "+
						"the next run re-publishes it again (harmless: consumers drop duplicates by event_id): %w",
						d.topic, e.at(), msg.Topic, err)
				}
			}
			st.replayed++
			st.byTopic[msg.Topic]++
			fmt.Fprintf(stdout, "%s %s %s -> %s key %s (was %s, dead-lettered by %s)\n", verb, d.topic, e.at(), msg.Topic,
				dashIfEmpty(e.key), e.origin(), dashIfEmpty(e.headers[bus.HeaderDLQGroup]))
			return nil
		})
		if errors.Is(runErr, errStopReading) {
			runErr = nil
			fmt.Fprintf(stdout, "stopped after -max %d message(s); run again for the rest\n", *f.max)
			break
		}
		if runErr != nil {
			break
		}
		if err := ctx.Err(); err != nil {
			runErr = err
			break
		}
	}
	d.printSummary(stdout, st, group, *consumerGroup, *dryRun, runErr == nil)
	if runErr != nil {
		return fmt.Errorf("dlq replay: %w", runErr)
	}
	return nil
}

// commitUnlessDry moves group past a skipped entry.
func (d *topicReader) commitUnlessDry(ctx context.Context, dry bool, group string, e dlqEntry) error {
	if dry {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dlqStepTimeout)
	defer cancel()
	if err := d.commit(cctx, group, e.partition, e.offset+1); err != nil {
		return fmt.Errorf("commit past skipped %s %s: %w", d.topic, e.at(), err)
	}
	return nil
}

// checkReplayable refuses an entry that cannot go back where it came from.
func (d *topicReader) checkReplayable(e dlqEntry, exists map[string]bool) error {
	orig := e.originalTopic()
	switch {
	case orig == "":
		return fmt.Errorf("refusing %s offset %d (partition %d): no %s header; nothing of it was published",
			d.topic, e.offset, e.partition, bus.HeaderDLQTopic)
	case strings.HasSuffix(orig, events.DLQSuffix):
		return fmt.Errorf("refusing %s offset %d (partition %d): its original topic %s is a dead-letter topic; nothing of it was published",
			d.topic, e.offset, e.partition, orig)
	}
	ok, seen := exists[orig]
	if !seen {
		var err error
		if ok, err = d.topicExists(orig); err != nil {
			return fmt.Errorf("%s offset %d (partition %d): look up topic %s: %w", d.topic, e.offset, e.partition, orig, err)
		}
		exists[orig] = ok
	}
	if !ok {
		return fmt.Errorf("refusing %s offset %d (partition %d): its original topic %s does not exist; nothing of it was published",
			d.topic, e.offset, e.partition, orig)
	}
	return nil
}

func (d *topicReader) printSummary(w io.Writer, st replayStats, group, consumerGroup string, dry, complete bool) {
	if dry {
		fmt.Fprintf(w, "dry run: would replay %d, would skip %d; nothing published, nothing committed\n", st.replayed, st.skipped)
	} else {
		fmt.Fprintf(w, "replayed %d, skipped %d from %s (group %s)\n", st.replayed, st.skipped, d.topic, group)
	}
	for _, t := range slices.Sorted(maps.Keys(st.byTopic)) {
		fmt.Fprintf(w, "  %s: %d\n", t, st.byTopic[t])
	}
	if st.skipped > 0 && !dry {
		fmt.Fprintf(w, "the %d skipped message(s) were dead-lettered by other groups than %s: not replayed, group %s moved past them; "+
			"they stay in %s (chctl dlq list)\n", st.skipped, consumerGroup, group, d.topic)
	}
	if complete && st.replayed == 0 && st.skipped == 0 {
		fmt.Fprintf(w, "nothing to replay: group %s is at the end of %s\n", group, d.topic)
	}
}
