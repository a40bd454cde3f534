package agent

import (
	"context"
	"errors"
	"io/fs"
	"syscall"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// fromWire converts an error of a call to the agent into a *sandbox.Error
// that says what failed, so that errors.Is(err, sandbox.ErrNotFound) works
// for the runtime: the agent's own errors keep their kind and reason, a
// cancelled call stays context.Canceled, and a connection that failed is
// Unavailable.
func fromWire(err error, what string) error {
	if err == nil {
		return nil
	}
	var se *sandbox.Error
	switch {
	case errors.As(err, &se):
		return &sandbox.Error{Kind: se.Kind, Reason: se.Reason, Message: what + ": " + se.Message, RetryAfter: se.RetryAfter, Err: se.Err}
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return sandbox.Errorf(sandbox.ErrDeadlineExceeded, sandbox.ReasonInternal, "%s: %w", what, err)
	}
	return sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: the sandbox agent cannot be reached; check that the sandbox is running: %w", what, err)
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
