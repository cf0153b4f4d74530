package slurm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// countingTransport counts the requests that reach slurmrestd.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

func (c *countingTransport) CloseIdleConnections() {
	if ci, ok := c.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// BenchmarkSlurmPollPass measures one reconciler pass over BENCH_SLURM_JOBS
// (default 1,000) active jobs on the stack's real slurmrestd: requests per
// pass and pass duration, polling each job with its own GET /job/{id}
// (per-job) against one GET /jobs?update_time=... (bulk; "bulk-unchanged"
// is a pass after one in which nothing changed). The jobs are submitted held
// (PENDING, using no CPU) and cancelled at the end.
//
//	go test -run '^$' -bench BenchmarkSlurmPollPass -benchtime 3x ./internal/adapters/scheduler/slurm/
func BenchmarkSlurmPollPass(b *testing.B) {
	baseURL, user, token := os.Getenv("SLURMRESTD_URL"), os.Getenv("SLURM_USER"), os.Getenv("SLURM_JWT_TOKEN")
	if baseURL == "" || user == "" || token == "" {
		testinfra.Unavailable(b, "SLURMRESTD_URL, SLURM_USER and SLURM_JWT_TOKEN are unset (tools/stack/stack.sh env)")
	}
	n := 1000
	if v := os.Getenv("BENCH_SLURM_JOBS"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err)
	}
	newCounted := func() (*slurm.Scheduler, *countingTransport) {
		counter := &countingTransport{}
		s, err := slurm.New(slurm.Config{BaseURL: baseURL, UserName: user, Token: telemetry.Secret(token),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
				counter.next = rt
				return counter
			}})
		require.NoError(b, err)
		_, err = s.APIVersion(context.Background())
		require.NoError(b, err)
		return s, counter
	}
	ctx := context.Background()
	name := fmt.Sprintf("bench%d", time.Now().UnixNano())
	defer func() {
		out, err := exec.Command(slurmTool("scancel"), "--name", name).CombinedOutput()
		if err != nil {
			b.Logf("scancel: %v: %s", err, out)
		}
	}()
	// The jobs are submitted held: they stay PENDING and use no CPU.
	refs := make([]app.SchedulerRef, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make(chan error, n)
	start := time.Now()
	hc := &http.Client{Timeout: 30 * time.Second}
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id, err := submitHeld(hc, baseURL, user, token, name)
			if err != nil {
				errs <- err
				return
			}
			refs[i] = app.SchedulerRef{ID: strconv.FormatInt(id, 10)}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	hc.CloseIdleConnections()
	b.Logf("submitted %d held jobs in %s", n, time.Since(start).Round(time.Millisecond))

	// measure runs pass b.N times; pass returns the requests it caused.
	measure := func(b *testing.B, pass func() int64) {
		var requests int64
		var elapsed time.Duration
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			requests += pass()
			elapsed += time.Since(t0)
		}
		b.ReportMetric(float64(requests)/float64(b.N), "requests/pass")
		b.ReportMetric(float64(elapsed.Microseconds())/1000/float64(b.N), "ms/pass")
		b.ReportMetric(float64(n), "jobs")
	}
	b.Run("per-job", func(b *testing.B) {
		s, counter := newCounted()
		defer s.Close()
		measure(b, func() int64 {
			before := counter.n.Load()
			for _, ref := range refs {
				st, err := s.Status(ctx, ref)
				require.NoError(b, err)
				require.Equal(b, app.PhaseQueued, st.Phase)
			}
			return counter.n.Load() - before
		})
	})
	b.Run("bulk", func(b *testing.B) {
		measure(b, func() int64 {
			b.StopTimer()
			s, counter := newCounted() // no job table yet: a full GET /jobs
			defer s.Close()
			before := counter.n.Load()
			b.StartTimer()
			sts, err := s.StatusMany(ctx, refs)
			require.NoError(b, err)
			require.Len(b, sts, n)
			return counter.n.Load() - before
		})
	})
	b.Run("bulk-unchanged", func(b *testing.B) {
		s, counter := newCounted()
		defer s.Close()
		_, err := s.StatusMany(ctx, refs)
		require.NoError(b, err)
		measure(b, func() int64 {
			before := counter.n.Load()
			sts, err := s.StatusMany(ctx, refs)
			require.NoError(b, err)
			require.Len(b, sts, n)
			return counter.n.Load() - before
		})
	})
}

// submitHeld submits a held job straight to slurmrestd.
func submitHeld(hc *http.Client, baseURL, user, token, name string) (int64, error) {
	body := `{"job":{"name":"` + name + `","hold":true,"partition":"normal","current_working_directory":"/tmp",` +
		`"environment":["PATH=/usr/bin:/bin"],"time_limit":{"set":true,"number":1},"script":"#!/bin/sh\ntrue\n"}}`
	req, err := http.NewRequest(http.MethodPost, baseURL+"/slurm/v0.0.42/job/submit", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-SLURM-USER-NAME", user)
	req.Header.Set("X-SLURM-USER-TOKEN", token)
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var out struct {
		JobID int64 `json:"job_id"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || out.JobID == 0 {
		return 0, fmt.Errorf("submit held job: HTTP %d: %v", res.StatusCode, err)
	}
	return out.JobID, nil
}
