package service_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// The running orchestrator serves, on /metrics, how long its commits,
// dispatch claims and reconciler passes held the database: a submitted
// job shows up as a commit of new jobs, its dispatch as a claim and a
// commit of transitions.
func TestMetricsEndpointShowsDatabaseHolds(t *testing.T) {
	t.Parallel()
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", env(t, prefix, stateDir(t)))
	ctx := authed(t, "alice")
	_, err := client(t, p.GRPCAddr).SubmitJob(ctx, &jobpb.SubmitJobRequest{
		IdempotencyKey: relaytest.RandomName(t, "k-"), Spec: customSpec("#!/bin/sh\nexit 0\n", time.Minute)})
	require.NoError(t, err)

	// count adds up the samples of histogram name's series, of those
	// labelled writes=<writes> when writes is set.
	count := func(families map[string]*dto.MetricFamily, name, writes string) uint64 {
		var n uint64
		for _, m := range families[name].GetMetric() {
			if writes == "" || slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == "writes" && l.GetValue() == writes
			}) {
				n += m.GetHistogram().GetSampleCount()
			}
		}
		return n
	}
	var last map[string]*dto.MetricFamily
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		families, err := scrape(p.HTTPAddr)
		if !assert.NoError(c, err) {
			return
		}
		commits := func(writes string) uint64 {
			return count(families, "fleet_orchestrator_store_commit_seconds", writes)
		}
		assert.GreaterOrEqual(c, commits("creates")+commits("mixed"), uint64(1), "a commit of the new job")
		assert.GreaterOrEqual(c, commits("transitions")+commits("mixed"), uint64(1), "a commit of its dispatch")
		assert.GreaterOrEqual(c, count(families, "fleet_orchestrator_reconciler_claim_seconds", ""), uint64(1), "a claim")
		assert.GreaterOrEqual(c, count(families, "fleet_orchestrator_reconciler_pass_seconds", ""), uint64(1), "a pass")
		last = families
	}, 30*time.Second, 100*time.Millisecond, "commit, claim and pass metrics on /metrics")
	for _, name := range []string{"fleet_orchestrator_store_commit_max_seconds", "fleet_orchestrator_reconciler_claim_max_seconds",
		"fleet_orchestrator_reconciler_pass_max_seconds"} {
		var longest float64
		for _, m := range last[name].GetMetric() {
			longest = max(longest, m.GetGauge().GetValue())
		}
		require.Positive(t, longest, name)
	}
}

func scrape(httpAddr string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET /metrics: %s: %s", resp.Status, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}
