package service_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/service"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	load := func(env map[string]string) (service.Config, error) {
		return service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	c, err := load(map[string]string{"KAFKA_BROKERS": " k1:9092 ,k2:9092", "KAFKA_VERSION": "3.7.0",
		"METRICS_TOPICS": "job-lifecycle=copy, job-metrics", "METRICS_BATCH_WAIT": " 5ms "})
	require.NoError(t, err)
	require.Equal(t, []string{"k1:9092", "k2:9092"}, c.Kafka.Brokers)
	require.Equal(t, service.Name, c.Kafka.ClientID)
	require.Equal(t, "3.7.0", c.Kafka.Version)
	require.Equal(t, []string{"copy", "job-metrics"}, c.Topics)
	require.Equal(t, map[string]string{"copy": "job-lifecycle", "job-metrics": "job-metrics"}, c.Schemas)
	require.Equal(t, 5*time.Millisecond, c.BatchWait)
	require.Equal(t, 1000, c.BatchSize)

	_, err = load(map[string]string{"KAFKA_BROKERS": "k:9092", "METRICS_BATCH_SIZE": "big"})
	require.ErrorContains(t, err, `METRICS_BATCH_SIZE="big"`)
	_, err = load(map[string]string{"KAFKA_BROKERS": "k:9092", "METRICS_DEDUP_RETENTION": "forever"})
	require.ErrorContains(t, err, `METRICS_DEDUP_RETENTION="forever"`)
	_, err = load(map[string]string{})
	require.ErrorContains(t, err, "KAFKA_BROKERS")
}

// METRICS_TOPICS is parsed through its env tag: an entry without a schema
// or a topic, or a topic named twice, is refused with the variable named.
func TestLoadConfigTopicsParsedByTag(t *testing.T) {
	t.Parallel()
	load := func(topics string) (service.Config, error) {
		env := map[string]string{"KAFKA_BROKERS": "k:9092", "METRICS_TOPICS": topics}
		return service.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	for _, tt := range []struct{ in, want string }{
		{in: "job-lifecycle=", want: `METRICS_TOPICS="job-lifecycle=": entry "job-lifecycle=": want topic or schema=topic`},
		{in: "=copy", want: `METRICS_TOPICS="=copy": entry "=copy"`},
		{in: "job-lifecycle=copy,job-metrics=copy", want: `METRICS_TOPICS="job-lifecycle=copy,job-metrics=copy": topic copy named twice`},
		{in: " , ", want: "METRICS_TOPICS: no topic"},
		{in: "other", want: `METRICS_TOPICS: topic other: events of "other" are not aggregated`},
	} {
		_, err := load(tt.in)
		require.ErrorContains(t, err, tt.want, tt.in)
	}
	c, err := load(" job-metrics = m2 ")
	require.NoError(t, err)
	require.Equal(t, []string{"m2"}, c.Topics)
	require.Equal(t, map[string]string{"m2": "job-metrics"}, c.Schemas)
	c, err = load("  ")
	require.NoError(t, err)
	require.Equal(t, service.DefaultConfig().Topics, c.Topics, "blank: the default topics")
}
