package server

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail of every
// error the server returns.
const ErrorDomain = "sbx.run"

// Metadata keys carrying an error's reason and retry delay, for clients
// (curl) that do not decode error details.
const (
	ReasonHeader     = "Sbx-Reason"
	RetryAfterHeader = "Retry-After"
)

var kindToCode = map[error]connect.Code{
	sandbox.ErrNotFound:           connect.CodeNotFound,
	sandbox.ErrAlreadyExists:      connect.CodeAlreadyExists,
	sandbox.ErrInvalidArgument:    connect.CodeInvalidArgument,
	sandbox.ErrFailedPrecondition: connect.CodeFailedPrecondition,
	sandbox.ErrResourceExhausted:  connect.CodeResourceExhausted,
	sandbox.ErrUnavailable:        connect.CodeUnavailable,
	sandbox.ErrPermissionDenied:   connect.CodePermissionDenied,
	sandbox.ErrUnauthenticated:    connect.CodeUnauthenticated,
	sandbox.ErrDeadlineExceeded:   connect.CodeDeadlineExceeded,
	sandbox.ErrInternal:           connect.CodeInternal,
}

// toConnect maps any error to a *connect.Error: the one place where the
// sandbox error vocabulary meets the wire. The reason travels as a
// google.rpc.ErrorInfo detail and the Sbx-Reason metadata; a retry delay as
// google.rpc.RetryInfo and Retry-After (whole seconds, rounded up).
func toConnect(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	var code connect.Code
	switch {
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded) && sandbox.ReasonOf(err) == "":
		code = connect.CodeDeadlineExceeded
	default:
		code = kindToCode[sandbox.KindOf(err)]
	}
	reason := sandbox.ReasonOf(err)
	if reason == "" {
		reason = sandbox.ReasonInternal
		if code == connect.CodeCanceled || code == connect.CodeDeadlineExceeded {
			reason = ""
		}
	}
	msg := err.Error()
	if code == connect.CodeInternal {
		// Internal errors are bugs or host failures: log the detail, tell
		// the user where to look.
		log.Error("internal error", "error", err)
		msg = "internal error: " + msg + " (see the server log)"
	}
	out := connect.NewError(code, errors.New(msg))
	if reason != "" {
		out.Meta().Set(ReasonHeader, reason)
		if d, derr := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}); derr == nil {
			out.AddDetail(d)
		}
	}
	if retry := sandbox.RetryAfterOf(err); retry > 0 {
		out.Meta().Set(RetryAfterHeader, strconv.Itoa(int(math.Ceil(retry.Seconds()))))
		if d, derr := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); derr == nil {
			out.AddDetail(d)
		}
	}
	return out
}

// errorInterceptor maps every handler error once, so handlers return plain
// domain errors.
func errorInterceptor(log *slog.Logger) connect.Interceptor { return &mapErrors{log: log} }

type mapErrors struct{ log *slog.Logger }

func (m *mapErrors) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := next(ctx, req)
		return resp, toConnect(m.log, err)
	}
}

func (m *mapErrors) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (m *mapErrors) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return toConnect(m.log, next(ctx, conn))
	}
}
