package sbx

import (
	"context"
	"errors"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// codeKinds maps Connect codes back to the error kinds: the inverse of the
// server's one mapping.
var codeKinds = map[connect.Code]error{
	connect.CodeNotFound:           ErrNotFound,
	connect.CodeAlreadyExists:      ErrAlreadyExists,
	connect.CodeInvalidArgument:    ErrInvalidArgument,
	connect.CodeOutOfRange:         ErrInvalidArgument,
	connect.CodeFailedPrecondition: ErrFailedPrecondition,
	connect.CodeAborted:            ErrFailedPrecondition,
	connect.CodeResourceExhausted:  ErrResourceExhausted,
	connect.CodeUnavailable:        ErrUnavailable,
	connect.CodePermissionDenied:   ErrPermissionDenied,
	connect.CodeUnauthenticated:    ErrUnauthenticated,
	connect.CodeDeadlineExceeded:   ErrDeadlineExceeded,
	connect.CodeInternal:           ErrInternal,
	connect.CodeUnknown:            ErrInternal,
	connect.CodeDataLoss:           ErrInternal,
	connect.CodeUnimplemented:      ErrInternal,
}

// ReasonServerUnreachable is the reason of an ErrUnavailable error raised
// when no sbx server answered at all.
const ReasonServerUnreachable = "SERVER_UNREACHABLE"

// ReasonCanceled is the reason of an error raised because the caller's
// context was canceled; such errors also match context.Canceled.
const ReasonCanceled = "CANCELED"

// ReasonCreateQueueFull is the reason of a Create the server refused
// because it is creating as many sandboxes as it can and its queue is
// full. Nothing was stored; Run retries it after the delay the server gave
// (see WithCreateRetries).
const ReasonCreateQueueFull = "CREATE_QUEUE_FULL"

// fromWire converts an error from a Connect call into an *Error of one of
// the package's kinds, keeping its reason, message and retry delay.
func (c *Client) fromWire(err error) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		return err
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		if errors.Is(err, context.Canceled) {
			return &Error{Kind: ErrDeadlineExceeded, Reason: ReasonCanceled, Message: "canceled", Err: err}
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return &Error{Kind: ErrDeadlineExceeded, Message: "deadline exceeded", Err: err}
		}
		return &Error{Kind: ErrInternal, Message: err.Error(), Err: err}
	}
	e := &Error{Kind: ErrInternal, Message: ce.Message(), Err: err}
	if k, ok := codeKinds[ce.Code()]; ok {
		e.Kind = k
	}
	e.Reason = ce.Meta().Get("sbx-reason")
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			continue // a detail type we do not know
		}
		switch v := v.(type) {
		case *errdetails.ErrorInfo:
			if e.Reason == "" {
				e.Reason = v.GetReason()
			}
		case *errdetails.RetryInfo:
			if e.RetryAfter == 0 {
				e.RetryAfter = v.GetRetryDelay().AsDuration()
			}
		}
	}
	// RetryInfo carries the exact delay; the Retry-After header only whole
	// seconds, rounded up: it is the fallback.
	if s := ce.Meta().Get("retry-after"); s != "" && e.RetryAfter == 0 {
		if n, err := strconv.ParseFloat(s, 64); err == nil && n > 0 {
			e.RetryAfter = time.Duration(n * float64(time.Second))
		}
	}
	switch {
	case ce.Code() == connect.CodeCanceled:
		e.Kind, e.Reason = ErrDeadlineExceeded, ReasonCanceled
		e.Err = errors.Join(err, context.Canceled)
	case ce.Code() == connect.CodeUnavailable && e.Reason == "":
		// No reason: the server itself did not answer (connection refused,
		// reset, DNS), as opposed to a sandbox's agent being unavailable.
		e.Reason = ReasonServerUnreachable
		e.Message = "cannot reach the sbx server at " + c.URL() + " (" + ce.Message() +
			"): start it with `sbx serve`, or set " + EnvURL + " to its address"
	case ce.Code() == connect.CodeUnauthenticated && e.Message == "":
		e.Message = "the server refused the API key: set " + EnvAPIKey + " or check " + DefaultCredentialsPath()
	}
	return e
}
