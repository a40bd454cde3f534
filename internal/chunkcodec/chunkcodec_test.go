package chunkcodec_test

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	agentv1 "github.com/sbx-run/sbx/gen/sbx/agent/v1"
	"github.com/sbx-run/sbx/internal/chunkcodec"
)

var (
	readData  = chunkcodec.Bytes(1, func(m *agentv1.ReadResponse, b []byte) { m.Data = b })
	writeData = chunkcodec.Bytes(2, func(m *agentv1.WriteRequest, b []byte) { m.Msg = &agentv1.WriteRequest_Data{Data: b} })
)

func TestRoundTrip(t *testing.T) {
	c := chunkcodec.New(readData, writeData)
	data := bytes.Repeat([]byte("abc"), 1000)
	cases := []proto.Message{
		&agentv1.ReadResponse{Data: data},
		&agentv1.ReadResponse{},
		&agentv1.WriteRequest{Msg: &agentv1.WriteRequest_Data{Data: data}},
		&agentv1.WriteRequest{Msg: &agentv1.WriteRequest_Header_{Header: &agentv1.WriteRequest_Header{Path: "/x", Mode: 0o600}}},
		&agentv1.WriteRequest{Msg: &agentv1.WriteRequest_Commit_{Commit: &agentv1.WriteRequest_Commit{Size: 3000}}},
		&agentv1.StatRequest{Path: "/etc/passwd"},
	}
	for _, m := range cases {
		b, err := c.MarshalAppend(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		got := m.ProtoReflect().New().Interface()
		// A stale field must not survive the decode.
		if r, ok := got.(*agentv1.WriteRequest); ok {
			r.Msg = &agentv1.WriteRequest_Header_{Header: &agentv1.WriteRequest_Header{Path: "/stale"}}
		}
		if err := c.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, m) {
			t.Fatalf("got %v, want %v", got, m)
		}
	}
}

// TestPooledData checks that chunk data is a pooled, private copy: the
// decoder's input may be reused at once, as Connect does.
func TestPooledData(t *testing.T) {
	c := chunkcodec.New(readData)
	b, _ := proto.Marshal(&agentv1.ReadResponse{Data: []byte("hello")})
	var m agentv1.ReadResponse
	if err := c.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if string(m.Data) != "hello" || cap(m.Data) != chunkcodec.Size {
		t.Fatalf("data %q cap %d", m.Data, cap(m.Data))
	}
	chunkcodec.Put(m.Data)
}

// TestNotOnlyChunk decodes a chunk message with an unknown extra field the
// standard way, keeping the field.
func TestNotOnlyChunk(t *testing.T) {
	c := chunkcodec.New(readData)
	b, _ := proto.Marshal(&agentv1.ReadResponse{Data: []byte("hi")})
	b = append(b, 0x10, 0x01) // field 2, varint 1
	var m agentv1.ReadResponse
	if err := c.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "hi" || len(m.ProtoReflect().GetUnknown()) != 2 {
		t.Fatalf("got %v", &m)
	}
}

func TestNewRejectsNonBytesField(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a non-bytes field")
		}
	}()
	chunkcodec.Bytes(1, func(*agentv1.StatRequest, []byte) {})
}

// BenchmarkUnmarshal1MiB decodes one full chunk: with the pool, no
// allocation per message.
func BenchmarkUnmarshal1MiB(b *testing.B) {
	c := chunkcodec.New(readData)
	enc, _ := proto.Marshal(&agentv1.ReadResponse{Data: make([]byte, chunkcodec.Size)})
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		var m agentv1.ReadResponse
		if err := c.Unmarshal(enc, &m); err != nil {
			b.Fatal(err)
		}
		chunkcodec.Put(m.Data)
	}
}
