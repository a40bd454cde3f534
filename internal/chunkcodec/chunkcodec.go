// Package chunkcodec is Connect's binary protobuf codec for streams of file
// chunks: the data of a chunk message is decoded into a pooled buffer
// (internal/chunkpool, which says why) that the receiver hands back
// (chunkpool.Put) once it has used the bytes, instead of into a new
// allocation per message. The wire format is the standard one: any message that is not
// exactly one chunk field is decoded by proto.Unmarshal.
package chunkcodec

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sbx-run/sbx/internal/chunkpool"
)

// Codec is the codec; make one with New.
type Codec struct {
	chunks map[protoreflect.FullName]Field
}

// Field names the bytes field of one message type whose data is pooled;
// make it with Bytes.
type Field struct {
	name protoreflect.FullName
	num  protowire.Number
	set  func(proto.Message, []byte)
}

// Bytes returns the Field num of message type M, which set stores data
// into. (A plain assignment keeps the buffer's capacity, which Put needs;
// protoreflect's Set would not.) It panics if M has no such bytes field.
func Bytes[M proto.Message](num protowire.Number, set func(m M, data []byte)) Field {
	var zero M
	d := zero.ProtoReflect().Descriptor()
	fd := d.Fields().ByNumber(num)
	if fd == nil || fd.Kind() != protoreflect.BytesKind || fd.IsList() {
		panic(fmt.Sprintf("chunkcodec: %s has no bytes field %d", d.FullName(), num))
	}
	return Field{name: d.FullName(), num: num, set: func(m proto.Message, data []byte) { set(m.(M), data) }}
}

// New returns a codec that pools the data of the given fields.
func New(fields ...Field) *Codec {
	c := &Codec{chunks: map[protoreflect.FullName]Field{}}
	for _, f := range fields {
		c.chunks[f.name] = f
	}
	return c
}

// Name is Connect's name of the binary protobuf codec, which this replaces.
func (*Codec) Name() string { return "proto" }

// Marshal marshals m.
func (*Codec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.Marshal(pm)
}

// MarshalAppend lets Connect marshal into its own pooled buffers.
func (*Codec) MarshalAppend(b []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.MarshalOptions{}.MarshalAppend(b, pm)
}

// Unmarshal decodes b into m; a chunk's data lands in a buffer from Get.
func (c *Codec) Unmarshal(b []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	if f, ok := c.chunks[pm.ProtoReflect().Descriptor().FullName()]; ok {
		if data, ok := onlyBytes(b, f.num); ok {
			proto.Reset(pm)
			f.set(pm, data)
			return nil
		}
	}
	return proto.Unmarshal(b, pm)
}

// onlyBytes returns a pooled copy of field num when b holds exactly that
// one bytes field and nothing else.
func onlyBytes(b []byte, num protowire.Number) ([]byte, bool) {
	n, typ, tl := protowire.ConsumeTag(b)
	if tl < 0 || n != num || typ != protowire.BytesType {
		return nil, false
	}
	v, vl := protowire.ConsumeBytes(b[tl:])
	if vl < 0 || tl+vl != len(b) {
		return nil, false
	}
	return append(chunkpool.Get(len(v)), v...), true
}

// MarshalStable marshals m deterministically (Connect uses it for GET
// requests).
func (*Codec) MarshalStable(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(pm)
}

// IsBinary reports that the encoding is binary.
func (*Codec) IsBinary() bool { return true }
