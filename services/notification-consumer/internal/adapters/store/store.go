// Package store keeps the notification-consumer's state in SQL (SQLite or
// PostgreSQL through sqlstore): subscriptions, job names, deliveries (which
// double as the in-app notification list) and the outbox of outcome events
// (libs/outbox, in this store's tables).
package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/domain"
)

// MigrationComponent names this store's migrations in schema_migrations.
const MigrationComponent = "notification-consumer"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or upgrades the store's tables, and moves the outcome
// events still waiting in the outbox of before migration 0003 to the
// outbox.
func Migrate(ctx context.Context, db *sqlstore.DB) error {
	if err := sqlstore.Migrate(ctx, db, migrations, "migrations", sqlstore.WithComponent(MigrationComponent)); err != nil {
		return fmt.Errorf("migrate notification store: %w", err)
	}
	if err := New(db).moveLegacyOutbox(ctx); err != nil {
		return fmt.Errorf("migrate notification store: %w", err)
	}
	return nil
}

// outboxTables are the outbox's tables (migration 0003): Kafka only,
// ordered per delivery.
var outboxTables = outbox.Tables{Outbox: "outbox", Key: "delivery_id"}

// Store is the SQL store.
type Store struct {
	// Store is the outbox of outcome events (libs/outbox), which the relay
	// drains.
	*outbox.Store
	db *sqlstore.DB
}

// New returns a store over db, whose tables Migrate created.
func New(db *sqlstore.DB) *Store {
	return &Store{Store: outbox.NewStore(db, outbox.Options{Tables: outboxTables}), db: db}
}

// DB returns the underlying database.
func (s *Store) DB() *sqlstore.DB { return s.db }

func (s *Store) q(query string) string { return s.db.Rebind(query) }

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// --- subscriptions ---

const subscriptionColumns = `id, user_id, job_id, channel, target, event_types, enabled, secret_ref, created_at`

func scanSubscription(sc interface{ Scan(...any) error }) (domain.Subscription, error) {
	var s domain.Subscription
	var channel, types string
	var enabled int
	var created int64
	if err := sc.Scan(&s.ID, &s.UserID, &s.JobID, &channel, &s.Target, &types, &enabled, &s.SecretRef, &created); err != nil {
		return domain.Subscription{}, err
	}
	s.Channel = domain.Channel(channel)
	if types != "" {
		s.EventTypes = strings.Split(types, ",")
	}
	s.Enabled = enabled != 0
	s.CreatedAt = fromMicros(created)
	return s, nil
}

// CreateSubscription stores sub, which has been validated and has its id.
func (s *Store) CreateSubscription(ctx context.Context, sub domain.Subscription) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO subscriptions (`+subscriptionColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		sub.ID, sub.UserID, sub.JobID, string(sub.Channel), sub.Target, strings.Join(sub.EventTypes, ","),
		boolInt(sub.Enabled), sub.SecretRef, micros(sub.CreatedAt))
	if err != nil {
		return fmt.Errorf("insert subscription %s: %w", sub.ID, err)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ListSubscriptions returns one page of userID's subscriptions (of jobID
// when not empty), oldest first, and the token of the next page.
func (s *Store) ListSubscriptions(ctx context.Context, userID, jobID string, pageSize int, token string) ([]domain.Subscription, string, error) {
	after, afterID, err := decodeToken(token)
	if err != nil {
		return nil, "", err
	}
	query := `SELECT ` + subscriptionColumns + ` FROM subscriptions WHERE user_id = ?`
	args := []any{userID}
	if jobID != "" {
		query += ` AND job_id = ?`
		args = append(args, jobID)
	}
	if token != "" {
		query += ` AND (created_at > ? OR (created_at = ? AND id > ?))`
		args = append(args, after, after, afterID)
	}
	query += ` ORDER BY created_at, id LIMIT ?`
	args = append(args, pageSize+1)
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, "", fmt.Errorf("list subscriptions: %w", err)
	}
	defer rows.Close()
	var out []domain.Subscription
	for rows.Next() {
		sub, err := scanSubscription(rows)
		if err != nil {
			return nil, "", fmt.Errorf("scan subscription: %w", err)
		}
		out = append(out, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list subscriptions: %w", err)
	}
	next := ""
	if len(out) > pageSize {
		out = out[:pageSize]
		last := out[len(out)-1]
		next = encodeToken(micros(last.CreatedAt), last.ID)
	}
	return out, next, nil
}

// DeleteSubscription deletes userID's subscription id; domain.ErrNotFound
// when there is none.
func (s *Store) DeleteSubscription(ctx context.Context, userID, id string) error {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM subscriptions WHERE id = ? AND user_id = ?`), id, userID)
	if err != nil {
		return fmt.Errorf("delete subscription %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete subscription %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("subscription %s: %w", id, domain.ErrNotFound)
	}
	return nil
}

// SubscriptionsTx returns userID's enabled subscriptions that apply to
// jobID: its defaults plus its overrides for jobID.
func (s *Store) SubscriptionsTx(ctx context.Context, tx *sql.Tx, userID, jobID string) ([]domain.Subscription, error) {
	rows, err := tx.QueryContext(ctx, s.q(`SELECT `+subscriptionColumns+` FROM subscriptions
		WHERE user_id = ? AND (job_id = '' OR job_id = ?) AND enabled = 1 ORDER BY created_at, id`), userID, jobID)
	if err != nil {
		return nil, fmt.Errorf("subscriptions of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []domain.Subscription
	for rows.Next() {
		sub, err := scanSubscription(rows)
		if err != nil {
			return nil, fmt.Errorf("scan subscription: %w", err)
		}
		out = append(out, sub)
	}
	return out, rows.Err()
}

// TxStore is the store bound to one inbox transaction: the reads and writes
// recording a lifecycle event makes, all in that transaction.
type TxStore struct {
	s  *Store
	tx *sql.Tx
}

// Bind returns the store's transactional reads and writes bound to tx; the
// inbox's unit of work binds each of its transactions with it.
func (s *Store) Bind(tx *sql.Tx) *TxStore { return &TxStore{s: s, tx: tx} }

// Subscriptions is SubscriptionsTx in the bound transaction.
func (t *TxStore) Subscriptions(ctx context.Context, userID, jobID string) ([]domain.Subscription, error) {
	return t.s.SubscriptionsTx(ctx, t.tx, userID, jobID)
}

// UpsertJob is UpsertJobTx in the bound transaction.
func (t *TxStore) UpsertJob(ctx context.Context, jobID, userID, name string, now time.Time) error {
	return t.s.UpsertJobTx(ctx, t.tx, jobID, userID, name, now)
}

// JobName is JobNameTx in the bound transaction.
func (t *TxStore) JobName(ctx context.Context, jobID string) (string, error) {
	return t.s.JobNameTx(ctx, t.tx, jobID)
}

// InsertDelivery is InsertDeliveryTx in the bound transaction.
func (t *TxStore) InsertDelivery(ctx context.Context, d domain.Delivery) (bool, error) {
	return t.s.InsertDeliveryTx(ctx, t.tx, d)
}

// --- jobs ---

// UpsertJobTx remembers a job's owner and name (from job.submitted).
func (s *Store) UpsertJobTx(ctx context.Context, tx *sql.Tx, jobID, userID, name string, now time.Time) error {
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO jobs (job_id, user_id, job_name, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (job_id) DO UPDATE SET job_name = excluded.job_name, user_id = excluded.user_id, updated_at = excluded.updated_at`),
		jobID, userID, name, micros(now))
	if err != nil {
		return fmt.Errorf("upsert job %s: %w", jobID, err)
	}
	return nil
}

// JobNameTx returns the job's name, "" when unknown.
func (s *Store) JobNameTx(ctx context.Context, tx *sql.Tx, jobID string) (string, error) {
	var name string
	err := tx.QueryRowContext(ctx, s.q(`SELECT job_name FROM jobs WHERE job_id = ?`), jobID).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("job name of %s: %w", jobID, err)
	}
	return name, nil
}

// --- deliveries ---

const deliveryColumns = `id, event_id, event_type, correlation_id, user_id, job_id, subscription_id, channel, target, target_key,
	secret_ref, subject, body, payload, status, attempts, next_attempt_at, last_error, created_at, sent_at, read_at, trace_parent`

func scanDelivery(sc interface{ Scan(...any) error }) (domain.Delivery, error) {
	var d domain.Delivery
	var channel, status, payload string
	var next, created int64
	var sent, read sql.NullInt64
	if err := sc.Scan(&d.ID, &d.EventID, &d.EventType, &d.CorrelationID, &d.UserID, &d.JobID, &d.SubscriptionID, &channel, &d.Target,
		&d.TargetKey, &d.SecretRef, &d.Subject, &d.Body, &payload, &status, &d.Attempts, &next, &d.LastError,
		&created, &sent, &read, &d.TraceParent); err != nil {
		return domain.Delivery{}, err
	}
	d.Channel, d.Status = domain.Channel(channel), domain.Status(status)
	if payload != "" {
		d.Payload = []byte(payload)
	}
	d.NextAttemptAt, d.CreatedAt = fromMicros(next), fromMicros(created)
	if sent.Valid {
		t := fromMicros(sent.Int64)
		d.SentAt = &t
	}
	if read.Valid {
		t := fromMicros(read.Int64)
		d.ReadAt = &t
	}
	return d, nil
}

// InsertDeliveryTx records a pending delivery unless one with the same
// (event_id, channel, target) exists; it reports whether it inserted.
func (s *Store) InsertDeliveryTx(ctx context.Context, tx *sql.Tx, d domain.Delivery) (bool, error) {
	res, err := tx.ExecContext(ctx, s.q(`INSERT INTO deliveries (id, event_id, event_type, correlation_id, user_id, job_id, subscription_id,
		channel, target, target_key, secret_ref, subject, body, payload, status, attempts, next_attempt_at, created_at, trace_parent)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)
		ON CONFLICT (event_id, channel, target) DO NOTHING`),
		d.ID, d.EventID, d.EventType, d.CorrelationID, d.UserID, d.JobID, d.SubscriptionID, string(d.Channel), d.Target, d.TargetKey,
		d.SecretRef, d.Subject, d.Body, string(d.Payload), string(domain.StatusPending), micros(d.NextAttemptAt), micros(d.CreatedAt), d.TraceParent)
	if err != nil {
		return false, fmt.Errorf("insert delivery for event %s: %w", d.EventID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert delivery for event %s: %w", d.EventID, err)
	}
	return n == 1, nil
}

// Due returns up to limit pending deliveries due at now and not leased,
// earliest first, leaving out those whose target key is in skipKeys.
func (s *Store) Due(ctx context.Context, now time.Time, limit int, skipKeys []string) ([]domain.Delivery, error) {
	query := `SELECT ` + deliveryColumns + ` FROM deliveries WHERE status = ? AND next_attempt_at <= ? AND lease_until <= ?`
	args := []any{string(domain.StatusPending), micros(now), micros(now)}
	if len(skipKeys) > 0 {
		query += ` AND target_key NOT IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(skipKeys)), ", ") + `)`
		for _, k := range skipKeys {
			args = append(args, k)
		}
	}
	query += ` ORDER BY next_attempt_at, id LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("due deliveries: %w", err)
	}
	defer rows.Close()
	var out []domain.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("scan delivery: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Claim leases delivery id until leaseUntil and counts the attempt. It
// reports false when another worker holds it or it is no longer due.
func (s *Store) Claim(ctx context.Context, id string, now, leaseUntil time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE deliveries SET lease_until = ?, attempts = attempts + 1
		WHERE id = ? AND status = ? AND lease_until <= ? AND next_attempt_at <= ?`),
		micros(leaseUntil), id, string(domain.StatusPending), micros(now), micros(now))
	if err != nil {
		return false, fmt.Errorf("claim delivery %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim delivery %s: %w", id, err)
	}
	return n == 1, nil
}

// ClaimBatch is Claim for several deliveries in one transaction; it returns
// the ids it claimed with their new attempt numbers.
func (s *Store) ClaimBatch(ctx context.Context, ids []string, now, leaseUntil time.Time) (map[string]int, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := []any{micros(leaseUntil), string(domain.StatusPending), micros(now), micros(now)}
	for _, id := range ids {
		args = append(args, id)
	}
	claimed := make(map[string]int, len(ids))
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		clear(claimed)
		rows, err := tx.QueryContext(ctx, s.q(`UPDATE deliveries SET lease_until = ?, attempts = attempts + 1
			WHERE status = ? AND lease_until <= ? AND next_attempt_at <= ?
			AND id IN (`+strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")+`) RETURNING id, attempts`), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var attempts int
			if err := rows.Scan(&id, &attempts); err != nil {
				return err
			}
			claimed[id] = attempts
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("claim %d deliveries: %w", len(ids), err)
	}
	return claimed, nil
}

// Record stores the outcome of an attempt and, in the same transaction, the
// outbox messages announcing it. It reports false when the attempt was
// superseded and nothing was written.
func (s *Store) Record(ctx context.Context, o domain.Outcome, msgs []*bus.Message) (bool, error) {
	applied := false
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		applied = false
		var sent any
		if !o.SentAt.IsZero() {
			sent = micros(o.SentAt)
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE deliveries SET status = ?, next_attempt_at = ?, lease_until = 0,
			last_error = ?, sent_at = ? WHERE id = ? AND attempts = ? AND status = ?`),
			string(o.Status), micros(o.NextAttemptAt), o.LastError, sent, o.ID, o.Attempt, string(domain.StatusPending))
		if err != nil {
			return fmt.Errorf("record outcome of %s: %w", o.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		if err := s.appendOutbox(ctx, tx, o.ID, msgs); err != nil {
			return err
		}
		applied = true
		return nil
	})
	return applied, err
}

// Delivery returns the delivery id.
func (s *Store) Delivery(ctx context.Context, id string) (domain.Delivery, error) {
	d, err := scanDelivery(s.db.QueryRowContext(ctx, s.q(`SELECT `+deliveryColumns+` FROM deliveries WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return domain.Delivery{}, fmt.Errorf("delivery %s: %w", id, domain.ErrNotFound)
	}
	if err != nil {
		return domain.Delivery{}, fmt.Errorf("delivery %s: %w", id, err)
	}
	return d, nil
}

// DeliveriesOfEvent returns the deliveries created from eventID.
func (s *Store) DeliveriesOfEvent(ctx context.Context, eventID string) ([]domain.Delivery, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+deliveryColumns+` FROM deliveries WHERE event_id = ? ORDER BY channel, target`), eventID)
	if err != nil {
		return nil, fmt.Errorf("deliveries of %s: %w", eventID, err)
	}
	defer rows.Close()
	var out []domain.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// --- in-app notifications ---

// ListNotifications returns one page of userID's in-app notifications
// (of jobID when not empty), newest first, the next page's token and the
// user's total unread count.
func (s *Store) ListNotifications(ctx context.Context, userID, jobID string, unreadOnly bool, pageSize int, token string) ([]domain.Delivery, string, int64, error) {
	before, beforeID, err := decodeToken(token)
	if err != nil {
		return nil, "", 0, err
	}
	query := `SELECT ` + deliveryColumns + ` FROM deliveries WHERE user_id = ? AND channel = ?`
	args := []any{userID, string(domain.ChannelInApp)}
	if jobID != "" {
		query += ` AND job_id = ?`
		args = append(args, jobID)
	}
	if unreadOnly {
		query += ` AND read_at IS NULL`
	}
	if token != "" {
		query += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, before, before, beforeID)
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, pageSize+1)
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, "", 0, fmt.Errorf("list notifications: %w", err)
	}
	defer rows.Close()
	var out []domain.Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, "", 0, fmt.Errorf("scan notification: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, "", 0, fmt.Errorf("list notifications: %w", err)
	}
	next := ""
	if len(out) > pageSize {
		out = out[:pageSize]
		last := out[len(out)-1]
		next = encodeToken(micros(last.CreatedAt), last.ID)
	}
	var unread int64
	if err := s.db.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM deliveries WHERE user_id = ? AND channel = ? AND read_at IS NULL`),
		userID, string(domain.ChannelInApp)).Scan(&unread); err != nil {
		return nil, "", 0, fmt.Errorf("count unread notifications: %w", err)
	}
	return out, next, unread, nil
}

// MarkRead marks userID's in-app notifications ids (or all of them) read
// at now and returns how many went from unread to read.
func (s *Store) MarkRead(ctx context.Context, userID string, ids []string, all bool, now time.Time) (int64, error) {
	query := `UPDATE deliveries SET read_at = ? WHERE user_id = ? AND channel = ? AND read_at IS NULL`
	args := []any{micros(now), userID, string(domain.ChannelInApp)}
	if !all {
		if len(ids) == 0 {
			return 0, nil
		}
		query += ` AND id IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ") + `)`
		for _, id := range ids {
			args = append(args, id)
		}
	}
	res, err := s.db.ExecContext(ctx, s.q(query), args...)
	if err != nil {
		return 0, fmt.Errorf("mark read: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("mark read: %w", err)
	}
	return n, nil
}

// --- outbox ---

// appendOutbox appends msgs, the outcome events of delivery id (and their
// dead-letter copies), after the delivery's earlier ones.
func (s *Store) appendOutbox(ctx context.Context, tx *sql.Tx, id string, msgs []*bus.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	var last int64
	if err := tx.QueryRowContext(ctx, s.q(`SELECT COALESCE(MAX(seq), 0) FROM outbox WHERE delivery_id = ?`), id).Scan(&last); err != nil {
		return fmt.Errorf("outbox of delivery %s: %w", id, err)
	}
	rows := make([]outbox.Row, len(msgs))
	for i, m := range msgs {
		eventID := m.Headers[bus.HeaderEventID]
		if eventID == "" {
			u, err := uuid.NewV7()
			if err != nil {
				return fmt.Errorf("outbox id: %w", err)
			}
			eventID = u.String()
		}
		if strings.HasSuffix(m.Topic, bus.DLQSuffix) {
			// The dead-letter copy carries the event's id; its row needs one
			// of its own.
			eventID += bus.DLQSuffix
		}
		rows[i] = outbox.Row{EventID: eventID, EventType: m.Headers[bus.HeaderEventType], Message: m}
	}
	if err := s.Append(ctx, tx, outbox.Batch{Key: id, After: last, Rows: rows}); err != nil {
		return fmt.Errorf("insert outbox messages of delivery %s: %w", id, err)
	}
	return nil
}

// moveLegacyOutbox moves the messages of the outbox of before migration
// 0003 (outbox_legacy: base64 values, no order key) to the outbox, in the
// order they were written, keyed by their delivery_id header.
func (s *Store) moveLegacyOutbox(ctx context.Context) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, topic, msg_key, value, headers FROM outbox_legacy ORDER BY created_at, id`)
		if err != nil {
			return fmt.Errorf("read legacy outbox: %w", err)
		}
		type legacy struct {
			id  string
			msg *bus.Message
		}
		var old []legacy
		for rows.Next() {
			var id, topic, key, value, headers string
			if err := rows.Scan(&id, &topic, &key, &value, &headers); err != nil {
				rows.Close()
				return fmt.Errorf("scan legacy outbox: %w", err)
			}
			b, err := base64.StdEncoding.DecodeString(value)
			if err != nil {
				rows.Close()
				return fmt.Errorf("legacy outbox %s value: %w", id, err)
			}
			m := &bus.Message{Topic: topic, Key: key, Value: b}
			if err := json.Unmarshal([]byte(headers), &m.Headers); err != nil {
				rows.Close()
				return fmt.Errorf("legacy outbox %s headers: %w", id, err)
			}
			old = append(old, legacy{id: id, msg: m})
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("read legacy outbox: %w", err)
		}
		for _, l := range old {
			key := l.msg.Headers["delivery_id"]
			if key == "" {
				key = l.id
			}
			if err := s.appendOutbox(ctx, tx, key, []*bus.Message{l.msg}); err != nil {
				return err
			}
		}
		if len(old) > 0 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM outbox_legacy`); err != nil {
				return fmt.Errorf("empty legacy outbox: %w", err)
			}
		}
		return nil
	})
}

// --- page tokens ---

// ErrBadPageToken is returned for a page token this store did not issue.
var ErrBadPageToken = domain.ErrBadPageToken

func encodeToken(at int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at, 10) + "|" + id))
}

func decodeToken(tok string) (int64, string, error) {
	if tok == "" {
		return 0, "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, "", ErrBadPageToken
	}
	at, id, ok := strings.Cut(string(b), "|")
	v, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" {
		return 0, "", ErrBadPageToken
	}
	return v, id, nil
}

// Renew extends the lease of attempt of delivery id to leaseUntil, while
// that attempt is the current one and the delivery is still pending.
func (s *Store) Renew(ctx context.Context, id string, attempt int, leaseUntil time.Time) error {
	_, err := s.db.ExecContext(ctx, s.q(`UPDATE deliveries SET lease_until = ?
		WHERE id = ? AND attempts = ? AND status = ?`), micros(leaseUntil), id, attempt, string(domain.StatusPending))
	if err != nil {
		return fmt.Errorf("renew lease of delivery %s: %w", id, err)
	}
	return nil
}
