package service_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/service"
)

// The operator's outbox command lists a parked event with its error and
// unparks it, on the service's own database.
func TestOutboxCommandListsAndRetriesParkedEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	state := t.TempDir()
	dbURL := "sqlite:" + filepath.Join(state, "orchestrator.db")
	db := sqlstoretest.OpenURL(t, dbURL)
	require.NoError(t, store.Migrate(ctx, db))
	codec, err := events.NewCodec()
	require.NoError(t, err)
	st, err := store.New(db, codec, store.Config{})
	require.NoError(t, err)
	j := domain.NewJob("job-1", "alice", domain.Spec{System: domain.SystemFrontera}, "k", "corr", domain.Cost{}, time.Now())
	ev, err := events.NewEvent(events.JobSubmitted{JobID: j.ID, UserID: j.Owner, JobName: "n", Agent: "AlphaCal", TaccSystem: events.TaccSystemFrontera,
		Priority: events.JobPriorityNormal, ToStatus: events.JobStatusSubmitted, ResourceRequest: events.ResourceRequest{Nodes: 1, CoresPerNode: 1, WalltimeSeconds: 60}},
		events.Meta{Producer: "job-orchestrator", UserID: j.Owner})
	require.NoError(t, err)
	require.NoError(t, st.Create(ctx, j, []app.OutboxRecord{{Event: ev}}))
	rows, err := st.ClaimOutbox(ctx, outbox.LegKafka, "relay", 1, time.Minute)
	require.NoError(t, err)
	_, err = st.CompleteOutbox(ctx, outbox.LegKafka, "relay", []outbox.Result{{ID: rows[0].ID, JobID: j.ID, Err: errors.New("kafka: message was too large"), Park: true}})
	require.NoError(t, err)

	env := map[string]string{"KAFKA_BROKERS": "127.0.0.1:9092", "STATE_DIRECTORY": state, "DATABASE_URL": dbURL,
		"PAGE_TOKEN_KEY": "page-token-key-of-the-tests-0123", "AUTH_HS256_SECRET": secret}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var out bytes.Buffer
	require.NoError(t, service.Outbox(ctx, lookup, []string{"list"}, &out))
	require.Contains(t, out.String(), ev.EventID)
	require.Contains(t, out.String(), "kafka")
	require.Contains(t, out.String(), "message was too large")
	require.Contains(t, out.String(), "1 parked")

	out.Reset()
	require.Error(t, service.Outbox(ctx, lookup, []string{"retry"}, &out), "retry names the events or -all")
	require.NoError(t, service.Outbox(ctx, lookup, []string{"retry", ev.EventID}, &out))
	require.Contains(t, out.String(), "1 unparked")
	parked, err := st.ListParked(ctx)
	require.NoError(t, err)
	require.Empty(t, parked)
	require.Error(t, service.Outbox(ctx, lookup, []string{"drop"}, &out))
}
