package service_test

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// switchableProxy forwards TCP connections to target while it is up; down
// closes the listener and every open connection, as when a cluster's
// slurmrestd cannot be reached.
type switchableProxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
	wg           sync.WaitGroup
}

func newSwitchableProxy(t *testing.T, target string) *switchableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &switchableProxy{addr: ln.Addr().String(), target: target, conns: map[net.Conn]bool{}}
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *switchableProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", p.target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns[in], p.conns[out] = true, true
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
}

func (p *switchableProxy) down() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *switchableProxy) up(t *testing.T) {
	t.Helper()
	var ln net.Listener
	require.Eventually(t, func() bool {
		var err error
		ln, err = net.Listen("tcp", p.addr)
		return err == nil
	}, 10*time.Second, 100*time.Millisecond, "listen again on %s", p.addr)
	p.serve(ln)
}

// TestSlurmTwoClustersEndToEnd runs the orchestrator with a catalogue that
// gives frontera and vista their own slurmrestd (the stack's two Slurm
// 24.11 clusters; vista's reached through a proxy the test can cut). Jobs
// run on the cluster of their system; while vista cannot be reached its
// running job keeps its state and frontera keeps working; once vista is
// back its job is reconciled and a cancel reaches vista only.
func TestSlurmTwoClustersEndToEnd(t *testing.T) {
	// Not parallel: it runs before the tests that fill a cluster's node.
	s := requireSlurm(t)
	for _, v := range []string{"SLURMRESTD_URL_FRONTERA", "SLURMRESTD_URL_VISTA", "SLURM_JWT_TOKEN_FRONTERA",
		"SLURM_JWT_TOKEN_VISTA", "SLURM_BIN_DIR_FRONTERA", "SLURM_BIN_DIR_VISTA"} {
		if os.Getenv(v) == "" {
			testinfra.Unavailable(t, v+" is unset (tools/stack/stack.sh env runs frontera and vista)")
		}
	}
	proxy := newSwitchableProxy(t, strings.TrimPrefix(os.Getenv("SLURMRESTD_URL_VISTA"), "http://"))
	part := []any{map[string]any{"name": slurmPartition, "max_nodes": 1, "max_walltime": "2h",
		"cores_per_node": 1, "gpus_per_node": 0, "memory_mb": 1024}}
	cat := map[string]any{"systems": []any{
		map[string]any{"name": "frontera", "partitions": part, "slurm": map[string]any{
			"url": os.Getenv("SLURMRESTD_URL_FRONTERA"), "user": s.user, "token_env": "SLURM_JWT_TOKEN_FRONTERA"}},
		map[string]any{"name": "vista", "partitions": part, "slurm": map[string]any{
			"url": "http://" + proxy.addr, "user": s.user, "token_env": "SLURM_JWT_TOKEN_VISTA"}},
	}}
	b, err := json.Marshal(cat)
	require.NoError(t, err)
	catFile := filepath.Join(t.TempDir(), "catalogue.json")
	require.NoError(t, os.WriteFile(catFile, b, 0o600))

	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	vars := env(t, prefix, t.TempDir())
	for k, v := range s.orchestratorEnv(t) {
		vars[k] = v
	}
	vars["SYSTEM_CATALOGUE_FILE"] = catFile
	vars["SLURM_JWT_TOKEN_FRONTERA"] = os.Getenv("SLURM_JWT_TOKEN_FRONTERA")
	vars["SLURM_JWT_TOKEN_VISTA"] = os.Getenv("SLURM_JWT_TOKEN_VISTA")
	p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", vars)
	c := client(t, p.GRPCAddr)
	user := relaytest.RandomName(t, "user-")
	ctx := authed(t, user)
	h := &e2eHarness{b: backend{wait: 3 * time.Minute}, c: c, user: user}

	submit := func(system jobpb.TaccSystem, script string) string {
		spec := customSpecOn(slurmPartition, script, 10*time.Minute)
		spec.TaccSystem = system
		resp, err := c.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: relaytest.RandomName(t, "k-"), Spec: spec})
		require.NoError(t, err)
		return resp.GetJob().GetJobId()
	}
	squeueOn := func(cluster, schedulerID string) string {
		name, id, ok := strings.Cut(schedulerID, ":")
		require.True(t, ok, "scheduler id %q names its cluster", schedulerID)
		require.Equal(t, cluster, name)
		out, err := exec.Command(filepath.Join(os.Getenv("SLURM_BIN_DIR_"+strings.ToUpper(cluster)), "squeue"),
			"-h", "--states=all", "-j", id, "-o", "%T").CombinedOutput()
		require.NoError(t, err, "%s squeue: %s", cluster, out)
		return strings.TrimSpace(string(out))
	}
	running := func(j *jobpb.Job) bool { return j.GetStatus() == jobpb.JobStatus_JOB_STATUS_RUNNING }
	completed := func(j *jobpb.Job) bool { return j.GetStatus() == jobpb.JobStatus_JOB_STATUS_COMPLETED }

	onVista := submit(jobpb.TaccSystem_TACC_SYSTEM_VISTA, "#!/bin/sh\nsleep 300\n")
	vjob := h.await(t, onVista, "RUNNING", running)
	require.Equal(t, "RUNNING", squeueOn("vista", vjob.GetSchedulerJobId()), "vista's job runs on vista")
	first := h.await(t, submit(jobpb.TaccSystem_TACC_SYSTEM_FRONTERA, "#!/bin/sh\nsleep 1\n"), "COMPLETED", completed)
	require.Equal(t, "COMPLETED", squeueOn("frontera", first.GetSchedulerJobId()), "frontera's job ran on frontera")

	// vista cannot be reached: frontera keeps working, vista's job keeps its state.
	proxy.down()
	during := h.await(t, submit(jobpb.TaccSystem_TACC_SYSTEM_FRONTERA, "#!/bin/sh\nsleep 1\n"), "COMPLETED", completed)
	require.Equal(t, "COMPLETED", squeueOn("frontera", during.GetSchedulerJobId()))
	require.Eventually(t, func() bool { return strings.Contains(p.Output(), "will retry") }, time.Minute, 250*time.Millisecond,
		"the reconciler retries vista's job")
	j, err := c.GetJob(ctx, &jobpb.GetJobRequest{JobId: onVista})
	require.NoError(t, err)
	require.Equal(t, jobpb.JobStatus_JOB_STATUS_RUNNING, j.GetJob().GetStatus(), "kept while vista is unreachable")
	queuedOnVista := submit(jobpb.TaccSystem_TACC_SYSTEM_VISTA, "#!/bin/sh\nsleep 1\n")

	// vista is back: the job submitted meanwhile runs there, and a cancel reaches vista only.
	proxy.up(t)
	late := h.await(t, queuedOnVista, "COMPLETED", completed)
	require.Equal(t, "COMPLETED", squeueOn("vista", late.GetSchedulerJobId()))
	_, err = c.CancelJob(ctx, &jobpb.CancelJobRequest{JobId: onVista})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return squeueOn("vista", vjob.GetSchedulerJobId()) == "CANCELLED" },
		time.Minute, 250*time.Millisecond, "the cancel reached vista")
	require.Equal(t, "COMPLETED", squeueOn("frontera", first.GetSchedulerJobId()), "frontera untouched")
}
