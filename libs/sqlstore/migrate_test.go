package sqlstore_test

import (
	"context"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

// baseMigrations are numbered so that lexical order (10 < 2) differs from
// version order, and each one depends on the one before.
func baseMigrations() fstest.MapFS {
	return fstest.MapFS{
		"m/1_create_jobs.sql":     file("CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT NOT NULL);"),
		"m/2_seed_jobs.sql":       file("INSERT INTO jobs (id, state) VALUES (1, 'queued');\nINSERT INTO jobs (id, state) VALUES (2, 'running');"),
		"m/10_create_history.sql": file("CREATE TABLE history (job_id INTEGER NOT NULL REFERENCES jobs (id));\nINSERT INTO history (job_id) SELECT id FROM jobs;"),
		"m/README.md":             file("not a migration"),
	}
}

type appliedRow struct {
	Version  int
	Name     string
	Checksum string
}

func appliedMigrations(t *testing.T, db *sqlstore.DB, component string) []appliedRow {
	t.Helper()
	rows, err := db.QueryContext(context.Background(),
		db.Rebind("SELECT version, name, checksum FROM schema_migrations WHERE component = ? ORDER BY version"), component)
	require.NoError(t, err)
	defer rows.Close()
	var out []appliedRow
	for rows.Next() {
		var r appliedRow
		require.NoError(t, rows.Scan(&r.Version, &r.Name, &r.Checksum))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

func versions(rows []appliedRow) []int {
	out := make([]int, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.Version)
	}
	return out
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()

			t.Run("applies in version order and re-run is a no-op", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				require.NoError(t, sqlstore.Migrate(ctx, db, baseMigrations(), "m"))
				applied := appliedMigrations(t, db, sqlstore.DefaultComponent)
				require.Equal(t, []int{1, 2, 10}, versions(applied))
				require.Equal(t, "create_history", applied[2].Name)
				require.EqualValues(t, 2, sqlstoretest.Count(t, db, "SELECT count(*) FROM history"))

				// The migrations are not idempotent: applying any of them twice would fail.
				require.NoError(t, sqlstore.Migrate(ctx, db, baseMigrations(), "m"))
				require.Equal(t, applied, appliedMigrations(t, db, sqlstore.DefaultComponent))
				require.EqualValues(t, 2, sqlstoretest.Count(t, db, "SELECT count(*) FROM jobs"))
			})

			t.Run("applies only what is new", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				fsys := baseMigrations()
				delete(fsys, "m/10_create_history.sql")
				require.NoError(t, sqlstore.Migrate(ctx, db, fsys, "m"))
				require.Equal(t, []int{1, 2}, versions(appliedMigrations(t, db, sqlstore.DefaultComponent)))
				require.NoError(t, sqlstore.Migrate(ctx, db, baseMigrations(), "m"))
				require.Equal(t, []int{1, 2, 10}, versions(appliedMigrations(t, db, sqlstore.DefaultComponent)))
			})

			t.Run("refuses a changed checksum", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				require.NoError(t, sqlstore.Migrate(ctx, db, baseMigrations(), "m"))
				fsys := baseMigrations()
				fsys["m/2_seed_jobs.sql"] = file("INSERT INTO jobs (id, state) VALUES (1, 'queued');")
				fsys["m/11_more.sql"] = file("CREATE TABLE more (x INTEGER);")
				err := sqlstore.Migrate(ctx, db, fsys, "m")
				require.ErrorIs(t, err, sqlstore.ErrChecksumMismatch)
				require.ErrorContains(t, err, "0002_seed_jobs")
				require.Equal(t, []int{1, 2, 10}, versions(appliedMigrations(t, db, sqlstore.DefaultComponent)), "nothing applied after a refusal")
			})

			t.Run("dialect file wins over the common one", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				fsys := fstest.MapFS{
					"m/0001_kv.sql":          file("CREATE TABLE kv (v TEXT NOT NULL); INSERT INTO kv (v) VALUES ('common');"),
					"m/0001_kv.sqlite.sql":   file("CREATE TABLE kv (v TEXT NOT NULL) STRICT; INSERT INTO kv (v) VALUES ('sqlite');"),
					"m/0001_kv.postgres.sql": file("CREATE TABLE kv (v TEXT NOT NULL); INSERT INTO kv (v) VALUES ('postgres');"),
					"m/0002_more.sql":        file("INSERT INTO kv (v) VALUES ('common');"),
				}
				require.NoError(t, sqlstore.Migrate(ctx, db, fsys, "m"))
				require.EqualValues(t, 1, sqlstoretest.Count(t, db, "SELECT count(*) FROM kv WHERE v = ?", d.Name))
				require.EqualValues(t, 1, sqlstoretest.Count(t, db, "SELECT count(*) FROM kv WHERE v = 'common'"))

				applied := appliedMigrations(t, db, sqlstore.DefaultComponent)
				loaded, err := sqlstore.LoadMigrations(fsys, "m", db.Dialect())
				require.NoError(t, err)
				require.Equal(t, "m/0001_kv."+d.Name+".sql", loaded[0].File)
				require.Equal(t, loaded[0].Checksum, applied[0].Checksum)
			})

			t.Run("other dialect file is ignored", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				other := "postgres"
				if d.Name == "postgres" {
					other = "sqlite"
				}
				fsys := fstest.MapFS{
					"m/0001_kv.sql":                 file("CREATE TABLE kv (v TEXT NOT NULL); INSERT INTO kv (v) VALUES ('common');"),
					"m/0001_kv." + other + ".sql":   file("this is not SQL"),
					"m/0002_only." + other + ".sql": file("this is not SQL either"),
				}
				require.NoError(t, sqlstore.Migrate(ctx, db, fsys, "m"))
				require.Equal(t, []int{1}, versions(appliedMigrations(t, db, sqlstore.DefaultComponent)))
			})

			t.Run("a failing migration changes nothing", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				fsys := baseMigrations()
				fsys["m/11_broken.sql"] = file("CREATE TABLE half (x INTEGER);\nINSERT INTO no_such_table VALUES (1);")
				require.Error(t, sqlstore.Migrate(ctx, db, fsys, "m"))
				require.Equal(t, []int{1, 2, 10}, versions(appliedMigrations(t, db, sqlstore.DefaultComponent)))
				require.EqualValues(t, 0, sqlstoretest.Count(t, db, tableExistsQuery(db), "half"))

				fsys["m/11_broken.sql"] = file("CREATE TABLE half (x INTEGER);")
				require.NoError(t, sqlstore.Migrate(ctx, db, fsys, "m"))
				require.EqualValues(t, 1, sqlstoretest.Count(t, db, tableExistsQuery(db), "half"))
			})

			t.Run("components keep their versions apart", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				lib := fstest.MapFS{"migrations/0001_lib.sql": file("CREATE TABLE lib_state (x INTEGER);")}
				require.NoError(t, sqlstore.Migrate(ctx, db, baseMigrations(), "m"))
				require.NoError(t, sqlstore.Migrate(ctx, db, lib, "migrations", sqlstore.WithComponent("lib")))
				require.Equal(t, []int{1}, versions(appliedMigrations(t, db, "lib")))
				require.Equal(t, []int{1, 2, 10}, versions(appliedMigrations(t, db, sqlstore.DefaultComponent)))
			})

			t.Run("refuses a pending migration older than an applied one", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				require.NoError(t, sqlstore.Migrate(ctx, db, baseMigrations(), "m"))
				fsys := baseMigrations()
				fsys["m/3_late.sql"] = file("CREATE TABLE late (x INTEGER);")
				require.ErrorContains(t, sqlstore.Migrate(ctx, db, fsys, "m"), "already applied")
			})

			t.Run("tolerates an applied version it does not know", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				require.NoError(t, sqlstore.Migrate(ctx, db, baseMigrations(), "m"))
				fsys := baseMigrations()
				delete(fsys, "m/10_create_history.sql")
				require.NoError(t, sqlstore.Migrate(ctx, db, fsys, "m"))
			})

			t.Run("concurrent migrators apply each migration once", func(t *testing.T) {
				t.Parallel()
				url := d.URL(t)
				const processes = 4
				dbs := make([]*sqlstore.DB, processes)
				for i := range dbs {
					dbs[i] = sqlstoretest.OpenURL(t, url)
				}
				errs := make(chan error, processes)
				var wg sync.WaitGroup
				for _, db := range dbs {
					wg.Go(func() { errs <- sqlstore.Migrate(ctx, db, baseMigrations(), "m") })
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					require.NoError(t, err)
				}
				require.Equal(t, []int{1, 2, 10}, versions(appliedMigrations(t, dbs[0], sqlstore.DefaultComponent)))
				require.EqualValues(t, 2, sqlstoretest.Count(t, dbs[0], "SELECT count(*) FROM jobs"))
			})
		})
	}
}

func tableExistsQuery(db *sqlstore.DB) string {
	if db.Dialect() == sqlstore.DialectPostgres {
		return "SELECT count(*) FROM information_schema.tables WHERE table_name = ?"
	}
	return "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
}

func TestLoadMigrationsRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		wantErr string
	}{
		{name: "bad name", fsys: fstest.MapFS{"m/create.sql": file("")}, wantErr: "want NNNN_name.sql"},
		{name: "unknown dialect", fsys: fstest.MapFS{"m/0001_x.mysql.sql": file("")}, wantErr: "want NNNN_name.sql"},
		{name: "version zero", fsys: fstest.MapFS{"m/0000_x.sql": file("")}, wantErr: "positive"},
		{name: "two names", fsys: fstest.MapFS{"m/0001_x.sql": file(""), "m/0001_y.sql": file("")}, wantErr: "two names"},
		{name: "missing dir", fsys: fstest.MapFS{"other/0001_x.sql": file("")}, wantErr: "read migrations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := sqlstore.LoadMigrations(tt.fsys, "m", sqlstore.DialectSQLite)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
