package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// ResubmitInput is the input of ResubmitJob.
type ResubmitInput struct {
	JobID          string
	IdempotencyKey string
	// Override returns the new job's spec from a copy of the earlier job's,
	// with the fields the request names replaced; nil resubmits unchanged.
	// A *domain.ValidationError it returns is reported as it is.
	Override func(domain.Spec) (domain.Spec, error)
}

// ResubmitJob creates a new job from the spec of an earlier job the actor
// may see (in any status), changed by in.Override, and links it to the
// earlier one (Job.ResubmittedFrom, the job.submitted event and its audit
// record). The new spec is validated like a new submission; violations of
// spec fields are reported under "overrides". The idempotency key works as
// in SubmitJob: a retry returns the job created first (replayed = true).
// Another user's job is domain.ErrNotFound, and the refusal is audited.
func (a *App) ResubmitJob(ctx context.Context, actor Actor, in ResubmitInput) (*domain.Job, bool, error) {
	if actor.UserID == "" {
		return nil, false, domain.ErrUnauthenticated
	}
	var ve []domain.FieldViolation
	if in.JobID == "" {
		ve = append(ve, domain.FieldViolation{Field: "job_id", Description: "required"})
	}
	if err := domain.ValidateIdempotencyKey(in.IdempotencyKey); err != nil {
		ve = append(ve, violationsOf(err)...)
	}
	if len(ve) > 0 {
		return nil, false, &domain.ValidationError{Violations: ve}
	}
	src, err := a.GetJob(ctx, actor, in.JobID)
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			a.auditDenied(ctx, actor, in.JobID, events.AuditActionSubmit)
		}
		return nil, false, fmt.Errorf("resubmit: %w", err)
	}
	spec := src.Spec
	spec.Environment = maps.Clone(spec.Environment)
	spec.Tags = slices.Clone(spec.Tags)
	if in.Override != nil {
		if spec, err = in.Override(spec); err != nil {
			return nil, false, fmt.Errorf("resubmit job %s: %w", in.JobID, err)
		}
	}
	j, replayed, err := a.SubmitJob(ctx, actor, SubmitInput{IdempotencyKey: in.IdempotencyKey, Spec: spec, ResubmittedFrom: src.ID})
	var verr *domain.ValidationError
	if errors.As(err, &verr) {
		out := &domain.ValidationError{Violations: slices.Clone(verr.Violations)}
		for i, v := range out.Violations {
			if rest, ok := strings.CutPrefix(v.Field, "spec."); ok {
				out.Violations[i].Field = "overrides." + rest
			}
		}
		return nil, false, out
	}
	if err != nil {
		return nil, false, fmt.Errorf("resubmit job %s: %w", in.JobID, err)
	}
	if !replayed {
		a.log.InfoContext(ctx, "job resubmitted", "job_id", j.ID, "resubmitted_from", src.ID, "user_id", actor.UserID)
	}
	return j, replayed, nil
}

// requestHash fingerprints a submission: the spec (whose Spec.Hash is
// specHash), and for a resubmission also the job it copies, so that a key
// used for one is not replayed for the other.
func requestHash(specHash, resubmittedFrom string) string {
	if resubmittedFrom == "" {
		return specHash
	}
	sum := sha256.Sum256([]byte("resubmit\x00" + resubmittedFrom + "\x00" + specHash))
	return hex.EncodeToString(sum[:])
}
