// Package adapters stores the audit trail in SQL (SQLite or PostgreSQL through
// libs/sqlstore).
//
// The repository is append-only by construction: its API appends records and
// checkpoints and has no update or delete path. The one deletion is retention
// (ApplyRetention), which drops only records covered by a signed checkpoint
// that stays behind as the anchor of what remains. The database enforces the
// same rule with triggers: UPDATE on audit_records and audit_checkpoints is
// always rejected, DELETE (and on PostgreSQL TRUNCATE) is rejected unless the
// deleting transaction holds the row of audit_retention_window, which only
// ApplyRetention inserts and removes again before it commits. The triggers
// stop accidents and casual edits; a database superuser can still drop them,
// and that is what the hash chain and the signed checkpoints detect.
package adapters

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/domain"
)

// MigrationComponent is the component the audit tables are migrated as.
const MigrationComponent = "compliance-auditor"

// ErrNotFound is returned when a requested checkpoint or record does not exist.
var ErrNotFound = domain.ErrNotFound

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or upgrades the inbox tables and the audit tables in db.
func Migrate(ctx context.Context, db *sqlstore.DB) error {
	if err := inbox.Migrate(ctx, db); err != nil {
		return fmt.Errorf("migrate inbox: %w", err)
	}
	if err := sqlstore.Migrate(ctx, db, migrations, "migrations", sqlstore.WithComponent(MigrationComponent)); err != nil {
		return fmt.Errorf("migrate audit tables: %w", err)
	}
	return nil
}

// Repository is the append-only audit store.
type Repository struct {
	db *sqlstore.DB
	q  queries
	// insertFull inserts insertChunk records; prepared on the write pool
	// by Prepare, nil before.
	insertFull *sql.Stmt
}

type queries struct {
	head, headForUpdate, insert, updateHead                         string
	records, checkpoints, latestCheckpoint, insertCheckpoint        string
	jobSeq, upsertJobSeq, insertGap, pendingGaps, markGapAlerted    string
	fillGap, resolvedGaps, markGapResolveAlerted                    string
	retentionAnchor, openWindow, closeWindow, deleteRecords, delCPs string
	first                                                           string
}

// NewRepository returns the repository over db, migrated with Migrate.
func NewRepository(db *sqlstore.DB) *Repository {
	forUpdate := ""
	if db.Dialect() == sqlstore.DialectPostgres {
		forUpdate = " FOR UPDATE"
	}
	rb := db.Rebind
	return &Repository{db: db, q: queries{
		head:          `SELECT sequence, hash FROM audit_head WHERE id = 1`,
		headForUpdate: `SELECT sequence, hash FROM audit_head WHERE id = 1` + forUpdate,
		insert:        rb(insertRecordsPrefix + `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		updateHead:    rb(`UPDATE audit_head SET sequence = ?, hash = ? WHERE id = 1`),
		records: rb(`SELECT ` + recordColumns + ` FROM audit_records WHERE sequence >= ? AND sequence <= ?
ORDER BY sequence LIMIT ?`),
		checkpoints:      rb(`SELECT sequence, head_hash, signed_at, key_id, signature FROM audit_checkpoints WHERE sequence >= ? AND sequence <= ? ORDER BY sequence`),
		latestCheckpoint: rb(`SELECT sequence, head_hash, signed_at, key_id, signature FROM audit_checkpoints WHERE sequence <= ? ORDER BY sequence DESC LIMIT 1`),
		insertCheckpoint: rb(`INSERT INTO audit_checkpoints (sequence, head_hash, signed_at, key_id, signature) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (sequence) DO NOTHING`),
		jobSeq:       rb(`SELECT last_sequence FROM audit_job_sequences WHERE job_id = ?`),
		upsertJobSeq: rb(`INSERT INTO audit_job_sequences (job_id, last_sequence) VALUES (?, ?)` + upsertJobSeqSuffix),
		insertGap: rb(`INSERT INTO audit_sequence_gaps (job_id, first_missing, last_missing, event_id, detected_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (job_id, first_missing) DO NOTHING`),
		pendingGaps:    rb(`SELECT job_id, first_missing, last_missing, event_id, detected_at FROM audit_sequence_gaps WHERE alerted_at IS NULL ORDER BY detected_at LIMIT ?`),
		markGapAlerted: rb(`UPDATE audit_sequence_gaps SET alerted_at = ? WHERE job_id = ? AND first_missing = ?`),
		fillGap: rb(`UPDATE audit_sequence_gaps SET filled = filled + 1,
resolved_at = CASE WHEN filled + 1 >= last_missing - first_missing + 1 THEN ? ELSE resolved_at END
WHERE job_id = ? AND first_missing <= ? AND last_missing >= ? AND resolved_at IS NULL`),
		resolvedGaps: rb(`SELECT job_id, first_missing, last_missing, event_id, detected_at, resolved_at FROM audit_sequence_gaps
WHERE resolved_at IS NOT NULL AND alerted_at IS NOT NULL AND resolve_alerted_at IS NULL ORDER BY resolved_at LIMIT ?`),
		markGapResolveAlerted: rb(`UPDATE audit_sequence_gaps SET resolve_alerted_at = ? WHERE job_id = ? AND first_missing = ?`),
		retentionAnchor: rb(`SELECT c.sequence FROM audit_checkpoints c JOIN audit_records r ON r.sequence = c.sequence
WHERE c.signed_at < ? ORDER BY c.sequence DESC LIMIT 1`),
		openWindow:    `INSERT INTO audit_retention_window (id) VALUES (1)`,
		closeWindow:   `DELETE FROM audit_retention_window`,
		deleteRecords: rb(`DELETE FROM audit_records WHERE sequence <= ?`),
		delCPs:        rb(`DELETE FROM audit_checkpoints WHERE sequence < ?`),
		first:         `SELECT MIN(sequence) FROM audit_records`,
	}}
}

const insertRecordsPrefix = `INSERT INTO audit_records (sequence, event_id, occurred_at, recorded_at, actor, actor_role, action,
resource_type, resource_id, details, prev_hash, hash) VALUES `

const upsertJobSeqSuffix = `
ON CONFLICT (job_id) DO UPDATE SET last_sequence = excluded.last_sequence WHERE excluded.last_sequence > audit_job_sequences.last_sequence`

const recordColumns = `sequence, event_id, occurred_at, recorded_at, actor, actor_role, action, resource_type, resource_id, details, prev_hash, hash`

// Prepare prepares, on the write pool, the statement inserting a whole
// chunk of records, so that appends reuse it across transactions (through
// Tx.StmtContext: on SQLite's one write connection it is parsed once, not
// once per batch). Call it once after Migrate and before appending; without
// it each transaction prepares the statement itself.
func (r *Repository) Prepare(ctx context.Context) error {
	st, err := r.db.Writer().PrepareContext(ctx, r.insertQuery(insertChunk))
	if err != nil {
		return fmt.Errorf("prepare audit record insert: %w", err)
	}
	r.insertFull = st
	return nil
}

// insertQuery is the insert of n records.
func (r *Repository) insertQuery(n int) string {
	if n == 1 {
		return r.q.insert
	}
	return r.db.Rebind(insertRecordsPrefix + sqlstore.Tuples(12, n))
}

// DB returns the database the repository works on.
func (r *Repository) DB() *sqlstore.DB { return r.db }

// Head returns the committed chain head (the zero Head for an empty trail).
func (r *Repository) Head(ctx context.Context) (auditchain.Head, error) {
	return scanHead(r.db.Writer().QueryRowContext(ctx, r.q.head))
}

func scanHead(row *sql.Row) (auditchain.Head, error) {
	var seq int64
	var hash []byte
	if err := row.Scan(&seq, &hash); err != nil {
		return auditchain.Head{}, fmt.Errorf("read audit head: %w", err)
	}
	h, err := toHash(hash)
	if err != nil {
		return auditchain.Head{}, fmt.Errorf("read audit head: %w", err)
	}
	return auditchain.Head{Sequence: uint64(seq), Hash: h}, nil
}

// Appender appends records inside the caller's transactions. It keeps the
// chain of the transaction it last worked in, so that several appends in one
// transaction (a batch) read the head once; a different transaction (a new
// message, or a retry after a rollback) reads the head again. Because the
// Appender holds the previous *sql.Tx, a new transaction can never share its
// address. An Appender is not safe for concurrent use: make one per
// transaction scope (per message, or per batch).
type Appender struct {
	r     *Repository
	tx    *sql.Tx
	chain *auditchain.Chain
	stmts map[int]*sql.Stmt // multi-row inserts by row count
	upd   *sql.Stmt
	// pending are the records chained in tx and not yet inserted.
	pending []pendingRecord
}

type pendingRecord struct {
	rec     auditchain.Record
	details string
}

// insertChunk bounds the records of one multi-row insert: a batch of the
// consumer (500 messages) is one statement. At 12 parameters each that is
// 6,000, well below SQLite's (32,766) and PostgreSQL's (65,535) limits.
const insertChunk = 500

// NewAppender returns an appender over the repository.
func (r *Repository) NewAppender() *Appender { return &Appender{r: r} }

// Tx returns the transaction the appender last appended in.
func (a *Appender) Tx() *sql.Tx { return a.tx }

// Append chains rec after the head as seen in tx, inserts it and moves the
// head, all in tx. Times are kept to microseconds (the stored precision)
// before hashing. It returns the stored record with sequence and hashes.
func (a *Appender) Append(ctx context.Context, tx *sql.Tx, rec auditchain.Record) (auditchain.Record, error) {
	next, err := a.Stage(ctx, tx, rec)
	if err != nil {
		return auditchain.Record{}, err
	}
	if err := a.Flush(ctx); err != nil {
		return auditchain.Record{}, err
	}
	return next, nil
}

// Stage chains rec after the head as seen in tx, like Append, but keeps the
// record in memory: Flush inserts the staged records of tx with multi-row
// inserts and moves the head once, and must run before tx commits. The
// chain, and so every sequence and hash, is the same as with Append one by
// one; a transaction that rolls back loses its staged records with it.
func (a *Appender) Stage(ctx context.Context, tx *sql.Tx, rec auditchain.Record) (auditchain.Record, error) {
	if tx != a.tx {
		head, err := scanHead(tx.QueryRowContext(ctx, a.r.q.headForUpdate))
		if err != nil {
			return auditchain.Record{}, err
		}
		if a.upd, err = tx.PrepareContext(ctx, a.r.q.updateHead); err != nil {
			return auditchain.Record{}, fmt.Errorf("prepare append: %w", err)
		}
		a.tx, a.chain, a.stmts, a.pending = tx, auditchain.NewChain(head), map[int]*sql.Stmt{}, a.pending[:0]
	}
	rec.OccurredAt = rec.OccurredAt.UTC().Truncate(time.Microsecond)
	rec.RecordedAt = rec.RecordedAt.UTC().Truncate(time.Microsecond)
	next, err := a.chain.Next(rec)
	if err != nil {
		return auditchain.Record{}, fmt.Errorf("chain record of event %s: %w", rec.EventID, err)
	}
	details, err := detailsJSON(next.Details)
	if err != nil {
		return auditchain.Record{}, err
	}
	// The chain is local to tx: if tx rolls back, the next call comes with a
	// new transaction and reads the head again.
	if err := a.chain.Commit(next); err != nil {
		return auditchain.Record{}, err
	}
	a.pending = append(a.pending, pendingRecord{rec: next, details: details})
	return next, nil
}

// Flush inserts the records staged in the current transaction, in sequence
// order, insertChunk per statement, and moves the head to the last of them.
func (a *Appender) Flush(ctx context.Context) error {
	if len(a.pending) == 0 {
		return nil
	}
	args := make([]any, 0, min(len(a.pending), insertChunk)*12)
	for rest := a.pending; len(rest) > 0; {
		chunk := rest[:min(insertChunk, len(rest))]
		rest = rest[len(chunk):]
		st, err := a.insertStmt(ctx, len(chunk))
		if err != nil {
			return err
		}
		args = args[:0]
		for _, p := range chunk {
			n := p.rec
			args = append(args, int64(n.Sequence), n.EventID, n.OccurredAt.UnixMicro(), n.RecordedAt.UnixMicro(),
				n.Actor, n.ActorRole, n.Action, n.ResourceType, n.ResourceID, p.details, n.PrevHash[:], n.Hash[:])
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert audit records %d..%d: %w", chunk[0].rec.Sequence, chunk[len(chunk)-1].rec.Sequence, err)
		}
	}
	head := a.chain.Head()
	if _, err := a.upd.ExecContext(ctx, int64(head.Sequence), head.Hash[:]); err != nil {
		return fmt.Errorf("move audit head to %d: %w", head.Sequence, err)
	}
	a.pending = a.pending[:0]
	return nil
}

// insertStmt returns the insert of n records prepared in the current transaction.
func (a *Appender) insertStmt(ctx context.Context, n int) (*sql.Stmt, error) {
	if st, ok := a.stmts[n]; ok {
		return st, nil
	}
	var st *sql.Stmt
	if n == insertChunk && a.r.insertFull != nil {
		st = a.tx.StmtContext(ctx, a.r.insertFull)
	} else {
		var err error
		if st, err = a.tx.PrepareContext(ctx, a.r.insertQuery(n)); err != nil {
			return nil, fmt.Errorf("prepare append: %w", err)
		}
	}
	a.stmts[n] = st
	return st, nil
}

// TxRecorder is the repository bound to one inbox transaction: the writes
// that recording an event makes, all in that transaction. It stages the
// records through one Appender, so a batch reads the head once, and keeps
// the per-job sequences it read or moved; Flush, which the inbox's unit of
// work calls before the transaction commits, writes both with multi-row
// statements.
type TxRecorder struct {
	r  *Repository
	tx *sql.Tx
	a  *Appender
	// seqs are the last lifecycle sequences per job as seen in tx; moved
	// are the jobs whose sequence Flush must store.
	seqs   map[string]int64
	moved  map[string]bool
	seqGet *sql.Stmt
	// ahead are the jobs whose sequences the first TrackJobSequence reads
	// with one query per seqChunk of them; nil once read.
	ahead []string
}

// Bind returns the repository's writes bound to tx; the inbox's unit of
// work binds each of its transactions with it. A transaction applying
// several messages (a batch) reads the sequences of their jobs (the
// messages' keys, the job id on the lifecycle topic) with one query when
// it first needs one, instead of one query per job.
func (r *Repository) Bind(tx *sql.Tx, msgs []*bus.Message) *TxRecorder {
	t := &TxRecorder{r: r, tx: tx, a: r.NewAppender(), seqs: map[string]int64{}, moved: map[string]bool{}}
	if len(msgs) > 1 {
		seen := make(map[string]bool, len(msgs))
		for _, m := range msgs {
			if m.Key != "" && !seen[m.Key] {
				seen[m.Key] = true
				t.ahead = append(t.ahead, m.Key)
			}
		}
	}
	return t
}

// seqChunk bounds the jobs of one read-ahead query.
const seqChunk = 500

// readAhead reads the last sequences of the jobs in t.ahead into t.seqs (0
// for a job without one). It runs at the first TrackJobSequence, after the
// record's Append, so on PostgreSQL the head's row lock is already held and
// no other appender moves a sequence between this read and the commit.
func (t *TxRecorder) readAhead(ctx context.Context) error {
	ids := t.ahead
	t.ahead = nil
	for len(ids) > 0 {
		chunk := ids[:min(seqChunk, len(ids))]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := t.tx.QueryContext(ctx, t.r.db.Rebind(`SELECT job_id, last_sequence FROM audit_job_sequences WHERE job_id IN (`+
			sqlstore.Placeholders(len(chunk))+`)`), args...)
		if err != nil {
			return fmt.Errorf("read sequences of %d jobs from %s: %w", len(chunk), chunk[0], err)
		}
		found := make(map[string]int64, len(chunk))
		for rows.Next() {
			var id string
			var last int64
			if err := rows.Scan(&id, &last); err != nil {
				rows.Close()
				return fmt.Errorf("read sequences of %d jobs from %s: %w", len(chunk), chunk[0], err)
			}
			found[id] = last
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("read sequences of %d jobs from %s: %w", len(chunk), chunk[0], err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read sequences of %d jobs from %s: %w", len(chunk), chunk[0], err)
		}
		for _, id := range chunk {
			if _, ok := t.seqs[id]; !ok {
				t.seqs[id] = found[id]
			}
		}
	}
	return nil
}

// Append stages rec in the bound transaction (see Appender.Stage); Flush
// stores it.
func (t *TxRecorder) Append(ctx context.Context, rec auditchain.Record) (auditchain.Record, error) {
	return t.a.Stage(ctx, t.tx, rec)
}

// TrackJobSequence is Repository.TrackJobSequence in the bound transaction,
// with the job's last sequence read once per transaction and stored by Flush.
func (t *TxRecorder) TrackJobSequence(ctx context.Context, jobID string, seq int64, eventID string, now time.Time) (*domain.Gap, error) {
	if t.ahead != nil {
		if err := t.readAhead(ctx); err != nil {
			return nil, err
		}
	}
	last, ok := t.seqs[jobID]
	if !ok {
		if t.seqGet == nil {
			st, err := t.tx.PrepareContext(ctx, t.r.q.jobSeq)
			if err != nil {
				return nil, fmt.Errorf("prepare read of job sequences: %w", err)
			}
			t.seqGet = st
		}
		var err error
		if last, err = scanJobSequence(t.seqGet.QueryRowContext(ctx, jobID), jobID); err != nil {
			return nil, err
		}
		t.seqs[jobID] = last
	}
	moved, gap, err := t.r.trackJobSequence(ctx, t.tx, jobID, seq, last, eventID, now)
	if err != nil || !moved {
		return gap, err
	}
	t.seqs[jobID], t.moved[jobID] = seq, true
	return gap, nil
}

// Flush stores the staged records, the head and the moved job sequences.
func (t *TxRecorder) Flush(ctx context.Context) error {
	if err := t.a.Flush(ctx); err != nil {
		return err
	}
	if len(t.moved) == 0 {
		return nil
	}
	jobs := make([]string, 0, len(t.moved))
	for j := range t.moved {
		jobs = append(jobs, j)
	}
	slices.Sort(jobs)
	for len(jobs) > 0 {
		chunk := jobs[:min(insertChunk, len(jobs))]
		jobs = jobs[len(chunk):]
		args := make([]any, 0, 2*len(chunk))
		for _, j := range chunk {
			args = append(args, j, t.seqs[j])
		}
		q := t.r.db.Rebind(`INSERT INTO audit_job_sequences (job_id, last_sequence) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?), ", len(chunk)), ", ") + upsertJobSeqSuffix)
		if _, err := t.tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("store sequences of %d jobs from %s: %w", len(chunk), chunk[0], err)
		}
	}
	clear(t.moved)
	return nil
}

// detailsJSON returns the canonical JSON of details: an object with sorted
// keys and no insignificant whitespace ({} for none), byte for byte what
// encoding/json writes with HTML escaping off. Keys and values of plain
// printable ASCII are written directly; any other string goes through
// encoding/json.
func detailsJSON(d map[string]string) (string, error) {
	if len(d) == 0 {
		return "{}", nil
	}
	keys := make([]string, 0, len(d))
	size := 2
	for k, v := range d {
		keys = append(keys, k)
		size += len(k) + len(v) + 6
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	b = append(b, '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendJSONString(b, k); err != nil {
			return "", err
		}
		b = append(b, ':')
		if b, err = appendJSONString(b, d[k]); err != nil {
			return "", err
		}
	}
	return string(append(b, '}')), nil
}

// appendJSONString appends s as a JSON string, as encoding/json writes it
// with HTML escaping off.
func appendJSONString(b []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			var w strings.Builder
			enc := json.NewEncoder(&w)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(s); err != nil {
				return nil, fmt.Errorf("encode details: %w", err)
			}
			return append(b, strings.TrimSuffix(w.String(), "\n")...), nil
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}

// recordsPage is how many records one query of Records reads.
const recordsPage = 5000

// Records streams the stored records with from <= sequence <= to in sequence
// order (to 0 means no upper bound), reading them page by page.
func (r *Repository) Records(ctx context.Context, from, to uint64) iter.Seq2[*auditchain.Record, error] {
	if to == 0 || to > maxSeq {
		to = maxSeq
	}
	return func(yield func(*auditchain.Record, error) bool) {
		next := from
		for next <= to {
			page, err := r.recordPage(ctx, next, to)
			if err != nil {
				yield(nil, err)
				return
			}
			for i := range page {
				if !yield(&page[i], nil) {
					return
				}
			}
			if len(page) < recordsPage {
				return
			}
			next = page[len(page)-1].Sequence + 1
		}
	}
}

const maxSeq = uint64(1<<63 - 1)

func (r *Repository) recordPage(ctx context.Context, from, to uint64) ([]auditchain.Record, error) {
	rows, err := r.db.QueryContext(ctx, r.q.records, int64(from), int64(to), recordsPage)
	if err != nil {
		return nil, fmt.Errorf("read audit records from %d: %w", from, err)
	}
	defer rows.Close()
	out := make([]auditchain.Record, 0, 256)
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit records from %d: %w", from, err)
	}
	return out, nil
}

func scanRecord(rows *sql.Rows) (auditchain.Record, error) {
	var (
		seq, occurred, recorded int64
		details                 string
		prev, hash              []byte
		rec                     auditchain.Record
	)
	if err := rows.Scan(&seq, &rec.EventID, &occurred, &recorded, &rec.Actor, &rec.ActorRole, &rec.Action,
		&rec.ResourceType, &rec.ResourceID, &details, &prev, &hash); err != nil {
		return auditchain.Record{}, fmt.Errorf("scan audit record: %w", err)
	}
	rec.Sequence = uint64(seq)
	rec.OccurredAt = time.UnixMicro(occurred).UTC()
	rec.RecordedAt = time.UnixMicro(recorded).UTC()
	if details != "{}" {
		if err := json.Unmarshal([]byte(details), &rec.Details); err != nil {
			// A stored record that cannot be read back is reported by the
			// verifier as a hash mismatch; keep the raw text visible.
			rec.Details = map[string]string{"<undecodable details>": details}
		}
	}
	var err error
	if rec.PrevHash, err = toHash(prev); err != nil {
		return auditchain.Record{}, fmt.Errorf("audit record %d prev_hash: %w", seq, err)
	}
	if rec.Hash, err = toHash(hash); err != nil {
		return auditchain.Record{}, fmt.Errorf("audit record %d hash: %w", seq, err)
	}
	return rec, nil
}

func toHash(b []byte) (auditchain.Hash, error) {
	var h auditchain.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("hash is %d bytes, want %d", len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// Query returns at most limit records matching f with sequence > after, in
// sequence order.
func (r *Repository) Query(ctx context.Context, f domain.Filter, after uint64, limit int) ([]auditchain.Record, error) {
	var where []string
	args := []any{int64(after)}
	where = append(where, "sequence > ?")
	add := func(col string, v any) {
		where = append(where, col)
		args = append(args, v)
	}
	if f.ResourceType != "" {
		add("resource_type = ?", f.ResourceType)
	}
	if f.ResourceID != "" {
		add("resource_id = ?", f.ResourceID)
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if !f.OccurredAfter.IsZero() {
		add("occurred_at >= ?", f.OccurredAfter.UnixMicro())
	}
	if !f.OccurredBefore.IsZero() {
		add("occurred_at < ?", f.OccurredBefore.UnixMicro())
	}
	args = append(args, limit)
	q := r.db.Rebind(`SELECT ` + recordColumns + ` FROM audit_records WHERE ` + strings.Join(where, " AND ") + ` ORDER BY sequence LIMIT ?`)
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query audit records: %w", err)
	}
	defer rows.Close()
	var out []auditchain.Record
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query audit records: %w", err)
	}
	return out, nil
}

// FirstSequence returns the lowest stored sequence, 0 when the trail is empty.
func (r *Repository) FirstSequence(ctx context.Context) (uint64, error) {
	var n sql.NullInt64
	if err := r.db.Writer().QueryRowContext(ctx, r.q.first).Scan(&n); err != nil {
		return 0, fmt.Errorf("read first audit sequence: %w", err)
	}
	return uint64(n.Int64), nil
}

// SaveCheckpoint stores c; a checkpoint already stored at its sequence is kept.
func (r *Repository) SaveCheckpoint(ctx context.Context, c auditchain.Checkpoint) error {
	if _, err := r.db.ExecContext(ctx, r.q.insertCheckpoint, int64(c.Sequence), c.HeadHash[:], c.SignedAt.UnixMicro(), c.KeyID, c.Signature); err != nil {
		return fmt.Errorf("store checkpoint %d: %w", c.Sequence, err)
	}
	return nil
}

// LatestCheckpoint returns the checkpoint with the highest sequence at or
// below atOrBelow (0 means any), or ErrNotFound.
func (r *Repository) LatestCheckpoint(ctx context.Context, atOrBelow uint64) (auditchain.Checkpoint, error) {
	if atOrBelow == 0 || atOrBelow > maxSeq {
		atOrBelow = maxSeq
	}
	rows, err := r.db.Writer().QueryContext(ctx, r.q.latestCheckpoint, int64(atOrBelow))
	if err != nil {
		return auditchain.Checkpoint{}, fmt.Errorf("read checkpoint: %w", err)
	}
	cps, err := scanCheckpoints(rows)
	if err != nil {
		return auditchain.Checkpoint{}, err
	}
	if len(cps) == 0 {
		return auditchain.Checkpoint{}, fmt.Errorf("checkpoint at or below %d: %w", atOrBelow, ErrNotFound)
	}
	return cps[0], nil
}

// Checkpoints returns the checkpoints with from <= sequence <= to (to 0 means
// no upper bound) in sequence order.
func (r *Repository) Checkpoints(ctx context.Context, from, to uint64) ([]auditchain.Checkpoint, error) {
	if to == 0 || to > maxSeq {
		to = maxSeq
	}
	rows, err := r.db.QueryContext(ctx, r.q.checkpoints, int64(from), int64(to))
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return scanCheckpoints(rows)
}

func scanCheckpoints(rows *sql.Rows) ([]auditchain.Checkpoint, error) {
	defer rows.Close()
	var out []auditchain.Checkpoint
	for rows.Next() {
		var (
			seq, signed int64
			head        []byte
			c           auditchain.Checkpoint
		)
		if err := rows.Scan(&seq, &head, &signed, &c.KeyID, &c.Signature); err != nil {
			return nil, fmt.Errorf("scan checkpoint: %w", err)
		}
		h, err := toHash(head)
		if err != nil {
			return nil, fmt.Errorf("checkpoint %d head_hash: %w", seq, err)
		}
		c.Sequence, c.HeadHash, c.SignedAt = uint64(seq), h, time.UnixMicro(signed).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return out, nil
}

// ApplyRetention deletes the records recorded before cutoff, but only up to
// the newest checkpoint signed before cutoff (so its record is older too):
// that checkpoint (the anchor) is kept, with every later one, so what remains
// still verifies, and its signed time proves to a verifier that the records
// behind it were older than the retention period when they were removed. It returns the number of records deleted and the anchor's sequence
// (0 and 0 when nothing qualifies). It is the only deletion path of the trail.
func (r *Repository) ApplyRetention(ctx context.Context, cutoff time.Time) (deleted int64, anchor uint64, err error) {
	err = r.db.InTx(ctx, func(tx *sql.Tx) error {
		deleted, anchor = 0, 0
		var a int64
		switch err := tx.QueryRowContext(ctx, r.q.retentionAnchor, cutoff.UnixMicro()).Scan(&a); {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return fmt.Errorf("find retention anchor: %w", err)
		}
		if _, err := tx.ExecContext(ctx, r.q.openWindow); err != nil {
			return fmt.Errorf("open retention window: %w", err)
		}
		res, err := tx.ExecContext(ctx, r.q.deleteRecords, a)
		if err != nil {
			return fmt.Errorf("delete records up to %d: %w", a, err)
		}
		if deleted, err = res.RowsAffected(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, r.q.delCPs, a); err != nil {
			return fmt.Errorf("delete checkpoints below %d: %w", a, err)
		}
		if _, err := tx.ExecContext(ctx, r.q.closeWindow); err != nil {
			return fmt.Errorf("close retention window: %w", err)
		}
		anchor = uint64(a)
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("apply retention: %w", err)
	}
	return deleted, anchor, nil
}

// TrackJobSequence records, in tx, that the lifecycle event eventID of jobID
// carried seq. When seq skips past the last sequence seen for the job plus
// one, it stores and returns the gap (once: a redelivery stores nothing new).
// An event at or below the last sequence arrived late: it fills its place
// in a stored gap, which is resolved once all its events arrived. The inbox
// hands each event over once, so each late event is counted once.
func (r *Repository) TrackJobSequence(ctx context.Context, tx *sql.Tx, jobID string, seq int64, eventID string, now time.Time) (*domain.Gap, error) {
	last, err := r.jobSequence(ctx, tx, jobID)
	if err != nil {
		return nil, err
	}
	moved, gap, err := r.trackJobSequence(ctx, tx, jobID, seq, last, eventID, now)
	if err != nil || !moved {
		return gap, err
	}
	if _, err := tx.ExecContext(ctx, r.q.upsertJobSeq, jobID, seq); err != nil {
		return nil, fmt.Errorf("store sequence of job %s: %w", jobID, err)
	}
	return gap, nil
}

// jobSequence reads the last sequence stored for jobID in tx (0 for none).
func (r *Repository) jobSequence(ctx context.Context, tx *sql.Tx, jobID string) (int64, error) {
	return scanJobSequence(tx.QueryRowContext(ctx, r.q.jobSeq, jobID), jobID)
}

func scanJobSequence(row *sql.Row, jobID string) (int64, error) {
	var last int64
	switch err := row.Scan(&last); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, fmt.Errorf("read sequence of job %s: %w", jobID, err)
	}
	return last, nil
}

// trackJobSequence is TrackJobSequence after the job's last sequence was
// read, except that it leaves storing the new one to the caller: it reports
// whether seq moves the job's sequence, and stores the gap it opens or fills
// the gap a late event belongs to.
func (r *Repository) trackJobSequence(ctx context.Context, tx *sql.Tx, jobID string, seq, last int64, eventID string, now time.Time) (bool, *domain.Gap, error) {
	if seq <= last {
		if _, err := tx.ExecContext(ctx, r.q.fillGap, now.UTC().UnixMicro(), jobID, seq, seq); err != nil {
			return false, nil, fmt.Errorf("fill gap of job %s: %w", jobID, err)
		}
		return false, nil, nil
	}
	if seq == last+1 {
		return true, nil, nil
	}
	g := &domain.Gap{JobID: jobID, FirstMissing: last + 1, LastMissing: seq - 1, EventID: eventID, DetectedAt: now.UTC().Truncate(time.Microsecond)}
	if _, err := tx.ExecContext(ctx, r.q.insertGap, g.JobID, g.FirstMissing, g.LastMissing, g.EventID, g.DetectedAt.UnixMicro()); err != nil {
		return false, nil, fmt.Errorf("store gap of job %s: %w", jobID, err)
	}
	return true, g, nil
}

// PendingGaps returns up to limit gaps whose alert has not been published.
func (r *Repository) PendingGaps(ctx context.Context, limit int) ([]domain.Gap, error) {
	rows, err := r.db.Writer().QueryContext(ctx, r.q.pendingGaps, limit)
	if err != nil {
		return nil, fmt.Errorf("read pending gaps: %w", err)
	}
	defer rows.Close()
	var out []domain.Gap
	for rows.Next() {
		var g domain.Gap
		var at int64
		if err := rows.Scan(&g.JobID, &g.FirstMissing, &g.LastMissing, &g.EventID, &at); err != nil {
			return nil, fmt.Errorf("scan gap: %w", err)
		}
		g.DetectedAt = time.UnixMicro(at).UTC()
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pending gaps: %w", err)
	}
	return out, nil
}

// ResolvedGaps returns up to limit resolved gaps whose raise was published
// and whose resolve was not.
func (r *Repository) ResolvedGaps(ctx context.Context, limit int) ([]domain.Gap, error) {
	rows, err := r.db.Writer().QueryContext(ctx, r.q.resolvedGaps, limit)
	if err != nil {
		return nil, fmt.Errorf("read resolved gaps: %w", err)
	}
	defer rows.Close()
	var out []domain.Gap
	for rows.Next() {
		var g domain.Gap
		var detected, resolved int64
		if err := rows.Scan(&g.JobID, &g.FirstMissing, &g.LastMissing, &g.EventID, &detected, &resolved); err != nil {
			return nil, fmt.Errorf("scan gap: %w", err)
		}
		g.DetectedAt, g.ResolvedAt = time.UnixMicro(detected).UTC(), time.UnixMicro(resolved).UTC()
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read resolved gaps: %w", err)
	}
	return out, nil
}

// MarkGapResolveAlerted records that the alert.resolved of g was published at.
func (r *Repository) MarkGapResolveAlerted(ctx context.Context, g domain.Gap, at time.Time) error {
	if _, err := r.db.ExecContext(ctx, r.q.markGapResolveAlerted, at.UnixMicro(), g.JobID, g.FirstMissing); err != nil {
		return fmt.Errorf("mark gap of job %s resolved: %w", g.JobID, err)
	}
	return nil
}

// MarkGapAlerted records that the alert of g was published at.
func (r *Repository) MarkGapAlerted(ctx context.Context, g domain.Gap, at time.Time) error {
	if _, err := r.db.ExecContext(ctx, r.q.markGapAlerted, at.UnixMicro(), g.JobID, g.FirstMissing); err != nil {
		return fmt.Errorf("mark gap of job %s alerted: %w", g.JobID, err)
	}
	return nil
}
