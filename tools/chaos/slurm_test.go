//go:build chaos

package chaos_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// stackScript is the local stack's script, relative to this package.
const stackScript = "../stack/stack.sh"

// slurmPartition is the partition of the stack's Slurm clusters.
const slurmPartition = "normal"

// ownSlurm is a Slurm 24.11 cluster of the run's own, started by
// `stack.sh slurm-cluster NAME` in the stack's Slurm root (its own
// slurmctld, slurmd and slurmrestd, ports, state and logs; munged and
// slurmdbd shared), so that restarting its slurmctld never touches the
// shared clusters frontera and vista.
type ownSlurm struct {
	name, url, user, token, binDir, pidfile string
}

// slurmClusterName is the cluster the run starts (CHAOS_SLURM_CLUSTER,
// default chaos).
func slurmClusterName() string {
	if v := os.Getenv("CHAOS_SLURM_CLUSTER"); v != "" {
		return v
	}
	return "chaos"
}

// startSlurm starts (or finds running) the run's Slurm cluster; nil and the
// reason when this machine cannot.
func startSlurm(t *testing.T) (*ownSlurm, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, "not root (the Slurm daemons run with chroot)"
	}
	s := &ownSlurm{name: slurmClusterName(), user: os.Getenv("SLURM_USER")}
	if s.user == "" {
		s.user = "fleetjob"
	}
	vars, err := s.up()
	if err != nil {
		return nil, err.Error()
	}
	suffix := strings.ToUpper(s.name)
	s.url, s.token = vars["SLURMRESTD_URL_"+suffix], vars["SLURM_JWT_TOKEN_"+suffix]
	s.binDir, s.pidfile = vars["SLURM_BIN_DIR_"+suffix], vars["SLURMCTLD_PIDFILE_"+suffix]
	if s.url == "" || s.token == "" || s.binDir == "" || s.pidfile == "" {
		return nil, fmt.Sprintf("stack.sh slurm-cluster %s printed no URL, token, tools or pidfile: %v", s.name, keys(vars))
	}
	return s, ""
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// up runs `stack.sh slurm-cluster NAME`: it starts whatever of the cluster
// does not run and returns once slurmctld answers, the node serves and
// slurmrestd answers; it returns the exports the script printed.
func (s *ownSlurm) up() (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, stackScript, "slurm-cluster", s.name)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("stack.sh slurm-cluster %s: %v: %s", s.name, err, lastLines(stderr.String(), 5))
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = strings.Trim(v, "'")
		}
	}
	return vars, nil
}

// tool is the path of one of the cluster's Slurm commands (a wrapper that
// runs it in the Slurm root against this cluster).
func (s *ownSlurm) tool(name string) string { return filepath.Join(s.binDir, name) }

// catalogue writes the Slurm orchestrator's system catalogue: frontera
// with the cluster's partition, one core per node.
func (s *ownSlurm) catalogue(t *testing.T, dir string) string {
	t.Helper()
	cat := map[string]any{"systems": []any{map[string]any{
		"name": "frontera",
		"partitions": []any{map[string]any{
			"name": slurmPartition, "max_nodes": 1, "max_walltime": "2h",
			"cores_per_node": 1, "gpus_per_node": 0, "memory_mb": 1024,
		}},
	}}}
	b, err := json.Marshal(cat)
	require.NoError(t, err)
	path := filepath.Join(dir, "catalogue-slurm.json")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path
}

// stopCtld sends sig to the cluster's slurmctld (the pid its pidfile
// records, when that process still is this cluster's slurmctld) and waits
// until it is gone.
func (s *ownSlurm) stopCtld(sig syscall.Signal) error {
	b, err := os.ReadFile(s.pidfile)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", s.pidfile, err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Errorf("slurmctld of %s (pid %d) is not running: %w", s.name, pid, err)
	}
	if line := strings.ReplaceAll(string(cmdline), "\x00", " "); !strings.Contains(line, "slurmctld") ||
		!strings.Contains(line, "/etc/slurm/"+s.name+"/") {
		return fmt.Errorf("pid %d is not slurmctld of %s: %s", pid, s.name, line)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return err
	}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		// A dead child of init is reaped at once; its /proc entry goes.
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(st), ") Z ") {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("slurmctld of %s (pid %d) still runs 90 s after %s", s.name, pid, sig)
}

// queue counts the cluster's jobs by state (squeue: PENDING, RUNNING, ...).
func (s *ownSlurm) queue() (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.tool("squeue"), "-h", "-u", s.user, "-o", "%T").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("squeue: %v: %s", err, out)
	}
	n := map[string]int{}
	for _, f := range strings.Fields(string(out)) {
		n[f]++
	}
	return n, nil
}

// acctRecord is one job of sacct (slurmdbd's record).
type acctRecord struct {
	id, name, state, exit string
}

// terminal reports whether a job in Slurm state st has ended.
func terminal(st string) bool {
	switch st {
	case "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE":
		return true
	}
	return false
}

// accounting returns sacct's records of the job ids (every record of an id
// Slurm gave twice), each state's first word ("CANCELLED by 0" is
// CANCELLED).
func (s *ownSlurm) accounting(ids []string) ([]acctRecord, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.tool("sacct"), "-X", "-n", "-P", "-j", strings.Join(ids, ","),
		"-o", "JobIDRaw,JobName%200,State,ExitCode").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("sacct: %v: %s", err, lastLines(string(out), 5))
	}
	var recs []acctRecord
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 4 {
			continue
		}
		state, _, _ := strings.Cut(f[2], " ")
		recs = append(recs, acctRecord{id: f[0], name: f[1], state: state, exit: f[3]})
	}
	return recs, nil
}

// slurmStateOf is the Slurm state a job's fleet status stands for; "" for
// a status Slurm has no state for (a job the scheduler lost).
func slurmStateOf(j *jobpb.Job) string {
	switch j.GetStatus() {
	case jobpb.JobStatus_JOB_STATUS_COMPLETED:
		return "COMPLETED"
	case jobpb.JobStatus_JOB_STATUS_CANCELLED:
		return "CANCELLED"
	case jobpb.JobStatus_JOB_STATUS_FAILED:
		switch j.GetErrorCode() {
		case "NON_ZERO_EXIT":
			return "FAILED"
		case "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL":
			return j.GetErrorCode()
		}
	}
	return ""
}

// slurmCheck compares the final state of each acknowledged job of the
// Slurm orchestrator with sacct's record of it, found by the job's Slurm
// name (<spec name>-<fleet job id>, so that an id Slurm gave twice, after
// losing the first job in a crash, is told apart), waiting up to a minute
// for slurmdbd to record every job's end. A job the fleet reports lost by
// the scheduler agrees when Slurm has no record of it. mismatch holds a
// line per fleet job that differs.
func slurmCheck(s *ownSlurm, subs []*submission, final map[string]*jobpb.Job) (checked int, mismatch map[string]string, err error) {
	type want struct {
		slurmID string
		job     *jobpb.Job
	}
	wants := map[string]want{} // fleet job id -> its Slurm id and final state
	idSet := map[string]bool{}
	mismatch = map[string]string{}
	for _, sub := range subs {
		if !sub.slurm || !sub.acked {
			continue
		}
		j := final[sub.jobID]
		if j == nil {
			continue // lost: counted as such
		}
		id := j.GetSchedulerJobId()
		if _, own, ok := strings.Cut(id, ":"); ok {
			id = own // a catalogue of several clusters names the cluster first
		}
		if id == "" {
			mismatch[sub.jobID] = fmt.Sprintf("%s %s never reached Slurm", sub.jobID, j.GetStatus())
			continue
		}
		wants[sub.jobID], idSet[id] = want{slurmID: id, job: j}, true
	}
	if len(wants) == 0 {
		return 0, mismatch, errors.New("no job of the Slurm orchestrator has a Slurm job id")
	}
	ids := make([]string, 0, len(idSet))
	for id := range idSet {
		ids = append(ids, id)
	}
	byName := map[string]acctRecord{}
	deadline := time.Now().Add(time.Minute)
	for {
		recs, aerr := s.accounting(ids)
		err = aerr
		byName = map[string]acctRecord{}
		for _, r := range recs {
			byName[r.name] = r
		}
		done := err == nil
		for jobID, w := range wants {
			if r, ok := byName[w.job.GetSpec().GetName()+"-"+jobID]; (!ok && slurmStateOf(w.job) != "") || (ok && !terminal(r.state)) {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if err != nil {
		return 0, mismatch, err
	}
	for jobID, w := range wants {
		st := slurmStateOf(w.job)
		r, ok := byName[w.job.GetSpec().GetName()+"-"+jobID]
		switch {
		case !ok && st == "":
			// Lost by the scheduler, and Slurm has no record of it either.
		case !ok:
			mismatch[jobID] = fmt.Sprintf("%s (Slurm job %s) fleet %s, sacct has no record of it", jobID, w.slurmID, st)
		case r.id != w.slurmID:
			mismatch[jobID] = fmt.Sprintf("%s fleet: Slurm job %s, sacct: Slurm job %s", jobID, w.slurmID, r.id)
		case r.state != st:
			mismatch[jobID] = fmt.Sprintf("%s (Slurm job %s) fleet %s %s, sacct %s exit %s", jobID, w.slurmID,
				w.job.GetStatus(), w.job.GetErrorCode(), r.state, r.exit)
		}
	}
	return len(wants), mismatch, nil
}
