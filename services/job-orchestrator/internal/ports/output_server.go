package ports

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// outputStreams maps the proto's output streams; unset means stdout.
var outputStreams = map[jobpb.OutputStream]app.OutputStream{
	jobpb.OutputStream_OUTPUT_STREAM_UNSPECIFIED: app.StreamStdout,
	jobpb.OutputStream_OUTPUT_STREAM_STDOUT:      app.StreamStdout,
	jobpb.OutputStream_OUTPUT_STREAM_STDERR:      app.StreamStderr,
}

// StreamJobOutput implements jobpb.JobServiceServer.
func (s *JobServer) StreamJobOutput(req *jobpb.StreamJobOutputRequest, stream jobpb.JobService_StreamJobOutputServer) error {
	ctx := stream.Context()
	actor, err := actorOf(ctx)
	if err != nil {
		return statusOf(ctx, s.log, err)
	}
	in := app.StreamInput{JobID: req.GetJobId(), Stream: outputStreams[req.GetStream()], Offset: req.GetOffset(), Follow: req.GetFollow()}
	err = s.app.StreamJobOutput(ctx, actor, in, func(data []byte, offset int64) error {
		return stream.Send(&jobpb.StreamJobOutputResponse{Data: data, Offset: offset})
	})
	return statusOf(ctx, s.log, err)
}

// ListJobOutputs implements jobpb.JobServiceServer.
func (s *JobServer) ListJobOutputs(ctx context.Context, req *jobpb.ListJobOutputsRequest) (*jobpb.ListJobOutputsResponse, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	files, truncated, err := s.app.ListJobOutputs(ctx, actor, req.GetJobId())
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	out := &jobpb.ListJobOutputsResponse{Truncated: truncated, Files: make([]*jobpb.OutputFile, 0, len(files))}
	for _, f := range files {
		out.Files = append(out.Files, outputFileToPB(f))
	}
	return out, nil
}

// DownloadJobOutput implements jobpb.JobServiceServer.
func (s *JobServer) DownloadJobOutput(req *jobpb.DownloadJobOutputRequest, stream jobpb.JobService_DownloadJobOutputServer) error {
	ctx := stream.Context()
	actor, err := actorOf(ctx)
	if err != nil {
		return statusOf(ctx, s.log, err)
	}
	sum, err := s.app.DownloadJobOutput(ctx, actor, req.GetJobId(), req.GetPath(),
		func(f app.OutputInfo) error {
			return stream.Send(&jobpb.DownloadJobOutputResponse{Part: &jobpb.DownloadJobOutputResponse_File{File: outputFileToPB(f)}})
		},
		func(chunk []byte) error {
			return stream.Send(&jobpb.DownloadJobOutputResponse{Part: &jobpb.DownloadJobOutputResponse_Chunk{Chunk: chunk}})
		})
	if err != nil {
		return statusOf(ctx, s.log, err)
	}
	return stream.Send(&jobpb.DownloadJobOutputResponse{Part: &jobpb.DownloadJobOutputResponse_Sha256{Sha256: sum}})
}

func outputFileToPB(f app.OutputInfo) *jobpb.OutputFile {
	return &jobpb.OutputFile{Path: f.Path, SizeBytes: f.Size, ModifiedAt: timestamppb.New(f.ModifiedAt)}
}
