// Package auditchain is the storage-independent core of the fleet's audit trail:
// the canonical encoding and SHA-256 hash chain of audit records, Ed25519-signed
// checkpoints over the chain head, a streaming verifier, and the NDJSON export
// format that `chctl audit verify` checks offline with only the public key.
//
// # Record hash
//
// Every record carries a global sequence (1, 2, 3, ... without gaps), the hash of
// the record before it (prev_hash; 32 zero bytes, the zero Hash, for sequence 1) and
// its own hash:
//
//	hash = SHA-256(prev_hash || canonical(record))
//
// where prev_hash is the raw 32 bytes and canonical(record) is the byte string
// described at [Record.AppendCanonical]. The canonical encoding leaves out
// prev_hash and hash themselves. Changing, removing, inserting or reordering any
// record therefore breaks its own hash or the link of the record after it, and a
// signed [Checkpoint] over the head makes a removed tail detectable too.
//
// # Retention
//
// Retention may drop the records with sequence < S only when a signed checkpoint
// at sequence S-1 exists. That checkpoint becomes the anchor of what remains: its
// head_hash is the prev_hash of record S, and its signature vouches for it. The
// verifier accepts a chain (or an export) that starts at S when the anchor
// checkpoint comes before the first record; without it, a chain that does not start
// at sequence 1 is reported as a gap at sequence 1. See [Verifier].
package auditchain

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// EncodingVersion is the first byte of the canonical encoding of a record.
const EncodingVersion byte = 1

// Limits a record must respect to be appended. They keep a record well inside
// one export line and the details inside the 64 KiB the audit API allows.
const (
	// MaxFieldBytes bounds every string field of a record, and each details key and value.
	MaxFieldBytes = 4096
	// MaxDetailsBytes bounds the sum of the lengths of all details keys and values.
	MaxDetailsBytes = 65536
	// MaxDetails bounds the number of details entries.
	MaxDetails = 1024
)

// Hash is a SHA-256 chain hash. Its text form is 64 lowercase hex digits.
type Hash [sha256.Size]byte

// String returns the hash as lowercase hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zero bytes, the prev_hash of sequence 1.
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText encodes the hash as lowercase hex.
func (h Hash) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(h)))
	hex.Encode(out, h[:])
	return out, nil
}

// UnmarshalText decodes exactly 64 hex digits.
func (h *Hash) UnmarshalText(text []byte) error {
	parsed, err := ParseHash(string(text))
	if err != nil {
		return err
	}
	*h = parsed
	return nil
}

// ParseHash decodes a hash from exactly 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != hex.EncodedLen(len(h)) {
		return Hash{}, fmt.Errorf("hash %q: want %d hex digits, got %d", truncate(s, 80), hex.EncodedLen(len(h)), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("hash %q: %w", truncate(s, 80), err)
	}
	return h, nil
}

// Record is one entry of the audit trail.
type Record struct {
	// Sequence is the record's global position in the trail, from 1 upwards.
	Sequence uint64
	// EventID is the id of the event the record was made from (the dedup key).
	EventID string
	// OccurredAt is when the recorded action happened.
	OccurredAt time.Time
	// RecordedAt is when the trail appended the record.
	RecordedAt time.Time
	// Actor is who acted: a user's subject or "system:<service>".
	Actor string
	// ActorRole is the actor's role when acting; may be empty.
	ActorRole string
	// Action is what was done, for example "job.submit" or "job.completed".
	Action string
	// ResourceType is the kind of resource acted on, for example "job".
	ResourceType string
	// ResourceID identifies the resource acted on.
	ResourceID string
	// Details holds action-specific attributes. Its canonical form is its entries
	// in ascending byte order of their keys; nil and empty are the same.
	Details map[string]string
	// PrevHash is the hash of the record with Sequence-1 (zero for sequence 1).
	PrevHash Hash
	// Hash is SHA-256(PrevHash || canonical encoding of the record).
	Hash Hash
}

// Validate reports the first reason the record cannot be appended: a missing
// event id, action, actor or time, a time outside the years 1..9999 (which the
// export's RFC 3339 timestamps cannot hold), a string that is not UTF-8 (which
// would not survive the JSON export) or a field over the size limits.
// Sequence, PrevHash and Hash are not checked; the chain sets them.
func (r *Record) Validate() error {
	fields := []struct{ name, value string }{
		{"event_id", r.EventID},
		{"actor", r.Actor},
		{"actor_role", r.ActorRole},
		{"action", r.Action},
		{"resource_type", r.ResourceType},
		{"resource_id", r.ResourceID},
	}
	for _, f := range fields {
		if err := checkString(f.name, f.value); err != nil {
			return err
		}
	}
	switch {
	case r.EventID == "":
		return errors.New("record: event_id is empty")
	case r.Actor == "":
		return errors.New("record: actor is empty")
	case r.Action == "":
		return errors.New("record: action is empty")
	}
	for _, t := range []struct {
		name string
		at   time.Time
	}{{"occurred_at", r.OccurredAt}, {"recorded_at", r.RecordedAt}} {
		if t.at.IsZero() {
			return fmt.Errorf("record: %s is zero", t.name)
		}
		if y := t.at.UTC().Year(); y < 1 || y > 9999 {
			return fmt.Errorf("record: %s year %d outside 1..9999", t.name, y)
		}
	}
	if len(r.Details) > MaxDetails {
		return fmt.Errorf("record: %d details entries, at most %d", len(r.Details), MaxDetails)
	}
	total := 0
	for k, v := range r.Details {
		if k == "" {
			return errors.New("record: details key is empty")
		}
		if err := checkString("details key", k); err != nil {
			return err
		}
		if len(v) > MaxFieldBytes || !utf8.ValidString(v) {
			// The name is built only for the error.
			return checkString("details "+truncate(k, 64), v)
		}
		total += len(k) + len(v)
	}
	if total > MaxDetailsBytes {
		return fmt.Errorf("record: details hold %d bytes, at most %d", total, MaxDetailsBytes)
	}
	return nil
}

func checkString(name, v string) error {
	if len(v) > MaxFieldBytes {
		return fmt.Errorf("record: %s is %d bytes, at most %d", name, len(v), MaxFieldBytes)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("record: %s is not valid UTF-8", name)
	}
	return nil
}

// AppendCanonical appends the canonical encoding of r (version 1) to dst and
// returns the extended slice. The encoding is, in this order, with every integer
// big-endian:
//
//	version        1 byte, 0x01
//	sequence       uint64
//	event_id       str
//	occurred_at    time
//	recorded_at    time
//	actor          str
//	actor_role     str
//	action         str
//	resource_type  str
//	resource_id    str
//	details        uint32 entry count, then per entry in ascending byte order
//	               of the keys: key str, value str
//
// where str is a uint32 byte length followed by the string's bytes (UTF-8), and
// time is the instant as int64 seconds since 1970-01-01T00:00:00Z (two's
// complement) followed by uint32 nanoseconds within that second (0..999999999);
// the time zone is not part of it. PrevHash and Hash are not part of it.
//
// Example: sequence 1, event_id "e", both times 1970-01-01T00:00:01Z, actor "u",
// action "a", everything else empty and no details encodes as the hex
//
//	01 0000000000000001 00000001 65 0000000000000001 00000000
//	0000000000000001 00000000 00000001 75 00000000 00000001 61
//	00000000 00000000 00000000
func (r *Record) AppendCanonical(dst []byte) []byte {
	dst = append(dst, EncodingVersion)
	dst = binary.BigEndian.AppendUint64(dst, r.Sequence)
	dst = appendString(dst, r.EventID)
	dst = appendTime(dst, r.OccurredAt)
	dst = appendTime(dst, r.RecordedAt)
	dst = appendString(dst, r.Actor)
	dst = appendString(dst, r.ActorRole)
	dst = appendString(dst, r.Action)
	dst = appendString(dst, r.ResourceType)
	dst = appendString(dst, r.ResourceID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Details)))
	switch len(r.Details) {
	case 0:
	case 1:
		for k, v := range r.Details {
			dst = appendString(dst, k)
			dst = appendString(dst, v)
		}
	default:
		var stack [16]string
		keys := stack[:0]
		for k := range r.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			dst = appendString(dst, k)
			dst = appendString(dst, r.Details[k])
		}
	}
	return dst
}

// Canonical returns the canonical encoding of r; see AppendCanonical.
func (r *Record) Canonical() []byte { return r.AppendCanonical(nil) }

// ComputeHash returns SHA-256(r.PrevHash || canonical(r)). It ignores r.Hash.
func (r *Record) ComputeHash() Hash {
	var buf [1024]byte
	b := append(buf[:0], r.PrevHash[:]...)
	b = r.AppendCanonical(b)
	return sha256.Sum256(b)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.Unix()))
	return binary.BigEndian.AppendUint32(dst, uint32(t.Nanosecond()))
}

// Head is the position and hash of the last record of a chain. The zero Head is
// the empty chain: the next record gets sequence 1 and a zero prev_hash.
type Head struct {
	Sequence uint64
	Hash     Hash
}

// Chain assigns sequences and hashes to new records. It is not safe for
// concurrent use; a store serialises appends and keeps the head durable with them.
type Chain struct {
	head Head
}

// NewChain returns a chain that continues after head (the zero Head for an empty trail).
func NewChain(head Head) *Chain { return &Chain{head: head} }

// Head returns the current head of the chain.
func (c *Chain) Head() Head { return c.head }

// Next returns r as the next record of the chain, with Sequence, PrevHash and Hash
// set, without advancing the chain. Commit advances it once the record is durable.
func (c *Chain) Next(r Record) (Record, error) {
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	if c.head.Sequence == ^uint64(0) {
		return Record{}, errors.New("record: sequence space exhausted")
	}
	r.Sequence = c.head.Sequence + 1
	r.PrevHash = c.head.Hash
	r.Hash = r.ComputeHash()
	return r, nil
}

// Commit makes r, as returned by Next, the head of the chain. It refuses a record
// that does not directly follow the head.
func (c *Chain) Commit(r Record) error {
	if r.Sequence != c.head.Sequence+1 || r.PrevHash != c.head.Hash {
		return fmt.Errorf("commit record %d: does not follow head %d", r.Sequence, c.head.Sequence)
	}
	c.head = Head{Sequence: r.Sequence, Hash: r.Hash}
	return nil
}

// Append is Next followed by Commit.
func (c *Chain) Append(r Record) (Record, error) {
	next, err := c.Next(r)
	if err != nil {
		return Record{}, err
	}
	c.head = Head{Sequence: next.Sequence, Hash: next.Hash}
	return next, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
