package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// logQuery is what part of the log to read and how.
type logQuery struct {
	tail int // last lines to start with; 0: all
	// since, when not 0, drops lines read before it (Unix ns). A line's time
	// is the time of the write holding its first byte.
	since int64
	// timed makes every piece Next returns lie within one write, with its
	// time in at.
	timed bool
}

// logReader reads the log files of a state dir from a tail position on, and
// with a writer, follows new output across rotations.
type logReader struct {
	dir   string
	w     *logWriter // nil: no follow, and the reader is the host
	files []*os.File // still to read; the first is being read
	idxs  []*os.File // the index of each of files; nil: times unknown
	// ends, for the host only, is where reading each of files stops: its
	// size when opened, so a sandbox that keeps writing cannot make a read
	// endless.
	ends []int64
	gen  uint64
	buf  []byte

	since  int64
	timed  bool        // pieces are split at writes (timestamps or since)
	cursor indexCursor // over idxs[0], valid when cursorOK
	// cursorOK says cursor is on files[0]'s index.
	cursorOK bool
	// skipLine drops output up to the next newline: the rest of a line
	// older than since.
	skipLine bool
	// at is the time of the piece Next returned last (Unix ns; 0 when
	// unknown or not timed).
	at int64
}

// MaxHostLogBytes bounds what the host reads of each log file (the agent
// rotates at DefaultLogMaxBytes unless told otherwise); older bytes are
// skipped.
const MaxHostLogBytes = 64 << 20

// newLogReader opens the log for reading its last tail lines (all if 0).
func newLogReader(dir string, tail int, w *logWriter) (*logReader, error) {
	return openLogReader(dir, logQuery{tail: tail}, w)
}

// openLogReader opens the log for reading the part q selects.
func openLogReader(dir string, q logQuery, w *logWriter) (*logReader, error) {
	r := &logReader{dir: dir, w: w, since: q.since, timed: q.timed || q.since > 0}
	if w != nil {
		w.mu.Lock()
		defer w.mu.Unlock() // no rotation while the files are opened
		r.gen = w.gen
	}
	if w == nil {
		if err := r.openHost(); err != nil {
			r.Close()
			return nil, sandbox.Internal("open the sandbox log: %w", err)
		}
	} else {
		cur := filepath.Join(dir, LogFile)
		for _, name := range []string{cur + ".1", cur} {
			f, err := os.Open(name)
			if err != nil {
				if os.IsNotExist(err) {
					continue
				}
				r.Close()
				return nil, sandbox.Internal("open the sandbox log: %w", err)
			}
			r.files = append(r.files, f)
			r.idxs = append(r.idxs, openIndexFile(name))
		}
	}
	if q.tail > 0 {
		if err := r.seekTail(q.tail); err != nil {
			r.Close()
			return nil, sandbox.Internal("read the sandbox log: %w", err)
		}
	}
	if q.since > 0 {
		if err := r.seekSince(q.since); err != nil {
			r.Close()
			return nil, sandbox.Internal("read the sandbox log: %w", err)
		}
	}
	return r, nil
}

// openIndexFile opens the index of log file name for the agent; nil if it
// has none.
func openIndexFile(name string) *os.File {
	f, err := os.Open(indexName(name))
	if err != nil {
		return nil
	}
	return f
}

// dropFirst closes the first k files, which are not to be read.
func (r *logReader) dropFirst(k int) {
	for i := 0; i < k; i++ {
		r.files[i].Close()
		if r.idxs[i] != nil {
			r.idxs[i].Close()
		}
	}
	r.files, r.idxs = r.files[k:], r.idxs[k:]
	if r.ends != nil {
		r.ends = r.ends[k:]
	}
	if k > 0 {
		r.cursorOK = false
	}
}

// seekTail positions the files so that reading yields the last n lines.
func (r *logReader) seekTail(n int) error {
	const block = 32 << 10
	buf := make([]byte, block)
	found := 0
	atEnd := true // the log's final newline ends the last line, it starts none
	for i := len(r.files) - 1; i >= 0; i-- {
		f := r.files[i]
		size, err := r.end(i)
		if err != nil {
			return err
		}
		var floor int64 // the host reads no more than MaxHostLogBytes back
		if r.ends != nil {
			floor = max(size-MaxHostLogBytes, 0)
		}
		for pos := size; pos > floor; {
			size := int64(block)
			if pos-floor < size {
				size = pos - floor
			}
			pos -= size
			if _, err := f.ReadAt(buf[:size], pos); err != nil && err != io.EOF {
				return err
			}
			for j := size - 1; j >= 0; j-- {
				if buf[j] != '\n' || atEnd {
					atEnd = false
					continue
				}
				found++
				if found == n {
					if _, err := f.Seek(pos+j+1, io.SeekStart); err != nil {
						return err
					}
					r.dropFirst(i)
					return nil
				}
			}
		}
	}
	return nil // fewer than n lines: all of them
}

// seekSince skips the files, and the part of a file, written before since
// (when that is later than where reading starts now, e.g. after a tail).
// Next drops what is left before since (a follower may still get output
// older than a since in the future).
func (r *logReader) seekSince(since int64) error {
	for i := range r.files {
		size, err := r.end(i)
		if err != nil {
			return err
		}
		off, ok, err := sinceOffset(r.idxs[i], since)
		if err != nil {
			return err
		}
		if !ok || off >= size {
			continue
		}
		cur, err := r.files[i].Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		if off <= cur {
			if i > 0 {
				r.dropFirst(i)
			}
			return nil
		}
		r.dropFirst(i)
		return r.seekLine(off)
	}
	// Everything kept is older: start at the end of the last file.
	if len(r.files) == 0 {
		return nil
	}
	r.dropFirst(len(r.files) - 1)
	size, err := r.end(0)
	if err != nil {
		return err
	}
	return r.seekLine(size)
}

// seekLine moves reading of files[0] to off, dropping the rest of the line
// off falls in.
func (r *logReader) seekLine(off int64) error {
	if _, err := r.files[0].Seek(off, io.SeekStart); err != nil {
		return err
	}
	r.cursorOK = false
	r.skipLine = false
	if off > 0 {
		var b [1]byte
		if _, err := r.files[0].ReadAt(b[:], off-1); err != nil {
			return err
		}
		r.skipLine = b[0] != '\n'
	}
	return nil
}

// Next returns the next piece of the log; io.EOF at its end (without a
// writer: the end of the files; with one: once the main command ended).
// The piece is valid until the next call; At is its time when timed.
func (r *logReader) Next(ctx context.Context) ([]byte, error) {
	if r.buf == nil {
		r.buf = make([]byte, 64<<10)
	}
	for {
		if len(r.files) > 0 {
			n, err := r.read()
			if n > 0 {
				if b := r.filter(r.buf[:n]); len(b) > 0 {
					return b, nil
				}
				continue
			}
			if err != nil && err != io.EOF {
				return nil, sandbox.Internal("read the sandbox log: %w", err)
			}
			if len(r.files) > 1 {
				r.dropFirst(1)
				continue
			}
		}
		if r.w == nil {
			return nil, io.EOF
		}
		// At the end of what we have: wait for more, or move to a new file.
		r.w.mu.Lock()
		rotated := r.w.gen != r.gen
		ended := r.w.ended
		wait := r.w.notify
		if rotated {
			r.gen = r.w.gen
			name := filepath.Join(r.dir, LogFile)
			f, err := os.Open(name)
			var idx *os.File
			if err == nil {
				idx = openIndexFile(name)
			}
			r.w.mu.Unlock()
			if err != nil {
				return nil, sandbox.Internal("read the sandbox log: %w", err)
			}
			// Drain the old file (still open, now LogFile.1) before the new.
			r.files = append(r.files, f)
			r.idxs = append(r.idxs, idx)
			continue
		}
		r.w.mu.Unlock()
		if len(r.files) > 0 {
			// Re-check for data written since the read above.
			if st, err := r.files[0].Stat(); err == nil {
				if off, err := r.files[0].Seek(0, io.SeekCurrent); err == nil && off < st.Size() {
					continue
				}
			}
		}
		if ended {
			return nil, io.EOF
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// filter drops what is older than since from a piece just read.
func (r *logReader) filter(b []byte) []byte {
	if r.since > 0 && r.at < r.since {
		r.skipLine = b[len(b)-1] != '\n'
		return nil
	}
	if r.skipLine {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil
		}
		r.skipLine = false
		b = b[i+1:]
	}
	return b
}

// openHost opens the log files for the host: beneath the state dir, no
// symlinks, regular files only, each from at most MaxHostLogBytes before
// its end (as it was when opened).
func (r *logReader) openHost() error {
	dirfd, err := openStateDir(r.dir)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	for _, name := range []string{LogFile + ".1", LogFile} {
		f, err := openFileBeneath(dirfd, r.dir, name, 0)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		var idx *os.File
		if r.timed {
			// A missing or unreadable index only loses the times.
			idx, _ = openFileBeneath(dirfd, r.dir, indexName(name), 0)
		}
		r.files = append(r.files, f)
		r.idxs = append(r.idxs, idx)
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		r.ends = append(r.ends, fi.Size())
		if skip := fi.Size() - MaxHostLogBytes; skip > 0 {
			if _, err := f.Seek(skip, io.SeekStart); err != nil {
				return err
			}
		}
	}
	return nil
}

// end returns where reading files[i] stops: for the host, its size when
// opened; for the agent, its current size.
func (r *logReader) end(i int) (int64, error) {
	if r.ends != nil {
		return r.ends[i], nil
	}
	fi, err := r.files[i].Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// read reads from files[0] into buf, up to its end for the host and, when
// timed, up to the end of the write being read, setting at.
func (r *logReader) read() (int, error) {
	f, buf := r.files[0], r.buf
	if r.ends == nil && !r.timed {
		return f.Read(buf)
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if r.ends != nil {
		left := r.ends[0] - off
		if left <= 0 {
			return 0, io.EOF
		}
		buf = buf[:min(int64(len(buf)), left)]
	}
	if !r.timed {
		return f.Read(buf)
	}
	if !r.cursorOK {
		r.cursor = indexCursor{idx: r.idxs[0]}
		if err := r.cursor.seek(off); err != nil {
			return 0, err
		}
		r.cursorOK = true
	}
	nano, end, err := r.cursor.at(off)
	if err != nil {
		return 0, err
	}
	if end >= 0 {
		buf = buf[:min(int64(len(buf)), end-off)]
	}
	n, err := f.Read(buf)
	if n > 0 && end < 0 {
		// The writer records a write before writing it: a record that
		// came in since the look above starts a write read here, which
		// has its own time.
		if _, next, err2 := r.cursor.at(off); err2 == nil && next >= 0 && next < off+int64(n) {
			if _, err := f.Seek(next, io.SeekStart); err != nil {
				return 0, err
			}
			n = int(next - off)
		}
	}
	r.at = nano
	return n, err
}

// At returns the time of the piece Next returned last (Unix ns), 0 when
// unknown or not timed.
func (r *logReader) At() int64 { return r.at }

// Close closes the open files.
func (r *logReader) Close() error {
	for i, f := range r.files {
		f.Close()
		if r.idxs[i] != nil {
			r.idxs[i].Close()
		}
	}
	r.files, r.idxs = nil, nil
	return nil
}
