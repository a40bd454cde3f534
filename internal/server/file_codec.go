package server

import (
	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/chunkcodec"
)

// fileCodec is the API's binary protobuf codec with pooled file chunks
// (see chunkcodec): the data of a WriteFile message is decoded into a
// pooled buffer, which WriteFile hands back once the agent has it, so an
// upload does not allocate (and fault in) a fresh 1 MiB per message. The
// wire format is standard protobuf. Handlers opt in with
// connect.WithCodec(fileCodec).
var fileCodec = chunkcodec.New(
	chunkcodec.Bytes(2, func(m *sbxv1.WriteFileRequest, data []byte) { m.Msg = &sbxv1.WriteFileRequest_Data{Data: data} }),
	chunkcodec.Bytes(1, func(m *sbxv1.ReadFileResponse, data []byte) { m.Data = data }),
)
