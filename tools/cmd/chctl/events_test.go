package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

func TestEventsTail(t *testing.T) {
	t.Parallel()
	conn := kafkabus.Connection{Brokers: testinfra.KafkaBrokers(t), ClientID: "chctl-events-test"}
	topic := kafkabustest.Name("chctl-tail") + "-" + events.TopicJobLifecycle
	kafkabustest.Topics(t, conn.Brokers, 2, topic)
	codec, err := events.NewCodec()
	require.NoError(t, err)
	pcfg := kafkabus.DefaultProducerConfig(conn)
	pcfg.Schemas = codec
	producer, err := kafkabus.NewProducer(pcfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, producer.Close()) })

	var ids []string
	for i, job := range []string{"job-a", "job-b", "job-a"} {
		ev, err := events.NewEvent(events.JobQueued{JobID: job, UserID: "u-ada", Scheduler: "local", SchedulerJobID: "7",
			FromStatus: events.JobStatusSubmitted, ToStatus: events.JobStatusQueued}, events.Meta{Producer: "job-orchestrator", UserID: "u-ada", Sequence: int64(i + 1)})
		require.NoError(t, err)
		msg, err := codec.Message(ev)
		require.NoError(t, err)
		msg.Topic = topic
		require.NoError(t, producer.Publish(context.Background(), msg))
		ids = append(ids, ev.EventID)
	}
	poison := []byte("\xc3\x01not an event")
	require.NoError(t, producer.Publish(context.Background(), &bus.Message{Topic: topic, Key: "job-a", Value: poison}))

	tail := func(args ...string) []printedRecord {
		t.Helper()
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, run(ctx, append([]string{"events", "tail", "-topic", topic, "-brokers", strings.Join(conn.Brokers, ",")}, args...), &stdout, &stderr), stderr.String())
		var out []printedRecord
		for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
			if line == "" {
				continue
			}
			var r printedRecord
			require.NoError(t, json.Unmarshal([]byte(line), &r), line)
			out = append(out, r)
		}
		return out
	}

	all := tail("-from-beginning", "-n", "0")
	require.Len(t, all, 4)
	var seen []string
	for _, r := range all {
		require.Equal(t, topic, r.Topic)
		if r.Error != "" {
			require.Equal(t, base64.StdEncoding.EncodeToString(poison), r.ValueBase64)
			continue
		}
		var doc struct {
			EventID string `json:"event_id"`
			Payload map[string]struct {
				JobID string `json:"job_id"`
			} `json:"payload"`
		}
		require.NoError(t, json.Unmarshal(r.Event, &doc))
		seen = append(seen, doc.EventID)
		require.Equal(t, r.Key, doc.Payload["org.cosmichorizons.fleet.events.JobQueued"].JobID)
		require.Equal(t, events.TopicJobLifecycle, r.Schema.Topic)
		version, _ := codec.WriterVersion(events.TopicJobLifecycle)
		require.Equal(t, version, r.Schema.Version, "the version the producer wrote")
		require.Equal(t, "job.queued", r.Headers[bus.HeaderEventType])
	}
	require.ElementsMatch(t, ids, seen)

	require.Len(t, tail("-from-beginning", "-n", "2"), 2, "-n bounds a read from the beginning")
	last := tail("-n", "1")
	require.LessOrEqual(t, len(last), 2, "the last record of each of the two partitions")
	require.NotEmpty(t, last)

	// -follow prints what arrives after it started, until interrupted.
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"events", "tail", "-topic", topic, "-brokers", strings.Join(conn.Brokers, ","), "-n", "0", "-follow"}, pw, io.Discard)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	ev, err := events.NewEvent(events.JobQueued{JobID: "job-c", UserID: "u-ada", Scheduler: "local", SchedulerJobID: "8",
		FromStatus: events.JobStatusSubmitted, ToStatus: events.JobStatusQueued}, events.Meta{Producer: "job-orchestrator", UserID: "u-ada", Sequence: 1})
	require.NoError(t, err)
	msg, err := codec.Message(ev)
	require.NoError(t, err)
	msg.Topic = topic
	time.Sleep(2 * time.Second) // the follower has its partitions
	require.NoError(t, producer.Publish(context.Background(), msg))
	require.True(t, lines.Scan(), "a followed record")
	require.Contains(t, lines.Text(), ev.EventID)
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	require.NoError(t, <-done)

	var stdout, stderr bytes.Buffer
	require.ErrorAs(t, run(context.Background(), []string{"events", "tail"}, &stdout, &stderr), new(usageError))
	require.ErrorAs(t, run(context.Background(), []string{"events", "tail", "-topic", topic, "-n", "-1"}, &stdout, &stderr), new(usageError))
}
