// Package ports exposes the use cases over gRPC: the JobService.
package ports

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/codes"

	"github.com/cosmic-horizons/fleet/libs/grpcerr"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// errorCodes is the one table that maps domain errors to gRPC codes, first
// match wins; a *domain.ValidationError is InvalidArgument with one field
// violation per field, and anything not listed is Internal (libs/grpcerr).
// A code with a generic message answers with that message only: the error's
// own text (a database or driver error, a host name, a query) is logged,
// never sent to the client.
//
// Another user's job is reported as NotFound, never PermissionDenied, so
// that a caller cannot learn which job ids exist.
var errorCodes = grpcerr.Table{Rules: append([]grpcerr.Rule{
	{Err: domain.ErrInvalidArgument, Code: codes.InvalidArgument},
	{Err: domain.ErrOutputNotFound, Code: codes.NotFound, Message: "no such file in the job's output directory"},
	{Err: domain.ErrNotFound, Code: codes.NotFound, Message: "job not found"},
	{Err: domain.ErrUnauthenticated, Code: codes.Unauthenticated, Message: "a bearer token is required"},
	{Err: domain.ErrPermissionDenied, Code: codes.PermissionDenied},
	{Err: domain.ErrIdempotencyKeyReused, Code: codes.AlreadyExists},
	{Err: domain.ErrIllegalTransition, Code: codes.FailedPrecondition},
	{Err: domain.ErrUnavailable, Code: codes.Unavailable, Message: "the service cannot reach a dependency; retry later",
		Log: grpcerr.LogWarn, LogMessage: "dependency unavailable"},
}, grpcerr.Context...)}

// statusOf converts a use-case error into a gRPC status error. Validation
// errors carry a google.rpc.BadRequest with one field violation per field.
func statusOf(ctx context.Context, log *slog.Logger, err error) error {
	return errorCodes.Status(ctx, log, "", err)
}
