package domain

import (
	"errors"
	"time"
)

// ErrBadPageToken is returned for a page token the store did not issue.
var ErrBadPageToken = errors.New("malformed page token")

// Outcome is the result of one delivery attempt.
type Outcome struct {
	ID string
	// Attempt is the attempt number the worker claimed; an outcome for an
	// attempt that is no longer current (the lease expired and another
	// worker claimed the delivery) is dropped.
	Attempt       int
	Status        Status
	NextAttemptAt time.Time
	LastError     string
	SentAt        time.Time
}
