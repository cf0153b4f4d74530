// Package domain holds the job-orchestrator's types and rules: the job
// aggregate and its state machine, the TACC system catalogue, request
// validation, the generated batch script and the cost estimate. It does no
// I/O.
package domain

import (
	"errors"
	"fmt"

	"github.com/cosmic-horizons/fleet/libs/validation"
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
	ErrInvalidArgument = validation.ErrInvalid
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
type FieldViolation = validation.FieldViolation

// ValidationError lists every invalid field of a request (the fleet's one
// validation error, libs/validation). It matches ErrInvalidArgument with
// errors.Is.
type ValidationError = validation.Error

// violations collects field violations into a validation.Error.
type violations struct{ validation.Error }

func (v *violations) add(field, format string, args ...any) { v.Add(field, format, args...) }

// err returns the *ValidationError of the violations, or nil for none.
func (v *violations) err() error { return v.Err() }

// Invalid returns a *ValidationError with a single violation.
func Invalid(field, format string, args ...any) error {
	return validation.Invalid(field, format, args...)
}
