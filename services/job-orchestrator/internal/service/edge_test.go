package service_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// TestUnboundedStatusesOnTheRealStore: a ListJobs with 100,000 statuses
// reaches no database (it used to, and came back Unavailable with SQLite's
// own words); it is InvalidArgument, and the error names no driver.
func TestUnboundedStatusesOnTheRealStore(t *testing.T) {
	t.Parallel()
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", env(t, prefix, stateDir(t)))
	c := client(t, p.GRPCAddr)
	many := make([]jobpb.JobStatus, 100_000)
	for i := range many {
		many[i] = jobpb.JobStatus_JOB_STATUS_RUNNING
	}
	_, err := c.ListJobs(authed(t, "alice"), &jobpb.ListJobsRequest{Statuses: many})
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
	require.NotContains(t, st.Message(), "SQL")
	require.NotContains(t, st.Message(), "sqlite")
}
