package metrics

import (
	"context"
	"errors"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Interceptor returns a Connect interceptor that counts calls by procedure
// and code, unary latencies, execs, and errors by reason. It must run
// inside the server's error mapping, so that it sees domain errors.
func (r *Registry) Interceptor() connect.Interceptor { return &interceptor{r} }

type interceptor struct{ r *Registry }

func (i *interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		res, err := next(ctx, req)
		proc := shortProcedure(req.Spec().Procedure)
		i.r.reqDuration.WithLabelValues(proc).Observe(time.Since(start).Seconds())
		i.r.observe(proc, err)
		return res, err
	}
}

func (i *interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		i.r.observe(shortProcedure(conn.Spec().Procedure), err)
		return err
	}
}

// observe counts one finished call.
func (r *Registry) observe(proc string, err error) {
	code := "ok"
	if err != nil {
		code = codeOf(err).String()
		r.errors.WithLabelValues("api", reasonOf(err)).Inc()
	}
	r.requests.WithLabelValues(proc, code).Inc()
	if proc == "SandboxService/Exec" || proc == "SandboxService/ExecStream" {
		result := "ok"
		if err != nil {
			result = reasonOf(err)
		}
		r.execs.WithLabelValues(result).Inc()
	}
}

// shortProcedure turns "/sbx.v1.SandboxService/Create" into
// "SandboxService/Create", keeping label values short and bounded.
func shortProcedure(p string) string {
	p = strings.TrimPrefix(p, "/")
	if i := strings.LastIndex(p, "."); i >= 0 {
		p = p[i+1:]
	}
	return p
}

// reasonOf is err's machine-readable reason, or its kind for errors without
// one. Label values stay within the fixed vocabulary.
func reasonOf(err error) string {
	if r := sandbox.ReasonOf(err); r != "" {
		return r
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return strings.ToUpper(ce.Code().String())
	}
	if errors.Is(err, context.Canceled) {
		return "CANCELED"
	}
	return strings.ToUpper(strings.ReplaceAll(sandbox.KindOf(err).Error(), " ", "_"))
}

// codeOf is err's Connect code: from a *connect.Error, or from its kind.
func codeOf(err error) connect.Code {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code()
	}
	switch sandbox.KindOf(err) {
	case sandbox.ErrNotFound:
		return connect.CodeNotFound
	case sandbox.ErrAlreadyExists:
		return connect.CodeAlreadyExists
	case sandbox.ErrInvalidArgument:
		return connect.CodeInvalidArgument
	case sandbox.ErrFailedPrecondition:
		return connect.CodeFailedPrecondition
	case sandbox.ErrResourceExhausted:
		return connect.CodeResourceExhausted
	case sandbox.ErrUnavailable:
		return connect.CodeUnavailable
	case sandbox.ErrPermissionDenied:
		return connect.CodePermissionDenied
	case sandbox.ErrUnauthenticated:
		return connect.CodeUnauthenticated
	case sandbox.ErrDeadlineExceeded:
		return connect.CodeDeadlineExceeded
	}
	if errors.Is(err, context.Canceled) {
		return connect.CodeCanceled
	}
	return connect.CodeInternal
}
