// Package ports exposes the use cases over gRPC: the JobService.
package ports

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// errorCodes is the one table that maps domain errors to gRPC codes, first
// match wins. Anything not listed is Internal. A code with a generic
// message answers with that message only: the error's own text (a database
// or driver error, a host name, a query) is logged, never sent to the
// client.
//
// Another user's job is reported as NotFound, never PermissionDenied, so
// that a caller cannot learn which job ids exist.
var errorCodes = []struct {
	err     error
	code    codes.Code
	generic string
}{
	{err: domain.ErrInvalidArgument, code: codes.InvalidArgument},
	{err: domain.ErrOutputNotFound, code: codes.NotFound, generic: "no such file in the job's output directory"},
	{err: domain.ErrNotFound, code: codes.NotFound, generic: "job not found"},
	{err: domain.ErrUnauthenticated, code: codes.Unauthenticated, generic: "a bearer token is required"},
	{err: domain.ErrPermissionDenied, code: codes.PermissionDenied},
	{err: domain.ErrIdempotencyKeyReused, code: codes.AlreadyExists},
	{err: domain.ErrIllegalTransition, code: codes.FailedPrecondition},
	{err: domain.ErrUnavailable, code: codes.Unavailable, generic: "the service cannot reach a dependency; retry later"},
	{err: context.DeadlineExceeded, code: codes.DeadlineExceeded, generic: "deadline exceeded"},
	{err: context.Canceled, code: codes.Canceled, generic: "call cancelled"},
}

// statusOf converts a use-case error into a gRPC status error. Validation
// errors carry a google.rpc.BadRequest with one field violation per field.
func statusOf(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range errorCodes {
		if !errors.Is(err, e.err) {
			continue
		}
		var ve *domain.ValidationError
		if e.code == codes.InvalidArgument && errors.As(err, &ve) {
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
		if e.generic != "" {
			if e.code == codes.Unavailable {
				log.WarnContext(ctx, "dependency unavailable", "error", err)
			}
			return status.Error(e.code, e.generic)
		}
		return status.Error(e.code, err.Error())
	}
	log.ErrorContext(ctx, "internal error", "error", err)
	return status.Error(codes.Internal, "internal error")
}
