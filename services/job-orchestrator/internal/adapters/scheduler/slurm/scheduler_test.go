package slurm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

const testToken = "test-jwt-value-never-logged"

// The fixtures in testdata are answers of slurmrestd 24.11.5 (v0.0.42)
// recorded from the local stack, with the HTTP status each came with.
var fixtureStatus = map[string]int{
	"job_unknown.json":          http.StatusNotFound,
	"auth_rejected.json":        http.StatusNetworkAuthenticationRequired,
	"submit_bad_partition.json": http.StatusInternalServerError,
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return data
}

// withJobState returns a recorded job answer with job_state replaced.
func withJobState(t *testing.T, name string, state any, exitCode any) []byte {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal(fixture(t, name), &doc))
	job := doc["jobs"].([]any)[0].(map[string]any)
	job["job_state"] = state
	if exitCode != nil {
		job["exit_code"] = exitCode
	}
	out, err := json.Marshal(doc)
	require.NoError(t, err)
	return out
}

// withJobID returns a recorded job answer with job_id replaced.
func withJobID(t *testing.T, name string, id int64) []byte {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal(fixture(t, name), &doc))
	doc["jobs"].([]any)[0].(map[string]any)["job_id"] = id
	out, err := json.Marshal(doc)
	require.NoError(t, err)
	return out
}

type answer struct {
	status int
	body   []byte
}

// fakeRestd serves canned answers by "METHOD path" and records requests.
type fakeRestd struct {
	mu       sync.Mutex
	answers  map[string]answer
	requests []recorded
}

type recorded struct {
	method, path string
	header       http.Header
	body         []byte
}

// servedSpec is a GET /openapi/v3 answer listing the given versions.
func servedSpec(versions ...string) []byte {
	paths := map[string]any{}
	for _, v := range versions {
		paths["/slurm/"+v+"/job/submit"] = map[string]any{}
		paths["/slurm/"+v+"/jobs/"] = map[string]any{}
		paths["/slurmdb/"+v+"/jobs/"] = map[string]any{}
	}
	b, _ := json.Marshal(map[string]any{"openapi": "3.0.2", "paths": paths})
	return b
}

// newFake answers GET /openapi/v3 as Slurm 24.11 does (v0.0.40 to v0.0.42).
func newFake() *fakeRestd {
	f := &fakeRestd{answers: map[string]answer{}}
	f.set(http.MethodGet, "/openapi/v3", http.StatusOK, servedSpec("v0.0.40", "v0.0.41", "v0.0.42"))
	return f
}

func (f *fakeRestd) set(method, path string, status int, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[method+" "+path] = answer{status: status, body: body}
}

func (f *fakeRestd) setFixture(t *testing.T, method, path, name string) {
	t.Helper()
	status, ok := fixtureStatus[name]
	if !ok {
		status = http.StatusOK
	}
	f.set(method, path, status, fixture(t, name))
}

func (f *fakeRestd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, recorded{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body})
	a, ok := f.answers[r.Method+" "+r.URL.Path]
	f.mu.Unlock()
	if !ok {
		http.Error(w, "no answer configured", http.StatusTeapot)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

func (f *fakeRestd) recorded(method string) []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []recorded
	for _, r := range f.requests {
		if r.method == method && r.path != "/openapi/v3" && !strings.HasPrefix(r.path, "/slurmdb/") {
			out = append(out, r)
		}
	}
	return out
}

func newBackend(t *testing.T, baseURL string, logOut io.Writer) *slurm.Scheduler {
	t.Helper()
	if logOut == nil {
		logOut = io.Discard
	}
	s, err := slurm.New(slurm.Config{
		BaseURL:     baseURL,
		UserName:    "fleetjob",
		Token:       telemetry.Secret(testToken),
		HTTPTimeout: 5 * time.Second,
		Logger:      slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func newJSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func startFake(t *testing.T) (*fakeRestd, *httptest.Server) {
	t.Helper()
	f := newFake()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func submittedAt(unix int64) time.Time { return time.Unix(unix, 0) }

func TestStatusFromRecordedAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fixture   string
		id        string
		submitted int64
		phase     app.Phase
		state     string
		errorCode string
		// code is Slurm's own code: the state reason, else the state.
		code     string
		exitCode *int32
		started  bool
		ended    bool
	}{
		{name: "pending held", fixture: "job_pending_held.json", code: "JobHeldUser", id: "33", submitted: 1796635920,
			phase: app.PhaseQueued, state: "PENDING"},
		{name: "running", fixture: "job_running.json", code: "RUNNING", id: "39", submitted: 1796635929,
			phase: app.PhaseRunning, state: "RUNNING", started: true},
		{name: "completed", fixture: "job_completed.json", code: "COMPLETED", id: "34", submitted: 1796635921,
			phase: app.PhaseCompleted, state: "COMPLETED", exitCode: ptr(0), started: true, ended: true},
		{name: "failed exit 3", fixture: "job_failed_exit3.json", code: "NonZeroExitCode", id: "37", submitted: 1796635924,
			phase: app.PhaseFailed, state: "FAILED", errorCode: app.ErrorCodeNonZeroExit, exitCode: ptr(3), started: true, ended: true},
		{name: "killed by signal 9", fixture: "job_failed_signal9.json", code: "RaisedSignal", id: "38", submitted: 1796635926,
			phase: app.PhaseFailed, state: "FAILED", errorCode: app.ErrorCodeNonZeroExit, exitCode: ptr(128 + 9), started: true, ended: true},
		{name: "cancelled while pending", fixture: "job_cancelled_pending.json", code: "JobHeldUser", id: "33", submitted: 1796635920,
			phase: app.PhaseCancelled, state: "CANCELLED", exitCode: ptr(0), started: true, ended: true},
		{name: "cancelled while running", fixture: "job_cancelled_running.json", code: "CANCELLED", id: "39", submitted: 1796635929,
			phase: app.PhaseCancelled, state: "CANCELLED", exitCode: ptr(128 + 15), started: true, ended: true},
		{name: "timeout", fixture: "job_timeout.json", code: "TimeLimit", id: "40", submitted: 1796635933,
			phase: app.PhaseFailed, state: "TIMEOUT", errorCode: app.ErrorCodeTimeout, exitCode: ptr(128 + 15), started: true, ended: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, srv := startFake(t)
			f.setFixture(t, http.MethodGet, "/slurm/v0.0.42/job/"+tc.id, tc.fixture)
			s := newBackend(t, srv.URL, nil)

			st, err := s.Status(context.Background(), app.SchedulerRef{ID: tc.id, SubmittedAt: submittedAt(tc.submitted)})
			require.NoError(t, err)
			require.Equal(t, tc.phase, st.Phase)
			require.Equal(t, tc.state, st.State)
			require.Equal(t, tc.errorCode, st.ErrorCode)
			require.Equal(t, tc.code, st.Code)
			if tc.exitCode == nil {
				require.Nil(t, st.ExitCode)
			} else {
				require.NotNil(t, st.ExitCode)
				require.Equal(t, *tc.exitCode, *st.ExitCode)
			}
			require.Equal(t, tc.submitted, st.SubmitTime.Unix())
			require.Equal(t, tc.started, !st.StartTime.IsZero(), "start time %s", st.StartTime)
			require.Equal(t, tc.ended, !st.EndTime.IsZero(), "end time %s", st.EndTime)
			if tc.started && tc.fixture != "job_cancelled_pending.json" {
				require.Equal(t, []string{"frontera-n1"}, st.NodeList)
			}

			// The same id with another submit time is a different job.
			_, err = s.Status(context.Background(), app.SchedulerRef{ID: tc.id, SubmittedAt: submittedAt(tc.submitted + 1)})
			require.ErrorIs(t, err, app.ErrUnknownJob)
		})
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func ptr(v int32) *int32 { return &v }

// exitObject is a v0.0.40+ exit_code: a return code, or a signal when sig > 0.
func exitObject(rc, sig int) map[string]any {
	num := func(set bool, n int) map[string]any {
		return map[string]any{"set": set, "infinite": false, "number": n}
	}
	if sig > 0 {
		return map[string]any{"status": []string{"SIGNALED"}, "return_code": num(false, 0),
			"signal": map[string]any{"id": num(true, sig), "name": ""}}
	}
	status := "SUCCESS"
	if rc != 0 {
		status = "ERROR"
	}
	return map[string]any{"status": []string{status}, "return_code": num(true, rc),
		"signal": map[string]any{"id": num(false, 0), "name": ""}}
}

func TestEveryStateMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state     string
		exitCode  any // nil keeps the recorded 0
		phase     app.Phase
		errorCode string
	}{
		{state: "PENDING", phase: app.PhaseQueued},
		{state: "CONFIGURING", phase: app.PhaseQueued},
		{state: "REQUEUED", phase: app.PhaseQueued},
		{state: "REQUEUE_HOLD", phase: app.PhaseQueued},
		{state: "REQUEUE_FED", phase: app.PhaseQueued},
		{state: "RESV_DEL_HOLD", phase: app.PhaseQueued},
		{state: "SPECIAL_EXIT", phase: app.PhaseQueued},
		{state: "SUSPENDED", phase: app.PhaseQueued},
		{state: "RUNNING", phase: app.PhaseRunning},
		{state: "COMPLETING", phase: app.PhaseRunning},
		{state: "STOPPED", phase: app.PhaseRunning},
		{state: "SIGNALING", phase: app.PhaseRunning},
		{state: "STAGE_OUT", phase: app.PhaseRunning},
		{state: "RESIZING", phase: app.PhaseRunning},
		{state: "COMPLETED", phase: app.PhaseCompleted},
		{state: "COMPLETED", exitCode: exitObject(1, 0), phase: app.PhaseFailed, errorCode: app.ErrorCodeNonZeroExit},
		{state: "FAILED", exitCode: exitObject(2, 0), phase: app.PhaseFailed, errorCode: app.ErrorCodeNonZeroExit},
		{state: "TIMEOUT", exitCode: exitObject(0, 15), phase: app.PhaseFailed, errorCode: app.ErrorCodeTimeout},
		{state: "OUT_OF_MEMORY", exitCode: exitObject(0, 9), phase: app.PhaseFailed, errorCode: app.ErrorCodeOutOfMemory},
		{state: "NODE_FAIL", phase: app.PhaseFailed, errorCode: app.ErrorCodeNodeFail},
		{state: "BOOT_FAIL", phase: app.PhaseFailed, errorCode: app.ErrorCodeBootFail},
		{state: "DEADLINE", phase: app.PhaseFailed, errorCode: app.ErrorCodeDeadline},
		{state: "PREEMPTED", phase: app.PhaseFailed, errorCode: app.ErrorCodePreempted},
		{state: "CANCELLED", phase: app.PhaseCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.state, func(t *testing.T) {
			t.Parallel()
			for _, form := range []struct {
				name  string
				state any
			}{
				{name: "plain string", state: tc.state},
				{name: "flag list", state: []string{tc.state}},
				{name: "flag list with flags", state: []string{tc.state, "REQUEUED_FLAG_UNKNOWN"}},
			} {
				f, srv := startFake(t)
				f.set(http.MethodGet, "/slurm/v0.0.42/job/34", http.StatusOK, withJobState(t, "job_completed.json", form.state, tc.exitCode))
				s := newBackend(t, srv.URL, nil)
				st, err := s.Status(context.Background(), app.SchedulerRef{ID: "34", SubmittedAt: submittedAt(1796635921)})
				require.NoError(t, err, form.name)
				require.Equal(t, tc.phase, st.Phase, form.name)
				require.Equal(t, tc.errorCode, st.ErrorCode, form.name)
				require.Equal(t, tc.state, st.State, form.name)
				if !tc.phase.Terminal() {
					require.Nil(t, st.ExitCode, "no exit code before the end")
					require.True(t, st.EndTime.IsZero(), "no end time before the end")
				}
			}
		})
	}

	t.Run("COMPLETING flag of newer versions is not terminal", func(t *testing.T) {
		t.Parallel()
		f, srv := startFake(t)
		f.set(http.MethodGet, "/slurm/v0.0.42/job/34", http.StatusOK,
			withJobState(t, "job_completed.json", []string{"COMPLETED", "COMPLETING"}, nil))
		s := newBackend(t, srv.URL, nil)
		st, err := s.Status(context.Background(), app.SchedulerRef{ID: "34"})
		require.NoError(t, err)
		require.Equal(t, app.PhaseRunning, st.Phase)
	})

	t.Run("unknown state is an error, not a guess", func(t *testing.T) {
		t.Parallel()
		f, srv := startFake(t)
		f.set(http.MethodGet, "/slurm/v0.0.42/job/34", http.StatusOK, withJobState(t, "job_completed.json", "LAUNCHED_TO_MARS", nil))
		s := newBackend(t, srv.URL, nil)
		_, err := s.Status(context.Background(), app.SchedulerRef{ID: "34"})
		require.ErrorContains(t, err, "LAUNCHED_TO_MARS")
	})
}

func TestParseExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want slurm.ExitInfo
	}{
		{name: "null", raw: `null`, want: slurm.ExitInfo{}},
		{name: "wait status exit 0", raw: `0`, want: slurm.ExitInfo{Known: true, Code: 0}},
		{name: "wait status exit 3", raw: `768`, want: slurm.ExitInfo{Known: true, Code: 3}},
		{name: "wait status exit 13", raw: `3328`, want: slurm.ExitInfo{Known: true, Code: 13}},
		{name: "wait status signal 9", raw: `9`, want: slurm.ExitInfo{Known: true, Code: 137, Signal: 9}},
		{name: "wait status signal 15", raw: `15`, want: slurm.ExitInfo{Known: true, Code: 143, Signal: 15}},
		{name: "object exited", raw: `{"status":"EXITED","return_code":3}`, want: slurm.ExitInfo{Known: true, Code: 3}},
		{name: "object with wrapped numbers", raw: `{"status":["EXITED"],"return_code":{"set":true,"infinite":false,"number":2},"signal":{"id":{"set":false,"number":0},"name":""}}`,
			want: slurm.ExitInfo{Known: true, Code: 2}},
		{name: "object signaled", raw: `{"status":"SIGNALED","return_code":0,"signal":{"signal_id":9,"name":"KILL"}}`,
			want: slurm.ExitInfo{Known: true, Code: 137, Signal: 9}},
		{name: "object pending", raw: `{"status":["PENDING"],"return_code":{"set":false,"number":0}}`, want: slurm.ExitInfo{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := slurm.ParseExitCode(json.RawMessage(tc.raw))
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestSubmitRequestBody(t *testing.T) {
	t.Parallel()
	f, srv := startFake(t)
	f.setFixture(t, http.MethodPost, "/slurm/v0.0.42/job/submit", "submit_ok.json")
	f.set(http.MethodGet, "/slurm/v0.0.42/job/34", http.StatusOK, withJobID(t, "job_pending_held.json", 34))
	var logs bytes.Buffer
	s := newBackend(t, srv.URL, &logs)

	hostile := "$(touch /tmp/pwned); rm -rf / `id`\nnext line"
	ref, err := s.Submit(context.Background(), app.SubmitRequest{
		JobID:        "job-1",
		Name:         "calib",
		Script:       "#!/bin/bash\necho hi\n",
		Environment:  map[string]string{"DATASET": hostile},
		WorkDir:      "/scratch/job-1",
		Partition:    "normal",
		Nodes:        2,
		CoresPerNode: 8,
		GPUsPerNode:  4,
		MemoryMB:     4096,
		Walltime:     61 * time.Second,
		Account:      "AST123",
	})
	require.NoError(t, err)
	require.Equal(t, "34", ref.ID)
	require.Equal(t, int64(1796635920), ref.SubmittedAt.Unix(), "submit time read back from slurmrestd")

	posts := f.recorded(http.MethodPost)
	require.Len(t, posts, 1)
	require.Equal(t, "fleetjob", posts[0].header.Get("X-SLURM-USER-NAME"))
	require.Equal(t, testToken, posts[0].header.Get("X-SLURM-USER-TOKEN"))
	require.Equal(t, "application/json", posts[0].header.Get("Content-Type"))

	var body struct {
		Job map[string]any `json:"job"`
	}
	require.NoError(t, json.Unmarshal(posts[0].body, &body))
	require.Equal(t, "#!/bin/bash\necho hi\n", body.Job["script"], "the script travels inside the job (top-level script is deprecated)")
	require.Equal(t, "calib-job-1", body.Job["name"])
	require.Equal(t, "/scratch/job-1", body.Job["current_working_directory"])
	require.Equal(t, "/scratch/job-1/job-1.out", body.Job["standard_output"])
	require.Equal(t, "/scratch/job-1/job-1.err", body.Job["standard_error"])
	require.Equal(t, map[string]any{"set": true, "infinite": false, "number": 2.0}, body.Job["time_limit"], "minutes, rounded up")
	require.Equal(t, "normal", body.Job["partition"])
	require.Equal(t, "2", body.Job["nodes"], "a node count string")
	require.EqualValues(t, 1, body.Job["tasks_per_node"])
	require.EqualValues(t, 8, body.Job["cpus_per_task"])
	require.Equal(t, map[string]any{"set": true, "infinite": false, "number": 4096.0}, body.Job["memory_per_node"])
	require.Equal(t, "gres/gpu:4", body.Job["tres_per_node"])
	require.Equal(t, "AST123", body.Job["account"])
	require.NotContains(t, body.Job, "gpus_per_node", "v0.0.40+ have no gpus_per_node")
	var env []string
	for _, e := range body.Job["environment"].([]any) {
		env = append(env, e.(string))
	}
	require.Equal(t, []string{
		"DATASET=" + hostile, // environment values travel verbatim
		"FLEET_JOB_ID=job-1",
		"FLEET_JOB_NAME=calib",
		"FLEET_WORK_DIR=/scratch/job-1",
		"PATH=" + slurm.DefaultPath,
	}, env, "a sorted list of NAME=value")

	require.NotContains(t, logs.String(), testToken, "the token is never logged")
	require.Contains(t, logs.String(), "slurmrestd request", "requests are logged at debug level")
}

func TestSubmitFieldsOmittedWhenUnset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		walltime time.Duration
		gpus     int32
		want     map[string]any
		absent   []string
	}{
		{name: "exactly one minute", walltime: time.Minute, want: map[string]any{"time_limit": map[string]any{"set": true, "infinite": false, "number": 1.0}}, absent: []string{"tres_per_node"}},
		{name: "one second rounds up", walltime: time.Second, want: map[string]any{"time_limit": map[string]any{"set": true, "infinite": false, "number": 1.0}}},
		{name: "no walltime, no gpus", absent: []string{"time_limit", "tres_per_node", "partition", "account", "nodes", "memory_per_node", "cpus_per_task"}},
		{name: "one gpu", gpus: 1, want: map[string]any{"tres_per_node": "gres/gpu:1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, srv := startFake(t)
			f.setFixture(t, http.MethodPost, "/slurm/v0.0.42/job/submit", "submit_ok.json")
			f.set(http.MethodGet, "/slurm/v0.0.42/job/34", http.StatusOK, withJobID(t, "job_pending_held.json", 34))
			s := newBackend(t, srv.URL, nil)
			_, err := s.Submit(context.Background(), app.SubmitRequest{
				JobID: "j", Script: "#!/bin/sh\n", WorkDir: "/tmp", Walltime: tc.walltime, GPUsPerNode: tc.gpus,
			})
			require.NoError(t, err)
			var body struct {
				Job map[string]any `json:"job"`
			}
			require.NoError(t, json.Unmarshal(f.recorded(http.MethodPost)[0].body, &body))
			for k, v := range tc.want {
				require.Equal(t, v, body.Job[k], k)
			}
			for _, k := range tc.absent {
				require.NotContains(t, body.Job, k)
			}
		})
	}
}

func TestSubmitRejectsBadRequestsWithoutCalling(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  app.SubmitRequest
	}{
		{name: "no work dir", req: app.SubmitRequest{JobID: "j", Script: "#!/bin/sh\n"}},
		{name: "relative work dir", req: app.SubmitRequest{JobID: "j", Script: "#!/bin/sh\n", WorkDir: "x"}},
		{name: "no shebang", req: app.SubmitRequest{JobID: "j", Script: "echo\n", WorkDir: "/tmp"}},
		{name: "bad job id", req: app.SubmitRequest{JobID: "a/b", Script: "#!/bin/sh\n", WorkDir: "/tmp"}},
		{name: "bad env name", req: app.SubmitRequest{JobID: "j", Script: "#!/bin/sh\n", WorkDir: "/tmp", Environment: map[string]string{"X;Y": "1"}}},
		{name: "negative walltime", req: app.SubmitRequest{JobID: "j", Script: "#!/bin/sh\n", WorkDir: "/tmp", Walltime: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, srv := startFake(t)
			s := newBackend(t, srv.URL, nil)
			_, err := s.Submit(context.Background(), tc.req)
			require.Error(t, err)
			require.Empty(t, f.recorded(http.MethodPost), "nothing was sent")
		})
	}
}

func TestErrorPaths(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		method      string
		status      int
		body        []byte
		fixture     string
		unavailable bool
		unknown     bool
		contains    string
	}{
		{name: "unknown job (recorded 404 with error 2017)", method: http.MethodGet, fixture: "job_unknown.json",
			unknown: true, contains: "Invalid job id specified"},
		{name: "rejected token (recorded 511, error 1007)", method: http.MethodGet, fixture: "auth_rejected.json",
			unavailable: true, contains: "Protocol authentication error"},
		{name: "500 without body", method: http.MethodGet, status: 500, body: []byte(""), unavailable: true, contains: "malformed"},
		{name: "500 malformed JSON", method: http.MethodGet, status: 500, body: []byte("<html>oops"), unavailable: true, contains: "malformed"},
		{name: "502", method: http.MethodGet, status: 502, body: []byte(`{"errors":[]}`), unavailable: true, contains: "HTTP 502"},
		{name: "503", method: http.MethodGet, status: 503, body: []byte(`{"errors":[]}`), unavailable: true},
		{name: "slurmctld unreachable", method: http.MethodGet, status: 500,
			body:        []byte(`{"errors":[{"error_number":1001,"error":"Unable to contact slurm controller (connect failure)","source":"slurm_load_job"}],"jobs":[]}`),
			unavailable: true, contains: "Unable to contact slurm controller"},
		{name: "200 malformed JSON", method: http.MethodGet, status: 200, body: []byte("{not json"), contains: "malformed"},
		{name: "200 with errors and no job", method: http.MethodGet, status: 200,
			body: []byte(`{"errors":[{"error_number":2017,"error":"Invalid job id specified"}],"jobs":[]}`), unknown: true},
		{name: "submit: invalid partition (recorded 500, error 2000)", method: http.MethodPost, fixture: "submit_bad_partition.json",
			contains: "Invalid partition name specified"},
		{name: "submit: 500 without errors", method: http.MethodPost, status: 500, body: []byte(`{"errors":[]}`), unavailable: true},
		{name: "submit: 200 without job id", method: http.MethodPost, status: 200,
			body:     []byte(`{"errors":[{"error_code":2001,"error":"No partition specified or system default partition"}]}`),
			contains: "No partition specified"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, srv := startFake(t)
			path := "/slurm/v0.0.42/job/7"
			if tc.method == http.MethodPost {
				path = "/slurm/v0.0.42/job/submit"
			}
			if tc.fixture != "" {
				f.setFixture(t, tc.method, path, tc.fixture)
			} else {
				f.set(tc.method, path, tc.status, tc.body)
			}
			s := newBackend(t, srv.URL, nil)
			var err error
			if tc.method == http.MethodPost {
				_, err = s.Submit(context.Background(), app.SubmitRequest{JobID: "j", Script: "#!/bin/sh\n", WorkDir: "/tmp"})
			} else {
				_, err = s.Status(context.Background(), app.SchedulerRef{ID: "7"})
			}
			require.Error(t, err)
			require.Equal(t, tc.unavailable, isErr(err, app.ErrSchedulerUnavailable), "unavailable: %v", err)
			require.Equal(t, tc.unknown, isErr(err, app.ErrUnknownJob), "unknown job: %v", err)
			if tc.contains != "" {
				require.ErrorContains(t, err, tc.contains)
			}
			require.NotContains(t, err.Error(), testToken)
		})
	}
}

func isErr(err, target error) bool {
	for e := err; e != nil; {
		if e == target {
			return true
		}
		switch x := e.(type) {
		case interface{ Unwrap() []error }:
			for _, inner := range x.Unwrap() {
				if isErr(inner, target) {
					return true
				}
			}
			return false
		case interface{ Unwrap() error }:
			e = x.Unwrap()
		default:
			return false
		}
	}
	return false
}

func TestConnectionRefusedIsUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	s := newBackend(t, "http://"+addr, nil)
	_, err = s.Status(context.Background(), app.SchedulerRef{ID: "1"})
	require.ErrorIs(t, err, app.ErrSchedulerUnavailable)
	_, err = s.Submit(context.Background(), app.SubmitRequest{JobID: "j", Script: "#!/bin/sh\n", WorkDir: "/tmp"})
	require.ErrorIs(t, err, app.ErrSchedulerUnavailable)
	require.ErrorIs(t, s.Cancel(context.Background(), app.SchedulerRef{ID: "1"}), app.ErrSchedulerUnavailable)
}

func TestCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		getFixture  string
		submitted   int64
		deleteBody  []byte
		deleteCode  int
		wantDelete  bool
		wantErr     error
		wantErrText string
	}{
		{name: "running job is cancelled", getFixture: "job_running.json", submitted: 1796635929,
			deleteBody: fixture(t, "delete_ok.json"), deleteCode: 200, wantDelete: true},
		{name: "pending job is cancelled", getFixture: "job_pending_held.json", submitted: 1796635920,
			deleteBody: fixture(t, "delete_ok.json"), deleteCode: 200, wantDelete: true},
		{name: "ended job is left alone", getFixture: "job_completed.json", submitted: 1796635921},
		{name: "job purged between read and cancel (recorded 200, status 2017)", getFixture: "job_running.json", submitted: 1796635929,
			deleteBody: fixture(t, "delete_unknown.json"), deleteCode: 200, wantDelete: true},
		{name: "cancel refused", getFixture: "job_running.json", submitted: 1796635929,
			deleteBody: []byte(`{"status":[{"error":{"string":"Access/permission denied","code":2002,"message":"Access/permission denied"},"step_id":"39"}],"errors":[]}`),
			deleteCode: 200, wantDelete: true, wantErrText: "Access/permission denied"},
		{name: "reused id is never cancelled", getFixture: "job_running.json", submitted: 1796635000, wantErr: app.ErrUnknownJob},
		{name: "unknown job", getFixture: "job_unknown.json", submitted: 1796635929, wantErr: app.ErrUnknownJob},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, srv := startFake(t)
			var jobDoc struct {
				Jobs []struct {
					JobID int64 `json:"job_id"`
				} `json:"jobs"`
			}
			_ = json.Unmarshal(fixture(t, tc.getFixture), &jobDoc)
			id := "7"
			if len(jobDoc.Jobs) > 0 {
				id = jsonInt(jobDoc.Jobs[0].JobID)
			}
			f.setFixture(t, http.MethodGet, "/slurm/v0.0.42/job/"+id, tc.getFixture)
			if tc.deleteBody != nil {
				f.set(http.MethodDelete, "/slurm/v0.0.42/job/"+id, tc.deleteCode, tc.deleteBody)
			}
			s := newBackend(t, srv.URL, nil)
			err := s.Cancel(context.Background(), app.SchedulerRef{ID: id, SubmittedAt: submittedAt(tc.submitted)})
			switch {
			case tc.wantErr != nil:
				require.ErrorIs(t, err, tc.wantErr)
			case tc.wantErrText != "":
				require.ErrorContains(t, err, tc.wantErrText)
			default:
				require.NoError(t, err)
			}
			require.Equal(t, tc.wantDelete, len(f.recorded(http.MethodDelete)) == 1)
		})
	}
}

func TestNonNumericIDIsUnknownWithoutCalling(t *testing.T) {
	t.Parallel()
	f, srv := startFake(t)
	s := newBackend(t, srv.URL, nil)
	for _, id := range []string{"", "abc", "1/../../diag", "12;rm"} {
		_, err := s.Status(context.Background(), app.SchedulerRef{ID: id})
		require.ErrorIs(t, err, app.ErrUnknownJob, id)
	}
	require.Empty(t, f.recorded(http.MethodGet))
}

func TestTokenFileIsReReadWhenItChanges(t *testing.T) {
	t.Parallel()
	f, srv := startFake(t)
	f.setFixture(t, http.MethodGet, "/slurm/v0.0.42/job/34", "job_completed.json")
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("SLURM_JWT=first-token\n"), 0o600))
	var logs bytes.Buffer
	s, err := slurm.New(slurm.Config{
		BaseURL: srv.URL, UserName: "fleetjob", TokenFile: tokenFile,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	require.NoError(t, err)
	t.Cleanup(s.Close)

	_, err = s.Status(context.Background(), app.SchedulerRef{ID: "34"})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(tokenFile, []byte("second-token-longer"), 0o600))
	_, err = s.Status(context.Background(), app.SchedulerRef{ID: "34"})
	require.NoError(t, err)

	gets := f.recorded(http.MethodGet)
	require.Len(t, gets, 2)
	require.Equal(t, "first-token", gets[0].header.Get("X-SLURM-USER-TOKEN"))
	require.Equal(t, "second-token-longer", gets[1].header.Get("X-SLURM-USER-TOKEN"))
	require.NotContains(t, logs.String(), "first-token")
	require.NotContains(t, logs.String(), "second-token")
}

func TestUnixSocketTransport(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "restd.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	f := newFake()
	f.setFixture(t, http.MethodGet, "/slurm/v0.0.42/job/34", "job_completed.json")
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	s, err := slurm.New(slurm.Config{BaseURL: "unix://" + sock})
	require.NoError(t, err, "local auth over a unix socket needs no token")
	t.Cleanup(s.Close)
	st, err := s.Status(context.Background(), app.SchedulerRef{ID: "34", SubmittedAt: submittedAt(1796635921)})
	require.NoError(t, err)
	require.Equal(t, app.PhaseCompleted, st.Phase)
	gets := f.recorded(http.MethodGet)
	require.Len(t, gets, 1)
	require.Empty(t, gets[0].header.Get("X-SLURM-USER-TOKEN"))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     slurm.Config
		wantErr string
	}{
		{name: "http with token", cfg: slurm.Config{BaseURL: "http://127.0.0.1:6820", UserName: "u", Token: "t"}},
		{name: "http with token file", cfg: slurm.Config{BaseURL: "http://127.0.0.1:6820", UserName: "u", TokenFile: "/run/token"}},
		{name: "unix socket", cfg: slurm.Config{BaseURL: "unix:///run/slurmrestd.sock"}},
		{name: "missing url", cfg: slurm.Config{}, wantErr: "BaseURL is required"},
		{name: "bad scheme", cfg: slurm.Config{BaseURL: "ftp://x"}, wantErr: "scheme"},
		{name: "http without token", cfg: slurm.Config{BaseURL: "http://127.0.0.1:6820", UserName: "u"}, wantErr: "Token or TokenFile"},
		{name: "token without user", cfg: slurm.Config{BaseURL: "http://127.0.0.1:6820", Token: "t"}, wantErr: "UserName"},
		{name: "both tokens", cfg: slurm.Config{BaseURL: "http://h:1", UserName: "u", Token: "t", TokenFile: "/f"}, wantErr: "not both"},
		{name: "bad version", cfg: slurm.Config{BaseURL: "unix:///s", APIVersion: "latest"}, wantErr: "APIVersion"},
		{name: "unix without path", cfg: slurm.Config{BaseURL: "unix://"}, wantErr: "socket path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.WithDefaults().Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestExpandHostList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "empty", in: "", want: nil},
		{name: "single", in: "vm", want: []string{"vm"}},
		{name: "range", in: "c[1-3]", want: []string{"c1", "c2", "c3"}},
		{name: "padded range and list", in: "c[01-02,07],gpu9", want: []string{"c01", "c02", "c07", "gpu9"}},
		{name: "unparsable kept", in: "weird[a-b]", want: []string{"weird[a-b]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, slurm.ExpandHostList(tc.in))
		})
	}
}
