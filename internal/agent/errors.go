package agent

import (
	"context"
	"errors"
	"io/fs"
	"syscall"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// reasonHeader carries an error's sandbox.Reason across the wire, in the
// error's metadata, so that the client rebuilds the same *sandbox.Error.
const reasonHeader = "Sbx-Reason"

var kindCodes = []struct {
	kind error
	code connect.Code
}{
	{sandbox.ErrNotFound, connect.CodeNotFound},
	{sandbox.ErrAlreadyExists, connect.CodeAlreadyExists},
	{sandbox.ErrInvalidArgument, connect.CodeInvalidArgument},
	{sandbox.ErrFailedPrecondition, connect.CodeFailedPrecondition},
	{sandbox.ErrResourceExhausted, connect.CodeResourceExhausted},
	{sandbox.ErrUnavailable, connect.CodeUnavailable},
	{sandbox.ErrPermissionDenied, connect.CodePermissionDenied},
	{sandbox.ErrUnauthenticated, connect.CodeUnauthenticated},
	{sandbox.ErrDeadlineExceeded, connect.CodeDeadlineExceeded},
	{sandbox.ErrInternal, connect.CodeInternal},
}

// toWire converts an error of a handler into a connect error. It is the one
// place where the agent maps the sandbox vocabulary to wire codes.
func toWire(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return connect.NewError(connect.CodeCanceled, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	code := connect.CodeInternal
	for _, kc := range kindCodes {
		if errors.Is(err, kc.kind) {
			code = kc.code
			break
		}
	}
	out := connect.NewError(code, err)
	if r := sandbox.ReasonOf(err); r != "" {
		out.Meta().Set(reasonHeader, r)
	}
	return out
}

// fromWire converts an error of a client call back into a *sandbox.Error, so
// that errors.Is(err, sandbox.ErrNotFound) works for the runtime.
func fromWire(err error, what string) error {
	if err == nil {
		return nil
	}
	var se *sandbox.Error
	if errors.As(err, &se) {
		return err
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: the sandbox agent cannot be reached; check that the sandbox is running: %w", what, err)
	}
	switch ce.Code() {
	case connect.CodeCanceled:
		return context.Canceled
	case connect.CodeUnavailable, connect.CodeUnknown:
		if ce.Meta().Get(reasonHeader) == "" {
			return sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: the sandbox agent cannot be reached; check that the sandbox is running: %w", what, err)
		}
	}
	kind := sandbox.ErrInternal
	for _, kc := range kindCodes {
		if kc.code == ce.Code() {
			kind = kc.kind
			break
		}
	}
	reason := ce.Meta().Get(reasonHeader)
	if reason == "" {
		reason = sandbox.ReasonInternal
	}
	return &sandbox.Error{Kind: kind, Reason: reason, Message: what + ": " + ce.Message()}
}

// fsError maps an error of the filesystem at path to the sandbox vocabulary.
func fsError(op, path string, err error) error {
	var errno syscall.Errno
	errors.As(err, &errno)
	switch {
	case errno == syscall.ENOTEMPTY: // before ErrExist, which matches it too
		return sandbox.FailedPrecondition(sandbox.ReasonFileExists, "%s %s: the directory is not empty; remove it recursively", op, path)
	case errors.Is(err, fs.ErrNotExist):
		return sandbox.NotFound(sandbox.ReasonFileNotFound, "%s %s: no such file or directory in the sandbox", op, path)
	case errors.Is(err, fs.ErrExist):
		return sandbox.Errorf(sandbox.ErrAlreadyExists, sandbox.ReasonFileExists, "%s %s: the path exists already", op, path)
	case errors.Is(err, fs.ErrPermission) || errno == syscall.EROFS:
		return sandbox.Errorf(sandbox.ErrPermissionDenied, sandbox.ReasonFilePermission, "%s %s: the sandbox's filesystem refused it: %w", op, path, err)
	case errno == syscall.EISDIR:
		return sandbox.FailedPrecondition(sandbox.ReasonIsDirectory, "%s %s: the path is a directory", op, path)
	case errno == syscall.ENOTDIR:
		return sandbox.FailedPrecondition(sandbox.ReasonNotDirectory, "%s %s: a component of the path is not a directory", op, path)
	case errno == syscall.ENOSPC || errno == syscall.EDQUOT:
		return sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonFileTooLarge, "%s %s: the sandbox's disk is full: %w", op, path, err)
	case errno == syscall.ENAMETOOLONG || errno == syscall.ELOOP || errno == syscall.EXDEV || errno == syscall.EINVAL:
		return sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "%s %s: %w", op, path, err)
	}
	return sandbox.Internal("%s %s: %w", op, path, err)
}
