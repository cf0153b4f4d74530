package service

import (
	"context"
	"log/slog"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
)

// openDatabase opens the orchestrator's database (DATABASE_URL). On SQLite
// it commits with synchronous=FULL: a SubmitJob answered OK, and every
// transition and outbox row, is on disk, through a power loss too. The
// group commit makes that one fsync per batch of writes, not per write.
func openDatabase(ctx context.Context, cfg Config, log *slog.Logger) (*sqlstore.DB, error) {
	return sqlstore.Open(ctx, sqlstore.Config{URL: cfg.DatabaseURL, Synchronous: sqlstore.SynchronousFull}, log)
}
