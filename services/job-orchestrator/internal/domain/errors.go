// Package domain holds the job-orchestrator's types and rules: the job
// aggregate and its state machine, the TACC system catalogue, request
// validation, the generated batch script and the cost estimate. It does no
// I/O.
package domain

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of the domain and the use cases. The gRPC layer maps each
// to one status code in a single table.
var (
	// ErrNotFound: the job does not exist or the caller may not see it.
	ErrNotFound = errors.New("not found")
	// ErrIdempotencyKeyReused: the caller used an idempotency key before
	// with a different request.
	ErrIdempotencyKeyReused = errors.New("idempotency key already used with a different request")
	// ErrIllegalTransition: the job's state forbids the requested change.
	ErrIllegalTransition = errors.New("illegal job status transition")
	// ErrPermissionDenied: the caller is known but may not do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnauthenticated: the call carries no valid credentials.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUnavailable: a dependency (database, scheduler) cannot be reached;
	// the call may be retried.
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalidArgument is matched by every *ValidationError.
	ErrInvalidArgument = errors.New("invalid argument")
)

// TransitionError is returned for every illegal status change. It matches
// ErrIllegalTransition with errors.Is.
type TransitionError struct {
	From, To Status
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("illegal job status transition %s -> %s", e.From, e.To)
}

// Is makes errors.Is(err, ErrIllegalTransition) true.
func (e *TransitionError) Is(target error) bool { return target == ErrIllegalTransition }

// FieldViolation is one invalid field of a request. Field is the path of
// the field in the request message, e.g. "spec.resources.nodes".
type FieldViolation struct {
	Field       string
	Description string
}

// ValidationError lists every invalid field of a request. It matches
// ErrInvalidArgument with errors.Is.
type ValidationError struct {
	Violations []FieldViolation
}

func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		parts = append(parts, v.Field+": "+v.Description)
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalidArgument) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidArgument }

// Fields returns the field paths of the violations, in order.
func (e *ValidationError) Fields() []string {
	out := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		out = append(out, v.Field)
	}
	return out
}

// violations collects field violations.
type violations []FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (v violations) err() error {
	if len(v) == 0 {
		return nil
	}
	return &ValidationError{Violations: v}
}

// Invalid returns a *ValidationError with a single violation.
func Invalid(field, format string, args ...any) error {
	var v violations
	v.add(field, format, args...)
	return v.err()
}
