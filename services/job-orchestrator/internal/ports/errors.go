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
// match wins. Anything not listed is Internal, and its text is logged but
// not sent to the client.
//
// Another user's job is reported as NotFound, never PermissionDenied, so
// that a caller cannot learn which job ids exist.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{domain.ErrInvalidArgument, codes.InvalidArgument},
	{domain.ErrNotFound, codes.NotFound},
	{domain.ErrUnauthenticated, codes.Unauthenticated},
	{domain.ErrPermissionDenied, codes.PermissionDenied},
	{domain.ErrIdempotencyKeyReused, codes.AlreadyExists},
	{domain.ErrIllegalTransition, codes.FailedPrecondition},
	{domain.ErrUnavailable, codes.Unavailable},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
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
		if e.code == codes.Unavailable {
			log.WarnContext(ctx, "dependency unavailable", "error", err)
		}
		return status.Error(e.code, err.Error())
	}
	log.ErrorContext(ctx, "internal error", "error", err)
	return status.Error(codes.Internal, "internal error")
}
