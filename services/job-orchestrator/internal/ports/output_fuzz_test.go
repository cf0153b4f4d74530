package ports_test

import (
	"testing"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// The output RPCs audit every read (and every refusal), so their state
// leaves audit events out; nothing else may change.

func FuzzJobStreamJobOutput(f *testing.F) {
	fj := newFuzzJobs(f)
	fj.srv.Fuzz(f, jobMethod(f, "StreamJobOutput"), fj.state(true),
		&jobpb.StreamJobOutputRequest{JobId: fj.userJob}, &jobpb.StreamJobOutputRequest{JobId: fj.otherID, Offset: 3},
		&jobpb.StreamJobOutputRequest{JobId: "../x", Offset: -1, Stream: 7})
}

func FuzzJobListJobOutputs(f *testing.F) {
	fj := newFuzzJobs(f)
	fj.srv.Fuzz(f, jobMethod(f, "ListJobOutputs"), fj.state(true),
		&jobpb.ListJobOutputsRequest{JobId: fj.userJob}, &jobpb.ListJobOutputsRequest{JobId: fj.otherID},
		&jobpb.ListJobOutputsRequest{JobId: "/etc"})
}

func FuzzJobDownloadJobOutput(f *testing.F) {
	fj := newFuzzJobs(f)
	fj.srv.Fuzz(f, jobMethod(f, "DownloadJobOutput"), fj.state(true),
		&jobpb.DownloadJobOutputRequest{JobId: fj.userJob, Path: "stdout.log"},
		&jobpb.DownloadJobOutputRequest{JobId: fj.otherID, Path: "stdout.log"},
		&jobpb.DownloadJobOutputRequest{JobId: fj.userJob, Path: "../../etc/passwd"},
		&jobpb.DownloadJobOutputRequest{JobId: fj.userJob, Path: "/etc/passwd"})
}
