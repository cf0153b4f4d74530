// Package validation is the one field-level validation error of the fleet:
// every service's domain collects the invalid fields of a request in an
// *Error, and libs/grpcerr answers it with InvalidArgument and a
// google.rpc.BadRequest naming each field.
package validation

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every *Error.
var ErrInvalid = errors.New("invalid argument")

// FieldViolation is one invalid field of a request. Field is the path of
// the field in the request message, e.g. "spec.resources.nodes".
type FieldViolation struct {
	Field       string
	Description string
}

// Error lists every invalid field of a request. The zero value is empty
// and ready to use: Add violations, then return Err.
type Error struct {
	Violations []FieldViolation
}

func (e *Error) Error() string {
	parts := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		parts = append(parts, v.Field+": "+v.Description)
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Add records a violation of field, described by format and args.
func (e *Error) Add(field, format string, args ...any) {
	e.Violations = append(e.Violations, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// Err returns e when it holds violations, else nil.
func (e *Error) Err() error {
	if e == nil || len(e.Violations) == 0 {
		return nil
	}
	return e
}

// Fields returns the field paths of the violations, in order.
func (e *Error) Fields() []string {
	out := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		out = append(out, v.Field)
	}
	return out
}

// Invalid returns an *Error with a single violation.
func Invalid(field, format string, args ...any) error {
	var e Error
	e.Add(field, format, args...)
	return &e
}
