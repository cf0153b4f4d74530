package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// requireForeignReaders decodes every record the run wrote, on the five
// event topics and their dead-letter topics, with two Avro implementations
// the fleet did not write: Apache Avro's Java reference (BinaryMessageDecoder
// with a SchemaStore) and fastavro. Each finds the writer schema by the
// fingerprint in the record's header, in the schema registry topic, and
// resolves it to the topic's newest schema. tools/interop/setup.sh installs
// both (INTEROP_JAVA_CLASSPATH, INTEROP_PYTHON).
func (f *fleet) requireForeignReaders(t *testing.T) {
	t.Helper()
	java, python, dir := os.Getenv("INTEROP_JAVA_CLASSPATH"), os.Getenv("INTEROP_PYTHON"), os.Getenv("INTEROP_DIR")
	if java == "" || python == "" || dir == "" {
		testinfra.Unavailable(t, "the Avro readers of tools/interop (eval \"$(tools/interop/setup.sh)\"); unset INTEROP_JAVA_CLASSPATH, INTEROP_PYTHON or INTEROP_DIR")
	}
	// The orchestrator and the auditor's alerts write to the run's prefixed
	// topics; notification.sent and system.health_check go to the shared
	// topics, of which only the records since the run started are read.
	var topics []string
	for _, name := range []string{events.TopicJobLifecycle, events.TopicJobMetrics, events.TopicAuditTrail, events.TopicSystemHealth} {
		topics = append(topics, f.prefix+name, events.DLQTopic(f.prefix+name))
	}
	for _, name := range []string{events.TopicNotifications, events.TopicSystemHealth} {
		topics = append(topics, name, events.DLQTopic(name))
	}
	since := strconv.FormatInt(f.started.UnixMilli(), 10)
	args := append([]string{f.stack.kafka, events.TopicSchemas, since}, topics...)

	readers := map[string][]string{
		"Apache Avro (Java)": append([]string{"java", "-cp", java, dir + "/java/AvroInterop.java", "decode"}, args...),
		"fastavro (Python)":  append([]string{python, dir + "/python/avro_interop.py", "decode"}, args...),
	}
	line := regexp.MustCompile(`^(\S+) records=(\d+) decoded=(\d+) failed=(\d+)$`)
	for name, argv := range readers {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		cancel()
		t.Logf("%s:\n%s", name, out)
		require.NoError(t, err, "%s failed to decode records of the run", name)
		decoded := map[string]int{}
		for _, l := range strings.Split(string(out), "\n") {
			if m := line.FindStringSubmatch(l); m != nil {
				n, _ := strconv.Atoi(m[3])
				failed, _ := strconv.Atoi(m[4])
				require.Zero(t, failed, "%s: %s", name, l)
				decoded[m[1]] = n
			}
		}
		require.Len(t, decoded, len(topics), "%s printed a line per topic", name)
		for _, topic := range []string{f.prefix + events.TopicJobLifecycle, f.prefix + events.TopicJobMetrics, f.prefix + events.TopicAuditTrail,
			events.TopicNotifications, events.TopicSystemHealth} {
			require.Positive(t, decoded[topic], "%s decoded no record of %s", name, topic)
		}
	}
}
