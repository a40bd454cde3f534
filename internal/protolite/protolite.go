// Package protolite is the runtime of the Go code that protoc-gen-sbx-lite
// generates from the agent's .proto files (gen/sbx/agent/v1/agentpb): plain
// structs that encode and decode themselves in the protobuf wire format,
// without the protobuf runtime.
//
// The agent is PID 1 of every sandbox and starts once per sandbox, so its
// start is on every cold create's path. Linking the protobuf runtime and
// protoc-gen-go's types cost each start about 4 ms on the benchmark
// machine: their package initialization (the file descriptors, detrand's
// hash of the binary) and the page faults of a larger binary, then about
// 1 ms more for each message type's first use, which builds its coders by
// reflection. The wire format stays protobuf's, and api/ stays the one
// source of the agent API: the generated types are checked against
// protoc-gen-go's on random messages (internal/agent's TestLiteCodec).
//
// This package imports only the standard library's encoding/binary and
// unicode/utf8, so the agent links nothing else for its wire messages.
package protolite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// Message is a generated message type.
type Message interface {
	// MessageName is the message's full protobuf name.
	MessageName() string
	// WireSize is the length of the message's encoding. (Size is a field
	// of several agent messages.)
	WireSize() int
	// MarshalAppend appends the message's encoding to b. It fails only on
	// a string field that is not valid UTF-8, as protobuf does.
	MarshalAppend(b []byte) ([]byte, error)
	// Unmarshal replaces the message with the one b encodes; fields it
	// does not know are skipped.
	Unmarshal(b []byte) error
}

// The wire types a field's tag names.
const (
	WireVarint  = 0
	WireFixed64 = 1
	WireBytes   = 2
	WireFixed32 = 5
)

// ErrMalformed is the error of every decode of bytes that are not a
// message's encoding.
var ErrMalformed = errors.New("malformed protobuf message")

// SizeVarint is the length of v's varint encoding.
func SizeVarint(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// SizeTag is the length of field num's tag.
func SizeTag(num int) int { return SizeVarint(uint64(num) << 3) }

// SizeBytes is the length of a length-delimited field of n bytes, tag
// included.
func SizeBytes(num, n int) int { return SizeTag(num) + SizeVarint(uint64(n)) + n }

// Bool is v's varint.
func Bool(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

// AppendTag appends field num's tag with wire type typ.
func AppendTag(b []byte, num, typ int) []byte {
	return binary.AppendUvarint(b, uint64(num)<<3|uint64(typ))
}

// AppendVarintField appends field num as a varint.
func AppendVarintField(b []byte, num int, v uint64) []byte {
	return binary.AppendUvarint(AppendTag(b, num, WireVarint), v)
}

// AppendBytesField appends field num as length-delimited bytes.
func AppendBytesField(b []byte, num int, v []byte) []byte {
	b = binary.AppendUvarint(AppendTag(b, num, WireBytes), uint64(len(v)))
	return append(b, v...)
}

// AppendStringField appends string field num (of message msg, for the
// error), which must be valid UTF-8.
func AppendStringField(b []byte, num int, v, msg, field string) ([]byte, error) {
	if !utf8.ValidString(v) {
		return b, fmt.Errorf("encode %s.%s: string is not valid UTF-8", msg, field)
	}
	b = binary.AppendUvarint(AppendTag(b, num, WireBytes), uint64(len(v)))
	return append(b, v...), nil
}

// AppendLen appends the tag of length-delimited field num and its length
// n, for a message field whose encoding follows.
func AppendLen(b []byte, num, n int) []byte {
	return binary.AppendUvarint(AppendTag(b, num, WireBytes), uint64(n))
}

// ConsumeTag decodes a tag at the start of b: the field number, its wire
// type and the tag's length.
func ConsumeTag(b []byte) (num, typ, n int, err error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || v>>3 == 0 || v>>3 > 1<<29-1 {
		return 0, 0, 0, ErrMalformed
	}
	return int(v >> 3), int(v & 7), n, nil
}

// ConsumeVarint decodes a varint at the start of b and its length.
func ConsumeVarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, ErrMalformed
	}
	return v, n, nil
}

// ConsumeBytes decodes a length-delimited value at the start of b (after
// its tag): the value, which aliases b, and the length consumed.
func ConsumeBytes(b []byte) ([]byte, int, error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, 0, ErrMalformed
	}
	return b[n : n+int(l)], n + int(l), nil
}

// ConsumeString is ConsumeBytes of a string field, which must be valid
// UTF-8.
func ConsumeString(b []byte, msg, field string) (string, int, error) {
	v, n, err := ConsumeBytes(b)
	if err != nil {
		return "", 0, err
	}
	if !utf8.Valid(v) {
		return "", 0, fmt.Errorf("decode %s.%s: string is not valid UTF-8", msg, field)
	}
	return string(v), n, nil
}

// Skip returns the length of a value of wire type typ at the start of b
// (after its tag): the value of a field the decoder does not know.
func Skip(b []byte, typ int) (int, error) {
	switch typ {
	case WireVarint:
		_, n, err := ConsumeVarint(b)
		return n, err
	case WireFixed64:
		if len(b) < 8 {
			return 0, ErrMalformed
		}
		return 8, nil
	case WireBytes:
		_, n, err := ConsumeBytes(b)
		return n, err
	case WireFixed32:
		if len(b) < 4 {
			return 0, ErrMalformed
		}
		return 4, nil
	}
	return 0, ErrMalformed // groups (3, 4) and unknown wire types
}

// ConsumeStringMapEntry decodes the entry of a map<string, string> field
// (of message msg, for the error): its key (field 1) and value (field 2).
func ConsumeStringMapEntry(b []byte, msg, field string) (k, v string, err error) {
	for len(b) > 0 {
		num, typ, n, err := ConsumeTag(b)
		if err != nil {
			return "", "", err
		}
		b = b[n:]
		switch {
		case num == 1 && typ == WireBytes:
			k, n, err = ConsumeString(b, msg, field+".key")
		case num == 2 && typ == WireBytes:
			v, n, err = ConsumeString(b, msg, field+".value")
		default:
			n, err = Skip(b, typ)
		}
		if err != nil {
			return "", "", err
		}
		b = b[n:]
	}
	return k, v, nil
}
