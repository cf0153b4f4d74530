package service_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/outbox/relaytest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// outputScript prints a numbered line with the time it was written (Unix
// nanoseconds) every two seconds, so a follower can tell how long each line
// took to reach it and that it came while the job still ran; it writes to
// stderr, leaves a result file, and plants links out of its directory.
const outputScript = `#!/bin/sh
ln -s /etc/passwd leak
ln -s .. up
mkdir -p results
echo 42 > results/answer.txt
for i in 1 2 3; do
  echo "line $i $(date +%s%N)"
  sleep 2
done
echo "a warning" >&2
echo done
`

// outputBackend is what differs between the backends in the output test.
type outputBackend struct {
	name      string
	env       map[string]string
	partition string
	// files are the names the backend gives the job's stdout and stderr.
	files func(jobID string) (stdout, stderr string)
	// wait bounds the wait for the job to start and to end.
	wait time.Duration
}

// received is one chunk of a followed stream and when it came.
type received struct {
	data   []byte
	offset int64
	at     time.Time
}

// runJobOutput runs outputScript on the real orchestrator binary with
// backend b and checks the output RPCs against what the job wrote.
func runJobOutput(t *testing.T, b outputBackend) {
	prefix := kafkabustest.Prefix(t, testinfra.KafkaBrokers(t), "orchtest-")
	vars := env(t, prefix, stateDir(t))
	for k, v := range b.env {
		vars[k] = v
	}
	p := servicetest.RunBinary(t, "../../cmd/job-orchestrator", vars)
	c := client(t, p.GRPCAddr)
	user := relaytest.RandomName(t, "user-")
	ctx := authed(t, user)
	h := &e2eHarness{b: backend{wait: b.wait}, c: c, user: user}

	resp, err := c.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: relaytest.RandomName(t, "k-"),
		Spec: customSpecOn(b.partition, outputScript, 10*time.Minute)})
	require.NoError(t, err)
	id := resp.GetJob().GetJobId()

	// The follower starts before the job runs; it gets nothing until the
	// job writes, then every line as it is written.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := c.StreamJobOutput(sctx, &jobpb.StreamJobOutputRequest{JobId: id, Follow: true})
	require.NoError(t, err)
	chunks := make(chan received, 64)
	streamErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				streamErr <- err
				close(chunks)
				return
			}
			chunks <- received{data: m.GetData(), offset: m.GetOffset(), at: time.Now()}
		}
	}()

	var followed []byte
	var latencies []time.Duration
	var resumeAt int64
	var lineAt []time.Time
	for n := 1; n <= 3; n++ {
		want := fmt.Sprintf("line %d ", n)
		deadline := time.After(b.wait)
		for !bytes.Contains(followed, []byte(want)) || !bytes.HasSuffix(followed, []byte("\n")) {
			select {
			case ch, ok := <-chunks:
				if !ok {
					require.FailNow(t, "the stream ended early", "%v", <-streamErr)
				}
				require.EqualValues(t, len(followed), ch.offset, "chunks are contiguous")
				followed = append(followed, ch.data...)
				// Each line carries the time it was written.
				for line := range strings.Lines(string(ch.data)) {
					f := strings.Fields(line)
					if len(f) == 3 && f[0] == "line" {
						ns, err := strconv.ParseInt(f[2], 10, 64)
						require.NoError(t, err, "line %q", line)
						latencies = append(latencies, ch.at.Sub(time.Unix(0, ns)))
					}
				}
			case <-deadline:
				require.FailNow(t, "line not received", "want %q; got %q", want, followed)
			}
		}
		// The job sleeps two seconds after each line: it has not ended (the
		// fleet may not have seen it start yet: QUEUED or RUNNING).
		lineAt = append(lineAt, time.Now())
		j, err := c.GetJob(ctx, &jobpb.GetJobRequest{JobId: id})
		require.NoError(t, err)
		require.Contains(t, []jobpb.JobStatus{jobpb.JobStatus_JOB_STATUS_QUEUED, jobpb.JobStatus_JOB_STATUS_RUNNING},
			j.GetJob().GetStatus(), "line %d reached the follower while the job ran", n)
		if n == 1 {
			resumeAt = int64(len(followed))
		}
	}
	require.Len(t, latencies, 3)
	t.Logf("write-to-follower latency per line (%s): %v (max %v)", b.name, latencies, slices.Max(latencies))

	// The follow stream ends by itself once the job has ended, with all of
	// its output.
	for ch := range chunks {
		require.EqualValues(t, len(followed), ch.offset)
		followed = append(followed, ch.data...)
	}
	require.ErrorIs(t, <-streamErr, io.EOF, "the follow stream ends cleanly when the job ends")
	job := h.await(t, id, "COMPLETED", func(j *jobpb.Job) bool { return j.GetStatus() == jobpb.JobStatus_JOB_STATUS_COMPLETED })
	require.Equal(t, int32(0), job.GetExitCode())
	require.True(t, bytes.HasSuffix(followed, []byte("done\n")), "the last line: %q", followed)
	for i, at := range lineAt {
		require.True(t, at.Before(job.GetFinishedAt().AsTime()), "line %d came at %s, before the job ended at %s",
			i+1, at.Format(time.StampMilli), job.GetFinishedAt().AsTime().Local().Format(time.StampMilli))
	}

	whole := readOutput(t, c, ctx, &jobpb.StreamJobOutputRequest{JobId: id})
	require.Equal(t, string(whole), string(followed), "the followed stream is the whole file")
	require.Regexp(t, `^(line [123] \d+\n){3}done\n$`, string(whole))

	// A stream resumed from the offset after line 1 loses and repeats nothing.
	rest := readOutput(t, c, ctx, &jobpb.StreamJobOutputRequest{JobId: id, Offset: resumeAt, Follow: true})
	require.Equal(t, string(whole), string(followed[:resumeAt])+string(rest))

	stderr := readOutput(t, c, ctx, &jobpb.StreamJobOutputRequest{JobId: id, Stream: jobpb.OutputStream_OUTPUT_STREAM_STDERR})
	require.Equal(t, "a warning\n", string(stderr))

	// Outputs: the files the job left, without its links.
	stdoutName, stderrName := b.files(id)
	list, err := c.ListJobOutputs(ctx, &jobpb.ListJobOutputsRequest{JobId: id})
	require.NoError(t, err)
	var names []string
	for _, f := range list.GetFiles() {
		names = append(names, f.GetPath())
	}
	require.Contains(t, names, stdoutName)
	require.Contains(t, names, stderrName)
	require.Contains(t, names, "results/answer.txt")
	require.NotContains(t, names, "leak")
	require.True(t, slices.IsSorted(names), "path order: %v", names)

	data, sum := download(t, c, ctx, id, stdoutName)
	require.Equal(t, string(whole), string(data))
	want := sha256.Sum256(whole)
	require.Equal(t, hex.EncodeToString(want[:]), sum)
	data, _ = download(t, c, ctx, id, "results/answer.txt")
	require.Equal(t, "42\n", string(data))

	// Confinement: "..", absolute paths and the job's links out of its
	// directory are refused as invalid.
	for _, path := range []string{"../" + id + "/" + stdoutName, "/etc/passwd", "leak", "up/" + id + "/" + stdoutName, "results/../../x"} {
		_, _, err := downloadErr(c, ctx, id, path)
		require.Equal(t, codes.InvalidArgument, status.Code(err), "path %q: %v", path, err)
		require.Equal(t, []string{"path"}, violationFields(err), "path %q", path)
	}

	// Another user's job is not found, through every output RPC.
	other := authed(t, relaytest.RandomName(t, "other-"))
	_, err = readOutputErr(c, other, &jobpb.StreamJobOutputRequest{JobId: id})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	_, err = c.ListJobOutputs(other, &jobpb.ListJobOutputsRequest{JobId: id})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	_, _, err = downloadErr(c, other, id, stdoutName)
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)

	// Every call is in the audit trail on Kafka.
	var reads, exports, denied int
	require.Eventually(t, func() bool {
		reads, exports, denied = 0, 0, 0
		for _, e := range lifecycleOf(t, prefix, events.TopicAuditTrail, id) {
			a, ok := e.Payload.(events.AuditActionRecorded)
			if !ok {
				continue
			}
			switch {
			case a.Outcome == events.AuditOutcomeDenied:
				denied++
			case a.Action == events.AuditActionRead:
				reads++
			case a.Action == events.AuditActionExport:
				exports++
			}
		}
		// 4 streams + 1 listing; 2 downloads + 5 refused paths; 3 refusals.
		return reads == 5 && exports == 7 && denied == 3
	}, 30*time.Second, 200*time.Millisecond, "audit records: reads %d, exports %d, denied %d", reads, exports, denied)
}

func readOutputErr(c jobpb.JobServiceClient, ctx context.Context, req *jobpb.StreamJobOutputRequest) ([]byte, error) {
	s, err := c.StreamJobOutput(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []byte
	next := req.GetOffset()
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if m.GetOffset() != next {
			return out, fmt.Errorf("chunk at %d, want %d", m.GetOffset(), next)
		}
		next += int64(len(m.GetData()))
		out = append(out, m.GetData()...)
	}
}

func readOutput(t *testing.T, c jobpb.JobServiceClient, ctx context.Context, req *jobpb.StreamJobOutputRequest) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := readOutputErr(c, ctx, req)
	require.NoError(t, err)
	return out
}

func downloadErr(c jobpb.JobServiceClient, ctx context.Context, id, path string) (data []byte, sum string, err error) {
	s, err := c.DownloadJobOutput(ctx, &jobpb.DownloadJobOutputRequest{JobId: id, Path: path})
	if err != nil {
		return nil, "", err
	}
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return data, sum, nil
		}
		if err != nil {
			return nil, "", err
		}
		data = append(data, m.GetChunk()...)
		if m.GetSha256() != "" {
			sum = m.GetSha256()
		}
	}
}

func download(t *testing.T, c jobpb.JobServiceClient, ctx context.Context, id, path string) ([]byte, string) {
	t.Helper()
	data, sum, err := downloadErr(c, ctx, id, path)
	require.NoError(t, err, "download %s", path)
	return data, sum
}

func violationFields(err error) []string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

// TestJobOutputLocalBackend follows, resumes, lists and downloads a running
// job's output on the local backend (jobs under their own uids).
func TestJobOutputLocalBackend(t *testing.T) {
	t.Parallel()
	runJobOutput(t, outputBackend{
		name:      "local",
		env:       map[string]string{"SCHEDULER": "local"},
		partition: "development",
		files:     func(string) (string, string) { return "stdout.log", "stderr.log" },
		wait:      time.Minute,
	})
}

// TestSlurmJobOutput does the same on the stack's Slurm 24.11: the job's
// stdout and stderr files are written by slurmstepd into the job's working
// directory, which the orchestrator reads at the same path.
func TestSlurmJobOutput(t *testing.T) {
	t.Parallel()
	s := requireSlurm(t)
	runJobOutput(t, outputBackend{
		name:      "slurm",
		env:       s.orchestratorEnv(t),
		partition: slurmPartition,
		files:     func(id string) (string, string) { return id + ".out", id + ".err" },
		wait:      2 * time.Minute,
	})
}
