package sqlstore

import (
	"context"
	"database/sql"
	"strings"
)

// Querier is what QueryStrings reads through: a *sql.Tx, *sql.DB or *sql.Conn.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// QueryStrings runs query, which selects one text column, and returns its
// values in the order of the rows.
func QueryStrings(ctx context.Context, q Querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Placeholders returns n comma-separated "?" (see Rebind).
func Placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// Tuples returns n parenthesised groups of cols placeholders, comma
// separated: the VALUES of a multi-row INSERT.
func Tuples(cols, n int) string {
	one := "(" + Placeholders(cols) + ")"
	var b strings.Builder
	b.Grow(n * (len(one) + 2))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(one)
	}
	return b.String()
}
