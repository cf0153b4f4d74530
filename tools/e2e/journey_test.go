package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// journeyBackend is what the researcher's journey needs to know of a
// scheduler backend.
type journeyBackend struct {
	name string
	// env is added to the orchestrator's environment.
	env       map[string]string
	partition string
	// walltime is the sweep's walltime; work are the seconds each point
	// works, the last one longer than walltime so that it times out.
	walltime string
	work     []int
	// more is the walltime of the resubmission, long enough to finish.
	more string
	// within bounds each wait for the jobs of the sweep.
	within time.Duration
}

// TestJourney is the researcher's journey of issue 17 with the chctl
// binary, on the local backend: submit a sweep from a job file (twice:
// the re-run submits nothing), follow a job's output live, see the failed
// point's reason in its history, resubmit it with more walltime, follow
// the sweep by its tag and download the new job's output file.
func TestJourney(t *testing.T) {
	t.Parallel()
	runJourney(t, journeyBackend{name: "local", partition: "development",
		walltime: "3s", work: []int{1, 6}, more: "1m", within: time.Minute})
}

// TestSlurmJourney is the same journey on the stack's Slurm 24.11
// cluster: the long point exceeds its one-minute time limit, Slurm ends
// it with TIMEOUT, and its resubmission with more walltime completes. Slurm
// checks time limits every 30 seconds or so: the long point works well past
// the minute so that it is always stopped.
func TestSlurmJourney(t *testing.T) {
	runJourney(t, journeyBackend{name: "slurm", env: slurmOrchestratorEnv(t), partition: "normal",
		walltime: "1m", work: []int{2, 100}, more: "3m", within: 4 * time.Minute})
}

// slurmOrchestratorEnv is the orchestrator's environment for the stack's
// Slurm cluster (SLURMRESTD_URL, SLURM_USER and SLURM_JWT_TOKEN of
// tools/stack/stack.sh env): a missing cluster is a failure under CI=true.
func slurmOrchestratorEnv(t *testing.T) map[string]string {
	t.Helper()
	for _, v := range []string{"SLURMRESTD_URL", "SLURM_USER", "SLURM_JWT_TOKEN"} {
		if os.Getenv(v) == "" {
			testinfra.Unavailable(t, v+" is unset: the journey on Slurm needs the stack's cluster (eval \"$(tools/stack/stack.sh env)\")")
		}
	}
	return map[string]string{
		"SCHEDULER":             "slurm",
		"SLURMRESTD_URL":        os.Getenv("SLURMRESTD_URL"),
		"SLURM_USER":            os.Getenv("SLURM_USER"),
		"SLURM_JWT_TOKEN":       os.Getenv("SLURM_JWT_TOKEN"),
		"SYSTEM_CATALOGUE_FILE": slurmCatalogue(t),
		"JOB_WORK_DIR":          sharedWorkDir(t),
		"RECONCILE_INTERVAL":    "500ms",
	}
}

// journeySweep is the job file of the journey: one job per value of work,
// each printing a line a second for work seconds and then writing
// result.txt.
const journeySweep = `name: "journey-work{{.work}}"
agent: custom
system: frontera
partition: %s
resources:
  nodes: 1
  cores_per_node: 1
  walltime: %s
script: |
  #!/bin/sh
  echo "working for {{.work}}s"
  i=1
  while [ $i -le {{.work}} ]; do echo "step $i"; sleep 1; i=$((i+1)); done
  echo "work={{.work}} done" > result.txt
  echo "finished"
tags: [journey]
sweep:
  name: journey
  parameters:
    work: [%s]
`

// researcher runs the chctl binary as a researcher does, with the
// orchestrator's address and a token in the environment.
type researcher struct {
	t   *testing.T
	bin string
	env []string
	dir string
}

func (r researcher) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.bin, args...)
	cmd.Env = r.env
	cmd.Dir = r.dir
	return cmd
}

// chctl runs one command and returns its combined output.
func (r researcher) chctl(args ...string) (string, error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 2*time.Minute)
	defer cancel()
	out, err := r.cmd(ctx, args...).CombinedOutput()
	return string(out), err
}

// must runs one command that must succeed.
func (r researcher) must(args ...string) string {
	r.t.Helper()
	out, err := r.chctl(args...)
	require.NoError(r.t, err, "chctl %s:\n%s", strings.Join(args, " "), out)
	r.t.Logf("$ chctl %s\n%s", strings.Join(args, " "), out)
	return out
}

// follow starts `chctl jobs logs ID -f` and returns the lines it prints,
// each with the instant it arrived; the channel closes when the command
// ends, and done then returns its error.
type timedLine struct {
	at   time.Time
	text string
}

func (r researcher) follow(ctx context.Context, id string) (<-chan timedLine, func() error) {
	r.t.Helper()
	cmd := r.cmd(ctx, "jobs", "logs", id, "-f")
	stdout, err := cmd.StdoutPipe()
	require.NoError(r.t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(r.t, cmd.Start())
	lines := make(chan timedLine, 1024)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(lines)
		br := bufio.NewReader(stdout)
		for {
			s, err := br.ReadString('\n')
			if s != "" {
				lines <- timedLine{at: time.Now(), text: s}
			}
			if err != nil {
				if err != io.EOF {
					lines <- timedLine{at: time.Now(), text: "read error: " + err.Error()}
				}
				return
			}
		}
	}()
	return lines, func() error {
		<-readDone
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("%w: %s", err, stderr.String())
		}
		return nil
	}
}

var journeyJobRe = regexp.MustCompile(`(?m)^job ([0-9a-f-]{36}) \S+ (submitted|replayed)  journey-work(\d+)`)

func runJourney(t *testing.T, b journeyBackend) {
	start := time.Now()
	s := requireStack(t)
	bin := servicetest.Build(t, "../cmd/chctl")
	prefix := kafkabustest.Prefix(t, strings.Split(s.kafka, ","), "journey-")
	orch := runOrchestratorWith(t, s, prefix, b.env)
	u := newUser(t)
	dir := t.TempDir()
	r := researcher{t: t, bin: bin, dir: dir,
		env: append(os.Environ(), "FLEET_JOB_ADDR="+orch, "FLEET_TOKEN="+u.token)}
	t.Logf("backend %s, orchestrator %s, user %s", b.name, orch, u.id)

	var works []string
	for _, w := range b.work {
		works = append(works, fmt.Sprint(w))
	}
	file := filepath.Join(dir, "sweep.yaml")
	require.NoError(t, os.WriteFile(file, []byte(fmt.Sprintf(journeySweep, b.partition, b.walltime,
		strings.Join(works, ", "))), 0o600))

	// 1. Submit the sweep from the file; a re-run submits nothing twice.
	out := r.must("jobs", "submit", "-f", file)
	require.Contains(t, out, fmt.Sprintf("sweep journey (tag sweep:journey): %d jobs, %d submitted, 0 replayed, 0 refused",
		len(b.work), len(b.work)))
	ids := map[string]string{} // work seconds -> job id
	for _, m := range journeyJobRe.FindAllStringSubmatch(out, -1) {
		require.Equal(t, "submitted", m[2])
		ids[m[3]] = m[1]
	}
	require.Len(t, ids, len(b.work), out)
	again := r.must("jobs", "submit", "-f", file)
	require.Contains(t, again, fmt.Sprintf("%d jobs, 0 submitted, %d replayed, 0 refused", len(b.work), len(b.work)))
	for _, m := range journeyJobRe.FindAllStringSubmatch(again, -1) {
		require.Equal(t, "replayed", m[2])
		require.Equal(t, ids[m[3]], m[1], "the re-run names the same job for work=%s", m[3])
	}
	long := fmt.Sprint(b.work[len(b.work)-1])
	failing := ids[long]

	// 2. Follow the long job's output live: its lines arrive while it runs,
	// and the command ends when the job does.
	ctx, cancel := context.WithTimeout(t.Context(), b.within)
	defer cancel()
	lines, done := r.follow(ctx, failing)
	var followed strings.Builder
	var statusAtStep2 string
	for l := range lines {
		followed.WriteString(l.text)
		if l.text == "step 2\n" {
			got := r.must("jobs", "get", failing)
			statusAtStep2 = regexp.MustCompile(`(?m)^\s*status\s+(\S+)`).FindStringSubmatch(got)[1]
		}
	}
	require.NoError(t, done(), "chctl jobs logs -f ends without an error when the job ends")
	t.Logf("followed output of %s:\n%s", failing, followed.String())
	require.Equal(t, "RUNNING", statusAtStep2, "the second line reached the follower while the job ran")
	require.True(t, strings.HasPrefix(followed.String(), "working for "+long+"s\nstep 1\nstep 2\n"), followed.String())
	require.NotContains(t, followed.String(), "finished", "the job was stopped at its walltime")
	// What was followed is the whole output, nothing lost or repeated.
	require.Equal(t, followed.String(), r.must("jobs", "logs", failing))

	// 3. The sweep by its tag: one point completed, the long one failed.
	var list string
	require.Eventually(t, func() bool {
		list, _ = r.chctl("jobs", "list", "-tag", "sweep:journey")
		return strings.Contains(list, fmt.Sprintf("%d jobs: 0 submitted, 0 queued, 0 running, %d completed, 1 failed, 0 cancelled",
			len(b.work), len(b.work)-1))
	}, b.within, 500*time.Millisecond, "the sweep's summary line: %s", list)
	t.Logf("$ chctl jobs list -tag sweep:journey\n%s", list)
	for _, id := range ids {
		require.Contains(t, list, id)
	}

	// 4. The failed job's history: the researcher's sentence next to the
	// scheduler's own code.
	hist := r.must("jobs", "history", failing)
	require.Regexp(t, `(?m)^SEQ\s+TIME\s+FROM\s+TO\s+ACTOR\s+SCHEDULER CODE\s+ERROR CODE\s+REASON$`, hist)
	row := regexp.MustCompile(`(?m)^\d+\s+\S+ \S+\s+RUNNING\s+FAILED\s+scheduler\s+(\S+)\s+TIMEOUT\s+(The job ran longer than its walltime and was stopped; resubmit with a longer walltime.*)$`).
		FindStringSubmatch(hist)
	require.NotNil(t, row, "a FAILED row with error code TIMEOUT and its reason:\n%s", hist)
	require.NotEqual(t, "-", row[1], "the scheduler's own code")
	if b.name == "slurm" {
		require.Contains(t, []string{"TimeLimit", "TIMEOUT"}, row[1], "Slurm's reason or job state")
	}
	t.Logf("the FAILED row: scheduler code %s, reason %q", row[1], row[2])

	// 5. Resubmit it with more walltime: it now completes.
	res := r.must("jobs", "resubmit", failing, "-walltime", b.more)
	require.Contains(t, res, "resubmitted from "+failing)
	require.Contains(t, res, "changed        resources.walltime")
	nid := regexp.MustCompile(`(?m)^job ([0-9a-f-]{36}) `).FindStringSubmatch(res)[1]
	require.Eventually(t, func() bool {
		list, _ = r.chctl("jobs", "list", "-tag", "sweep:journey")
		return strings.Contains(list, fmt.Sprintf("%d jobs: 0 submitted, 0 queued, 0 running, %d completed, 1 failed, 0 cancelled",
			len(b.work)+1, len(b.work)))
	}, b.within, 500*time.Millisecond, "the resubmitted job completes, in the sweep by its tag: %s", list)
	t.Logf("$ chctl jobs list -tag sweep:journey\n%s", list)
	require.Contains(t, list, nid)
	got := r.must("jobs", "get", nid)
	require.Regexp(t, `resubmitted from\s+`+failing, got)
	require.Regexp(t, `(?m)^\s*status\s+COMPLETED`, got)
	nhist := r.must("jobs", "history", nid)
	require.Contains(t, nhist, "resubmitted from "+failing)
	require.Regexp(t, `(?m)^\d+\s+\S+ \S+\s+RUNNING\s+COMPLETED\s+scheduler`, nhist)

	// 6. Its outputs: result.txt is listed and downloads with its content.
	outs := r.must("jobs", "outputs", nid)
	require.Regexp(t, `(?m)^\s*\d+\s+\S+ \S+\s+result\.txt\s*$`, outs)
	dest := filepath.Join(dir, "result-"+nid+".txt")
	r.must("jobs", "download", nid, "result.txt", "-o", dest)
	b2, err := os.ReadFile(dest)
	require.NoError(t, err)
	require.Equal(t, "work="+long+" done\n", string(b2))
	full := r.must("jobs", "logs", nid)
	require.True(t, strings.HasSuffix(full, "step "+long+"\nfinished\n"), full)
	if b.name == "local" {
		readmeChctlExample(t, r)
	}
	t.Logf("journey on %s in %s", b.name, time.Since(start).Round(time.Millisecond))
}

// readmeChctlExample runs the README's chctl equivalent of its Python
// example verbatim: the submission, then `chctl jobs logs ID -f`.
func readmeChctlExample(t *testing.T, r researcher) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(b), "\n### Python\n")
	require.True(t, ok, "README.md has no section \"### Python\"")
	_, rest, ok := strings.Cut(section, "The same with chctl: `chctl ")
	require.True(t, ok, "the README's Python section has no chctl equivalent")
	line, _, ok := strings.Cut(rest, "`")
	require.True(t, ok)
	// The line is shell: run it as one, with chctl on PATH.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", "chctl "+line)
	cmd.Env = append(r.env, "PATH="+filepath.Dir(r.bin)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	t.Logf("$ chctl %s\n%s", line, out)
	require.NoError(t, err)
	id := regexp.MustCompile(`(?m)^job ([0-9a-f-]{36}) `).FindSubmatch(out)
	require.NotNil(t, id, "the submission prints the job id")
	logs := r.must("jobs", "logs", string(id[1]), "-f")
	require.Equal(t, "calibrated\n", logs)
}

// runOrchestratorWith is runOrchestrator with env added to (or replacing
// parts of) its environment.
func runOrchestratorWith(t *testing.T, s stackEnv, prefix string, env map[string]string) string {
	t.Helper()
	vars := s.otelEnv(map[string]string{
		"AMQP_URL":                   s.amqp,
		"DATABASE_URL":               "sqlite:" + filepath.Join(t.TempDir(), "orchestrator.db"),
		"STATE_DIRECTORY":            stateDir(t),
		"AUTH_HS256_SECRET":          authSecret,
		"PAGE_TOKEN_KEY":             "e2e-page-token-key-0123456789abcdef",
		"RECONCILE_INTERVAL":         "200ms",
		"ORCHESTRATOR_TOPIC_PREFIX":  prefix,
		"ORCHESTRATOR_ENSURE_TOPICS": "true",
		"SCHEDULER":                  "local",
	})
	for k, v := range env {
		vars[k] = v
	}
	return servicetest.RunBinary(t, servicesDir+"job-orchestrator/cmd/job-orchestrator", vars).GRPCAddr
}
