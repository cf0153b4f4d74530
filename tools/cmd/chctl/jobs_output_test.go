package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

func TestJobsOutputUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "logs without id", args: []string{"jobs", "logs", "-token", "t"}, wantErr: "exactly one job id"},
		{name: "logs negative offset", args: []string{"jobs", "logs", "j", "-offset", "-1", "-token", "t"}, wantErr: "-offset must not be negative"},
		{name: "outputs without id", args: []string{"jobs", "outputs", "-token", "t"}, wantErr: "exactly one job id"},
		{name: "download without path", args: []string{"jobs", "download", "j", "-token", "t"}, wantErr: "a job id and a path"},
		{name: "download of a directory name", args: []string{"jobs", "download", "j", "..", "-token", "t"}, wantErr: "set -o"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := chctl(t, tt.args...)
			require.ErrorContains(t, err, tt.wantErr)
			var usage usageError
			require.ErrorAs(t, err, &usage)
		})
	}
}

// TestJobsOutputAgainstOrchestrator follows, lists and downloads a job's
// output through chctl and the real orchestrator binary.
func TestJobsOutputAgainstOrchestrator(t *testing.T) {
	t.Parallel()
	addr := startOrchestrator(t)
	tok, err := chctl(t, "token", "-secret", testSecret, "-user", "chctl-output-user")
	require.NoError(t, err)
	conn := []string{"-addr", addr, "-token", strings.TrimSpace(tok)}
	with := func(args ...string) []string { return append(args, conn...) }

	script := filepath.Join(t.TempDir(), "job.sh")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho one\nsleep 2\necho two\necho oops >&2\nmkdir -p out\necho data > out/result.txt\n"), 0o600))
	out, err := chctl(t, with("jobs", "submit", "-name", "chctl-output", "-agent", "custom", "-system", "frontera",
		"-partition", "development", "-script", script, "-walltime", "5m")...)
	require.NoError(t, err, out)
	id := jobIDRe.FindStringSubmatch(out)[1]

	// -f returns once the job has ended, with everything it printed.
	logs, err := chctl(t, with("jobs", "logs", id, "-f")...)
	require.NoError(t, err, logs)
	require.Equal(t, "one\ntwo\n", logs)
	got, err := chctl(t, with("jobs", "get", id)...)
	require.NoError(t, err, got)
	require.Regexp(t, `status\s+COMPLETED`, got)

	rest, err := chctl(t, with("jobs", "logs", id, "-offset", "4")...)
	require.NoError(t, err, rest)
	require.Equal(t, "two\n", rest, "resumed after the first line")
	stderr, err := chctl(t, with("jobs", "logs", "-stderr", id)...)
	require.NoError(t, err, stderr)
	require.Equal(t, "oops\n", stderr)

	table, err := chctl(t, with("jobs", "outputs", id)...)
	require.NoError(t, err, table)
	require.Regexp(t, `(?m)^\s*SIZE\s+MODIFIED\s+PATH\s*$`, table)
	require.Regexp(t, `(?m)^\s*5\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+out/result\.txt\s*$`, table)
	require.Regexp(t, `(?m)^\s*8\s+.*stdout\.log\s*$`, table)

	dir := t.TempDir()
	target := filepath.Join(dir, "result.txt")
	msg, err := chctl(t, with("jobs", "download", id, "out/result.txt", "-o", target)...)
	require.NoError(t, err, msg)
	require.Regexp(t, `out/result\.txt: 5 bytes, sha256 [0-9a-f]{64} verified`, msg)
	b, err := os.ReadFile(target)
	require.NoError(t, err)
	require.Equal(t, "data\n", string(b))

	toStdout, err := chctl(t, with("jobs", "download", id, "stdout.log", "-o", "-")...)
	require.NoError(t, err, toStdout)
	require.True(t, strings.HasPrefix(toStdout, "one\ntwo\n"), toStdout)

	_, err = chctl(t, with("jobs", "download", id, "../../etc/passwd", "-o", filepath.Join(dir, "passwd"))...)
	require.ErrorContains(t, err, "InvalidArgument")
	require.ErrorContains(t, err, "\n  path: ")
	_, err = chctl(t, with("jobs", "download", id, "missing.txt", "-o", filepath.Join(dir, "missing.txt"))...)
	require.ErrorContains(t, err, "NotFound")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "a refused download leaves no file behind")

	other, err := chctl(t, "token", "-secret", testSecret, "-user", "someone-else")
	require.NoError(t, err)
	for _, args := range [][]string{{"logs", id}, {"outputs", id}, {"download", id, "stdout.log", "-o", filepath.Join(dir, "x")}} {
		_, err := chctl(t, append(append([]string{"jobs"}, args...), "-addr", addr, "-token", strings.TrimSpace(other))...)
		require.ErrorContains(t, err, "NotFound", "jobs %v of another user's job", args)
	}
}

// corruptDownloads is a JobService whose downloads end with a wrong
// checksum, as a corrupted transfer would.
type corruptDownloads struct {
	jobpb.UnimplementedJobServiceServer
}

func (corruptDownloads) DownloadJobOutput(_ *jobpb.DownloadJobOutputRequest, s grpc.ServerStreamingServer[jobpb.DownloadJobOutputResponse]) error {
	for _, m := range []*jobpb.DownloadJobOutputResponse{
		{Part: &jobpb.DownloadJobOutputResponse_File{File: &jobpb.OutputFile{Path: "a.txt", SizeBytes: 5}}},
		{Part: &jobpb.DownloadJobOutputResponse_Chunk{Chunk: []byte("data\n")}},
		{Part: &jobpb.DownloadJobOutputResponse_Sha256{Sha256: strings.Repeat("0", 64)}},
	} {
		if err := s.Send(m); err != nil {
			return err
		}
	}
	return nil
}

func TestJobsDownloadRefusesABadChecksum(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	jobpb.RegisterJobServiceServer(srv, corruptDownloads{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	dir := t.TempDir()
	target := filepath.Join(dir, "a.txt")
	require.NoError(t, os.WriteFile(target, []byte("the earlier version\n"), 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	err = run(ctx, []string{"jobs", "download", "j-1", "a.txt", "-o", target, "-addr", lis.Addr().String(), "-token", "t"}, &out, &out)
	require.Error(t, err)
	require.Regexp(t, regexp.MustCompile(`checksum mismatch: received [0-9a-f]{64}, the service sent 0{64}`), err.Error())
	b, err := os.ReadFile(target)
	require.NoError(t, err)
	require.Equal(t, "the earlier version\n", string(b), "the target is untouched")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left")
}

// flakyLogs is a JobService whose first StreamJobOutput breaks off with
// Unavailable after some bytes, as a restarting service would.
type flakyLogs struct {
	jobpb.UnimplementedJobServiceServer
	offsets chan int64
}

func (f flakyLogs) StreamJobOutput(req *jobpb.StreamJobOutputRequest, s grpc.ServerStreamingServer[jobpb.StreamJobOutputResponse]) error {
	f.offsets <- req.GetOffset()
	const text = "hello world\n"
	if req.GetOffset() == 0 {
		if err := s.Send(&jobpb.StreamJobOutputResponse{Data: []byte(text[:6]), Offset: 0}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "shutting down")
	}
	return s.Send(&jobpb.StreamJobOutputResponse{Data: []byte(text[req.GetOffset():]), Offset: req.GetOffset()})
}

func TestJobsLogsFollowResumesWhereItBroke(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	fake := flakyLogs{offsets: make(chan int64, 10)}
	jobpb.RegisterJobServiceServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut strings.Builder
	err = run(ctx, []string{"jobs", "logs", "j-1", "-f", "-addr", lis.Addr().String(), "-token", "t"}, &out, &errOut)
	require.NoError(t, err, errOut.String())
	require.Equal(t, "hello world\n", out.String(), "nothing lost, nothing repeated")
	require.Contains(t, errOut.String(), "resuming at byte 6")
	close(fake.offsets)
	var offsets []int64
	for o := range fake.offsets {
		offsets = append(offsets, o)
	}
	require.Equal(t, []int64{0, 6}, offsets)

	// Without -f a broken stream is an error.
	fake2 := flakyLogs{offsets: make(chan int64, 10)}
	lis2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv2 := grpc.NewServer()
	jobpb.RegisterJobServiceServer(srv2, fake2)
	go func() { _ = srv2.Serve(lis2) }()
	t.Cleanup(srv2.Stop)
	err = run(ctx, []string{"jobs", "logs", "j-1", "-addr", lis2.Addr().String(), "-token", "t"}, &out, &errOut)
	require.ErrorContains(t, err, "Unavailable")
}
