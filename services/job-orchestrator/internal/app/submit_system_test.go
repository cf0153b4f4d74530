package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// The job.submitted event names the TACC system in the schema's enum, for
// every system of the catalogue.
func TestSubmitJobEventNamesTheSystem(t *testing.T) {
	t.Parallel()
	want := map[string]events.TaccSystem{
		domain.SystemFrontera: events.TaccSystemFrontera, domain.SystemStampede3: events.TaccSystemStampede3,
		domain.SystemLonestar6: events.TaccSystemLonestar6, domain.SystemVista: events.TaccSystemVista,
	}
	f := newFixture(t)
	systems := domain.DefaultCatalogue().Systems()
	require.Len(t, systems, len(want))
	for i, sys := range systems {
		p := sys.Partitions[0]
		s := spec()
		s.System, s.Partition = sys.Name, p.Name
		s.Resources = domain.Resources{Nodes: 1, CoresPerNode: 1, GPUsPerNode: min(1, p.GPUsPerNode), Walltime: time.Minute}
		j, _, err := f.app.SubmitJob(context.Background(), alice, app.SubmitInput{IdempotencyKey: fmt.Sprintf("sys-%d", i), Spec: s})
		require.NoError(t, err, sys.Name)
		var got events.TaccSystem
		for _, r := range f.repo.Events() {
			if p, ok := r.Event.Payload.(events.JobSubmitted); ok && p.JobID == j.ID {
				got = p.TaccSystem
			}
		}
		require.Equal(t, want[sys.Name], got, sys.Name)
	}
}
