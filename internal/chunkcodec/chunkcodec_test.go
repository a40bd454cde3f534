package chunkcodec_test

import (
	"bytes"
	"testing"

	"connectrpc.com/connect"

	"google.golang.org/protobuf/proto"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/chunkcodec"
	"github.com/sbx-run/sbx/internal/chunkpool"
)

// The codec is a Connect codec; the package does not import Connect, so
// that the agent, which uses its buffer pool, does not link it.
var _ connect.Codec = (*chunkcodec.Codec)(nil)

var (
	readData  = chunkcodec.Bytes(1, func(m *sbxv1.ReadFileResponse, b []byte) { m.Data = b })
	writeData = chunkcodec.Bytes(2, func(m *sbxv1.WriteFileRequest, b []byte) { m.Msg = &sbxv1.WriteFileRequest_Data{Data: b} })
)

func TestRoundTrip(t *testing.T) {
	c := chunkcodec.New(readData, writeData)
	data := bytes.Repeat([]byte("abc"), 1000)
	cases := []proto.Message{
		&sbxv1.ReadFileResponse{Data: data},
		&sbxv1.ReadFileResponse{},
		&sbxv1.WriteFileRequest{Msg: &sbxv1.WriteFileRequest_Data{Data: data}},
		&sbxv1.WriteFileRequest{Msg: &sbxv1.WriteFileRequest_Header_{Header: &sbxv1.WriteFileRequest_Header{Path: "/x", Mode: 0o600}}},
		&sbxv1.GetSandboxRequest{Id: "sbx-1"},
	}
	for _, m := range cases {
		b, err := c.MarshalAppend(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		got := m.ProtoReflect().New().Interface()
		// A stale field must not survive the decode.
		if r, ok := got.(*sbxv1.WriteFileRequest); ok {
			r.Msg = &sbxv1.WriteFileRequest_Header_{Header: &sbxv1.WriteFileRequest_Header{Path: "/stale"}}
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
	b, _ := proto.Marshal(&sbxv1.ReadFileResponse{Data: []byte("hello")})
	var m sbxv1.ReadFileResponse
	if err := c.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if string(m.Data) != "hello" || cap(m.Data) != chunkpool.Size {
		t.Fatalf("data %q cap %d", m.Data, cap(m.Data))
	}
	chunkpool.Put(m.Data)
}

// TestNotOnlyChunk decodes a chunk message with an unknown extra field the
// standard way, keeping the field.
func TestNotOnlyChunk(t *testing.T) {
	c := chunkcodec.New(readData)
	b, _ := proto.Marshal(&sbxv1.ReadFileResponse{Data: []byte("hi")})
	b = append(b, 0x10, 0x01) // field 2, varint 1
	var m sbxv1.ReadFileResponse
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
	chunkcodec.Bytes(1, func(*sbxv1.GetSandboxRequest, []byte) {})
}

// BenchmarkUnmarshal1MiB decodes one full chunk: with the pool, no
// allocation per message.
func BenchmarkUnmarshal1MiB(b *testing.B) {
	c := chunkcodec.New(readData)
	enc, _ := proto.Marshal(&sbxv1.ReadFileResponse{Data: make([]byte, chunkpool.Size)})
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		var m sbxv1.ReadFileResponse
		if err := c.Unmarshal(enc, &m); err != nil {
			b.Fatal(err)
		}
		chunkpool.Put(m.Data)
	}
}
