package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/domain"
)

// Checkpointer signs the chain head periodically: every Interval, and as
// soon as Every records were appended since the last checkpoint.
//
// It never signs a head that does not verify: before signing, it checks the
// newest stored checkpoint (signature and key id), then every record after it
// up to the head, and that the chain ends at the head. It also remembers the
// newest checkpoint it has signed or seen (its witness): when that checkpoint
// is no longer stored, or the head went back behind it, the newest records
// were removed with their checkpoint, and it refuses to sign the shortened
// chain. The witness lives in memory, so it holds for the life of the process
// (see docs/security.md).
type Checkpointer struct {
	repo     CheckpointStore
	signer   *auditchain.Signer
	keys     auditchain.KeySet
	interval time.Duration
	every    int64
	logger   *slog.Logger
	now      func() time.Time

	pending atomic.Int64
	kick    chan struct{}

	mu      sync.Mutex
	witness *auditchain.Checkpoint
}

// NewCheckpointer returns a checkpointer signing with signer. keys verify the
// stored checkpoints (the signer's key and the ones it replaced; the signer's
// key is added when missing). interval and every must be positive.
func NewCheckpointer(repo CheckpointStore, signer *auditchain.Signer, keys auditchain.KeySet, interval time.Duration, every int64, logger *slog.Logger, now func() time.Time) *Checkpointer {
	if now == nil {
		now = time.Now
	}
	var ks auditchain.KeySet
	for _, id := range keys.IDs() {
		k, _ := keys.Get(id)
		_ = ks.Add(k)
	}
	_ = ks.Add(signer.PublicKey())
	return &Checkpointer{repo: repo, signer: signer, keys: ks, interval: interval, every: every, logger: logger, now: now, kick: make(chan struct{}, 1)}
}

// UnverifiedError is returned by Checkpoint when the stored chain does not
// verify from the last checkpoint, so the head is not signed.
type UnverifiedError struct {
	Result auditchain.Result
}

func (e *UnverifiedError) Error() string {
	return "refusing to sign the audit head: " + e.Result.String()
}

func unverified(seq uint64, reason auditchain.Reason, format string, args ...any) error {
	return &UnverifiedError{Result: auditchain.Result{BadSequence: seq, Reason: reason, Detail: fmt.Sprintf(format, args...)}}
}

// Appended counts n newly committed records and wakes Run once Every are pending.
func (c *Checkpointer) Appended(n int) {
	if n <= 0 {
		return
	}
	if c.pending.Add(int64(n)) >= c.every {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// Checkpoint signs and stores a checkpoint of the committed head, unless the
// trail is empty or the newest checkpoint already covers the head. It
// reports whether it stored a new one. When the chain from the newest
// checkpoint to the head does not verify, it signs nothing and returns an
// *UnverifiedError.
func (c *Checkpointer) Checkpoint(ctx context.Context) (auditchain.Checkpoint, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending.Store(0)
	// The newest checkpoint first, then the head: a head read later is never
	// behind a checkpoint stored earlier, also with several replicas.
	var latest *auditchain.Checkpoint
	switch cp, err := c.repo.LatestCheckpoint(ctx, 0); {
	case err == nil:
		latest = &cp
	case !errors.Is(err, domain.ErrNotFound):
		return auditchain.Checkpoint{}, false, err
	}
	head, err := c.repo.Head(ctx)
	if err != nil {
		return auditchain.Checkpoint{}, false, err
	}
	if err := c.check(ctx, latest, head); err != nil {
		c.logger.ErrorContext(ctx, "audit head not signed", "error", err, "head_sequence", head.Sequence)
		return auditchain.Checkpoint{}, false, err
	}
	if latest != nil {
		c.witness = latest
	}
	if head.Sequence == 0 || (latest != nil && latest.Sequence == head.Sequence) {
		if latest != nil {
			return *latest, false, nil
		}
		return auditchain.Checkpoint{}, false, nil
	}
	cp := c.signer.Sign(head, c.now())
	if err := c.repo.SaveCheckpoint(ctx, cp); err != nil {
		return auditchain.Checkpoint{}, false, err
	}
	c.witness = &cp
	c.logger.DebugContext(ctx, "checkpoint signed", "sequence", cp.Sequence, "head_hash", cp.HeadHash.String())
	return cp, true, nil
}

// check verifies what Checkpoint is about to sign: the witness is still
// stored, the newest checkpoint is signed by a known key, the head is not
// behind it, and the records from it to the head chain up to the head.
func (c *Checkpointer) check(ctx context.Context, latest *auditchain.Checkpoint, head auditchain.Head) error {
	if w := c.witness; w != nil {
		switch {
		case latest == nil || latest.Sequence < w.Sequence:
			newest := "none is stored"
			if latest != nil {
				newest = fmt.Sprintf("the newest stored is at %d", latest.Sequence)
			}
			return unverified(w.Sequence, auditchain.ReasonTruncated,
				"the checkpoint at %d signed %s is gone (%s): the records after it were removed with their checkpoint",
				w.Sequence, w.SignedAt.Format(time.RFC3339), newest)
		case latest.Sequence == w.Sequence && latest.HeadHash != w.HeadHash:
			return unverified(w.Sequence, auditchain.ReasonCheckpointHead,
				"the checkpoint at %d now signs head %s, it signed %s", w.Sequence, latest.HeadHash, w.HeadHash)
		}
	}
	opts := auditchain.VerifyOptions{Keys: c.keys, Head: &head}
	from := uint64(0)
	if latest != nil {
		if err := c.keys.VerifyCheckpoint(latest); err != nil {
			return unverified(latest.Sequence, auditchain.ReasonCheckpointSignature, "%v", err)
		}
		if head.Sequence < latest.Sequence {
			return unverified(head.Sequence+1, auditchain.ReasonTruncated,
				"the head is at record %d, behind the checkpoint at %d: the records after %d were removed", head.Sequence, latest.Sequence, head.Sequence)
		}
		opts.Base = &auditchain.Head{Sequence: latest.Sequence, Hash: latest.HeadHash}
		from = latest.Sequence + 1
	}
	if head.Sequence == 0 && latest == nil {
		return nil
	}
	res, err := auditchain.Verify(auditchain.Interleave(c.repo.Records(ctx, from, head.Sequence), nil), opts)
	if err != nil {
		return fmt.Errorf("verify audit head: %w", err)
	}
	if !res.OK {
		return &UnverifiedError{Result: res}
	}
	return nil
}

// Run checkpoints until ctx is done, then once more so that a clean shutdown
// leaves the whole trail covered.
func (c *Checkpointer) Run(ctx context.Context) error {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, _, err := c.Checkpoint(final); err != nil {
				return fmt.Errorf("final checkpoint: %w", err)
			}
			return nil
		case <-t.C:
		case <-c.kick:
		}
		if _, _, err := c.Checkpoint(ctx); err != nil && ctx.Err() == nil {
			c.logger.ErrorContext(ctx, "checkpoint failed", "error", err)
		}
	}
}

// Retention drops records older than MaxAge behind a signed checkpoint.
type Retention struct {
	repo     RetentionStore
	maxAge   time.Duration
	interval time.Duration
	logger   *slog.Logger
	now      func() time.Time
}

// NewRetention returns the retention job; maxAge and interval must be positive.
func NewRetention(repo RetentionStore, maxAge, interval time.Duration, logger *slog.Logger, now func() time.Time) *Retention {
	if now == nil {
		now = time.Now
	}
	return &Retention{repo: repo, maxAge: maxAge, interval: interval, logger: logger, now: now}
}

// Apply runs retention once.
func (r *Retention) Apply(ctx context.Context) (int64, error) {
	deleted, anchor, err := r.repo.ApplyRetention(ctx, r.now().Add(-r.maxAge))
	if err != nil {
		return 0, err
	}
	if deleted > 0 {
		r.logger.InfoContext(ctx, "retention dropped audit records", "deleted", deleted, "anchor_checkpoint", anchor)
	}
	return deleted, nil
}

// Run applies retention every interval until ctx is done.
func (r *Retention) Run(ctx context.Context) error {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		if _, err := r.Apply(ctx); err != nil && ctx.Err() == nil {
			r.logger.ErrorContext(ctx, "retention failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Publisher publishes one message (kafkabus.Producer satisfies it).
type Publisher interface {
	Publish(ctx context.Context, msg *bus.Message) error
}

// AlertComponent is the component id of gap alerts on system-health.
const AlertComponent = "audit:job-sequence"

// GapAlerter publishes an alert.raised event for every stored gap not yet
// alerted, then marks it. The gap is stored in the transaction that detected
// it and the alert is published afterwards, so each gap is alerted at least
// once and, unless the process dies between publish and mark, exactly once;
// the alert id is the same on a repeat, so readers can drop the duplicate.
type GapAlerter struct {
	repo     GapStore
	pub      Publisher
	codec    *events.Codec
	topic    string
	producer string
	interval time.Duration
	logger   *slog.Logger
	now      func() time.Time
}

// NewGapAlerter returns an alerter publishing to topic (system-health by default).
func NewGapAlerter(repo GapStore, pub Publisher, codec *events.Codec, topic, producer string, interval time.Duration, logger *slog.Logger, now func() time.Time) *GapAlerter {
	if now == nil {
		now = time.Now
	}
	if topic == "" {
		topic = events.TopicSystemHealth
	}
	return &GapAlerter{repo: repo, pub: pub, codec: codec, topic: topic, producer: producer, interval: interval, logger: logger, now: now}
}

// AlertID returns the stable alert id of a gap.
func AlertID(g domain.Gap) string {
	return "audit-gap:" + g.JobID + ":" + strconv.FormatInt(g.FirstMissing, 10)
}

// Publish alerts the pending gaps once, then resolves the alerted gaps
// whose missing events all arrived late, and returns how many events it
// published.
func (a *GapAlerter) Publish(ctx context.Context) (int, error) {
	gaps, err := a.repo.PendingGaps(ctx, 100)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, g := range gaps {
		if err := a.publish(ctx, g, false); err != nil {
			return n, err
		}
		if err := a.repo.MarkGapAlerted(ctx, g, a.now()); err != nil {
			return n, err
		}
		n++
	}
	resolved, err := a.repo.ResolvedGaps(ctx, 100)
	if err != nil {
		return n, err
	}
	for _, g := range resolved {
		if err := a.publish(ctx, g, true); err != nil {
			return n, err
		}
		if err := a.repo.MarkGapResolveAlerted(ctx, g, a.now()); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (a *GapAlerter) publish(ctx context.Context, g domain.Gap, resolved bool) error {
	msg, err := a.message(g, resolved)
	if err != nil {
		return err
	}
	if err := a.pub.Publish(ctx, msg); err != nil {
		return fmt.Errorf("publish gap alert of job %s: %w", g.JobID, err)
	}
	return nil
}

// message is the alert.raised of g, or its alert.resolved (same alert id).
func (a *GapAlerter) message(g domain.Gap, resolved bool) (*bus.Message, error) {
	var payload events.Payload = events.AlertRaised{
		AlertID:     AlertID(g),
		ComponentID: AlertComponent,
		Severity:    events.SeverityWarning,
		Message: fmt.Sprintf("job %s: lifecycle sequence gap, events %d..%d missing when event %s (sequence %d) arrived",
			g.JobID, g.FirstMissing, g.LastMissing, g.EventID, g.LastMissing+1),
	}
	if resolved {
		payload = events.AlertResolved{
			AlertID:     AlertID(g),
			ComponentID: AlertComponent,
			Message: fmt.Sprintf("job %s: the missing lifecycle events %d..%d arrived late; the sequence is complete",
				g.JobID, g.FirstMissing, g.LastMissing),
		}
	}
	ev, err := events.NewEvent(payload, events.Meta{
		Producer: a.producer,
		UserID:   "system:" + a.producer,
		Now:      a.now,
		Tags: map[string]string{
			"job_id":        g.JobID,
			"first_missing": strconv.FormatInt(g.FirstMissing, 10),
			"last_missing":  strconv.FormatInt(g.LastMissing, 10),
			"event_id":      g.EventID,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("gap alert event: %w", err)
	}
	msg, err := a.codec.Message(ev)
	if err != nil {
		return nil, fmt.Errorf("encode gap alert: %w", err)
	}
	msg.Topic = a.topic
	return msg, nil
}

// Run publishes pending alerts every interval until ctx is done.
func (a *GapAlerter) Run(ctx context.Context) error {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := a.Publish(ctx); err != nil && ctx.Err() == nil {
			a.logger.ErrorContext(ctx, "publish gap alerts failed", "error", err)
		}
	}
}
