package agent

import (
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultLogMaxBytes is the size at which main.log and its index together
// are rotated to main.log.1, so the log takes at most twice this on disk.
const DefaultLogMaxBytes = 8 << 20

// logWriter appends the main command's output to LogFile in the state dir,
// the time of each write to its index (see logindex.go), and rotates both to
// LogFile.1 when together they reach max bytes. Followers wait on notify.
type logWriter struct {
	dir string
	max int64
	now func() time.Time

	mu      sync.Mutex
	f       *os.File
	size    int64
	idx     *os.File // nil if it could not be opened: times are lost then
	idxSize int64
	mark    int64 // time of the last index record (Unix ns); times never go back
	rec     [indexRecord]byte
	gen     uint64        // bumped on every rotation
	notify  chan struct{} // closed and replaced on every write
	ended   bool          // the main command has exited and its output is in
	closed  bool
}

// openLog opens the log in dir if it exists; else the first write makes
// it. Most sandboxes run no main command, or one that prints nothing, and
// the two files a log takes (with its index) were two of the few a
// sandbox's start wrote to disk.
func openLog(dir string, max int64) (*logWriter, error) {
	if max <= 0 {
		max = DefaultLogMaxBytes
	}
	l := &logWriter{dir: dir, max: max, now: time.Now, notify: make(chan struct{})}
	f, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_WRONLY|os.O_APPEND, 0)
	if os.IsNotExist(err) {
		return l, nil
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	l.f, l.size = f, fi.Size()
	l.openIndex(false)
	return l, nil
}

// create makes the log on its first write. To followers it is a rotation
// (gen moves), which makes them open the new file.
func (l *logWriter) create() error {
	f, err := os.OpenFile(filepath.Join(l.dir, LogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	l.f, l.size = f, 0
	l.openIndex(true)
	l.gen++
	return nil
}

// openIndex opens (or with trunc, starts) the index of the current file,
// dropping a torn last record.
func (l *logWriter) openIndex(trunc bool) {
	flags := os.O_RDWR | os.O_CREATE | os.O_APPEND
	if trunc {
		flags |= os.O_TRUNC
	}
	idx, err := os.OpenFile(filepath.Join(l.dir, indexName(LogFile)), flags, 0o640)
	if err != nil {
		l.idx, l.idxSize = nil, 0
		return
	}
	n, err := indexLen(idx)
	if err == nil {
		err = idx.Truncate(n * indexRecord)
	}
	if err != nil {
		idx.Close()
		l.idx, l.idxSize = nil, 0
		return
	}
	if e, ok := lastEntry(idx); ok {
		l.mark = max(l.mark, e.nano)
	}
	l.idx, l.idxSize = idx, n*indexRecord
}

// recordSize is how many bytes record(nano) would add to the index.
func (l *logWriter) recordSize(nano int64) int64 {
	if l.idx == nil || (l.idxSize > 0 && nano-l.mark < int64(indexGrain)) {
		return 0
	}
	return indexRecord
}

// record notes that the write starting at the current end of the log was
// read at nano, unless the last record is recent enough to cover it.
func (l *logWriter) record(nano int64) {
	if l.recordSize(nano) == 0 {
		return
	}
	putEntry(l.rec[:], indexEntry{l.size, nano})
	if n, err := l.idx.Write(l.rec[:]); err != nil || n != indexRecord {
		// A torn record would shift every later one: stop recording in
		// this file (its later times are unknown; the next file has its own).
		l.idx.Close()
		l.idx = nil
		return
	}
	l.idxSize += indexRecord
	l.mark = nano
}

// Write appends b, rotating whenever the current file reaches the bound
// (a write larger than what is left is split across the rotation).
func (l *logWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, os.ErrClosed
	}
	if l.f == nil && len(b) > 0 {
		if err := l.create(); err != nil {
			return 0, err
		}
	}
	// The record goes in before the data, so that a reader that sees the
	// data also sees its time.
	nano := max(l.now().UnixNano(), l.mark)
	written := 0
	var err error
	for len(b) > 0 && err == nil {
		// Rotate when this write's record and a byte would not fit (an
		// empty file is never rotated: a tiny max still makes progress).
		if l.size > 0 && l.size+l.idxSize+l.recordSize(nano) >= l.max {
			l.rotateLocked()
		}
		l.record(nano)
		n := int(min(int64(len(b)), max(l.max-l.size-l.idxSize, 1)))
		n, err = l.f.Write(b[:n])
		l.size += int64(n)
		written += n
		b = b[n:]
	}
	close(l.notify)
	l.notify = make(chan struct{})
	return written, err
}

func (l *logWriter) rotateLocked() {
	cur := filepath.Join(l.dir, LogFile)
	// The old index goes first: a LogFile.1 never keeps the index of the
	// file it replaced.
	if err := os.Remove(indexName(cur + ".1")); err != nil && !os.IsNotExist(err) {
		return // keep appending; the bound is best effort then
	}
	if l.idx != nil {
		if err := os.Rename(indexName(cur), indexName(cur+".1")); err != nil {
			return
		}
	}
	if err := os.Rename(cur, cur+".1"); err != nil {
		return
	}
	f, err := os.OpenFile(cur, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		return
	}
	l.f.Close()
	l.f, l.size = f, 0
	if l.idx != nil {
		l.idx.Close()
	}
	l.openIndex(true)
	l.gen++
}

// end marks the end of the log: followers return once they read it all.
func (l *logWriter) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = true
	close(l.notify)
	l.notify = make(chan struct{})
}

func (l *logWriter) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	if l.idx != nil {
		l.idx.Close()
		l.idx = nil
	}
}
