package ports_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/outputdir"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app/apptest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/ports"
)

// outputEnv is a JobService whose jobs' output directories are real
// directories under root, named as the local backend names them.
type outputEnv struct {
	client jobpb.JobServiceClient
	repo   *apptest.MemRepo
	root   string
}

func newOutputEnv(t testing.TB) *outputEnv {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := &outputEnv{repo: apptest.NewMemRepo(), root: t.TempDir()}
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("page-token-key-page-token-key")
	cfg.WatchPollInterval = 20 * time.Millisecond
	cfg.OutputPollInterval = 10 * time.Millisecond
	cfg.WorkDir = e.root
	outputs, err := outputdir.New(e.root, local.StreamFile)
	require.NoError(t, err)
	a, err := app.New(cfg, app.Deps{Repo: e.repo, Scheduler: apptest.NewFakeScheduler(), Catalogue: domain.DefaultCatalogue(),
		Logger: logger, Outputs: outputs})
	require.NoError(t, err)
	acfg := auth.DefaultConfig()
	acfg.HS256Secret = secret
	v, err := auth.NewVerifier(context.Background(), acfg, nil, logger)
	require.NoError(t, err)
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(auth.NewInterceptors(v, logger).ServerOptions()...)
	jobpb.RegisterJobServiceServer(srv, ports.NewJobServer(a, logger))
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
	})
	e.client = jobpb.NewJobServiceClient(conn)
	return e
}

// asUser is the context of a call by user (not an admin).
func asUser(t testing.TB, user string) context.Context {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString([]byte(secret))
	require.NoError(t, err)
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

// job submits a job as alice and makes its output directory.
func (e *outputEnv) job(t testing.TB) (id, dir string) {
	t.Helper()
	key := make([]byte, 8)
	_, _ = rand.Read(key)
	resp, err := e.client.SubmitJob(asUser(t, "alice"), validRequest(hex.EncodeToString(key)))
	require.NoError(t, err)
	id = resp.GetJob().GetJobId()
	dir = filepath.Join(e.root, id)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return id, dir
}

// audits returns the audit records of job id with action.
func (e *outputEnv) audits(id string, action events.AuditAction) []events.AuditActionRecorded {
	var out []events.AuditActionRecorded
	for _, r := range e.repo.Events() {
		if a, ok := r.Event.Payload.(events.AuditActionRecorded); ok && a.ResourceID == id && a.Action == action {
			out = append(out, a)
		}
	}
	return out
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(s)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// readStream collects a whole output stream, checking that each chunk is at
// most 64 KiB and starts where the previous one ended.
func readStream(t *testing.T, s grpc.ServerStreamingClient[jobpb.StreamJobOutputResponse], from int64) ([]byte, error) {
	t.Helper()
	var got []byte
	next := from
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		require.LessOrEqual(t, len(m.GetData()), 64<<10)
		require.Equal(t, next, m.GetOffset(), "chunks are contiguous")
		next += int64(len(m.GetData()))
		got = append(got, m.GetData()...)
	}
}

func TestOutputRequestsAreValidated(t *testing.T) {
	t.Parallel()
	e := newOutputEnv(t)
	ctx := as(t, "alice", false)
	id, _ := e.job(t)
	streamErr := func(req *jobpb.StreamJobOutputRequest) error {
		s, err := e.client.StreamJobOutput(ctx, req)
		require.NoError(t, err)
		_, err = readStream(t, s, req.GetOffset())
		return err
	}
	downloadErr := func(req *jobpb.DownloadJobOutputRequest) error {
		s, err := e.client.DownloadJobOutput(ctx, req)
		require.NoError(t, err)
		for {
			if _, err := s.Recv(); err != nil {
				return err
			}
		}
	}
	tests := []struct {
		name   string
		err    func() error
		fields []string
	}{
		{name: "stream: everything wrong", err: func() error {
			return streamErr(&jobpb.StreamJobOutputRequest{JobId: "../etc", Stream: 9, Offset: -1})
		}, fields: []string{"job_id", "stream", "offset"}},
		{name: "stream: no job id", err: func() error { return streamErr(&jobpb.StreamJobOutputRequest{}) }, fields: []string{"job_id"}},
		{name: "stream: negative offset", err: func() error {
			return streamErr(&jobpb.StreamJobOutputRequest{JobId: id, Offset: -5})
		}, fields: []string{"offset"}},
		{name: "list: bad job id", err: func() error {
			_, err := e.client.ListJobOutputs(ctx, &jobpb.ListJobOutputsRequest{JobId: "a/b"})
			return err
		}, fields: []string{"job_id"}},
		{name: "download: dot dot", err: func() error {
			return downloadErr(&jobpb.DownloadJobOutputRequest{JobId: id, Path: "../other/stdout.log"})
		}, fields: []string{"path"}},
		{name: "download: absolute", err: func() error {
			return downloadErr(&jobpb.DownloadJobOutputRequest{JobId: id, Path: "/etc/passwd"})
		}, fields: []string{"path"}},
		{name: "download: no path, no job", err: func() error { return downloadErr(&jobpb.DownloadJobOutputRequest{}) },
			fields: []string{"job_id", "path"}},
		{name: "download: NUL byte", err: func() error {
			return downloadErr(&jobpb.DownloadJobOutputRequest{JobId: id, Path: "a\x00b"})
		}, fields: []string{"path"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.fields, fieldPaths(t, tt.err()))
		})
	}
	// A job that replaced its stdout file with a link out of its directory.
	linked, dir := e.job(t)
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "stdout.log")))
	err := streamErr(&jobpb.StreamJobOutputRequest{JobId: linked})
	require.Equal(t, []string{"stream"}, fieldPaths(t, err))
	require.Contains(t, status.Convert(err).Message(), "not a regular file")
	// Refused paths of a job the caller may read are audited as failures.
	failed := 0
	for _, a := range e.audits(id, events.AuditActionExport) {
		if a.Outcome == events.AuditOutcomeFailure {
			failed++
		}
	}
	require.Equal(t, 3, failed, "the three refused downloads of an existing job")
	reads := e.audits(id, events.AuditActionRead)
	require.Len(t, reads, 1, "the refused stream of an existing job")
	require.Equal(t, events.AuditOutcomeFailure, reads[0].Outcome)
	require.Equal(t, "offset: must not be negative", reads[0].After["refused"])
}

func TestOutputOfAnotherUsersJobIsNotFound(t *testing.T) {
	t.Parallel()
	e := newOutputEnv(t)
	id, dir := e.job(t)
	appendFile(t, filepath.Join(dir, "stdout.log"), "alice's secret output\n")
	bob := as(t, "bob", false)

	s, err := e.client.StreamJobOutput(bob, &jobpb.StreamJobOutputRequest{JobId: id})
	require.NoError(t, err)
	got, err := readStream(t, s, 0)
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	require.Empty(t, got)

	_, err = e.client.ListJobOutputs(bob, &jobpb.ListJobOutputsRequest{JobId: id})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)

	d, err := e.client.DownloadJobOutput(bob, &jobpb.DownloadJobOutputRequest{JobId: id, Path: "stdout.log"})
	require.NoError(t, err)
	_, err = d.Recv()
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	require.Equal(t, "job not found", status.Convert(err).Message(), "the same answer as for a job that does not exist")

	// Each refusal is audited as DENIED; nothing was read.
	denied := 0
	for _, action := range []events.AuditAction{events.AuditActionRead, events.AuditActionExport} {
		for _, a := range e.audits(id, action) {
			require.Equal(t, events.AuditOutcomeDenied, a.Outcome)
			require.Equal(t, "bob", a.ActorUserID)
			denied++
		}
	}
	require.Equal(t, 3, denied)

	// An admin may read it.
	s, err = e.client.StreamJobOutput(as(t, "root", true), &jobpb.StreamJobOutputRequest{JobId: id})
	require.NoError(t, err)
	got, err = readStream(t, s, 0)
	require.NoError(t, err)
	require.Equal(t, "alice's secret output\n", string(got))
}

func TestStreamJobOutputResumesWithoutLossOrRepeat(t *testing.T) {
	t.Parallel()
	e := newOutputEnv(t)
	ctx := as(t, "alice", false)
	id, dir := e.job(t)
	content := make([]byte, 200<<10+17)
	_, _ = rand.Read(content)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "stdout.log"), content, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "stderr.log"), []byte("warning\n"), 0o644))

	s, err := e.client.StreamJobOutput(ctx, &jobpb.StreamJobOutputRequest{JobId: id})
	require.NoError(t, err)
	got, err := readStream(t, s, 0)
	require.NoError(t, err)
	require.True(t, bytes.Equal(content, got), "the whole file")

	// Stop after the first chunk, then resume from the offset after it.
	ctx1, cancel := context.WithCancel(ctx)
	s, err = e.client.StreamJobOutput(ctx1, &jobpb.StreamJobOutputRequest{JobId: id})
	require.NoError(t, err)
	first, err := s.Recv()
	require.NoError(t, err)
	cancel()
	next := first.GetOffset() + int64(len(first.GetData()))
	s, err = e.client.StreamJobOutput(ctx, &jobpb.StreamJobOutputRequest{JobId: id, Offset: next})
	require.NoError(t, err)
	rest, err := readStream(t, s, next)
	require.NoError(t, err)
	require.True(t, bytes.Equal(content, append(first.GetData(), rest...)), "first chunk + resumed stream = the file")

	s, err = e.client.StreamJobOutput(ctx, &jobpb.StreamJobOutputRequest{JobId: id, Stream: jobpb.OutputStream_OUTPUT_STREAM_STDERR})
	require.NoError(t, err)
	got, err = readStream(t, s, 0)
	require.NoError(t, err)
	require.Equal(t, "warning\n", string(got))

	s, err = e.client.StreamJobOutput(ctx, &jobpb.StreamJobOutputRequest{JobId: id, Offset: int64(len(content)) + 100})
	require.NoError(t, err)
	got, err = readStream(t, s, int64(len(content))+100)
	require.NoError(t, err)
	require.Empty(t, got, "an offset past the end streams nothing")

	reads := e.audits(id, events.AuditActionRead)
	require.Len(t, reads, 5, "one audit record per call")
	require.Equal(t, events.AuditOutcomeSuccess, reads[0].Outcome)
	require.Equal(t, "stdout", reads[0].After["output"])
}

func TestStreamJobOutputFollowsUntilTheJobEnds(t *testing.T) {
	t.Parallel()
	e := newOutputEnv(t)
	ctx := as(t, "alice", false)
	id, dir := e.job(t)
	out := filepath.Join(dir, "stdout.log")

	// The job has not written anything yet: the follower waits for it.
	s, err := e.client.StreamJobOutput(ctx, &jobpb.StreamJobOutputRequest{JobId: id, Follow: true})
	require.NoError(t, err)
	type chunk struct {
		m   *jobpb.StreamJobOutputResponse
		err error
	}
	chunks := make(chan chunk, 100)
	go func() {
		for {
			m, err := s.Recv()
			chunks <- chunk{m, err}
			if err != nil {
				return
			}
		}
	}()
	var got []byte
	await := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !strings.HasSuffix(string(got), want) {
			select {
			case c := <-chunks:
				require.NoError(t, c.err, "the stream stays open while the job has not ended")
				require.EqualValues(t, len(got), c.m.GetOffset())
				got = append(got, c.m.GetData()...)
			case <-deadline:
				require.FailNow(t, "line not received", "want %q, got %q", want, got)
			}
		}
	}
	appendFile(t, out, "line 1\n")
	await("line 1\n")
	appendFile(t, out, "line 2\n")
	await("line 2\n")

	// The last line is written just before the job ends: it is sent, then
	// the stream ends.
	appendFile(t, out, "last line\n")
	_, err = e.client.CancelJob(ctx, &jobpb.CancelJobRequest{JobId: id})
	require.NoError(t, err)
	for c := range chunks {
		if errors.Is(c.err, io.EOF) {
			break
		}
		require.NoError(t, c.err)
		got = append(got, c.m.GetData()...)
	}
	require.Equal(t, "line 1\nline 2\nlast line\n", string(got))

	// A follow of an ended job sends what there is and ends.
	s2, err := e.client.StreamJobOutput(ctx, &jobpb.StreamJobOutputRequest{JobId: id, Follow: true, Offset: 7})
	require.NoError(t, err)
	rest, err := readStream(t, s2, 7)
	require.NoError(t, err)
	require.Equal(t, "line 2\nlast line\n", string(rest))
}

func TestListAndDownloadJobOutputs(t *testing.T) {
	t.Parallel()
	e := newOutputEnv(t)
	ctx := as(t, "alice", false)
	id, dir := e.job(t)
	big := make([]byte, 150<<10+3)
	_, _ = rand.Read(big)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "images"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "images", "sky.fits"), big, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "stdout.log"), []byte("done\n"), 0o644))
	secretFile := filepath.Join(e.root, "secret.txt")
	require.NoError(t, os.WriteFile(secretFile, []byte("not yours"), 0o600))
	require.NoError(t, os.Symlink(secretFile, filepath.Join(dir, "escape")))
	require.NoError(t, os.Symlink("../", filepath.Join(dir, "up")))

	list, err := e.client.ListJobOutputs(ctx, &jobpb.ListJobOutputsRequest{JobId: id})
	require.NoError(t, err)
	require.False(t, list.GetTruncated())
	var paths []string
	for _, f := range list.GetFiles() {
		paths = append(paths, f.GetPath())
	}
	require.Equal(t, []string{"images/sky.fits", "stdout.log"}, paths, "links are left out")
	require.EqualValues(t, len(big), list.GetFiles()[0].GetSizeBytes())
	require.NotNil(t, list.GetFiles()[0].GetModifiedAt())

	download := func(path string) (*jobpb.OutputFile, []byte, string, error) {
		s, err := e.client.DownloadJobOutput(ctx, &jobpb.DownloadJobOutputRequest{JobId: id, Path: path})
		require.NoError(t, err)
		var (
			file *jobpb.OutputFile
			data []byte
			sum  string
		)
		for i := 0; ; i++ {
			m, err := s.Recv()
			if errors.Is(err, io.EOF) {
				return file, data, sum, nil
			}
			if err != nil {
				return nil, nil, "", err
			}
			switch p := m.GetPart().(type) {
			case *jobpb.DownloadJobOutputResponse_File:
				require.Zero(t, i, "the description comes first")
				file = p.File
			case *jobpb.DownloadJobOutputResponse_Chunk:
				require.Empty(t, sum, "no chunk after the checksum")
				require.LessOrEqual(t, len(p.Chunk), 64<<10)
				data = append(data, p.Chunk...)
			case *jobpb.DownloadJobOutputResponse_Sha256:
				sum = p.Sha256
			}
		}
	}
	file, data, sum, err := download("images/sky.fits")
	require.NoError(t, err)
	require.Equal(t, "images/sky.fits", file.GetPath())
	require.EqualValues(t, len(big), file.GetSizeBytes())
	require.True(t, bytes.Equal(big, data))
	want := sha256.Sum256(big)
	require.Equal(t, hex.EncodeToString(want[:]), sum)

	file, _, _, err = download("./images//sky.fits")
	require.NoError(t, err)
	require.Equal(t, "images/sky.fits", file.GetPath(), "the path is given cleaned")

	for _, p := range []string{"escape", "up/secret.txt", "images/../../secret.txt", secretFile, "images"} {
		_, _, _, err := download(p)
		require.Equal(t, []string{"path"}, fieldPaths(t, err), "path %q", p)
	}
	_, _, _, err = download("no-such-file")
	require.Equal(t, codes.NotFound, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "no such file")

	var ok int
	for _, a := range e.audits(id, events.AuditActionExport) {
		if a.Outcome == events.AuditOutcomeSuccess {
			ok++
			require.Equal(t, "alice", a.ActorUserID)
		}
	}
	require.Equal(t, 2, ok, "each download is audited")
	require.NotEmpty(t, e.audits(id, events.AuditActionRead), "the listing is audited")
}

// TestSlowFollowerHoldsBackNothingElse stalls one follower (it never
// receives) while the job writes 64 MiB: another follower still gets every
// byte, the writer is never blocked, and the service does not buffer the
// stalled stream's backlog (the heap grows far less than the output). Once
// the stalled client reads again it gets everything, in order. It runs
// alone (not parallel) so that the heap it measures is its own.
func TestSlowFollowerHoldsBackNothingElse(t *testing.T) {
	e := newOutputEnv(t)
	ctx := as(t, "alice", false)
	id, dir := e.job(t)
	out := filepath.Join(dir, "stdout.log")
	require.NoError(t, os.WriteFile(out, nil, 0o644))

	slow, err := e.client.StreamJobOutput(ctx, &jobpb.StreamJobOutputRequest{JobId: id, Follow: true})
	require.NoError(t, err)
	fast, err := e.client.StreamJobOutput(ctx, &jobpb.StreamJobOutputRequest{JobId: id, Follow: true})
	require.NoError(t, err)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	const total = 64 << 20
	block := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	start := time.Now()
	for written := 0; written < total; written += len(block) {
		_, err := f.Write(block)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
	t.Logf("the job wrote %d MiB in %s with a stalled follower", total>>20, time.Since(start).Round(time.Millisecond))

	var n int64
	for n < total {
		m, err := fast.Recv()
		require.NoError(t, err)
		require.Equal(t, n, m.GetOffset())
		n += int64(len(m.GetData()))
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap in use grew by %.1f MiB while %d MiB streamed past a stalled follower", float64(growth)/(1<<20), total>>20)
	// What the stalled stream may hold is gRPC's flow-control window (its
	// BDP estimate grows it up to 16 MiB), on the client's side; the
	// service holds one 64 KiB buffer per stream.
	require.Less(t, growth, int64(total/2), "the stalled stream's backlog is not buffered")

	_, err = e.client.CancelJob(ctx, &jobpb.CancelJobRequest{JobId: id})
	require.NoError(t, err)
	got, err := readStream(t, slow, 0)
	require.NoError(t, err)
	require.Len(t, got, total, "the stalled follower gets everything once it reads")
	require.True(t, bytes.Equal(block, got[total-len(block):]))
	rest, err := readStream(t, fast, total)
	require.NoError(t, err)
	require.Empty(t, rest)
}
