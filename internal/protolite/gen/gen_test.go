package gen_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/sbx-run/sbx/gen/sbx/agent/v1" // protoc-gen-go's types, the reference
	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/protolite"
)

// TestLiteCodec checks every generated agent message against protoc-gen-go's
// type of the same .proto message, on random messages (every field kind,
// zero and absent values, oneofs, optional fields, maps, nesting): what
// protobuf encodes, the generated type decodes and encodes again into bytes
// that protobuf decodes to an equal message, of the length WireSize says.
func TestLiteCodec(t *testing.T) {
	msgs := agentpb.Messages()
	if len(msgs) < 40 {
		t.Fatalf("agentpb has %d message types; the agent API has more than 40", len(msgs))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, lite := range msgs {
		name := lite.MessageName()
		mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
		if err != nil {
			t.Errorf("%s: no protoc-gen-go type: %v", name, err)
			continue
		}
		t.Run(name, func(t *testing.T) {
			for i := range 300 {
				orig := mt.New()
				fill(r, orig, 0)
				b, err := proto.Marshal(orig.Interface())
				if err != nil {
					t.Fatal(err)
				}
				if err := lite.Unmarshal(b); err != nil {
					t.Fatalf("case %d: decode of protobuf's encoding: %v", i, err)
				}
				b2, err := lite.MarshalAppend(nil)
				if err != nil {
					t.Fatalf("case %d: encode: %v", i, err)
				}
				if len(b2) != lite.WireSize() || len(b2) != len(b) {
					t.Fatalf("case %d: encoding of %d bytes, WireSize %d, protobuf's %d", i, len(b2), lite.WireSize(), len(b))
				}
				back := mt.New().Interface()
				if err := proto.Unmarshal(b2, back); err != nil {
					t.Fatalf("case %d: protobuf cannot decode the encoding: %v", i, err)
				}
				if !proto.Equal(orig.Interface(), back) {
					t.Fatalf("case %d: round trip changed the message:\n%v\n%v", i, orig, back)
				}
				// Appending keeps what is before. (Maps are encoded in
				// iteration order, as protobuf does by default.)
				if b3, _ := lite.MarshalAppend([]byte("xy")); string(b3[:2]) != "xy" || len(b3) != 2+len(b2) {
					t.Fatalf("case %d: MarshalAppend does not append", i)
				}
				// Truncations and flipped bytes are errors, never panics.
				for cut := range len(b) {
					_ = lite.Unmarshal(b[:cut])
				}
				if len(b) > 0 {
					bad := []byte(string(b))
					bad[r.IntN(len(bad))] ^= byte(1 + r.IntN(255))
					_ = lite.Unmarshal(bad)
				}
			}
		})
	}
}

// TestLiteInvalidUTF8 checks that strings must be UTF-8 both ways, as
// protobuf has them in proto3.
func TestLiteInvalidUTF8(t *testing.T) {
	m := &agentpb.StatRequest{Path: "a\xffb"}
	if _, err := m.MarshalAppend(nil); err == nil || !strings.Contains(err.Error(), "sbx.agent.v1.StatRequest.path") {
		t.Errorf("encoding an invalid UTF-8 path: %v, want an error naming the field", err)
	}
	b := protolite.AppendBytesField(nil, 1, []byte("a\xffb"))
	if err := new(agentpb.StatRequest).Unmarshal(b); err == nil {
		t.Error("decoding an invalid UTF-8 path succeeded")
	}
	env := &agentpb.ProcessSpec{Env: map[string]string{"K": "\xff"}}
	if _, err := env.MarshalAppend(nil); err == nil {
		t.Error("encoding an invalid UTF-8 env value succeeded")
	}
}

// TestLiteUnknownFields checks that fields the type does not know are
// skipped, as a newer peer's are.
func TestLiteUnknownFields(t *testing.T) {
	b, _ := (&agentpb.PingResponse{Pid: 7, Initialized: true}).MarshalAppend(nil)
	b = protolite.AppendVarintField(b, 99, 5)
	b = protolite.AppendBytesField(b, 100, []byte("later"))
	var got agentpb.PingResponse
	if err := got.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if got.Pid != 7 || !got.Initialized {
		t.Errorf("decoded %+v", got)
	}
}

// fill sets random values on m's fields, depth levels of messages deep.
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			continue // below
		}
		if fd.HasPresence() && fd.Kind() != protoreflect.MessageKind && r.IntN(3) == 0 {
			continue // an optional field left unset
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range r.IntN(4) {
				mp.Set(value(r, fd.MapKey()).MapKey(), value(r, fd.MapValue()))
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range r.IntN(4) {
				if fd.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					if depth < 3 {
						fill(r, e.Message(), depth+1)
					}
					l.Append(e)
				} else {
					l.Append(value(r, fd))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth < 3 && r.IntN(4) != 0 {
				fill(r, m.Mutable(fd).Message(), depth+1)
			}
		default:
			m.Set(fd, value(r, fd))
		}
	}
	oneofs := m.Descriptor().Oneofs()
	for i := range oneofs.Len() {
		od := oneofs.Get(i)
		if od.IsSynthetic() || r.IntN(od.Fields().Len()+1) == 0 {
			continue
		}
		fd := od.Fields().Get(r.IntN(od.Fields().Len()))
		sub := m.Mutable(fd).Message()
		if depth < 3 && r.IntN(3) != 0 {
			fill(r, sub, depth+1)
		}
	}
}

// value is a random value for a field of fd's kind: often the zero
// value, sometimes the extremes.
func value(r *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	zero := r.IntN(4) == 0
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(!zero && r.IntN(2) == 0)
	case protoreflect.Int32Kind:
		if zero {
			return protoreflect.ValueOfInt32(0)
		}
		return protoreflect.ValueOfInt32([]int32{-1, 1, -1 << 31, 1<<31 - 1, r.Int32() - 1<<30}[r.IntN(5)])
	case protoreflect.Int64Kind:
		if zero {
			return protoreflect.ValueOfInt64(0)
		}
		return protoreflect.ValueOfInt64([]int64{-1, 1, -1 << 63, 1<<63 - 1, r.Int64() - 1<<62}[r.IntN(5)])
	case protoreflect.Uint32Kind:
		if zero {
			return protoreflect.ValueOfUint32(0)
		}
		return protoreflect.ValueOfUint32([]uint32{1, 1<<32 - 1, r.Uint32()}[r.IntN(3)])
	case protoreflect.Uint64Kind:
		if zero {
			return protoreflect.ValueOfUint64(0)
		}
		return protoreflect.ValueOfUint64([]uint64{1, 1<<64 - 1, r.Uint64()}[r.IntN(3)])
	case protoreflect.EnumKind:
		if zero {
			return protoreflect.ValueOfEnum(0)
		}
		vals := fd.Enum().Values()
		if r.IntN(5) == 0 {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(100 + r.IntN(100))) // unknown to the .proto
		}
		return protoreflect.ValueOfEnum(vals.Get(r.IntN(vals.Len())).Number())
	case protoreflect.StringKind:
		if zero {
			return protoreflect.ValueOfString("")
		}
		return protoreflect.ValueOfString([]string{"a", "/tmp/x y", "K=V", "héllo ✓", strings.Repeat("z", 200+r.IntN(300))}[r.IntN(5)])
	case protoreflect.BytesKind:
		if zero {
			return protoreflect.ValueOfBytes(nil)
		}
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return protoreflect.ValueOfBytes(b)
	}
	panic("no random value for kind " + fd.Kind().String())
}
