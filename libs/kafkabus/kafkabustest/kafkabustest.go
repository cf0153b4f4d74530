// Package kafkabustest gives integration tests Kafka topics of their own on
// the real broker: uniquely named, created before the test and deleted when
// it ends. Only tests import it.
//
//	topic := kafkabustest.Name("test-orders")
//	kafkabustest.TopicsWithDLQ(t, testinfra.KafkaBrokers(t), 3, topic)
package kafkabustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
)

// timeout bounds the creation and, separately, the deletion of a test's topics.
const timeout = time.Minute

// Name returns prefix, a dash and eight random hex digits: a name no other
// test uses, for a topic or a consumer group.
func Name(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails
	return prefix + "-" + hex.EncodeToString(b)
}

// Topics creates the named topics, each with the given number of partitions,
// and deletes them when t ends. It fails t unless every topic is new; one that
// existed before is left alone.
func Topics(t testing.TB, brokers []string, partitions int32, names ...string) {
	t.Helper()
	specs := make([]events.TopicSpec, 0, len(names))
	for _, name := range names {
		specs = append(specs, spec(name, partitions))
	}
	create(t, brokers, specs)
}

// TopicsWithDLQ is Topics plus the dead-letter topic of each name
// (events.DLQTopic), with one partition.
func TopicsWithDLQ(t testing.TB, brokers []string, partitions int32, names ...string) {
	t.Helper()
	specs := make([]events.TopicSpec, 0, 2*len(names))
	for _, name := range names {
		specs = append(specs, spec(name, partitions), spec(events.DLQTopic(name), 1))
	}
	create(t, brokers, specs)
}

// spec is a topic for one test: one replica, kept for an hour.
func spec(name string, partitions int32) events.TopicSpec {
	return events.TopicSpec{
		Name: name, Key: events.KeyNone, Partitions: partitions, Retention: time.Hour,
		Compression: "zstd", ReplicationFactor: 1, MinInsyncReplicas: 1,
	}
}

// create creates the topics of specs and deletes, when t ends, those it
// created: never a topic that existed before.
func create(t testing.TB, brokers []string, specs []events.TopicSpec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	report, err := kafkabus.EnsureTopics(ctx, brokers, specs, slog.New(slog.DiscardHandler))
	if created := report.Created; len(created) > 0 {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			require.NoError(t, kafkabus.DeleteTopics(ctx, kafkabus.Connection{Brokers: brokers}, created...))
		})
	}
	require.NoError(t, err)
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	require.ElementsMatch(t, names, report.Created, "a topic already existed")
}

// Prefix returns base followed by ten random hex digits and a dash: a topic
// prefix for a test whose service under test creates its own topics (for
// example through ORCHESTRATOR_TOPIC_PREFIX). When t ends, every topic whose
// name starts with the prefix is deleted, so that a broker that runs many
// test suites does not accumulate their partitions. Register it before the
// service starts: cleanups run last in, first out, so the topics go after the
// service has stopped.
func Prefix(t testing.TB, brokers []string, base string) string {
	t.Helper()
	b := make([]byte, 5)
	_, _ = rand.Read(b) // never fails
	prefix := base + hex.EncodeToString(b) + "-"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		conn := kafkabus.Connection{Brokers: brokers}
		names, err := kafkabus.ListTopics(ctx, conn)
		if err != nil {
			t.Errorf("list the topics under %s: %v", prefix, err)
			return
		}
		var mine []string
		for _, name := range names {
			if strings.HasPrefix(name, prefix) {
				mine = append(mine, name)
			}
		}
		if err := kafkabus.DeleteTopics(ctx, conn, mine...); err != nil {
			t.Errorf("delete the topics under %s: %v", prefix, err)
		}
	})
	return prefix
}
