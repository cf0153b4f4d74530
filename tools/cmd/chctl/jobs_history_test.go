package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var jobIDsRe = regexp.MustCompile(`(?m)^job ([0-9a-f-]{36}) `)

// TestJobsSweepHistoryResubmitAgainstOrchestrator submits the example sweep
// to the real orchestrator twice (the second run submits nothing), follows
// it by its tag, reads a failed job's history and resubmits it with more
// walltime.
func TestJobsSweepHistoryResubmitAgainstOrchestrator(t *testing.T) {
	t.Parallel()
	addr := startOrchestrator(t)
	tok, err := chctl(t, "token", "-secret", testSecret, "-user", "sweep-user")
	require.NoError(t, err)
	conn := []string{"-addr", addr, "-token", strings.TrimSpace(tok)}
	with := func(args ...string) []string { return append(args, conn...) }
	const sweep = "../../../docs/examples/sweep.yaml"

	out, err := chctl(t, with("jobs", "submit", "-f", sweep)...)
	require.NoError(t, err, out)
	first := jobIDsRe.FindAllStringSubmatch(out, -1)
	require.Len(t, first, 6, out)
	require.Equal(t, 6, strings.Count(out, " submitted  train-lr"), out)
	require.Contains(t, out, "sweep lr-seed (tag sweep:lr-seed): 6 jobs, 6 submitted, 0 replayed, 0 refused")

	again, err := chctl(t, with("jobs", "submit", "-f", sweep)...)
	require.NoError(t, err, again)
	second := jobIDsRe.FindAllStringSubmatch(again, -1)
	require.Equal(t, first, second, "the same jobs")
	require.Contains(t, again, "6 jobs, 0 submitted, 6 replayed, 0 refused")

	var list string
	require.Eventually(t, func() bool {
		list, err = chctl(t, with("jobs", "list", "-tag", "sweep:lr-seed")...)
		return err == nil && strings.Contains(list, "6 jobs: 0 submitted, 0 queued, 0 running, 6 completed, 0 failed, 0 cancelled")
	}, 90*time.Second, 250*time.Millisecond, "the sweep completes: %s", list)
	for _, m := range first {
		require.Contains(t, list, m[1])
	}
	none, err := chctl(t, with("jobs", "list", "-tag", "sweep:lr-seed", "-tag", "no-such-tag")...)
	require.NoError(t, err, none)
	require.Contains(t, none, "0 jobs: 0 submitted")
	_, err = chctl(t, with("jobs", "list", "-tag", "has space")...)
	require.ErrorContains(t, err, "InvalidArgument")
	require.ErrorContains(t, err, "tags[0]")

	// A failing job: its history tells why, and it is resubmitted with more walltime.
	dir := t.TempDir()
	failing := filepath.Join(dir, "fail.yaml")
	require.NoError(t, os.WriteFile(failing, []byte("name: fails\nagent: custom\nsystem: frontera\npartition: development\n"+
		"command: \"false\"\nresources: {walltime: 5m}\nidempotency_key: fails-1\n"), 0o600))
	out, err = chctl(t, with("jobs", "submit", "-f", failing)...)
	require.NoError(t, err, out)
	id := jobIDsRe.FindStringSubmatch(out)[1]
	var hist string
	require.Eventually(t, func() bool {
		hist, err = chctl(t, with("jobs", "history", id)...)
		return err == nil && strings.Contains(hist, "NON_ZERO_EXIT")
	}, 60*time.Second, 250*time.Millisecond, hist)
	require.Regexp(t, `(?m)^SEQ\s+TIME\s+FROM\s+TO\s+ACTOR\s+SCHEDULER CODE\s+ERROR CODE\s+REASON$`, hist)
	require.Regexp(t, `(?m)^1\s+\S+ \S+\s+-\s+SUBMITTED\s+sweep-user\s+-\s+-\s+-$`, hist)
	require.Regexp(t, `(?m)^2\s+\S+ \S+\s+SUBMITTED\s+QUEUED\s+orchestrator\s+-\s+-\s+accepted by local`, hist)
	require.Regexp(t, `(?m)^3\s+\S+ \S+\s+QUEUED\s+RUNNING\s+scheduler\s+(RUNNING|-)\s+-`, hist)
	require.Regexp(t, `(?m)^4\s+\S+ \S+\s+RUNNING\s+FAILED\s+scheduler\s+FAILED\s+NON_ZERO_EXIT\s+The job's script or command ended with an error`, hist)

	res, err := chctl(t, with("jobs", "resubmit", id, "-walltime", "2h", "-key", "more-time")...)
	require.NoError(t, err, res)
	require.Contains(t, res, "resubmitted from "+id)
	require.Contains(t, res, "changed        resources.walltime")
	nid := jobIDsRe.FindStringSubmatch(res)[1]
	require.NotEqual(t, id, nid)
	res2, err := chctl(t, with("jobs", "resubmit", id, "-walltime", "2h", "-key", "more-time")...)
	require.NoError(t, err, res2)
	require.Contains(t, res2, "job "+nid)
	require.Contains(t, res2, "the existing job")
	got, err := chctl(t, with("jobs", "get", nid)...)
	require.NoError(t, err, got)
	require.Regexp(t, `resources\s+1 node\(s\) x 1 cores, 0 GPUs, walltime 2h0m0s`, got)
	require.Regexp(t, `resubmitted from\s+`+id, got)
	require.Regexp(t, `name\s+fails`, got)

	_, err = chctl(t, with("jobs", "resubmit", id, "-partition", "no-such-partition")...)
	require.ErrorContains(t, err, "InvalidArgument")
	require.ErrorContains(t, err, "overrides.partition")
	other, err := chctl(t, "token", "-secret", testSecret, "-user", "someone-else")
	require.NoError(t, err)
	_, err = chctl(t, "jobs", "resubmit", id, "-addr", addr, "-token", strings.TrimSpace(other))
	require.ErrorContains(t, err, "NotFound")
	_, err = chctl(t, "jobs", "history", id, "-addr", addr, "-token", strings.TrimSpace(other))
	require.ErrorContains(t, err, "NotFound")
}
