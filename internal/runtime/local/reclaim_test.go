package local

import (
	"bytes"
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// fanEvent is a fanotify event as the kernel writes it with FAN_REPORT_FID.
func fanEvent(mask uint64, handleType int32, handle []byte) []byte {
	info := make([]byte, fanInfoFIDFixed+len(handle))
	info[0] = unix.FAN_EVENT_INFO_TYPE_FID
	binary.NativeEndian.PutUint16(info[2:], uint16(len(info)))
	binary.NativeEndian.PutUint32(info[12:], uint32(len(handle)))
	binary.NativeEndian.PutUint32(info[16:], uint32(handleType))
	copy(info[fanInfoFIDFixed:], handle)
	meta := make([]byte, fanMetadataLen)
	binary.NativeEndian.PutUint32(meta, uint32(fanMetadataLen+len(info)))
	meta[4] = unix.FANOTIFY_METADATA_VERSION
	binary.NativeEndian.PutUint16(meta[6:], fanMetadataLen)
	binary.NativeEndian.PutUint64(meta[8:], mask)
	return append(meta, info...)
}

func TestEachHandle(t *testing.T) {
	a, b := []byte("handle-a"), []byte("handle-b-longer")
	buf := append(fanEvent(unix.FAN_DELETE_SELF, 1, a), fanEvent(unix.FAN_Q_OVERFLOW, 1, []byte("skipped"))...)
	buf = append(buf, fanEvent(unix.FAN_DELETE_SELF, 2, b)...)
	var got []unix.FileHandle
	eachHandle(buf, func(h unix.FileHandle) { got = append(got, h) })
	if len(got) != 2 || got[0].Type() != 1 || !bytes.Equal(got[0].Bytes(), a) || got[1].Type() != 2 || !bytes.Equal(got[1].Bytes(), b) {
		t.Fatalf("handles: %v", got)
	}
	// Cut or corrupted buffers give what is whole in them, and no panic.
	for n := 0; n < len(buf); n++ {
		eachHandle(buf[:n], func(unix.FileHandle) {})
		bad := bytes.Clone(buf)
		bad[n] ^= 0xff
		eachHandle(bad, func(unix.FileHandle) {})
	}
}
