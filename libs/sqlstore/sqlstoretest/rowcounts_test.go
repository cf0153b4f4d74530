package sqlstoretest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

func TestRowCounts(t *testing.T) {
	t.Parallel()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			db := d.Open(t)
			sqlstoretest.MustExec(t, db, "CREATE TABLE a (id INTEGER PRIMARY KEY)")
			sqlstoretest.MustExec(t, db, "CREATE TABLE b (id INTEGER PRIMARY KEY)")
			sqlstoretest.MustExec(t, db, "INSERT INTO a (id) VALUES (1), (2)")
			got := sqlstoretest.RowCounts(t, db)
			require.Equal(t, int64(2), got["a"])
			require.Equal(t, int64(0), got["b"])
			sqlstoretest.MustExec(t, db, "DELETE FROM a WHERE id = 1")
			require.Equal(t, int64(1), sqlstoretest.RowCounts(t, db)["a"])
		})
	}
}
