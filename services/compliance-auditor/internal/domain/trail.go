package domain

import (
	"errors"
	"time"
)

// ErrNotFound is returned when a requested checkpoint or record does not exist.
var ErrNotFound = errors.New("not found")

// Filter selects records for a query; empty fields match everything.
type Filter struct {
	ResourceType, ResourceID, Actor, Action string
	// OccurredAfter keeps records at or after it; OccurredBefore strictly before it.
	OccurredAfter, OccurredBefore time.Time
}

// Gap is a detected gap in a job's lifecycle sequence: the events with
// FirstMissing..LastMissing had not arrived when EventID (with sequence
// LastMissing+1) did.
type Gap struct {
	JobID        string
	FirstMissing int64
	LastMissing  int64
	EventID      string
	DetectedAt   time.Time
	// ResolvedAt is when the last missing event arrived; zero while open.
	ResolvedAt time.Time
}
