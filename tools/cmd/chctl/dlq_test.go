package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// dlqFixture is a topic of its own with its dead-letter topic on the real
// broker, and a producer; everything is deleted when the test ends.
type dlqFixture struct {
	conn     kafkabus.Connection
	topic    string // the original topic
	dlq      string
	producer *kafkabus.Producer
}

func newDLQFixture(t *testing.T, partitions int32) *dlqFixture {
	t.Helper()
	conn := kafkabus.Connection{Brokers: testinfra.KafkaBrokers(t), ClientID: "chctl-dlq-test"}
	name := kafkabustest.Name("chctl-dlqtest")
	kafkabustest.TopicsWithDLQ(t, conn.Brokers, partitions, name)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(conn), logger, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return &dlqFixture{conn: conn, topic: name, dlq: events.DLQTopic(name), producer: p}
}

// group returns a consumer group name of this test, deleted at the end.
func (f *dlqFixture) group(t *testing.T, label string) string {
	t.Helper()
	g := kafkabustest.Name("chctl-dlqtest-" + label)
	t.Cleanup(func() {
		admin := f.admin(t)
		defer admin.Close()
		_ = admin.DeleteConsumerGroup(g)
	})
	return g
}

func (f *dlqFixture) admin(t *testing.T) sarama.ClusterAdmin {
	t.Helper()
	cfg, err := kafkabus.ClientConfig(f.conn)
	require.NoError(t, err)
	admin, err := sarama.NewClusterAdmin(f.conn.Brokers, cfg)
	require.NoError(t, err)
	return admin
}

// original is an event as a service would publish it.
func original(topic, key string, n int) *bus.Message {
	id := fmt.Sprintf("0193c1f0-7a2b-7c3d-9e4f-%012d", n)
	return &bus.Message{Topic: topic, Key: key, Value: []byte(fmt.Sprintf("\x00payload-%s-%d", key, n)),
		Headers: map[string]string{
			"event_id":       id,
			"event_type":     "job.updated",
			"content-type":   bus.ContentTypeAvro,
			"correlation_id": "corr-" + key,
			"traceparent":    fmt.Sprintf("00-%032x-%016x-01", n+1, n+1),
		}}
}

// publishOriginals publishes msgs to the original topic and returns them as
// read back, with their partitions and offsets.
func (f *dlqFixture) publishOriginals(t *testing.T, msgs ...*bus.Message) []*bus.Message {
	t.Helper()
	before := len(readTopic(t, f.conn, f.topic))
	for _, m := range msgs {
		require.NoError(t, f.producer.Publish(context.Background(), m))
	}
	got := readTopic(t, f.conn, f.topic)
	require.Len(t, got, before+len(msgs))
	out := make([]*bus.Message, 0, len(msgs))
	for _, m := range msgs {
		i := slices.IndexFunc(got, func(g *bus.Message) bool { return g.Header("event_id") == m.Header("event_id") })
		require.GreaterOrEqual(t, i, 0)
		out = append(out, got[i])
	}
	return out
}

// deadLetter writes the dead-letter copies of msgs, failed in group, to the DLQ.
func (f *dlqFixture) deadLetter(t *testing.T, group string, cause error, msgs ...*bus.Message) {
	t.Helper()
	for _, m := range msgs {
		c := *m
		c.Attempt = 5
		dl := kafkabus.DeadLetter(&c, group, cause, time.Now())
		require.Equal(t, f.dlq, dl.Topic)
		require.NoError(t, f.producer.Publish(context.Background(), dl))
	}
}

// publishDLQ writes a hand-made dead-letter message.
func (f *dlqFixture) publishDLQ(t *testing.T, m *bus.Message) {
	t.Helper()
	m.Topic = f.dlq
	require.NoError(t, f.producer.Publish(context.Background(), m))
}

// readTopic returns every message of topic, partition by partition.
func readTopic(t *testing.T, conn kafkabus.Connection, topic string) []*bus.Message {
	t.Helper()
	cfg, err := kafkabus.ClientConfig(conn)
	require.NoError(t, err)
	cfg.Metadata.AllowAutoTopicCreation = false
	cfg.Consumer.MaxWaitTime = 20 * time.Millisecond // closing waits for the fetch in flight
	client, err := sarama.NewClient(conn.Brokers, cfg)
	require.NoError(t, err)
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	require.NoError(t, err)
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	require.NoError(t, err)
	var out []*bus.Message
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		require.NoError(t, err)
		if hwm == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		require.NoError(t, err)
		for {
			select {
			case m := <-pc.Messages():
				msg := &bus.Message{Topic: m.Topic, Key: string(m.Key), Value: m.Value, Partition: m.Partition, Offset: m.Offset,
					Headers: make(map[string]string)}
				for _, h := range m.Headers {
					msg.Headers[string(h.Key)] = string(h.Value)
				}
				out = append(out, msg)
				if m.Offset+1 < hwm {
					continue
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("reading %s/%d: no message before the high-water mark %d", topic, p, hwm)
			}
			break
		}
		require.NoError(t, pc.Close())
	}
	return out
}

// committedOffset is the DLQ offset group committed, or -1.
func (f *dlqFixture) committedOffset(t *testing.T, group string) int64 {
	t.Helper()
	admin := f.admin(t)
	defer admin.Close()
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{f.dlq: {0}})
	require.NoError(t, err)
	b := resp.GetBlock(f.dlq, 0)
	if b == nil {
		return -1
	}
	return b.Offset
}

// replayedOf returns the messages of the original topic after the first n
// per partition (the originals), in partition and offset order.
func replayedOf(all []*bus.Message, originals []*bus.Message) []*bus.Message {
	isOriginal := func(m *bus.Message) bool {
		return slices.ContainsFunc(originals, func(o *bus.Message) bool {
			return o.Partition == m.Partition && o.Offset == m.Offset
		})
	}
	var out []*bus.Message
	for _, m := range all {
		if !isOriginal(m) {
			out = append(out, m)
		}
	}
	return out
}

func eventIDs(msgs []*bus.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.Header("event_id")
	}
	slices.Sort(ids)
	return ids
}

// chctlDLQ runs chctl with args and returns its stdout and stderr.
func chctlDLQ(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestDLQReplay dead-letters events of three keys spread over partitions and
// replays them: each comes back to its original partition with the original
// key, value and headers, in order per key; a second run replays nothing.
func TestDLQReplay(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t, 3)
	var msgs []*bus.Message
	for i, key := range []string{"job-a", "job-b", "job-c", "job-a", "job-b", "job-c"} {
		msgs = append(msgs, original(f.topic, key, i))
	}
	originals := f.publishOriginals(t, msgs...)
	partitions := map[int32]bool{}
	for _, o := range originals {
		partitions[o.Partition] = true
	}
	require.GreaterOrEqual(t, len(partitions), 2, "the keys must spread over several partitions")
	f.deadLetter(t, "metrics-consumer", errors.New("database unavailable"), originals...)
	group := f.group(t, "replay")

	out, errOut, err := chctlDLQ(t, "dlq", "replay", "-topic", f.dlq, "-group", group, "-brokers", strings.Join(f.conn.Brokers, ","))
	require.NoError(t, err, out+errOut)
	require.Contains(t, out, fmt.Sprintf("replayed 6, skipped 0 from %s (group %s)", f.dlq, group))
	require.Contains(t, out, fmt.Sprintf("  %s: 6\n", f.topic))
	require.Equal(t, 6, strings.Count(out, "replayed "+f.dlq+" 0:"))

	all := readTopic(t, f.conn, f.topic)
	require.Len(t, all, 12)
	replayed := replayedOf(all, originals)
	require.Equal(t, eventIDs(originals), eventIDs(replayed))
	for _, o := range originals {
		i := slices.IndexFunc(replayed, func(r *bus.Message) bool { return r.Header("event_id") == o.Header("event_id") })
		r := replayed[i]
		require.Equal(t, o.Key, r.Key)
		require.Equal(t, o.Value, r.Value)
		require.Equal(t, o.Headers, r.Headers, "headers of %s", o.Header("event_id"))
		require.Equal(t, o.Partition, r.Partition, "key %s must land on its partition", o.Key)
		for k := range r.Headers {
			require.False(t, strings.HasPrefix(k, "dlq."), "header %s left on the replayed message", k)
		}
	}
	// Per key, the replay keeps the dead-letter order.
	for _, key := range []string{"job-a", "job-b", "job-c"} {
		var ids []string
		for _, r := range replayed {
			if r.Key == key {
				ids = append(ids, r.Header("event_id"))
			}
		}
		var want []string
		for _, o := range originals {
			if o.Key == key {
				want = append(want, o.Header("event_id"))
			}
		}
		require.Equal(t, want, ids, "order of key %s", key)
	}
	require.EqualValues(t, 6, f.committedOffset(t, group))

	// Second run: the offsets are committed, nothing is replayed again.
	out, errOut, err = chctlDLQ(t, "dlq", "replay", "-topic", f.dlq, "-group", group)
	require.NoError(t, err, out+errOut)
	require.Contains(t, out, "replayed 0, skipped 0")
	require.Contains(t, out, "nothing to replay")
	require.Len(t, readTopic(t, f.conn, f.topic), 12)
}

// TestDLQReplayDryRun publishes and commits nothing; a real run afterwards
// replays everything.
func TestDLQReplayDryRun(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t, 2)
	originals := f.publishOriginals(t, original(f.topic, "job-x", 1), original(f.topic, "job-y", 2), original(f.topic, "job-z", 3))
	f.deadLetter(t, "notification-consumer", errors.New("smtp down"), originals...)
	group := f.group(t, "dry")

	out, errOut, err := chctlDLQ(t, "dlq", "replay", "-topic", f.dlq, "-group", group, "-dry-run")
	require.NoError(t, err, out+errOut)
	require.Equal(t, 3, strings.Count(out, "would replay "+f.dlq))
	require.Contains(t, out, "dry run: would replay 3, would skip 0; nothing published, nothing committed")
	require.Len(t, readTopic(t, f.conn, f.topic), 3)
	require.EqualValues(t, -1, f.committedOffset(t, group))

	out, errOut, err = chctlDLQ(t, "dlq", "replay", "-topic", f.dlq, "-group", group)
	require.NoError(t, err, out+errOut)
	require.Contains(t, out, "replayed 3, skipped 0")
	all := readTopic(t, f.conn, f.topic)
	require.Len(t, all, 6)
	require.Equal(t, eventIDs(originals), eventIDs(replayedOf(all, originals)))
	require.EqualValues(t, 3, f.committedOffset(t, group))
}

// TestDLQReplayConsumerGroup replays only what one group dead-lettered; the
// replay group moves past the others, which a fresh group can replay later.
func TestDLQReplayConsumerGroup(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t, 2)
	originals := f.publishOriginals(t, original(f.topic, "job-1", 1), original(f.topic, "job-2", 2),
		original(f.topic, "job-3", 3), original(f.topic, "job-4", 4))
	// DLQ offsets 0 and 2 from g1, 1 and 3 from g2.
	for i, o := range originals {
		f.deadLetter(t, []string{"g1", "g2"}[i%2], errors.New("failed"), o)
	}
	group := f.group(t, "filter")

	out, errOut, err := chctlDLQ(t, "dlq", "replay", "-topic", f.dlq, "-group", group, "-consumer-group", "g1")
	require.NoError(t, err, out+errOut)
	require.Contains(t, out, "replayed 2, skipped 2")
	require.Contains(t, out, "skipped "+f.dlq+" 0:1: dead-lettered by g2, not g1")
	require.Contains(t, out, "group "+group+" moved past them")
	all := readTopic(t, f.conn, f.topic)
	require.Equal(t, eventIDs([]*bus.Message{originals[0], originals[2]}), eventIDs(replayedOf(all, originals)))
	require.EqualValues(t, 4, f.committedOffset(t, group))

	// The same replay group has moved past g2's messages.
	out, errOut, err = chctlDLQ(t, "dlq", "replay", "-topic", f.dlq, "-group", group, "-consumer-group", "g2")
	require.NoError(t, err, out+errOut)
	require.Contains(t, out, "nothing to replay")

	// A fresh replay group picks them up.
	out, errOut, err = chctlDLQ(t, "dlq", "replay", "-topic", f.dlq, "-group", f.group(t, "filter2"), "-consumer-group", "g2")
	require.NoError(t, err, out+errOut)
	require.Contains(t, out, "replayed 2, skipped 2")
	all = readTopic(t, f.conn, f.topic)
	require.Len(t, all, 8)
	require.Equal(t, eventIDs(originals), eventIDs(replayedOf(all, originals)))
}

// TestDLQReplayRefuses stops at a message that cannot go back, naming its
// offset; the messages before it are replayed and committed, nothing of it
// is published.
func TestDLQReplayRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(f *dlqFixture, h map[string]string)
		wantErr string
	}{
		{name: "no original topic", mutate: func(_ *dlqFixture, h map[string]string) { delete(h, bus.HeaderDLQTopic) },
			wantErr: "no dlq.original_topic header"},
		{name: "original topic is a dlq", mutate: func(f *dlqFixture, h map[string]string) { h[bus.HeaderDLQTopic] = f.dlq },
			wantErr: "is a dead-letter topic"},
		{name: "original topic missing", mutate: func(f *dlqFixture, h map[string]string) { h[bus.HeaderDLQTopic] = f.topic + "-gone" },
			wantErr: "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newDLQFixture(t, 2)
			originals := f.publishOriginals(t, original(f.topic, "job-ok-1", 1), original(f.topic, "job-ok-2", 2),
				original(f.topic, "job-bad", 3), original(f.topic, "job-after", 4))
			f.deadLetter(t, "g", errors.New("failed"), originals[:2]...)
			bad := kafkabus.DeadLetter(originals[2], "g", errors.New("failed"), time.Now())
			tt.mutate(f, bad.Headers)
			f.publishDLQ(t, bad)
			f.deadLetter(t, "g", errors.New("failed"), originals[3])
			group := f.group(t, "refuse")

			for range 2 { // the second run stops at the same message
				out, errOut, err := chctlDLQ(t, "dlq", "replay", "-topic", f.dlq, "-group", group)
				require.Error(t, err, out+errOut)
				require.ErrorContains(t, err, fmt.Sprintf("refusing %s offset 2 (partition 0)", f.dlq))
				require.ErrorContains(t, err, tt.wantErr)
				require.False(t, errors.As(err, new(usageError)), "a refused message is not a usage error")
				all := readTopic(t, f.conn, f.topic)
				require.Equal(t, eventIDs(originals[:2]), eventIDs(replayedOf(all, originals)))
				require.EqualValues(t, 2, f.committedOffset(t, group))
			}
			require.Len(t, readTopic(t, f.conn, f.dlq), 4, "nothing published to the DLQ")
			admin := f.admin(t)
			defer admin.Close()
			topics, err := admin.ListTopics()
			require.NoError(t, err)
			require.NotContains(t, topics, f.topic+"-gone", "a missing original topic must not be created")
		})
	}
}

// TestDLQUsage: bad flags are usage errors and publish nothing.
func TestDLQUsage(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t, 1)
	originals := f.publishOriginals(t, original(f.topic, "job-u", 1))
	f.deadLetter(t, "g", errors.New("failed"), originals...)
	group := f.group(t, "usage")
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no subcommand", args: []string{"dlq"}, wantErr: "missing subcommand"},
		{name: "unknown subcommand", args: []string{"dlq", "drain"}, wantErr: `unknown subcommand "drain"`},
		{name: "no topic", args: []string{"dlq", "replay", "-group", group}, wantErr: "-topic is required"},
		{name: "topic not a dlq", args: []string{"dlq", "replay", "-topic", f.topic, "-group", group}, wantErr: "is not a dead-letter topic"},
		{name: "list topic not a dlq", args: []string{"dlq", "list", "-topic", f.topic}, wantErr: "is not a dead-letter topic"},
		{name: "no brokers", args: []string{"dlq", "replay", "-topic", f.dlq, "-group", group, "-brokers", ""}, wantErr: "no Kafka brokers"},
		{name: "negative max", args: []string{"dlq", "replay", "-topic", f.dlq, "-group", group, "-max", "-1"}, wantErr: "-max -1 is negative"},
		{name: "empty group", args: []string{"dlq", "replay", "-topic", f.dlq, "-group", ""}, wantErr: "-group must not be empty"},
		{name: "stray argument", args: []string{"dlq", "replay", "-topic", f.dlq, "-group", group, "now"}, wantErr: `unexpected argument "now"`},
		{name: "unknown flag", args: []string{"dlq", "replay", "-topic", f.dlq, "-force"}, wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		_, _, err := chctlDLQ(t, tt.args...)
		require.ErrorContains(t, err, tt.wantErr, tt.name)
		require.ErrorAs(t, err, new(usageError), tt.name)
	}
	require.Len(t, readTopic(t, f.conn, f.topic), 1, "nothing replayed")
	require.EqualValues(t, -1, f.committedOffset(t, group))

	// A dead-letter topic that does not exist is an error, not a usage error.
	_, _, err := chctlDLQ(t, "dlq", "replay", "-topic", f.topic+"-none.dlq", "-group", group)
	require.ErrorContains(t, err, "does not exist")
	require.False(t, errors.As(err, new(usageError)))

	// Help is not an error.
	out, _, err := chctlDLQ(t, "dlq", "help")
	require.NoError(t, err)
	require.Contains(t, out, "event_id")
}

// TestDLQList prints every entry with its origin, group, attempts, the first
// line of the error and the key, and commits nothing.
func TestDLQList(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t, 2)
	originals := f.publishOriginals(t, original(f.topic, "job-l1", 1), original(f.topic, "job-l2", 2), original(f.topic, "job-l3", 3))
	f.deadLetter(t, "metrics-consumer", errors.New("decode: bad magic byte\ngoroutine 7 [running]"), originals[:2]...)
	f.deadLetter(t, "compliance-auditor", errors.New("db locked"), originals[2])
	group := f.group(t, "list")

	out, errOut, err := chctlDLQ(t, "dlq", "list", "-topic", f.dlq, "-group", group)
	require.NoError(t, err, out+errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 6, out)
	require.Contains(t, lines[0], "DLQ OFFSET")
	for i, o := range originals {
		line := lines[i+1]
		require.True(t, strings.HasPrefix(line, fmt.Sprintf("0:%d ", i)), line)
		require.Contains(t, line, fmt.Sprintf("%s/%d@%d", f.topic, o.Partition, o.Offset))
		require.Contains(t, line, o.Key)
		require.Contains(t, line, " 5 ") // attempts
	}
	require.Contains(t, lines[1], "metrics-consumer")
	require.Contains(t, lines[1], "decode: bad magic byte")
	require.NotContains(t, out, "goroutine 7")
	require.Contains(t, lines[3], "compliance-auditor")
	require.Contains(t, lines[3], "db locked")
	require.Equal(t, "3 message(s) shown of 3 in "+f.dlq, lines[4])
	require.Equal(t, "replay group "+group+" at 0:none: 3 message(s) not yet replayed", lines[5])

	out, errOut, err = chctlDLQ(t, "dlq", "list", "-topic", f.dlq, "-max", "1", "-group", group)
	require.NoError(t, err, out+errOut)
	require.Contains(t, out, "1 message(s) shown of 3")
	require.NotContains(t, out, "job-l2")

	// After replaying one, the position line follows the replay group.
	out, errOut, err = chctlDLQ(t, "dlq", "replay", "-topic", f.dlq, "-group", group, "-max", "1")
	require.NoError(t, err, out+errOut)
	require.Contains(t, out, "replayed 1, skipped 0")
	require.Contains(t, out, "stopped after -max 1 message(s)")
	out, errOut, err = chctlDLQ(t, "dlq", "list", "-topic", f.dlq, "-group", group)
	require.NoError(t, err, out+errOut)
	require.Contains(t, out, "3 message(s) shown of 3")
	require.Contains(t, out, "replay group "+group+" at 0:1: 2 message(s) not yet replayed")
	require.Len(t, readTopic(t, f.conn, f.topic), 4)
}
