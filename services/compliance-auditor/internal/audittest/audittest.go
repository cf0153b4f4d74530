// Package audittest builds the compliance-auditor's parts over a test
// database and makes the events the tests feed it.
package audittest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/adapters"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/app"
)

// Consumer is the inbox consumer name the tests use.
const Consumer = "compliance-auditor"

// Fixture is the auditor over one migrated database.
type Fixture struct {
	DB     *sqlstore.DB
	Repo   *adapters.Repository
	Codec  *events.Codec
	Signer *auditchain.Signer
	// Keys verify the checkpoints: the signer's key and, after Rotate, the earlier ones.
	Keys         auditchain.KeySet
	Recorder     *app.Recorder
	Checkpointer *app.Checkpointer
	Trail        *app.Trail
	// Now is the clock of every part; tests may move it.
	Now time.Time
}

// New migrates db and builds the auditor's parts over it with a fresh key.
// Checkpoints are signed every `every` records (on Checkpoint calls only:
// the fixture runs no background loops).
func New(t testing.TB, db *sqlstore.DB) *Fixture {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, adapters.Migrate(ctx, db))
	_, priv, err := auditchain.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := auditchain.NewSigner(priv)
	require.NoError(t, err)
	codec, err := events.NewCodec()
	require.NoError(t, err)
	f := &Fixture{DB: db, Repo: adapters.NewRepository(db), Codec: codec, Signer: signer, Now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	require.NoError(t, f.Repo.Prepare(ctx))
	clock := func() time.Time { return f.Now }
	logger := slog.New(slog.DiscardHandler)
	ib := inbox.New(db, Consumer, logger, nil)
	f.Keys, err = auditchain.NewKeySet(signer.PublicKey())
	require.NoError(t, err)
	f.Checkpointer = app.NewCheckpointer(f.Repo, signer, f.Keys, time.Hour, 1<<40, logger, clock)
	uow := inbox.NewUnitOfWork(ib, func(tx *sql.Tx, msgs []*bus.Message) app.RecordTx { return f.Repo.Bind(tx, msgs) })
	f.Recorder = app.NewRecorder(uow, codec, logger, clock, f.Checkpointer.Appended)
	f.Trail = app.NewTrail(f.Repo, f.Checkpointer, app.TrailConfig{Keys: f.Keys, Retention: Retention, Now: clock})
	return f
}

// Retention is the retention period of the fixture's trail.
const Retention = 24 * time.Hour

// Rotate switches the fixture to a new signing key, as the documented key
// rotation does: a new checkpointer signs with next, and the trail verifies
// with next and every key before it (the previous public keys listed in
// AUDIT_VERIFY_KEYS). The recorder keeps appending to the same store.
func (f *Fixture) Rotate(t testing.TB, next *auditchain.Signer) {
	t.Helper()
	require.NoError(t, f.Keys.Add(next.PublicKey()))
	clock := func() time.Time { return f.Now }
	logger := slog.New(slog.DiscardHandler)
	f.Signer = next
	f.Checkpointer = app.NewCheckpointer(f.Repo, next, f.Keys, time.Hour, 1<<40, logger, clock)
	f.Trail = app.NewTrail(f.Repo, f.Checkpointer, app.TrailConfig{Keys: f.Keys, Retention: Retention, Now: clock})
}

// Message encodes ev as the bus message the consumer receives at offset.
func Message(t testing.TB, codec *events.Codec, ev events.Event, offset int64) *bus.Message {
	t.Helper()
	msg, err := codec.Message(ev)
	require.NoError(t, err)
	msg.Offset = offset
	return msg
}

// Lifecycle returns a job.queued event of job with the per-job sequence seq.
func Lifecycle(t testing.TB, job string, seq int64) events.Event {
	t.Helper()
	ev, err := events.NewEvent(events.JobQueued{
		JobID: job, UserID: "u-ada", Scheduler: "local", SchedulerJobID: fmt.Sprintf("%d", seq),
		FromStatus: events.JobStatusSubmitted, ToStatus: events.JobStatusQueued,
	}, events.Meta{Producer: "job-orchestrator", UserID: "u-ada", Sequence: seq})
	require.NoError(t, err)
	return ev
}

// Action returns an audit.action_recorded event of actor cancelling job.
func Action(t testing.TB, actor, job string) events.Event {
	t.Helper()
	ev, err := events.NewEvent(events.AuditActionRecorded{
		AuditID: "aud-" + job, Action: events.AuditActionCancel, ActorUserID: actor, ActorRole: "user",
		ResourceType: "job", ResourceID: job, Before: map[string]string{"status": "RUNNING"},
		After: map[string]string{"status": "CANCELLED"}, Outcome: events.AuditOutcomeSuccess,
	}, events.Meta{Producer: "job-orchestrator", UserID: actor})
	require.NoError(t, err)
	return ev
}

// Messages returns n audit messages: actions by n%3 actors on n jobs,
// alternating with lifecycle events of job-<i> with sequence 1.
func Messages(t testing.TB, codec *events.Codec, n int) []*bus.Message {
	t.Helper()
	out := make([]*bus.Message, n)
	for i := range out {
		job := fmt.Sprintf("job-%d", i)
		var ev events.Event
		if i%2 == 0 {
			ev = Action(t, fmt.Sprintf("u-%d", i%3), job)
		} else {
			ev = Lifecycle(t, job, 1)
		}
		out[i] = Message(t, codec, ev, int64(i))
	}
	return out
}

// Count returns the number of stored audit records.
func Count(t testing.TB, db *sqlstore.DB) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Writer().QueryRowContext(context.Background(), "SELECT count(*) FROM audit_records").Scan(&n))
	return n
}

// DropGuards removes the append-only triggers, as someone with direct
// (superuser) access to the database could, so a test can tamper with rows.
func DropGuards(t testing.TB, db *sqlstore.DB) {
	t.Helper()
	stmts := []string{
		"DROP TRIGGER audit_records_no_update", "DROP TRIGGER audit_records_no_delete",
		"DROP TRIGGER audit_checkpoints_no_update", "DROP TRIGGER audit_checkpoints_no_delete",
	}
	if db.Dialect() == sqlstore.DialectPostgres {
		stmts = []string{
			"DROP TRIGGER audit_records_append_only ON audit_records",
			"DROP TRIGGER audit_checkpoints_append_only ON audit_checkpoints",
		}
	}
	for _, s := range stmts {
		_, err := db.ExecContext(context.Background(), s)
		require.NoError(t, err, s)
	}
}
