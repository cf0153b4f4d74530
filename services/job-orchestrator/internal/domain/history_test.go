package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// Every error code the orchestrator records has its own sentence.
func TestEveryErrorCodeHasASentence(t *testing.T) {
	t.Parallel()
	for _, code := range []string{app.ErrorCodeNonZeroExit, app.ErrorCodeTimeout, app.ErrorCodeOutOfMemory, app.ErrorCodeNodeFail,
		app.ErrorCodeBootFail, app.ErrorCodeDeadline, app.ErrorCodePreempted, app.ErrorCodeSubmit, app.ErrorCodeLost} {
		s := domain.FailureReason(code)
		require.NotEqual(t, "The job failed ("+code+").", s, code)
		require.True(t, strings.HasPrefix(s, "The ") || strings.HasPrefix(s, "A "), s)
		require.True(t, strings.HasSuffix(s, "."), s)
		require.NotContains(t, s, code, "a sentence, not the code again")
	}
	require.Equal(t, "The job ran out of memory on a node: it used more than the memory it asked for; resubmit with more memory_mb.",
		domain.FailureReason(app.ErrorCodeOutOfMemory))
	require.Equal(t, "The job failed (SOMETHING_NEW).", domain.FailureReason("SOMETHING_NEW"))
	require.Equal(t, domain.FailureReason("TIMEOUT")+" Scheduler: TimeLimit", domain.FailureMessage("TIMEOUT", "TimeLimit"))
	require.Equal(t, domain.FailureReason("TIMEOUT"), domain.FailureMessage("TIMEOUT", ""))
}

// Transitions stored before actors were recorded get one from what the job
// says: its owner created it, its canceller cancelled it.
func TestTransitionActorOfOlderTransitions(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	j := domain.NewJob("j", "alice", domain.Spec{}, "k", "c", domain.Cost{}, now)
	require.Equal(t, "alice", j.History[0].Actor, "a new job records its submitter")
	_, err := j.MarkQueued(domain.SchedulerRef{Scheduler: "slurm", ID: "1"}, now)
	require.NoError(t, err)
	_, err = j.MarkRunning(now)
	require.NoError(t, err)
	_, err = j.Cancel("root", "maintenance", now, domain.DefaultRates())
	require.NoError(t, err)
	require.Equal(t, "root", j.History[3].Actor)

	legacy := j.Clone()
	for i := range legacy.History {
		legacy.History[i].Actor = ""
	}
	var got []string
	for _, tr := range legacy.History {
		got = append(got, legacy.TransitionActor(tr))
	}
	require.Equal(t, []string{"alice", domain.ActorOrchestrator, domain.ActorScheduler, "root"}, got)
	require.Equal(t, "root", j.TransitionActor(j.History[3]), "a recorded actor wins")
}

func TestValidTag(t *testing.T) {
	t.Parallel()
	for tag, ok := range map[string]bool{"sweep:s1": true, "lr=0.1": true, "": false, "a b": false, "tab\t": false,
		strings.Repeat("x", domain.MaxTagLen): true, strings.Repeat("x", domain.MaxTagLen+1): false, "\xff": false} {
		require.Equal(t, ok, domain.ValidTag(tag), "%q", tag)
	}
}
