package agentwire

import (
	"context"
	"encoding/binary"
	"errors"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// A Status frame's payload is empty for success, or a code byte, the
// reason's length as a uvarint, the reason and the message: enough for the
// client to rebuild the same *sandbox.Error.

// codes are the wire codes of errors: the index in this list. Never
// reorder it; append only.
var codes = []error{
	nil, // 0: success
	context.Canceled,
	context.DeadlineExceeded,
	sandbox.ErrNotFound,
	sandbox.ErrAlreadyExists,
	sandbox.ErrInvalidArgument,
	sandbox.ErrFailedPrecondition,
	sandbox.ErrResourceExhausted,
	sandbox.ErrUnavailable,
	sandbox.ErrPermissionDenied,
	sandbox.ErrUnauthenticated,
	sandbox.ErrDeadlineExceeded,
	sandbox.ErrInternal,
}

const codeInternal = 12

// encodeStatus returns the Status payload of a handler's err.
func encodeStatus(err error) []byte {
	if err == nil {
		return nil
	}
	code := byte(codeInternal)
	for i, k := range codes[1:] {
		if errors.Is(err, k) {
			code = byte(i + 1)
			break
		}
	}
	reason := sandbox.ReasonOf(err)
	msg := err.Error()
	if len(msg) > maxStatusLen/2 {
		msg = msg[:maxStatusLen/2]
	}
	if len(reason) > 256 {
		reason = reason[:256]
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(reason)+len(msg))
	b = append(b, code)
	b = binary.AppendUvarint(b, uint64(len(reason)))
	b = append(b, reason...)
	return append(b, msg...)
}

// decodeStatus returns the error of a Status payload: nil, context.Canceled
// or context.DeadlineExceeded, or a *sandbox.Error.
func decodeStatus(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	code, b := int(b[0]), b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return errors.New("a malformed status frame")
	}
	reason, msg := string(b[k:k+int(n)]), string(b[k+int(n):])
	switch {
	case code == 1:
		return context.Canceled
	case code == 2:
		return context.DeadlineExceeded
	case code <= 0 || code >= len(codes):
		code = codeInternal
	}
	if reason == "" {
		reason = sandbox.ReasonInternal
	}
	return &sandbox.Error{Kind: codes[code], Reason: reason, Message: msg}
}
