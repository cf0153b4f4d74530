package grpcerr_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/grpcerr"
	"github.com/cosmic-horizons/fleet/libs/validation"
)

var (
	errNotFound    = errors.New("not found")
	errUnavailable = errors.New("unavailable")
)

type refusedError struct{ seq int }

func (e *refusedError) Error() string { return fmt.Sprintf("refused at %d", e.seq) }

var table = grpcerr.Table{Rules: append([]grpcerr.Rule{
	{Err: errNotFound, Code: codes.NotFound, Message: "job not found"},
	{Err: errUnavailable, Code: codes.Unavailable, Message: "retry later", Log: grpcerr.LogWarn, LogMessage: "dependency unavailable"},
	{Match: func(err error) bool { return errors.As(err, new(*refusedError)) }, Code: codes.DataLoss,
		Message: "{op}: the trail does not verify", Log: grpcerr.LogError, LogMessage: "{op} refused"},
	{Err: errors.ErrUnsupported, Code: codes.Unimplemented},
}, grpcerr.Context...)}

func TestStatus(t *testing.T) {
	t.Parallel()
	ve := &validation.Error{}
	ve.Add("spec.nodes", "must be at least 1")
	ve.Add("name", "required")
	already := status.Error(codes.PermissionDenied, "not yours")

	tests := []struct {
		name    string
		err     error
		code    codes.Code
		message string
		logged  string // a substring of the log, "" for no log line
	}{
		{name: "a status passes through", err: already, code: codes.PermissionDenied, message: "not yours"},
		{name: "a sentinel, wrapped, gets its code and generic message", err: fmt.Errorf("get job j1 from db at 10.0.0.1: %w", errNotFound),
			code: codes.NotFound, message: "job not found"},
		{name: "a logged rule", err: fmt.Errorf("dial 10.0.0.1: %w", errUnavailable), code: codes.Unavailable, message: "retry later",
			logged: `"level":"WARN","msg":"dependency unavailable","error":"dial 10.0.0.1: unavailable"`},
		{name: "a matched type with the operation in the message", err: fmt.Errorf("export: %w", &refusedError{seq: 7}), code: codes.DataLoss,
			message: "export: the trail does not verify", logged: `"level":"ERROR","msg":"export refused"`},
		{name: "a rule without message sends the error text", err: fmt.Errorf("feature x: %w", errors.ErrUnsupported),
			code: codes.Unimplemented, message: "feature x: unsupported operation"},
		{name: "deadline", err: fmt.Errorf("query: %w", context.DeadlineExceeded), code: codes.DeadlineExceeded, message: "deadline exceeded"},
		{name: "cancelled", err: context.Canceled, code: codes.Canceled, message: "call cancelled"},
		{name: "anything else is internal, logged, its text withheld", err: errors.New("pq: relation jobs does not exist"),
			code: codes.Internal, message: "internal error", logged: `"level":"ERROR","msg":"internal error","error":"pq: relation jobs does not exist"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			got := table.Status(context.Background(), slog.New(slog.NewJSONHandler(&logs, nil)), "export", tt.err)
			st, ok := status.FromError(got)
			require.True(t, ok)
			require.Equal(t, tt.code, st.Code())
			require.Equal(t, tt.message, st.Message())
			if tt.logged == "" {
				require.Empty(t, logs.String())
			} else {
				require.Contains(t, logs.String(), tt.logged)
			}
		})
	}

	t.Run("validation errors carry one field violation per field", func(t *testing.T) {
		t.Parallel()
		got := table.Status(context.Background(), nil, "submit", fmt.Errorf("submit: %w", ve))
		st, ok := status.FromError(got)
		require.True(t, ok)
		require.Equal(t, codes.InvalidArgument, st.Code())
		require.Equal(t, "invalid request: spec.nodes: must be at least 1; name: required", st.Message())
		require.Len(t, st.Details(), 1)
		br, ok := st.Details()[0].(*errdetails.BadRequest)
		require.True(t, ok)
		require.Len(t, br.GetFieldViolations(), 2)
		require.Equal(t, "spec.nodes", br.GetFieldViolations()[0].GetField())
		require.Equal(t, "must be at least 1", br.GetFieldViolations()[0].GetDescription())
		require.Equal(t, "name", br.GetFieldViolations()[1].GetField())
	})

	t.Run("nil is nil, a nil logger logs nothing", func(t *testing.T) {
		t.Parallel()
		require.NoError(t, table.Status(context.Background(), nil, "", nil))
		require.Equal(t, codes.Internal, status.Code(table.Status(context.Background(), nil, "", errors.New("boom"))))
	})

	t.Run("a table's own fallback", func(t *testing.T) {
		t.Parallel()
		var logs bytes.Buffer
		tb := grpcerr.Table{Rules: grpcerr.Context, Fallback: grpcerr.Rule{Code: codes.Unavailable, Message: "the store cannot be read; retry later",
			Log: grpcerr.LogWarn, LogMessage: "{op} failed"}}
		got := tb.Status(context.Background(), slog.New(slog.NewJSONHandler(&logs, nil)), "job metrics", errors.New("disk I/O error"))
		require.Equal(t, codes.Unavailable, status.Code(got))
		require.Equal(t, "the store cannot be read; retry later", status.Convert(got).Message())
		require.Contains(t, logs.String(), `"msg":"job metrics failed","error":"disk I/O error"`)
	})
}
