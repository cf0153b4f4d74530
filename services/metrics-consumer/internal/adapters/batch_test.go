package adapters_test

import (
	"context"
	"database/sql"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/adapters"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/testgen"
)

// ingestOver returns the ingest use case over db as the service wires it:
// the inbox's unit of work binding the repository's deferring sessions.
func ingestOver(t *testing.T, db *sqlstore.DB, codec *events.Codec) (*app.Ingest, *adapters.JobRepository) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, inbox.Migrate(ctx, db))
	repo := newRepo(t, db)
	ib := inbox.New(db, app.ConsumerName, nil, nil)
	uow := inbox.NewUnitOfWork(ib, func(tx *sql.Tx, msgs []*bus.Message) app.JobWriter { return repo.Bind(tx, msgs) })
	return app.NewIngest(uow, codec, nil), repo
}

// TestBatchCoalescingMatchesOneByOne: a batch carrying several events of
// each job (written once per job at its end) stores the same records as the
// same events applied one message at a time, and an event repeated within a
// batch is applied once.
func TestBatchCoalescingMatchesOneByOne(t *testing.T) {
	codec, err := events.NewCodec()
	require.NoError(t, err)
	plans := testgen.Plans(7, 300, base)
	evs, err := testgen.Stream(plans)
	require.NoError(t, err)
	msgs := make([]*bus.Message, len(evs))
	for i, ev := range evs {
		msgs[i], err = codec.Message(ev)
		require.NoError(t, err)
		msgs[i].Offset = int64(i)
	}
	want := map[string]*domain.Job{}
	for _, ev := range evs {
		id := domain.JobID(ev)
		if want[id] == nil {
			want[id] = domain.NewJob(id)
		}
		want[id].Apply(ev)
	}

	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		oneDB := sqlstoretest.OpenURL(t, sqlstoretest.Databases(t)[dialectIndex(db)].URL(t))
		one, oneRepo := ingestOver(t, oneDB, codec)
		for _, m := range msgs {
			require.NoError(t, one.Handle(ctx, m))
		}
		batched, repo := ingestOver(t, db, codec)
		for chunk := range slices.Chunk(msgs, 250) {
			// Every fifth message of the chunk comes again within it.
			batch := slices.Clone(chunk)
			for i := 0; i < len(chunk); i += 5 {
				batch = append(batch, chunk[i])
			}
			jobs := map[string]int{}
			for _, m := range chunk {
				jobs[m.Key]++
			}
			require.Less(t, len(jobs), len(chunk), "the batch holds several events of some job")
			require.NoError(t, batched.HandleBatch(ctx, batch))
		}
		// A whole batch of redeliveries changes nothing.
		require.NoError(t, batched.HandleBatch(ctx, msgs[:400]))

		got, err := repo.Jobs(ctx)
		require.NoError(t, err)
		ref, err := oneRepo.Jobs(ctx)
		require.NoError(t, err)
		require.Len(t, got, len(want))
		require.Equal(t, ref, got, "batched and one-by-one records differ")
		for _, j := range got {
			require.Equal(t, want[j.ID], j)
		}
		require.Equal(t, int64(len(msgs)), sqlstoretest.Count(t, db, "SELECT count(*) FROM inbox_processed"))
	})
}

func dialectIndex(db *sqlstore.DB) int {
	if db.Dialect() == sqlstore.DialectPostgres {
		return 1
	}
	return 0
}
