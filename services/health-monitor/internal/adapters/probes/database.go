package probes

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// DatabaseProbe pings one database through database/sql.
type DatabaseProbe struct {
	name string
	db   *sql.DB
}

// DriverFor returns the database/sql driver and data source of a database
// URL: postgres:// and postgresql:// use pgx; sqlite:<path> and file:<path>
// use modernc.org/sqlite.
func DriverFor(rawURL string) (driver, dsn string, err error) {
	switch {
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		return "pgx", rawURL, nil
	case strings.HasPrefix(rawURL, "sqlite://"):
		return "sqlite", strings.TrimPrefix(rawURL, "sqlite://"), nil
	case strings.HasPrefix(rawURL, "sqlite:"):
		return "sqlite", strings.TrimPrefix(rawURL, "sqlite:"), nil
	case strings.HasPrefix(rawURL, "file:"):
		return "sqlite", rawURL, nil
	}
	return "", "", fmt.Errorf("database url: want postgres://, postgresql://, sqlite: or file:")
}

// NewDatabaseProbe returns a probe of the database at rawURL, reported as
// "database:<name>". The pool opens connections on first use.
func NewDatabaseProbe(name, rawURL string) (*DatabaseProbe, error) {
	driver, dsn, err := DriverFor(rawURL)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", name, err)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", name, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(time.Minute)
	return &DatabaseProbe{name: name, db: db}, nil
}

// Name implements app.Probe.
func (p *DatabaseProbe) Name() string { return "database:" + p.name }

// Type implements app.Probe.
func (p *DatabaseProbe) Type() domain.ComponentType { return domain.TypeDatabase }

// Probe implements app.Probe.
func (p *DatabaseProbe) Probe(ctx context.Context) app.Outcome {
	start := time.Now()
	c := domain.Component{ID: p.Name(), Type: domain.TypeDatabase, Status: domain.StatusHealthy, Detail: "ping ok"}
	if err := p.db.PingContext(ctx); err != nil {
		c.Status, c.Detail = domain.StatusUnhealthy, fmt.Sprintf("ping: %v", err)
	}
	c.Checked, c.Latency = time.Now(), time.Since(start)
	return app.Outcome{Components: []domain.Component{c}}
}

// Close closes the pool.
func (p *DatabaseProbe) Close() error { return p.db.Close() }
