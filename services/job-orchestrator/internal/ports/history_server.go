package ports

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// maxMaskPaths bounds update_mask; JobSpec has fewer fields than this.
const maxMaskPaths = 64

// GetJobHistory implements jobpb.JobServiceServer: the job and every one
// of its transitions with who caused it, why, and the scheduler's code.
func (s *JobServer) GetJobHistory(ctx context.Context, req *jobpb.GetJobHistoryRequest) (*jobpb.GetJobHistoryResponse, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	j, err := s.app.GetJob(ctx, actor, req.GetJobId())
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	out := &jobpb.GetJobHistoryResponse{Job: jobToPB(j)}
	for _, tr := range j.History {
		ev := eventToPB(j.ID, tr)
		ev.Actor = j.TransitionActor(tr)
		out.Events = append(out.Events, ev)
	}
	return out, nil
}

// ResubmitJob implements jobpb.JobServiceServer. The fields named in
// update_mask are copied from overrides onto the earlier job's spec
// (generically, through protobuf reflection); every path is checked
// against JobSpec first.
func (s *JobServer) ResubmitJob(ctx context.Context, req *jobpb.ResubmitJobRequest) (*jobpb.ResubmitJobResponse, error) {
	actor, err := actorOf(ctx)
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	paths := req.GetUpdateMask().GetPaths()
	var ve []domain.FieldViolation
	if len(paths) > maxMaskPaths {
		ve = append(ve, domain.FieldViolation{Field: "update_mask.paths", Description: fmt.Sprintf("at most %d paths, got %d", maxMaskPaths, len(paths))})
	} else {
		for i, p := range paths {
			if _, err := fieldmaskpb.New(&jobpb.JobSpec{}, p); err != nil {
				ve = append(ve, domain.FieldViolation{Field: fmt.Sprintf("update_mask.paths[%d]", i),
					Description: fmt.Sprintf("%q is not a field of JobSpec (e.g. resources.walltime, partition, environment)", p)})
			}
		}
	}
	if len(paths) > 0 && req.GetOverrides() == nil {
		ve = append(ve, domain.FieldViolation{Field: "overrides", Description: "required when update_mask names fields"})
	}
	if len(ve) > 0 {
		return nil, statusOf(ctx, s.log, &domain.ValidationError{Violations: ve})
	}
	in := app.ResubmitInput{JobID: req.GetJobId(), IdempotencyKey: req.GetIdempotencyKey()}
	if len(paths) > 0 {
		overrides := req.GetOverrides()
		in.Override = func(base domain.Spec) (domain.Spec, error) {
			pb := specToPB(base)
			applyMask(pb.ProtoReflect(), proto.Clone(overrides).ProtoReflect(), paths)
			return specFromPB(pb), nil
		}
	}
	j, replayed, err := s.app.ResubmitJob(ctx, actor, in)
	if err != nil {
		return nil, statusOf(ctx, s.log, err)
	}
	return &jobpb.ResubmitJobResponse{Job: jobToPB(j), Replayed: replayed}, nil
}

// applyMask replaces in dst the fields named by paths (valid field-mask
// paths of dst's type, "a.b.c") with src's: a field src has is copied, a
// field src lacks is cleared.
func applyMask(dst, src protoreflect.Message, paths []string) {
	for _, p := range paths {
		applyPath(dst, src, strings.Split(p, "."))
	}
}

func applyPath(dst, src protoreflect.Message, path []string) {
	fd := dst.Descriptor().Fields().ByName(protoreflect.Name(path[0]))
	if fd == nil {
		return // checked by fieldmaskpb.New before
	}
	if len(path) > 1 {
		// An absent src message reads as its empty default, whose fields clear dst's.
		applyPath(dst.Mutable(fd).Message(), src.Get(fd).Message(), path[1:])
		return
	}
	if src.Has(fd) {
		dst.Set(fd, src.Get(fd))
	} else {
		dst.Clear(fd)
	}
}
