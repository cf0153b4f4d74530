package service_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/service"
)

func lookupOf(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, c service.Config)
		wantErr string
	}{
		{name: "defaults", env: map[string]string{}, check: func(t *testing.T, c service.Config) {
			require.Equal(t, 5*time.Second, c.Interval)
			require.Equal(t, 2, c.RaiseAfter)
			require.Equal(t, 2, c.ResolveAfter)
			require.Equal(t, "fleet-canary", c.CanaryTopic)
			require.Empty(t, c.Kafka.Brokers)
			require.True(t, c.JobsEnabled)
			require.Equal(t, "job-lifecycle", c.JobsTopic)
			require.Contains(t, c.JobsGroup, "health-monitor-jobs-")
			require.Equal(t, time.Hour, c.JobFlow.Window)
			require.Equal(t, 30*time.Second, c.StallAfter)
		}},
		{name: "job flow", env: map[string]string{
			"HEALTH_JOBS_TOPIC": "dev-job-lifecycle", "HEALTH_JOBS_GROUP": "hm-1", "HEALTH_JOBS_WINDOW": "15m",
			"HEALTH_JOBS_FAILURE_RATIO": "0.25", "HEALTH_JOBS_MIN_FINISHED": "3",
		}, check: func(t *testing.T, c service.Config) {
			require.Equal(t, "dev-job-lifecycle", c.JobsTopic)
			require.Equal(t, "hm-1", c.JobsGroup)
			require.Equal(t, 15*time.Minute, c.JobFlow.Window)
			require.InDelta(t, 0.25, c.JobFlow.FailureRatio, 1e-9)
			require.Equal(t, 3, c.JobFlow.MinFinished)
		}},
		{name: "job flow off", env: map[string]string{"HEALTH_JOBS_ENABLED": "false", "HEALTH_JOBS_FAILURE_RATIO": "0"},
			check: func(t *testing.T, c service.Config) { require.False(t, c.JobsEnabled) }},
		{name: "failure ratio above 1", env: map[string]string{"HEALTH_JOBS_FAILURE_RATIO": "1.5"}, wantErr: "HEALTH_JOBS_FAILURE_RATIO=1.5: must be above 0 and at most 1"},
		{name: "failure ratio not a number", env: map[string]string{"HEALTH_JOBS_FAILURE_RATIO": "half"}, wantErr: "HEALTH_JOBS_FAILURE_RATIO"},
		{name: "zero window", env: map[string]string{"HEALTH_JOBS_WINDOW": "0s"}, wantErr: "HEALTH_JOBS_WINDOW=0s"},
		{name: "bad enabled", env: map[string]string{"HEALTH_JOBS_ENABLED": "maybe"}, wantErr: "HEALTH_JOBS_ENABLED"},
		{name: "everything set", env: map[string]string{
			"HEALTH_INTERVAL": "2s", "HEALTH_PROBE_TIMEOUT": "1500ms", "HEALTH_CANARY_TIMEOUT": "1s",
			"HEALTH_SERVICES":      "orch=127.0.0.1:50051, metrics=localhost:50052",
			"DATABASE_URLS":        "postgres://u:p@h/db?sslmode=disable,audit=sqlite:/tmp/a.db",
			"HEALTH_LAG_THRESHOLD": "50", "HEALTH_GROUP_PREFIX": "fleet-", "KAFKA_BROKERS": "a:9092, b:9092",
			"HEALTH_RAISE_AFTER": "3", "HEALTH_RESOLVE_AFTER": "4", "HEALTH_PUBLISH_EVERY": "1",
		}, check: func(t *testing.T, c service.Config) {
			require.Equal(t, 2*time.Second, c.Interval)
			require.Equal(t, []service.Target{{Name: "orch", Addr: "127.0.0.1:50051"}, {Name: "metrics", Addr: "localhost:50052"}}, c.Services)
			require.Equal(t, []service.Target{{Name: "db1", Addr: "postgres://u:p@h/db?sslmode=disable"}, {Name: "audit", Addr: "sqlite:/tmp/a.db"}}, c.Databases)
			require.Equal(t, int64(50), c.LagThreshold)
			require.Equal(t, []string{"a:9092", "b:9092"}, c.Kafka.Brokers)
			require.Equal(t, 3, c.RaiseAfter)
			require.Equal(t, 4, c.ResolveAfter)
			require.Equal(t, 1, c.PublishEvery)
		}},
		{name: "bad duration", env: map[string]string{"HEALTH_INTERVAL": "soon"}, wantErr: "HEALTH_INTERVAL"},
		{name: "service without a name", env: map[string]string{"HEALTH_SERVICES": "127.0.0.1:1"}, wantErr: "HEALTH_SERVICES"},
		{name: "service without a port", env: map[string]string{"HEALTH_SERVICES": "orch=localhost"}, wantErr: "HEALTH_SERVICES"},
		{name: "duplicate names", env: map[string]string{"HEALTH_SERVICES": "a=h:1,a=h:2"}, wantErr: "twice"},
		{name: "probe timeout above interval", env: map[string]string{"HEALTH_INTERVAL": "1s", "HEALTH_PROBE_TIMEOUT": "2s"}, wantErr: "HEALTH_PROBE_TIMEOUT"},
		{name: "canary timeout not below probe timeout", env: map[string]string{"HEALTH_CANARY_TIMEOUT": "4s"}, wantErr: "HEALTH_CANARY_TIMEOUT"},
		{name: "canary key in the job key space", env: map[string]string{"HEALTH_CANARY_ROUTING_KEY": "job.x"}, wantErr: "HEALTH_CANARY_ROUTING_KEY"},
		{name: "zero raise after", env: map[string]string{"HEALTH_RAISE_AFTER": "0"}, wantErr: "HEALTH_RAISE_AFTER"},
		{name: "stall after", env: map[string]string{"HEALTH_STALL_AFTER": "45s"},
			check: func(t *testing.T, c service.Config) { require.Equal(t, 45*time.Second, c.StallAfter) }},
		{name: "stall check off", env: map[string]string{"HEALTH_STALL_AFTER": "0s"},
			check: func(t *testing.T, c service.Config) { require.Zero(t, c.StallAfter) }},
		{name: "negative stall after", env: map[string]string{"HEALTH_STALL_AFTER": "-1s"}, wantErr: "HEALTH_STALL_AFTER=-1s: must not be negative"},
		{name: "stall after not a duration", env: map[string]string{"HEALTH_STALL_AFTER": "later"}, wantErr: "HEALTH_STALL_AFTER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := service.LoadConfig(lookupOf(tt.env))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

// HEALTH_SERVICES and DATABASE_URLS are parsed through their env tags: a
// bad list is refused with its variable named, a database URL's password
// is not repeated in the error.
func TestLoadConfigTargetsParsedByTags(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env         map[string]string
		want, notIn string
	}{
		{env: map[string]string{"HEALTH_SERVICES": "127.0.0.1:1"}, want: `HEALTH_SERVICES="127.0.0.1:1": entry "127.0.0.1:1": want name=host:port`},
		{env: map[string]string{"HEALTH_SERVICES": "a=h:1, =h:2"}, want: `HEALTH_SERVICES="a=h:1, =h:2": entry "=h:2": empty name or address`},
		{env: map[string]string{"DATABASE_URLS": "a=postgres://u:s3cret@h/db,a=sqlite:/x.db"}, want: "DATABASE_URLS: entry 2: name a used twice", notIn: "s3cret"},
		// The entry in error holds the password: the error names its position only.
		{env: map[string]string{"DATABASE_URLS": "a=sqlite:/x.db,a=postgres://u:s3cret@h/db"}, want: "DATABASE_URLS: entry 2: name a used twice", notIn: "s3cret"},
		{env: map[string]string{"DATABASE_URLS": "=postgres://u:s3cret@h/db"}, want: "DATABASE_URLS: entry 1: empty name or address", notIn: "s3cret"},
	} {
		_, err := service.LoadConfig(lookupOf(tt.env))
		require.ErrorContains(t, err, tt.want)
		if tt.notIn != "" {
			require.NotContains(t, err.Error(), tt.notIn)
		}
	}
	c, err := service.LoadConfig(lookupOf(map[string]string{"HEALTH_SERVICES": " , ", "DATABASE_URLS": "  "}))
	require.NoError(t, err)
	require.Empty(t, c.Services)
	require.Empty(t, c.Databases)
}

// The Kafka connection is the shared block: client id, version and TLS
// come from the lookup the service is given, like the other services'.
func TestLoadConfigKafkaConnection(t *testing.T) {
	t.Parallel()
	c, err := service.LoadConfig(lookupOf(map[string]string{"KAFKA_BROKERS": "k1:9092", "KAFKA_VERSION": "3.7.0",
		"KAFKA_TLS_CA_FILE": "/etc/kafka/ca.pem", "KAFKA_TLS_SERVER_NAME": "kafka.internal", "AMQP_URL": "amqp://guest:s3cret@r:5672/"}))
	require.NoError(t, err)
	require.Equal(t, []string{"k1:9092"}, c.Kafka.Brokers)
	require.Equal(t, service.Name, c.Kafka.ClientID)
	require.Equal(t, "3.7.0", c.Kafka.Version)
	require.Equal(t, "/etc/kafka/ca.pem", c.Kafka.TLS.CAFile)
	require.Equal(t, "kafka.internal", c.Kafka.TLS.ServerName)
	require.Equal(t, "amqp://guest:s3cret@r:5672/", c.AMQPURL)

	c, err = service.LoadConfig(lookupOf(map[string]string{"KAFKA_BROKERS": "k1:9092", "KAFKA_CLIENT_ID": "hm-7"}))
	require.NoError(t, err)
	require.Equal(t, "hm-7", c.Kafka.ClientID)

	_, err = service.LoadConfig(lookupOf(map[string]string{"KAFKA_BROKERS": "k1:9092", "KAFKA_VERSION": "ancient"}))
	require.ErrorContains(t, err, "KAFKA_BROKERS: kafka: version \"ancient\"")
	_, err = service.LoadConfig(lookupOf(map[string]string{"KAFKA_BROKERS": "k1:9092", "KAFKA_TLS_CERT_FILE": "/c.pem"}))
	require.ErrorContains(t, err, "cert file and key file must be set together")
}

// The Kafka probes connect with the configured TLS: a CA file that cannot
// be read is what the cluster probe reports, before any dial.
func TestKafkaProbeUsesConfiguredTLS(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing-ca.pem")
	cfg, err := service.LoadConfig(lookupOf(map[string]string{"KAFKA_BROKERS": "127.0.0.1:1", "KAFKA_TLS_CA_FILE": missing,
		"HEALTH_CANARY_ENABLED": "false", "HEALTH_JOBS_ENABLED": "false"}))
	require.NoError(t, err)
	hm, _ := newHealthMonitor(t, cfg)
	status := hm.Monitor.RunCycle(context.Background())
	var cluster *domain.Component
	for i, c := range status.Components {
		if c.ID == "kafka:cluster" {
			cluster = &status.Components[i]
		}
	}
	require.NotNil(t, cluster, "components: %+v", status.Components)
	require.Contains(t, cluster.Detail, "kafka tls: read ca file")
	require.Contains(t, cluster.Detail, missing)
}

// The topic catalogue's cluster settings come from the lookup: the topics
// probe expects what the orchestrator creates.
func TestLoadConfigTopicsFromLookup(t *testing.T) {
	t.Parallel()
	c, err := service.LoadConfig(lookupOf(nil))
	require.NoError(t, err)
	require.Equal(t, events.DefaultCatalogueConfig(), c.Topics)
	c, err = service.LoadConfig(lookupOf(map[string]string{"KAFKA_REPLICATION_FACTOR": "3", "KAFKA_MIN_INSYNC_REPLICAS": "2", "KAFKA_AUDIT_MIN_INSYNC_REPLICAS": "3"}))
	require.NoError(t, err)
	require.Equal(t, events.CatalogueConfig{ReplicationFactor: 3, MinInsyncReplicas: 2, AuditMinInsyncReplicas: 3}, c.Topics)
	_, err = service.LoadConfig(lookupOf(map[string]string{"KAFKA_REPLICATION_FACTOR": "many"}))
	require.ErrorContains(t, err, "KAFKA_REPLICATION_FACTOR=")
}
