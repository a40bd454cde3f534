package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Files the agent keeps in its state dir; the runtime reads them from the
// host even when the agent is gone.
const (
	// SocketName is the agent's Unix socket.
	SocketName = "agent.sock"
	// ExitFile holds the main command's exit status as JSON, written
	// atomically once the main command has exited.
	ExitFile = "main.exit"
	// LogFile is the main command's stdout and stderr; LogFile+".1" is the
	// part before the last rotation.
	LogFile = "main.log"
)

// maxExitFileBytes bounds what the host reads of ExitFile.
const maxExitFileBytes = 4 << 10

// exitRecord is the JSON form of ExitFile.
type exitRecord struct {
	Code      int       `json:"code"`
	Signal    string    `json:"signal,omitempty"`
	OOMKilled bool      `json:"oom_killed,omitempty"`
	TimedOut  bool      `json:"timed_out,omitempty"`
	At        time.Time `json:"at"`
}

// writeExitFile records st in stateDir atomically.
func writeExitFile(stateDir string, st sandbox.ExitStatus) error {
	b, err := json.Marshal(exitRecord{Code: st.Code, Signal: st.Signal, OOMKilled: st.OOMKilled, TimedOut: st.TimedOut, At: st.At.UTC()})
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(stateDir, ExitFile), 0o644, true, func(f *os.File) error {
		_, err := f.Write(append(b, '\n'))
		return err
	})
}

// ReadExitFile reads the main command's exit status from stateDir; it
// returns nil, nil if the main command has not exited.
func ReadExitFile(stateDir string) (*sandbox.ExitStatus, error) {
	// The state dir is writable by sandbox root: no symlink, FIFO or
	// oversized file there may make the host follow, block or read much.
	f, err := openStateFile(stateDir, ExitFile, maxExitFileBytes)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, sandbox.Internal("read the main command's exit status: %w", err)
	}
	defer f.Close()
	var r exitRecord
	if err := json.NewDecoder(io.LimitReader(f, maxExitFileBytes)).Decode(&r); err != nil {
		return nil, sandbox.Internal("read the main command's exit status from %s: %w", f.Name(), err)
	}
	return &sandbox.ExitStatus{Code: r.Code, Signal: r.Signal, OOMKilled: r.OOMKilled, TimedOut: r.TimedOut, At: r.At}, nil
}

// ReadLogs reads the main command's log from stateDir, without the agent
// (for a sandbox whose agent is gone). Follow is ignored: nothing writes.
// It is meant for the host: it follows no symlink, refuses anything but
// regular files, and reads at most the last MaxHostLogBytes of each file as
// they were when opened.
func ReadLogs(stateDir string, opts sandbox.LogOptions) (sandbox.OutputStream, error) {
	if opts.Tail < 0 {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "log tail %d is negative; give 0 for all lines", opts.Tail)
	}
	r, err := openLogReader(stateDir, logQuery{tail: opts.Tail, since: sinceNano(opts.Since), timed: opts.Timestamps}, nil)
	if err != nil {
		return nil, err
	}
	return &fileLogStream{r: r, timestamps: opts.Timestamps}, nil
}

type fileLogStream struct {
	r          *logReader
	timestamps bool
}

func (s *fileLogStream) Recv() (sandbox.Output, error) {
	b, err := s.r.Next(context.Background())
	if err != nil {
		return sandbox.Output{}, err
	}
	o := sandbox.Output{Stream: sandbox.Stdout, Data: append([]byte(nil), b...)}
	if s.timestamps {
		o.At = timeOfNano(s.r.At())
	}
	return o, nil
}

func (s *fileLogStream) Close() error { return s.r.Close() }
