package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// A watch on one replica sees the changes another replica makes at once:
// its re-read interval is an hour, so only the wake-up through RabbitMQ
// (adapters/watchfeed) can deliver them in time.
func TestWatchSeesAnotherReplicasChanges(t *testing.T) {
	t.Parallel()
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	dbURL := sqlstoretest.Databases(t)[1].URL(t) // one PostgreSQL database for both
	replica := func(reconcile string) string {
		vars := env(t, prefix, stateDir(t))
		vars["DATABASE_URL"] = dbURL
		vars["WATCH_POLL_INTERVAL"] = "1h"
		vars["RECONCILE_INTERVAL"] = reconcile
		return servicetest.RunBinary(t, "../../cmd/job-orchestrator", vars).GRPCAddr
	}
	// The watching replica never reconciles (its local scheduler must not
	// take the job); the working one runs and cancels it.
	watching := client(t, replica("1h"))
	working := client(t, replica("200ms"))
	user := relaytest.RandomName(t, "user-")
	ctx, cancel := context.WithTimeout(authed(t, user), 2*time.Minute)
	defer cancel()

	resp, err := working.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: relaytest.RandomName(t, "k-"),
		Spec: customSpec("#!/bin/sh\nsleep 60\n", 5*time.Minute)})
	require.NoError(t, err)
	id := resp.GetJob().GetJobId()

	stream, err := watching.WatchJob(ctx, &jobpb.WatchJobRequest{JobId: id, ReplayHistory: true})
	require.NoError(t, err)
	seen := make(chan jobpb.JobStatus, 16)
	go func() {
		defer close(seen)
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			seen <- ev.GetEvent().GetToStatus()
		}
	}()
	next := func(want jobpb.JobStatus, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case got, ok := <-seen:
				require.True(t, ok, "the watch ended before %s", want)
				if got == want {
					return
				}
			case <-deadline:
				require.FailNowf(t, "watch too slow", "no %s within %s", want, within)
			}
		}
	}
	next(jobpb.JobStatus_JOB_STATUS_RUNNING, 30*time.Second)
	_, err = working.CancelJob(ctx, &jobpb.CancelJobRequest{JobId: id, Reason: "seen elsewhere"})
	require.NoError(t, err)
	next(jobpb.JobStatus_JOB_STATUS_CANCELLED, 5*time.Second)
}
