package sqlstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
)

func TestRebind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		dialect  sqlstore.Dialect
		query    string
		expected string
	}{
		{name: "sqlite unchanged", dialect: sqlstore.DialectSQLite, query: "SELECT a FROM t WHERE a = ? AND b = ?", expected: "SELECT a FROM t WHERE a = ? AND b = ?"},
		{name: "postgres numbered", dialect: sqlstore.DialectPostgres, query: "SELECT a FROM t WHERE a = ? AND b = ?", expected: "SELECT a FROM t WHERE a = $1 AND b = $2"},
		{name: "no placeholders", dialect: sqlstore.DialectPostgres, query: "SELECT 1", expected: "SELECT 1"},
		{name: "already rebound", dialect: sqlstore.DialectPostgres, query: "SELECT $1, $2", expected: "SELECT $1, $2"},
		{name: "string literal kept", dialect: sqlstore.DialectPostgres, query: "SELECT '?', ? FROM t WHERE s = 'it''s ?'", expected: "SELECT '?', $1 FROM t WHERE s = 'it''s ?'"},
		{name: "quoted identifier kept", dialect: sqlstore.DialectPostgres, query: `SELECT "a?b" FROM t WHERE x = ?`, expected: `SELECT "a?b" FROM t WHERE x = $1`},
		{name: "line comment kept", dialect: sqlstore.DialectPostgres, query: "SELECT ? -- why?\nFROM t WHERE x = ?", expected: "SELECT $1 -- why?\nFROM t WHERE x = $2"},
		{name: "block comment kept", dialect: sqlstore.DialectPostgres, query: "SELECT /* ? */ ? FROM t", expected: "SELECT /* ? */ $1 FROM t"},
		{name: "unterminated literal", dialect: sqlstore.DialectPostgres, query: "SELECT ?, 'abc?", expected: "SELECT $1, 'abc?"},
		{name: "ten and more", dialect: sqlstore.DialectPostgres, query: "VALUES (?,?,?,?,?,?,?,?,?,?,?)", expected: "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.expected, sqlstore.Rebind(tt.dialect, tt.query))
		})
	}
}
