// Package grpcerr is the one table type that turns use-case errors into gRPC
// status errors, after pkgsite's derrors: each service lists its domain
// sentinels with their codes in one Table, and every handler answers with
// Table.Status.
//
// Status answers, first match wins:
//   - a gRPC status error as it is;
//   - a *validation.Error with InvalidArgument, its text, and a
//     google.rpc.BadRequest with one field violation per invalid field;
//   - the first Rule that matches;
//   - else the Fallback (Internal "internal error", logged, by default).
//
// A rule with a Message answers with that message only: the error's own
// text (a database or driver error, a host name, a query) is logged when the
// rule says so, never sent to the client.
package grpcerr

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/validation"
)

// Level says whether and how Status logs the error a rule matched.
type Level int

const (
	// NoLog logs nothing.
	NoLog Level = iota
	// LogWarn logs at warning level (a dependency that is down).
	LogWarn
	// LogError logs at error level (a failure that needs looking at).
	LogError
)

// Rule maps the errors it matches to one gRPC code.
type Rule struct {
	// Err is matched with errors.Is, unless Match is set.
	Err error
	// Match, when set, decides instead of Err (say, errors.As of a type).
	Match func(error) bool
	Code  codes.Code
	// Message is the text the client gets; "" sends the error's own text.
	// "{op}" in it stands for the operation Status was called with.
	Message string
	// Log, with LogMessage ("{op}" replaced likewise), logs the error
	// before answering.
	Log        Level
	LogMessage string
}

func (r Rule) matches(err error) bool {
	if r.Match != nil {
		return r.Match(err)
	}
	return r.Err != nil && errors.Is(err, r.Err)
}

// Context is the rules of the two context errors, which every table ends
// with: a call cancelled or out of time is answered as such, never as a
// failure of the service.
var Context = []Rule{
	{Err: context.DeadlineExceeded, Code: codes.DeadlineExceeded, Message: "deadline exceeded"},
	{Err: context.Canceled, Code: codes.Canceled, Message: "call cancelled"},
}

// DefaultFallback answers an error no rule matches.
var DefaultFallback = Rule{Code: codes.Internal, Message: "internal error", Log: LogError, LogMessage: "internal error"}

// Table is one service's mapping from errors to gRPC codes.
type Table struct {
	Rules []Rule
	// Fallback answers errors no rule matches; the zero Rule means
	// DefaultFallback.
	Fallback Rule
}

// Status converts err into a gRPC status error (nil for nil). op names the
// operation for the messages that say "{op}"; logger may be nil.
func (t Table) Status(ctx context.Context, logger *slog.Logger, op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var ve *validation.Error
	if errors.As(err, &ve) {
		return InvalidArgument(ve)
	}
	for _, r := range t.Rules {
		if r.matches(err) {
			return r.answer(ctx, logger, op, err)
		}
	}
	fb := t.Fallback
	if fb.Code == codes.OK {
		fb = DefaultFallback
	}
	return fb.answer(ctx, logger, op, err)
}

func (r Rule) answer(ctx context.Context, logger *slog.Logger, op string, err error) error {
	if logger != nil && r.Log != NoLog {
		msg := strings.ReplaceAll(r.LogMessage, "{op}", op)
		if r.Log == LogWarn {
			logger.WarnContext(ctx, msg, "error", err)
		} else {
			logger.ErrorContext(ctx, msg, "error", err)
		}
	}
	if r.Message == "" {
		return status.Error(r.Code, err.Error())
	}
	return status.Error(r.Code, strings.ReplaceAll(r.Message, "{op}", op))
}

// InvalidArgument is the status of ve: InvalidArgument with ve's text and a
// google.rpc.BadRequest with one field violation per invalid field.
func InvalidArgument(ve *validation.Error) error {
	st := status.New(codes.InvalidArgument, ve.Error())
	br := &errdetails.BadRequest{}
	for _, v := range ve.Violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
	}
	if withDetails, derr := st.WithDetails(br); derr == nil {
		st = withDetails
	}
	return st.Err()
}
