package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/domain"
)

// ErrNoCheckpoint is returned by GetCheckpoint when no checkpoint qualifies.
var ErrNoCheckpoint = errors.New("no checkpoint")

// Trail reads and verifies the stored audit trail.
type Trail struct {
	repo TrailStore
	cp   *Checkpointer
	cfg  TrailConfig
}

// TrailConfig configures the read side of the trail.
type TrailConfig struct {
	// Keys verify checkpoints: the current signing key and every key it replaced.
	Keys auditchain.KeySet
	// Retention is the retention period: the checkpoint anchoring a trail
	// shortened by retention must be older. 0 skips that check.
	Retention time.Duration
	// Now is the clock the retention period counts back from; nil means time.Now.
	Now func() time.Time
}

// NewTrail returns the read side of the trail. cp, when not nil, signs the
// head before a whole verification or export, so that they end on a
// checkpoint and a cut-off tail is detectable.
func NewTrail(repo TrailStore, cp *Checkpointer, cfg TrailConfig) *Trail {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Trail{repo: repo, cp: cp, cfg: cfg}
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	OK bool
	// Checked is the number of records whose link and hash were checked.
	Checked int64
	// BadSequence is the first sequence that failed; 0 when OK.
	BadSequence uint64
	// Reason is the failure reason and its detail; empty when OK.
	Reason string
}

func verifyResult(res auditchain.Result) VerifyResult {
	out := VerifyResult{OK: res.OK, Checked: res.Records}
	if !res.OK {
		out.BadSequence = res.BadSequence
		out.Reason = res.Reason.String() + ": " + res.Detail
	}
	return out
}

// Verify recomputes the chain over from..to (0 and 0 for everything; to 0
// means up to the head) straight from the database, checking every stored
// checkpoint in the range against it. With from > 1 the record from-1, or the
// checkpoint at from-1 after retention, anchors the range.
//
// Up to the head (to 0), the chain must end exactly at the head the store
// records. A whole run (from 0 or 1, to 0) first has the checkpointer sign the
// head, which it refuses when the chain from the last checkpoint does not
// verify or a checkpoint it signed is gone; it then requires a signed
// checkpoint covering the head, and that a checkpoint anchoring a trail
// shortened by retention is older than the retention period.
func (t *Trail) Verify(ctx context.Context, from, to uint64) (VerifyResult, error) {
	whole := from <= 1 && to == 0
	// refused is why the checkpointer would not sign the head; the chain is
	// still verified, and the first failure of the two is reported.
	var refused *UnverifiedError
	var sealed *auditchain.Head
	if whole && t.cp != nil {
		cp, _, err := t.cp.Checkpoint(ctx)
		switch {
		case err == nil:
			// Verify up to the head just signed: records appended since are
			// left for the next run (the checkpointer verified them up to the
			// head it read before signing).
			sealed = &auditchain.Head{Sequence: cp.Sequence, Hash: cp.HeadHash}
		case !errors.As(err, &refused):
			return VerifyResult{}, fmt.Errorf("verify audit trail: checkpoint head: %w", err)
		}
	}
	res, err := t.verify(ctx, from, to, whole, sealed)
	if err != nil {
		return VerifyResult{}, err
	}
	if refused != nil && (res.OK || atEnd(res.Reason) || refused.Result.BadSequence < res.BadSequence) {
		// A failure inside the chain is named first; at its end, the
		// checkpointer's reason (a checkpoint it signed is gone, the head
		// went behind a checkpoint) says more than a missing seal.
		return verifyResult(refused.Result), nil
	}
	return verifyResult(res), nil
}

// atEnd reports whether reason concerns the end of the chain rather than a
// record or checkpoint in it.
func atEnd(reason auditchain.Reason) bool {
	return reason == auditchain.ReasonUnsealed || reason == auditchain.ReasonHeadMismatch
}

// verify checks the stored chain over from..to; up to the head (to 0) it
// must end at the head, the one sealed when not nil (its sequence must not be
// past the stored head), else the stored head.
func (t *Trail) verify(ctx context.Context, from, to uint64, whole bool, sealed *auditchain.Head) (auditchain.Result, error) {
	opts := auditchain.VerifyOptions{Keys: t.cfg.Keys, From: from, To: to, MinAnchorAge: t.cfg.Retention, Now: t.cfg.Now()}
	if to == 0 {
		head, err := t.repo.Head(ctx)
		if err != nil {
			return auditchain.Result{}, err
		}
		if sealed != nil {
			if head.Sequence < sealed.Sequence {
				return auditchain.Result{BadSequence: head.Sequence + 1, Reason: auditchain.ReasonTruncated,
					Detail: fmt.Sprintf("the head is at record %d, behind the checkpoint at %d", head.Sequence, sealed.Sequence)}, nil
			}
			head = *sealed
		}
		if from > head.Sequence+1 {
			// The range starts past the head: there is nothing to check.
			return auditchain.Result{OK: true}, nil
		}
		// Records appended after this read are left for the next run.
		opts.Head, opts.To, opts.RequireSealed = &head, head.Sequence, whole
		if head.Sequence == 0 {
			// An empty head: nothing may be stored.
			opts.To = 1
		}
	}
	start := from
	if start > 1 {
		start--
	}
	cps, err := t.repo.Checkpoints(ctx, start, opts.To)
	if err != nil {
		return auditchain.Result{}, err
	}
	res, err := auditchain.Verify(auditchain.Interleave(t.repo.Records(ctx, start, opts.To), cps), opts)
	if err != nil {
		return auditchain.Result{}, fmt.Errorf("verify audit trail: %w", err)
	}
	return res, nil
}

// Export streams the records from..to (0 and 0 for everything; to 0 means
// the head when the call started) in sequence order to emit, with the stored
// checkpoints interleaved as the export format wants them. So that a range
// export verifies offline on its own, it begins right after the newest
// checkpoint at or before from-1 (the anchor), or at the first stored record
// when there is none. A whole export (to 0) first signs a checkpoint of the
// head and ends there, so a cut-off tail is detectable.
func (t *Trail) Export(ctx context.Context, from, to uint64, emit func(auditchain.Entry) error) error {
	if to == 0 {
		if t.cp != nil {
			// The export ends at the head just signed; records appended
			// meanwhile are left for the next export.
			cp, _, err := t.cp.Checkpoint(ctx)
			if err != nil {
				return fmt.Errorf("export: checkpoint head: %w", err)
			}
			to = cp.Sequence
		} else {
			head, err := t.repo.Head(ctx)
			if err != nil {
				return err
			}
			to = head.Sequence
		}
		if to == 0 {
			return nil
		}
	}
	start := uint64(0)
	if from > 1 {
		anchor, err := t.repo.LatestCheckpoint(ctx, from-1)
		switch {
		case err == nil:
			start = anchor.Sequence
		case !errors.Is(err, domain.ErrNotFound):
			return err
		}
	}
	cps, err := t.repo.Checkpoints(ctx, start, to)
	if err != nil {
		return err
	}
	for e, err := range auditchain.Interleave(t.repo.Records(ctx, start+1, to), cps) {
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if err := emit(e); err != nil {
			return err
		}
	}
	return nil
}

// Query returns up to limit records matching f after sequence after.
func (t *Trail) Query(ctx context.Context, f domain.Filter, after uint64, limit int) ([]auditchain.Record, error) {
	return t.repo.Query(ctx, f, after, limit)
}

// GetCheckpoint returns the newest checkpoint at or below seq (0: the newest).
func (t *Trail) GetCheckpoint(ctx context.Context, seq uint64) (auditchain.Checkpoint, error) {
	c, err := t.repo.LatestCheckpoint(ctx, seq)
	if errors.Is(err, domain.ErrNotFound) {
		return auditchain.Checkpoint{}, fmt.Errorf("%w at or below sequence %d", ErrNoCheckpoint, seq)
	}
	return c, err
}
