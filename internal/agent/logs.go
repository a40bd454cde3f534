package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// DefaultLogMaxBytes is the size at which main.log is rotated to main.log.1,
// so the log takes at most twice this on disk.
const DefaultLogMaxBytes = 8 << 20

// logWriter appends the main command's output to LogFile in the state dir
// and rotates it to LogFile.1 at max bytes. Followers wait on notify.
type logWriter struct {
	dir string
	max int64

	mu     sync.Mutex
	f      *os.File
	size   int64
	gen    uint64        // bumped on every rotation
	notify chan struct{} // closed and replaced on every write
	ended  bool          // the main command has exited and its output is in
}

func openLog(dir string, max int64) (*logWriter, error) {
	if max <= 0 {
		max = DefaultLogMaxBytes
	}
	l := &logWriter{dir: dir, max: max, notify: make(chan struct{})}
	f, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	l.f, l.size = f, fi.Size()
	return l, nil
}

// Write appends b, rotating whenever the current file reaches the bound
// (a write larger than what is left is split across the rotation).
func (l *logWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, os.ErrClosed
	}
	written := 0
	var err error
	for len(b) > 0 && err == nil {
		if l.size >= l.max {
			l.rotateLocked()
		}
		n := int(min(int64(len(b)), max(l.max-l.size, 1)))
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
	if err := os.Rename(cur, cur+".1"); err != nil {
		return // keep appending; the bound is best effort then
	}
	f, err := os.OpenFile(cur, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		return
	}
	l.f.Close()
	l.f, l.size = f, 0
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
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// logReader reads the log files of a state dir from a tail position on, and
// with a writer, follows new output across rotations.
type logReader struct {
	dir   string
	w     *logWriter // nil: no follow, and the reader is the host
	files []*os.File // still to read; the first is being read
	// ends, for the host only, is where reading each of files stops: its
	// size when opened, so a sandbox that keeps writing cannot make a read
	// endless.
	ends []int64
	gen  uint64
	buf  []byte
}

// MaxHostLogBytes bounds what the host reads of each log file (the agent
// rotates at DefaultLogMaxBytes unless told otherwise); older bytes are
// skipped.
const MaxHostLogBytes = 64 << 20

// newLogReader opens the log for reading its last tail lines (all if 0).
func newLogReader(dir string, tail int, w *logWriter) (*logReader, error) {
	r := &logReader{dir: dir, w: w}
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
		}
	}
	if tail > 0 {
		if err := r.seekTail(tail); err != nil {
			r.Close()
			return nil, sandbox.Internal("read the sandbox log: %w", err)
		}
	}
	return r, nil
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
					for _, g := range r.files[:i] {
						g.Close()
					}
					r.files = r.files[i:]
					if r.ends != nil {
						r.ends = r.ends[i:]
					}
					return nil
				}
			}
		}
	}
	return nil // fewer than n lines: all of them
}

// Next returns the next piece of the log; io.EOF at its end (without a
// writer: the end of the files; with one: once the main command ended).
func (r *logReader) Next(ctx context.Context) ([]byte, error) {
	if r.buf == nil {
		r.buf = make([]byte, 64<<10)
	}
	for {
		if len(r.files) > 0 {
			n, err := r.read()
			if n > 0 {
				return r.buf[:n], nil
			}
			if err != nil && err != io.EOF {
				return nil, sandbox.Internal("read the sandbox log: %w", err)
			}
			if len(r.files) > 1 {
				r.files[0].Close()
				r.files = r.files[1:]
				if r.ends != nil {
					r.ends = r.ends[1:]
				}
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
			f, err := os.Open(filepath.Join(r.dir, LogFile))
			r.w.mu.Unlock()
			if err != nil {
				return nil, sandbox.Internal("read the sandbox log: %w", err)
			}
			// Drain the old file (still open, now LogFile.1) before the new.
			r.files = append(r.files, f)
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
		r.files = append(r.files, f)
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

// read reads from files[0] into buf, up to its end for the host.
func (r *logReader) read() (int, error) {
	f, buf := r.files[0], r.buf
	if r.ends != nil {
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, err
		}
		left := r.ends[0] - off
		if left <= 0 {
			return 0, io.EOF
		}
		buf = buf[:min(int64(len(buf)), left)]
	}
	return f.Read(buf)
}

// Close closes the open files.
func (r *logReader) Close() error {
	for _, f := range r.files {
		f.Close()
	}
	r.files = nil
	return nil
}
