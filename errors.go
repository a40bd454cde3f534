package sbx

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// The error kinds. They mirror the server's vocabulary one to one: every
// error from this package wraps exactly one of them.
var (
	// ErrNotFound: the sandbox, session, file, process or image does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: the thing to create exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidArgument: a request field is malformed or out of range.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrFailedPrecondition: the call does not fit the current state, e.g.
	// exec in a sandbox that has ended.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrResourceExhausted: a quota was reached; see RetryAfterOf.
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrUnavailable: the server (or the sandbox's agent) cannot be reached.
	ErrUnavailable = errors.New("unavailable")
	// ErrPermissionDenied: the caller may not do this.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnauthenticated: no API key, or an unknown one.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrDeadlineExceeded: a deadline or timeout ran out.
	ErrDeadlineExceeded = errors.New("deadline exceeded")
	// ErrInternal: a server bug or an unexpected failure.
	ErrInternal = errors.New("internal")
)

// Error is an error reported by the server (or by this package) with its
// kind, a machine-readable reason such as "SANDBOX_NOT_FOUND", and a message
// that says what was wrong and what to do.
type Error struct {
	// Kind is one of the Err* sentinels.
	Kind error
	// Reason is a stable upper-case code; empty when the server sent none.
	Reason string
	// Message is the human sentence.
	Message string
	// RetryAfter, when non-zero, says when trying again may succeed.
	RetryAfter time.Duration
	// Err is the underlying cause (e.g. the transport error), if any.
	Err error
}

// Error returns the message, with the reason in brackets.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.Message == "" {
		b.WriteString(e.Kind.Error())
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " [%s]", e.Reason)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Is reports whether target is e's kind, so errors.Is(err, sbx.ErrNotFound) works.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason of the first *Error in err's chain, or "".
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// RetryAfterOf returns the retry delay carried by err, or zero.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// errorf returns a client-side *Error.
func errorf(kind error, reason, format string, args ...any) *Error {
	return &Error{Kind: kind, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// ExitError is returned by Process.Wait and Process.Result under the Check
// option when the command exited non-zero. It carries the whole Result.
type ExitError struct {
	Command []string
	*Result
}

// Error names the command and its exit code, with the end of its stderr.
func (e *ExitError) Error() string {
	msg := fmt.Sprintf("command %q exited with code %d", strings.Join(e.Command, " "), e.ExitCode)
	if e.Signal != "" {
		msg += " (" + e.Signal + ")"
	}
	if tail := lastLine(e.Stderr); tail != "" {
		msg += ": " + tail
	}
	return msg
}

// lastLine returns the last non-empty line of b, cut to 200 bytes, so that an
// ExitError's message stays one readable line.
func lastLine(b []byte) string {
	s := strings.TrimRight(string(b), "\r\n\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
