package events_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
)

func lookupOf(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// The settings come from the lookup the service was given, not from the
// process environment.
func TestCatalogueConfigFromLookup(t *testing.T) {
	t.Setenv(events.EnvReplicationFactor, "7")
	cfg, err := events.CatalogueConfigFrom(lookupOf(nil))
	require.NoError(t, err)
	require.Equal(t, events.DefaultCatalogueConfig(), cfg)

	cfg, err = events.CatalogueConfigFrom(lookupOf(map[string]string{
		events.EnvReplicationFactor: " 3 ", events.EnvMinInsyncReplicas: "2",
	}))
	require.NoError(t, err)
	require.Equal(t, events.CatalogueConfig{ReplicationFactor: 3, MinInsyncReplicas: 2, AuditMinInsyncReplicas: 2}, cfg,
		"an unset audit setting follows min.insync.replicas")

	cfg, err = events.CatalogueConfigFrom(lookupOf(map[string]string{
		events.EnvReplicationFactor: "3", events.EnvMinInsyncReplicas: "1", events.EnvAuditMinInsyncReplicas: "3",
	}))
	require.NoError(t, err)
	require.Equal(t, int16(3), cfg.AuditMinInsyncReplicas)
}

func TestCatalogueConfigRefusesBadValues(t *testing.T) {
	for env, want := range map[string]string{
		events.EnvReplicationFactor:      `KAFKA_REPLICATION_FACTOR="three"`,
		events.EnvMinInsyncReplicas:      `KAFKA_MIN_INSYNC_REPLICAS=0: want a positive integer`,
		events.EnvAuditMinInsyncReplicas: `KAFKA_AUDIT_MIN_INSYNC_REPLICAS=-1: want a positive integer`,
	} {
		value := map[string]string{events.EnvReplicationFactor: "three", events.EnvMinInsyncReplicas: "0", events.EnvAuditMinInsyncReplicas: "-1"}[env]
		_, err := events.CatalogueConfigFrom(lookupOf(map[string]string{env: value}))
		require.ErrorContains(t, err, want, env)
	}
}
