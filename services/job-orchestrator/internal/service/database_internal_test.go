package service

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDatabaseCommitsToDisk: the orchestrator's SQLite connections run
// with synchronous=FULL (2), so that what SubmitJob acknowledged survives
// a power loss; NORMAL (1) would not.
func TestDatabaseCommitsToDisk(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := openDatabase(ctx, Config{DatabaseURL: "sqlite:" + filepath.Join(t.TempDir(), "orchestrator.db")}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	var writer, reader int
	require.NoError(t, db.Writer().QueryRowContext(ctx, "PRAGMA synchronous").Scan(&writer))
	require.NoError(t, db.Reader().QueryRowContext(ctx, "PRAGMA synchronous").Scan(&reader))
	require.Equal(t, 2, writer, "the write connection")
	require.Equal(t, 2, reader, "the read connections")
}
