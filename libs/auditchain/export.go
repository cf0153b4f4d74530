package auditchain

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"
)

// The export format. An export is NDJSON: UTF-8 text, one JSON object per line,
// lines separated by "\n". The first line is the header:
//
//	{"type":"header","format":"fleet-audit-export","version":1,"key_id":"0123456789abcdef"}
//
// Every further line is a record or a checkpoint, in sequence order, each
// checkpoint right after the record it covers; a checkpoint before the first
// record is the retention anchor (see the package comment):
//
//	{"type":"record","sequence":7,"event_id":"...","occurred_at":"2026-01-02T03:04:05.123456Z",
//	 "recorded_at":"...","actor":"alice","actor_role":"user","action":"job.submit",
//	 "resource_type":"job","resource_id":"...","details":{"k":"v"},
//	 "prev_hash":"<64 hex>","hash":"<64 hex>"}
//	{"type":"checkpoint","sequence":7,"head_hash":"<64 hex>","signed_at":"...",
//	 "key_id":"0123456789abcdef","signature":"<128 hex>"}
//
// (each object is on one line in the file). The export of a range adds the
// range asked for to the header, "from" and "to" (either may be absent): such
// an export need not end on a checkpoint. A whole export (neither set) ends on
// a checkpoint of the head it was taken at, and VerifyExport requires that. Times are RFC 3339 with up to
// nanoseconds; hashes and signatures are lowercase hex. Unknown fields are
// rejected. The hashes are over the canonical binary encoding of
// Record.AppendCanonical, not over these JSON bytes, so any faithful JSON
// rendering of the same values verifies.
const (
	ExportFormat  = "fleet-audit-export"
	ExportVersion = 1
	// DefaultMaxLineBytes bounds one line of an export when ReaderOptions does not.
	DefaultMaxLineBytes = 1 << 20
)

// Line types of an export.
const (
	lineHeader     = "header"
	lineRecord     = "record"
	lineCheckpoint = "checkpoint"
)

// Header is the first line of an export.
type Header struct {
	// Format is always ExportFormat.
	Format string
	// Version is the format version, ExportVersion.
	Version int
	// KeyID names the key that signed the export's newest checkpoint; may be empty.
	KeyID string
	// From and To are the range the export was asked for; both 0 for a whole export.
	From, To uint64
}

// IsRange reports whether the header is of a range export.
func (h Header) IsRange() bool { return h.From != 0 || h.To != 0 }

type headerLine struct {
	Type    string `json:"type"`
	Format  string `json:"format"`
	Version int    `json:"version"`
	KeyID   string `json:"key_id,omitempty"`
	From    uint64 `json:"from,omitempty"`
	To      uint64 `json:"to,omitempty"`
}

type recordLine struct {
	Type         string            `json:"type"`
	Sequence     uint64            `json:"sequence"`
	EventID      string            `json:"event_id"`
	OccurredAt   time.Time         `json:"occurred_at"`
	RecordedAt   time.Time         `json:"recorded_at"`
	Actor        string            `json:"actor"`
	ActorRole    string            `json:"actor_role"`
	Action       string            `json:"action"`
	ResourceType string            `json:"resource_type"`
	ResourceID   string            `json:"resource_id"`
	Details      map[string]string `json:"details"`
	PrevHash     Hash              `json:"prev_hash"`
	Hash         Hash              `json:"hash"`
}

type checkpointLine struct {
	Type      string    `json:"type"`
	Sequence  uint64    `json:"sequence"`
	HeadHash  Hash      `json:"head_hash"`
	SignedAt  time.Time `json:"signed_at"`
	KeyID     string    `json:"key_id"`
	Signature hexBytes  `json:"signature"`
}

type hexBytes []byte

func (b hexBytes) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(b)))
	hex.Encode(out, b)
	return out, nil
}

func (b *hexBytes) UnmarshalText(text []byte) error {
	out := make([]byte, hex.DecodedLen(len(text)))
	if _, err := hex.Decode(out, text); err != nil {
		return fmt.Errorf("hex: %w", err)
	}
	*b = out
	return nil
}

// Writer writes an export. Call Flush at the end.
type Writer struct {
	buf *bufio.Writer
	enc *json.Encoder
}

// NewWriter writes the header of a whole export for keyID to w and returns a
// Writer for the lines after it.
func NewWriter(w io.Writer, keyID string) (*Writer, error) {
	return NewWriterHeader(w, Header{KeyID: keyID})
}

// NewWriterHeader writes h (its key id and range; format and version are
// always this package's) to w and returns a Writer for the lines after it.
func NewWriterHeader(w io.Writer, h Header) (*Writer, error) {
	buf := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	ew := &Writer{buf: buf, enc: enc}
	if err := enc.Encode(headerLine{Type: lineHeader, Format: ExportFormat, Version: ExportVersion, KeyID: h.KeyID, From: h.From, To: h.To}); err != nil {
		return nil, fmt.Errorf("write export header: %w", err)
	}
	return ew, nil
}

// WriteRecord writes one record line.
func (w *Writer) WriteRecord(r *Record) error {
	details := r.Details
	if details == nil {
		details = map[string]string{}
	}
	line := recordLine{
		Type:         lineRecord,
		Sequence:     r.Sequence,
		EventID:      r.EventID,
		OccurredAt:   r.OccurredAt.UTC(),
		RecordedAt:   r.RecordedAt.UTC(),
		Actor:        r.Actor,
		ActorRole:    r.ActorRole,
		Action:       r.Action,
		ResourceType: r.ResourceType,
		ResourceID:   r.ResourceID,
		Details:      details,
		PrevHash:     r.PrevHash,
		Hash:         r.Hash,
	}
	if err := w.enc.Encode(line); err != nil {
		return fmt.Errorf("write export record %d: %w", r.Sequence, err)
	}
	return nil
}

// WriteCheckpoint writes one checkpoint line.
func (w *Writer) WriteCheckpoint(c *Checkpoint) error {
	line := checkpointLine{
		Type:      lineCheckpoint,
		Sequence:  c.Sequence,
		HeadHash:  c.HeadHash,
		SignedAt:  c.SignedAt.UTC(),
		KeyID:     c.KeyID,
		Signature: c.Signature,
	}
	if err := w.enc.Encode(line); err != nil {
		return fmt.Errorf("write export checkpoint %d: %w", c.Sequence, err)
	}
	return nil
}

// Write writes a record or a checkpoint line.
func (w *Writer) Write(e Entry) error {
	switch {
	case e.Record != nil && e.Checkpoint == nil:
		return w.WriteRecord(e.Record)
	case e.Checkpoint != nil && e.Record == nil:
		return w.WriteCheckpoint(e.Checkpoint)
	default:
		return errors.New("write export: entry must hold exactly one of a record and a checkpoint")
	}
}

// Flush writes buffered lines to the underlying writer.
func (w *Writer) Flush() error {
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("flush export: %w", err)
	}
	return nil
}

// LineError is an export line that cannot be read.
type LineError struct {
	// Line is the 1-based line number.
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

// ReaderOptions configure a Reader.
type ReaderOptions struct {
	// MaxLineBytes bounds one line; 0 means DefaultMaxLineBytes.
	MaxLineBytes int
}

// Reader reads an export line by line, in memory bounded by the longest line.
type Reader struct {
	sc      *bufio.Scanner
	maxLine int
	line    int
	header  *Header
	err     error
}

// NewReader returns a Reader of the export in r.
func NewReader(r io.Reader, opts ReaderOptions) *Reader {
	maxLine := opts.MaxLineBytes
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(maxLine, 64<<10)), maxLine)
	return &Reader{sc: sc, maxLine: maxLine}
}

// Line returns the number of the last line read.
func (r *Reader) Line() int { return r.line }

// Header reads (once) and returns the header line.
func (r *Reader) Header() (Header, error) {
	if r.header != nil {
		return *r.header, nil
	}
	if r.err != nil {
		return Header{}, r.err
	}
	line, err := r.readLine()
	if err == io.EOF {
		r.err = &LineError{Line: 1, Err: errors.New("empty export: no header line")}
		return Header{}, r.err
	}
	if err != nil {
		return Header{}, err
	}
	var h headerLine
	if err := json.Unmarshal(line, &h); err != nil {
		return Header{}, r.lineErr(fmt.Errorf("header: %w", err))
	}
	switch {
	case h.Type != lineHeader:
		return Header{}, r.lineErr(fmt.Errorf("first line is of type %q, want %q", truncate(h.Type, 32), lineHeader))
	case h.Format != ExportFormat:
		return Header{}, r.lineErr(fmt.Errorf("format %q, want %q", truncate(h.Format, 64), ExportFormat))
	case h.Version != ExportVersion:
		return Header{}, r.lineErr(fmt.Errorf("format version %d is not supported (want %d)", h.Version, ExportVersion))
	}
	if err := decodeStrict(line, &h); err != nil {
		return Header{}, r.lineErr(fmt.Errorf("header: %w", err))
	}
	if h.To != 0 && h.To < h.From {
		return Header{}, r.lineErr(fmt.Errorf("header: range to %d is below from %d", h.To, h.From))
	}
	r.header = &Header{Format: h.Format, Version: h.Version, KeyID: h.KeyID, From: h.From, To: h.To}
	return *r.header, nil
}

// Next returns the next record or checkpoint, io.EOF after the last one, or a
// *LineError naming the line that cannot be read. Errors are sticky.
func (r *Reader) Next() (Entry, error) {
	if _, err := r.Header(); err != nil {
		return Entry{}, err
	}
	if r.err != nil {
		return Entry{}, r.err
	}
	line, err := r.readLine()
	if err != nil {
		return Entry{}, err
	}
	var probe struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &probe); err != nil {
		return Entry{}, r.lineErr(err)
	}
	switch probe.Type {
	case lineRecord:
		var l recordLine
		if err := decodeStrict(line, &l); err != nil {
			return Entry{}, r.lineErr(fmt.Errorf("record: %w", err))
		}
		details := l.Details
		if len(details) == 0 {
			details = nil
		}
		return Entry{Record: &Record{
			Sequence:     l.Sequence,
			EventID:      l.EventID,
			OccurredAt:   l.OccurredAt.UTC(),
			RecordedAt:   l.RecordedAt.UTC(),
			Actor:        l.Actor,
			ActorRole:    l.ActorRole,
			Action:       l.Action,
			ResourceType: l.ResourceType,
			ResourceID:   l.ResourceID,
			Details:      details,
			PrevHash:     l.PrevHash,
			Hash:         l.Hash,
		}}, nil
	case lineCheckpoint:
		var l checkpointLine
		if err := decodeStrict(line, &l); err != nil {
			return Entry{}, r.lineErr(fmt.Errorf("checkpoint: %w", err))
		}
		return Entry{Checkpoint: &Checkpoint{
			Sequence:  l.Sequence,
			HeadHash:  l.HeadHash,
			SignedAt:  l.SignedAt.UTC(),
			KeyID:     l.KeyID,
			Signature: l.Signature,
		}}, nil
	case lineHeader:
		return Entry{}, r.lineErr(errors.New("a second header line"))
	default:
		return Entry{}, r.lineErr(fmt.Errorf("unknown line type %q", truncate(probe.Type, 32)))
	}
}

// Entries returns the records and checkpoints after the header as an iterator,
// for Verify. It stops after the first error it yields.
func (r *Reader) Entries() iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		for {
			e, err := r.Next()
			if err == io.EOF {
				return
			}
			if !yield(e, err) || err != nil {
				return
			}
		}
	}
}

// readLine returns the next line, io.EOF at the end, or a sticky *LineError.
func (r *Reader) readLine() ([]byte, error) {
	if r.sc.Scan() {
		r.line++
		line := r.sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			return nil, r.lineErr(errors.New("empty line"))
		}
		return line, nil
	}
	err := r.sc.Err()
	if err == nil {
		r.err = io.EOF
		return nil, io.EOF
	}
	r.line++
	if errors.Is(err, bufio.ErrTooLong) {
		return nil, r.lineErr(fmt.Errorf("line longer than %d bytes", r.maxLine))
	}
	return nil, r.lineErr(fmt.Errorf("read: %w", err))
}

func (r *Reader) lineErr(err error) error {
	r.err = &LineError{Line: r.line, Err: err}
	return r.err
}

// decodeStrict decodes one JSON object into v, rejecting unknown fields and
// anything after the object.
func decodeStrict(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// ExportVerifyOptions configure VerifyExport.
type ExportVerifyOptions struct {
	// Keys verify the checkpoints: the current key and every earlier one.
	Keys KeySet
	// From and To restrict the verification to a range (0: the whole export).
	From, To uint64
	// Retention is the trail's retention period: the checkpoint anchoring a
	// whole export that does not start at sequence 1 must be older. 0 skips
	// the check.
	Retention time.Duration
	// Now is the time Retention counts back from; zero means time.Now().
	Now time.Time
	// ReaderOptions bound the lines.
	ReaderOptions ReaderOptions
}

// ErrUnknownKey is wrapped by VerifyExport when the header names a key that
// is not among the verifying keys.
var ErrUnknownKey = errors.New("the export names a key that is not among the verifying keys")

// VerifyExport reads an export from r and verifies it offline. A whole export
// (no range in its header, and none in opts) must end on a checkpoint
// (ReasonUnsealed otherwise: its newest records could have been cut off with
// their checkpoint) and, when it starts after sequence 1, begin at an anchor
// older than opts.Retention. The error is for an export that cannot be read or
// names an unknown key; a chain that does not verify is a Result with OK false.
func VerifyExport(r io.Reader, opts ExportVerifyOptions) (Header, Result, error) {
	rd := NewReader(r, opts.ReaderOptions)
	h, err := rd.Header()
	if err != nil {
		return Header{}, Result{}, err
	}
	if h.KeyID != "" {
		if _, ok := opts.Keys.Get(h.KeyID); !ok {
			return h, Result{}, fmt.Errorf("%w: header key %s, verifying keys %s", ErrUnknownKey, truncate(h.KeyID, 64), opts.Keys)
		}
	}
	vo := VerifyOptions{Keys: opts.Keys, From: opts.From, To: opts.To, Now: opts.Now}
	if !h.IsRange() && opts.From == 0 && opts.To == 0 {
		vo.RequireSealed = true
		vo.MinAnchorAge = opts.Retention
	}
	res, err := Verify(rd.Entries(), vo)
	if err != nil {
		return h, Result{}, err
	}
	return h, res, nil
}
