package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// outboxTables are the orchestrator's outbox tables (migrations 0001 and
// 0002), ordered per job.
var outboxTables = outbox.Tables{Outbox: "outbox", AMQP: "outbox_amqp", Key: "job_id"}

// outboxRows encodes the events of j's change (outbox.Encode): job-lifecycle
// events also go to RabbitMQ, routed by the job's owner, id and event type,
// and each row carries the trace context of ctx.
func (s *Store) outboxRows(ctx context.Context, j *domain.Job, recs []app.OutboxRecord) ([]outbox.Row, error) {
	evs := make([]events.Event, len(recs))
	for i, r := range recs {
		evs[i] = r.Event
	}
	rows, err := outbox.Encode(ctx, s.codec, outbox.JobEvents(j.Owner, j.ID), evs...)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	return rows, nil
}

// appendOutbox inserts rows for job jobID with seq after last, in order.
func (s *Store) appendOutbox(ctx context.Context, tx *sql.Tx, jobID string, last int64, rows []outbox.Row) error {
	return s.Append(ctx, tx, outbox.Batch{Key: jobID, After: last, Rows: rows})
}
