package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// logsRetries is how many times in a row chctl jobs logs -f reconnects,
// from where it stopped, after the service became unreachable.
const logsRetries = 10

func runJobsLogs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addClientFlags(fs)
	follow := fs.Bool("f", false, "follow: keep printing what the job writes until it ends")
	errStream := fs.Bool("stderr", false, "print the job's standard error instead of its standard output")
	offset := fs.Int64("offset", 0, "start at this byte offset (to resume an earlier read)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"jobs logs: want exactly one job id"}
	}
	if *offset < 0 {
		return usageError{"jobs logs: -offset must not be negative"}
	}
	ctx, client, done, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	req := &jobpb.StreamJobOutputRequest{JobId: pos[0], Offset: *offset, Follow: *follow, Stream: jobpb.OutputStream_OUTPUT_STREAM_STDOUT}
	if *errStream {
		req.Stream = jobpb.OutputStream_OUTPUT_STREAM_STDERR
	}
	failures := 0
	for {
		n, err := streamLogs(ctx, client, req, stdout)
		if err == nil {
			return nil
		}
		if n > 0 {
			failures = 0
		}
		// The stream can be resumed where it broke: retry while following.
		if !*follow || status.Code(err) != codes.Unavailable || failures >= logsRetries || ctx.Err() != nil {
			return callError("job logs", err)
		}
		failures++
		fmt.Fprintf(stderr, "chctl: job logs: %s; resuming at byte %d\n", status.Convert(err).Message(), req.Offset)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(failures) * time.Second):
		}
	}
}

// streamLogs copies one StreamJobOutput call to w and advances req.Offset
// past every byte written; it returns how many bytes it wrote.
func streamLogs(ctx context.Context, client jobpb.JobServiceClient, req *jobpb.StreamJobOutputRequest, w io.Writer) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.StreamJobOutput(ctx, req)
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if resp.GetOffset() != req.Offset {
			return n, fmt.Errorf("job logs: the service sent bytes from %d, expected %d", resp.GetOffset(), req.Offset)
		}
		if _, err := w.Write(resp.GetData()); err != nil {
			return n, err
		}
		req.Offset += int64(len(resp.GetData()))
		n += int64(len(resp.GetData()))
	}
}

func runJobsOutputs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs outputs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addClientFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"jobs outputs: want exactly one job id"}
	}
	ctx, client, done, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.ListJobOutputs(ctx, &jobpb.ListJobOutputsRequest{JobId: pos[0]})
	if err != nil {
		return callError("list job outputs", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SIZE\tMODIFIED\tPATH\t")
	for _, f := range resp.GetFiles() {
		fmt.Fprintf(tw, "%d\t%s\t%s\t\n", f.GetSizeBytes(), f.GetModifiedAt().AsTime().Local().Format(time.DateTime), f.GetPath())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if resp.GetTruncated() {
		fmt.Fprintf(stdout, "(only the first %d files are listed)\n", len(resp.GetFiles()))
	}
	return nil
}

func runJobsDownload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs download", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addClientFlags(fs)
	out := fs.String("o", "", `file to write (default: the file's name in the current directory; "-" for standard output)`)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"jobs download: want a job id and a path (as chctl jobs outputs lists it)"}
	}
	id, name := pos[0], pos[1]
	target := *out
	if target == "" {
		target = path.Base(name)
		if target == "." || target == "/" || target == ".." {
			return usageError{fmt.Sprintf("jobs download: no file name in %q; set -o", name)}
		}
	}
	ctx, client, done, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.DownloadJobOutput(ctx, &jobpb.DownloadJobOutputRequest{JobId: id, Path: name})
	if err != nil {
		return callError("download job output", err)
	}

	var (
		w      io.Writer = stdout
		tmp    *os.File
		closed bool
	)
	if target != "-" {
		// A temporary file beside the target (mode 0600), renamed once
		// verified: the target is never left half written.
		tmp, err = os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".chctl-*")
		if err != nil {
			return fmt.Errorf("download job output: %w", err)
		}
		defer func() {
			if !closed {
				_ = tmp.Close()
			}
			_ = os.Remove(tmp.Name()) // gone already after the rename
		}()
		w = tmp
	}
	h := sha256.New()
	var (
		file *jobpb.OutputFile
		n    int64
		sum  string
	)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return callError("download job output", err)
		}
		switch p := resp.GetPart().(type) {
		case *jobpb.DownloadJobOutputResponse_File:
			file = p.File
		case *jobpb.DownloadJobOutputResponse_Chunk:
			if file == nil || sum != "" {
				return errors.New("download job output: the service sent a chunk out of order")
			}
			if _, err := w.Write(p.Chunk); err != nil {
				return fmt.Errorf("download job output: %w", err)
			}
			h.Write(p.Chunk)
			n += int64(len(p.Chunk))
		case *jobpb.DownloadJobOutputResponse_Sha256:
			sum = p.Sha256
		}
	}
	got := hex.EncodeToString(h.Sum(nil))
	switch {
	case file == nil || sum == "":
		return errors.New("download job output: the download ended before its checksum")
	case got != sum:
		return fmt.Errorf("download job output: checksum mismatch: received %s, the service sent %s (nothing written)", got, sum)
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("download job output: %w", err)
		}
		closed = true
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("download job output: %w", err)
		}
		if err := os.Rename(tmp.Name(), target); err != nil {
			return fmt.Errorf("download job output: %w", err)
		}
	}
	note := ""
	if n != file.GetSizeBytes() {
		note = fmt.Sprintf(" (the file was %d bytes when the download began: it changed meanwhile)", file.GetSizeBytes())
	}
	msgTo := stdout
	if target == "-" {
		msgTo = stderr
	}
	fmt.Fprintf(msgTo, "%s: %d bytes, sha256 %s verified, written to %s%s\n", file.GetPath(), n, got, target, note)
	return nil
}
