package auditchain

import (
	"cmp"
	"crypto/ed25519"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"
)

// Reason says why a chain does not verify.
type Reason int

// The reasons a chain does not verify.
const (
	// ReasonNone: the chain verifies.
	ReasonNone Reason = iota
	// ReasonGap: the record with the named sequence is missing (or was moved later).
	ReasonGap
	// ReasonOutOfOrder: a record with a lower sequence (a duplicate or a moved record)
	// stands where the named sequence was expected.
	ReasonOutOfOrder
	// ReasonBrokenLink: the record's prev_hash is not the hash of the record before it
	// (or not the anchor's head hash, or not zero for sequence 1).
	ReasonBrokenLink
	// ReasonHashMismatch: the record's hash does not recompute from its content.
	ReasonHashMismatch
	// ReasonCheckpointSignature: the checkpoint's signature or key id does not verify.
	ReasonCheckpointSignature
	// ReasonCheckpointHead: the checkpoint's head hash is not the hash of the record
	// at its sequence.
	ReasonCheckpointHead
	// ReasonCheckpointOrder: a checkpoint comes after records later than the one it
	// covers, so it cannot be checked in a single pass.
	ReasonCheckpointOrder
	// ReasonTruncated: a checkpoint covers a record after the last one present: the
	// tail of the chain was removed.
	ReasonTruncated
	// ReasonUnanchored: a range starts after sequence 1 and nothing vouches for the
	// prev_hash of its first record.
	ReasonUnanchored
	// ReasonHeadMismatch: the chain does not end at the head the store records
	// (VerifyOptions.Head): records after the last one present were removed, or
	// the head was rewritten.
	ReasonHeadMismatch
	// ReasonUnsealed: no signed checkpoint covers the last record
	// (VerifyOptions.RequireSealed), so nothing proves that the chain ended there.
	ReasonUnsealed
	// ReasonAnchorTooRecent: the checkpoint anchoring a chain shortened by
	// retention was signed within the retention period
	// (VerifyOptions.MinAnchorAge): the records before it were removed early.
	ReasonAnchorTooRecent
)

var reasonText = [...]string{
	ReasonNone:                "ok",
	ReasonGap:                 "gap",
	ReasonOutOfOrder:          "out of order",
	ReasonBrokenLink:          "broken link",
	ReasonHashMismatch:        "hash mismatch",
	ReasonCheckpointSignature: "bad checkpoint signature",
	ReasonCheckpointHead:      "checkpoint head mismatch",
	ReasonCheckpointOrder:     "checkpoint out of order",
	ReasonTruncated:           "truncated after checkpoint",
	ReasonUnanchored:          "unanchored range",
	ReasonHeadMismatch:        "chain does not end at the head",
	ReasonUnsealed:            "head not covered by a checkpoint",
	ReasonAnchorTooRecent:     "retention anchor younger than the retention period",
}

// String returns the reason in words, for example "hash mismatch".
func (r Reason) String() string {
	if r < 0 || int(r) >= len(reasonText) {
		return fmt.Sprintf("reason(%d)", int(r))
	}
	return reasonText[r]
}

// Entry is one item of a chain stream: a record or a checkpoint (exactly one is set).
type Entry struct {
	Record     *Record
	Checkpoint *Checkpoint
}

// VerifyOptions configure a Verifier.
type VerifyOptions struct {
	// PublicKey verifies checkpoint signatures. Without it (and without Keys)
	// every checkpoint fails with ReasonCheckpointSignature.
	PublicKey ed25519.PublicKey
	// Keys verify checkpoint signatures besides PublicKey, each checkpoint with
	// the key its key id names: the current key and the keys it replaced.
	Keys KeySet
	// From is the first sequence to verify; 0 means the start of the chain. Records
	// before it are skipped, except that the one at From-1 supplies the expected
	// prev_hash of record From (its own hash is taken as given).
	From uint64
	// To is the last sequence to verify; 0 means the end of the stream. The stream
	// is read up to the first record after it (so a checkpoint of record To counts).
	To uint64
	// Base, when set, is a trusted head just before the range: the record at
	// Base.Sequence has hash Base.Hash (for example read from the store). The first
	// record verified is then Base.Sequence+1, and From may be 0 or equal to it.
	Base *Head
	// Head, when set, is the head the store records: the chain must end exactly
	// there (the last record verified has its sequence and hash). A chain whose
	// newest records were removed, or a head rewritten, fails with
	// ReasonHeadMismatch.
	Head *Head
	// RequireSealed demands that a signed checkpoint covers the last record
	// verified; without one the chain fails with ReasonUnsealed, because its
	// newest records could have been removed with their checkpoint.
	RequireSealed bool
	// MinAnchorAge, when positive, is the retention period: a checkpoint that
	// anchors a chain shortened by retention must have been signed at least
	// that long before Now, or the chain fails with ReasonAnchorTooRecent.
	MinAnchorAge time.Duration
	// Now is the time MinAnchorAge counts back from; zero means time.Now().
	Now time.Time
}

// Validate reports inconsistent bounds.
func (o VerifyOptions) Validate() error {
	if o.To != 0 && o.To < o.From {
		return fmt.Errorf("verify: to %d is below from %d", o.To, o.From)
	}
	if o.Base != nil && o.From != 0 && o.From != o.Base.Sequence+1 {
		return fmt.Errorf("verify: base at %d does not precede from %d", o.Base.Sequence, o.From)
	}
	if o.PublicKey != nil && len(o.PublicKey) != ed25519.PublicKeySize {
		return fmt.Errorf("verify: public key is %d bytes, want %d", len(o.PublicKey), ed25519.PublicKeySize)
	}
	if o.MinAnchorAge < 0 {
		return fmt.Errorf("verify: negative minimum anchor age %s", o.MinAnchorAge)
	}
	return nil
}

// Result is the outcome of a verification.
type Result struct {
	// OK is true when every record and checkpoint in the range verified.
	OK bool
	// Records is how many records were verified.
	Records int64
	// Checkpoints is how many checkpoint signatures were verified.
	Checkpoints int64
	// First is the sequence of the first record verified; 0 when none was.
	First uint64
	// Head is the last record verified (sequence and hash).
	Head Head
	// LastCheckpoint is the sequence of the last verified checkpoint; 0 when none was.
	LastCheckpoint uint64
	// BadSequence is the first sequence that failed; 0 when OK.
	BadSequence uint64
	// Reason is why BadSequence failed; ReasonNone when OK.
	Reason Reason
	// Detail explains the failure in words.
	Detail string
}

// String returns "ok: N records, M checkpoints, head HEX" or
// "FAIL at sequence N: reason: detail".
func (r Result) String() string {
	if r.OK {
		return fmt.Sprintf("ok: %d records, %d checkpoints, head %s", r.Records, r.Checkpoints, r.Head.Hash)
	}
	return fmt.Sprintf("FAIL at sequence %d: %s: %s", r.BadSequence, r.Reason, r.Detail)
}

// Verifier checks a chain in one pass, in constant memory, as its entries arrive
// in sequence order. A checkpoint is expected right after the record it covers (or
// anywhere later as long as no record past it came first); checkpoints that arrive
// before the first record are anchors: the one with the highest sequence vouches
// for the prev_hash of the first record (this is how a chain shortened by
// retention verifies). A checkpoint whose record never arrives means the tail was
// removed. The Verifier stops at the first failure.
type Verifier struct {
	opts     VerifyOptions
	started  bool
	base     *Head
	baseFrom string
	expected uint64
	prev     Hash
	last     Head
	pending  []Checkpoint
	done     bool
	res      Result
	keys     KeySet
	// sealed: a verified checkpoint covers the last record.
	sealed bool
	// anchorSignedAt is when the anchor checkpoint (baseFrom anchorFrom) was signed.
	anchorSignedAt time.Time
}

const anchorFrom = "the anchor checkpoint"

// NewVerifier returns a Verifier for opts.
func NewVerifier(opts VerifyOptions) (*Verifier, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Base != nil && opts.From == 0 {
		opts.From = opts.Base.Sequence + 1
	}
	v := &Verifier{opts: opts, keys: opts.Keys}
	if opts.PublicKey != nil {
		ks, err := NewKeySet(opts.PublicKey)
		if err != nil {
			return nil, err
		}
		for _, id := range opts.Keys.IDs() {
			k, _ := opts.Keys.Get(id)
			_ = ks.Add(k)
		}
		v.keys = ks
	}
	if opts.MinAnchorAge > 0 && v.opts.Now.IsZero() {
		v.opts.Now = time.Now()
	}
	if opts.Base != nil {
		b := *opts.Base
		v.base = &b
		v.baseFrom = "the trusted base"
	}
	return v, nil
}

// Done reports whether the verification has concluded: it failed, or the stream
// went past VerifyOptions.To.
func (v *Verifier) Done() bool { return v.done }

// Add feeds one entry and reports whether the verifier wants more.
func (v *Verifier) Add(e Entry) bool {
	switch {
	case e.Record != nil && e.Checkpoint == nil:
		return v.Record(e.Record)
	case e.Checkpoint != nil && e.Record == nil:
		return v.Checkpoint(e.Checkpoint)
	default:
		return !v.done
	}
}

func (v *Verifier) fail(seq uint64, reason Reason, format string, args ...any) bool {
	v.done = true
	v.res.BadSequence = seq
	v.res.Reason = reason
	v.res.Detail = fmt.Sprintf(format, args...)
	return false
}

// begin fixes the expected sequence and prev_hash of the first record of the range.
func (v *Verifier) begin() bool {
	v.started = true
	if v.base != nil {
		v.expected = v.base.Sequence + 1
		v.prev = v.base.Hash
		return v.checkAnchorAge()
	}
	v.expected = max(v.opts.From, 1)
	v.prev = Hash{}
	if v.expected > 1 {
		return v.fail(v.expected, ReasonUnanchored,
			"neither record %d nor a checkpoint at %d vouches for the prev_hash of record %d",
			v.expected-1, v.expected-1, v.expected)
	}
	return true
}

// checkAnchorAge fails a chain anchored by a checkpoint signed within
// MinAnchorAge of Now: retention only drops records behind an anchor older
// than the retention period, so a younger one means records were removed early.
func (v *Verifier) checkAnchorAge() bool {
	if v.opts.MinAnchorAge <= 0 || v.base == nil || v.baseFrom != anchorFrom {
		return true
	}
	if limit := v.opts.Now.Add(-v.opts.MinAnchorAge); v.anchorSignedAt.After(limit) {
		return v.fail(v.base.Sequence, ReasonAnchorTooRecent,
			"the records before %d were removed behind the checkpoint at %d signed %s, less than the retention period %s before %s",
			v.base.Sequence+1, v.base.Sequence, v.anchorSignedAt.Format(time.RFC3339), v.opts.MinAnchorAge, v.opts.Now.UTC().Format(time.RFC3339))
	}
	return true
}

// Record feeds the next record and reports whether the verifier wants more.
func (v *Verifier) Record(r *Record) bool {
	if v.done {
		return false
	}
	if !v.started && v.opts.From > 1 && r.Sequence < v.opts.From {
		if r.Sequence == v.opts.From-1 && v.opts.Base == nil {
			v.base = &Head{Sequence: r.Sequence, Hash: r.Hash}
			v.baseFrom = "record"
		}
		return true
	}
	if !v.started && !v.begin() {
		return false
	}
	if v.opts.To != 0 && r.Sequence > v.opts.To && v.expected > v.opts.To {
		v.done = true
		return false
	}
	switch {
	case r.Sequence > v.expected:
		hint := ""
		if v.res.Records == 0 && v.base == nil {
			hint = " (and no anchor checkpoint precedes the first record)"
		}
		return v.fail(v.expected, ReasonGap, "record %d is missing: the next record is %d%s", v.expected, r.Sequence, hint)
	case r.Sequence < v.expected:
		return v.fail(v.expected, ReasonOutOfOrder, "record %d stands where record %d was expected", r.Sequence, v.expected)
	}
	if r.PrevHash != v.prev {
		var against string
		switch {
		case v.res.Records > 0:
			against = fmt.Sprintf("the hash of record %d (%s)", r.Sequence-1, v.prev)
		case v.base != nil:
			against = fmt.Sprintf("the head hash %s of %s at %d", v.prev, v.baseFrom, v.base.Sequence)
		default:
			against = "the zero hash of the first record"
		}
		return v.fail(r.Sequence, ReasonBrokenLink, "prev_hash %s is not %s", r.PrevHash, against)
	}
	if got := r.ComputeHash(); got != r.Hash {
		return v.fail(r.Sequence, ReasonHashMismatch, "stored hash %s, content hashes to %s", r.Hash, got)
	}
	if v.res.Records == 0 {
		v.res.First = r.Sequence
	}
	v.res.Records++
	v.last = Head{Sequence: r.Sequence, Hash: r.Hash}
	v.prev = r.Hash
	v.expected = r.Sequence + 1
	v.sealed = false
	if len(v.pending) > 0 {
		kept := v.pending[:0]
		for _, c := range v.pending {
			if c.Sequence != r.Sequence {
				kept = append(kept, c)
				continue
			}
			if c.HeadHash != r.Hash {
				return v.fail(c.Sequence, ReasonCheckpointHead, "checkpoint signs head %s, record %d has hash %s", c.HeadHash, r.Sequence, r.Hash)
			}
			v.sealed = true
		}
		v.pending = kept
	}
	// At To the verifier still takes the checkpoint of record To, which comes
	// right after it; the next record ends the range.
	return true
}

// Checkpoint feeds the next checkpoint and reports whether the verifier wants more.
func (v *Verifier) Checkpoint(c *Checkpoint) bool {
	if v.done {
		return false
	}
	if v.opts.To != 0 && c.Sequence > v.opts.To {
		return true
	}
	if v.opts.From > 1 && c.Sequence+1 < v.opts.From {
		return true
	}
	if err := v.keys.VerifyCheckpoint(c); err != nil {
		return v.fail(c.Sequence, ReasonCheckpointSignature, "%v", err)
	}
	v.res.Checkpoints++
	v.res.LastCheckpoint = c.Sequence
	if !v.started {
		switch {
		case v.base == nil || c.Sequence > v.base.Sequence:
			if v.opts.Base != nil {
				// A trusted base is fixed; a later checkpoint before the first record
				// can only be checked when its record arrives.
				v.pending = append(v.pending, *c)
				return true
			}
			v.base = &Head{Sequence: c.Sequence, Hash: c.HeadHash}
			v.baseFrom = anchorFrom
			v.anchorSignedAt = c.SignedAt
		case c.Sequence == v.base.Sequence && c.HeadHash != v.base.Hash:
			return v.fail(c.Sequence, ReasonCheckpointHead, "checkpoint signs head %s, %s at %d has hash %s", c.HeadHash, v.baseFrom, v.base.Sequence, v.base.Hash)
		}
		return true
	}
	switch {
	case c.Sequence == v.last.Sequence && v.res.Records > 0:
		if c.HeadHash != v.last.Hash {
			return v.fail(c.Sequence, ReasonCheckpointHead, "checkpoint signs head %s, record %d has hash %s", c.HeadHash, v.last.Sequence, v.last.Hash)
		}
		v.sealed = true
	case c.Sequence >= v.expected:
		v.pending = append(v.pending, *c)
	default:
		return v.fail(c.Sequence, ReasonCheckpointOrder, "checkpoint for record %d comes after record %d", c.Sequence, v.last.Sequence)
	}
	return true
}

// Finish ends the stream and returns the result. Checkpoints still waiting for
// their record mean records after the last one present were removed.
func (v *Verifier) Finish() Result {
	if !v.done && len(v.pending) > 0 {
		c := slices.MaxFunc(v.pending, func(a, b Checkpoint) int { return cmp.Compare(a.Sequence, b.Sequence) })
		at := v.expected
		if !v.started {
			at = max(v.opts.From, 1)
			if v.base != nil {
				at = v.base.Sequence + 1
			}
		}
		v.fail(at, ReasonTruncated, "a checkpoint signs record %d, but the chain ends before record %d", c.Sequence, at)
	}
	v.finishHead()
	v.done = true
	res := v.res
	res.Head = v.last
	res.OK = res.Reason == ReasonNone
	return res
}

// finishHead applies the checks on the end of the chain: the anchor's age when
// no record followed it, VerifyOptions.Head and VerifyOptions.RequireSealed.
func (v *Verifier) finishHead() {
	if v.res.Reason != ReasonNone {
		return
	}
	// The end of what was verified: the last record, or the anchor (or trusted
	// base) when no record followed it.
	last, sealed := v.last, v.sealed
	if v.res.Records == 0 {
		last, sealed = Head{}, true
		if v.base != nil && v.opts.From <= v.base.Sequence+1 {
			last = *v.base
			if !v.checkAnchorAge() {
				return
			}
		}
	}
	if h := v.opts.Head; h != nil && last != *h {
		switch {
		case last.Sequence < h.Sequence:
			v.fail(last.Sequence+1, ReasonHeadMismatch, "the chain ends at record %d, but the head is record %d: the records after %d are missing",
				last.Sequence, h.Sequence, last.Sequence)
		case last.Sequence > h.Sequence:
			v.fail(h.Sequence+1, ReasonHeadMismatch, "the chain goes on to record %d, past the head at record %d", last.Sequence, h.Sequence)
		default:
			v.fail(h.Sequence, ReasonHeadMismatch, "the head names hash %s for record %d, the record has hash %s", h.Hash, h.Sequence, last.Hash)
		}
		return
	}
	if v.opts.RequireSealed && !sealed {
		lastCP := "there is none"
		if v.res.LastCheckpoint != 0 {
			lastCP = fmt.Sprintf("the last one covers record %d", v.res.LastCheckpoint)
		}
		v.fail(last.Sequence, ReasonUnsealed, "no signed checkpoint covers record %d, the last record (%s): records after it could have been removed with their checkpoint",
			last.Sequence, lastCP)
	}
}

// Verify runs a Verifier over entries. The error is for a failure to read entries
// (what the iterator yields); a chain that does not verify is a Result with OK false.
func Verify(entries iter.Seq2[Entry, error], opts VerifyOptions) (Result, error) {
	v, err := NewVerifier(opts)
	if err != nil {
		return Result{}, err
	}
	for e, err := range entries {
		if err != nil {
			return Result{}, err
		}
		if !v.Add(e) {
			break
		}
	}
	return v.Finish(), nil
}

// Interleave merges records in sequence order with checkpoints in the order a
// Verifier wants: each checkpoint right after the record it covers, checkpoints
// below the first record first (as anchors), and checkpoints past the last record
// at the end. It does not modify checkpoints.
func Interleave(records iter.Seq2[*Record, error], checkpoints []Checkpoint) iter.Seq2[Entry, error] {
	sorted := slices.Clone(checkpoints)
	slices.SortStableFunc(sorted, func(a, b Checkpoint) int { return cmp.Compare(a.Sequence, b.Sequence) })
	return func(yield func(Entry, error) bool) {
		i := 0
		for r, err := range records {
			if err != nil {
				yield(Entry{}, err)
				return
			}
			for ; i < len(sorted) && sorted[i].Sequence < r.Sequence; i++ {
				if !yield(Entry{Checkpoint: &sorted[i]}, nil) {
					return
				}
			}
			if !yield(Entry{Record: r}, nil) {
				return
			}
		}
		for ; i < len(sorted); i++ {
			if !yield(Entry{Checkpoint: &sorted[i]}, nil) {
				return
			}
		}
	}
}

// ErrNotVerified is wrapped by Result.Err for a chain that does not verify.
var ErrNotVerified = errors.New("audit chain does not verify")

// Err returns nil when the result is OK and an error wrapping ErrNotVerified
// with the failure otherwise.
func (r Result) Err() error {
	if r.OK {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNotVerified, r)
}
