package local

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// The phases of a record.
const (
	// phaseCreating: Create is (or was, if it was killed) in progress; any
	// part of the sandbox may exist. New removes such sandboxes entirely.
	phaseCreating = "creating"
	// phaseCreated: the container ran and its agent answered.
	phaseCreated = "created"
	// phaseReleased: the container is gone and its mounts, cgroups and
	// writable layer were released; only the record and the agent's state
	// dir (exit status, log) remain until Delete.
	phaseReleased = "released"
)

// recordFile is the record's name in a sandbox dir.
const recordFile = "record.json"

// record is what a sandbox dir says about its sandbox. It is the one source
// for recovery after a restart.
type record struct {
	ID        string              `json:"id"`
	Phase     string              `json:"phase"`
	Image     string              `json:"image"`            // as the user wrote it
	ImageRef  string              `json:"image_ref"`        // normalized
	Digest    string              `json:"digest,omitempty"` // set once Use was called
	Config    sandbox.ImageConfig `json:"image_config"`
	Resources sandbox.Resources   `json:"resources"`
	Runtime   string              `json:"runtime"` // OCI runtime name
	// Network is the sandbox's network policy.
	Network   sandbox.NetworkPolicy `json:"network,omitzero"`
	CreatedAt time.Time             `json:"created_at"`
	// PID and PIDStart (its start time in clock ticks since boot) identify
	// the container's PID 1 even after the pid is reused.
	PID      int    `json:"pid,omitempty"`
	PIDStart uint64 `json:"pid_start,omitempty"`
	// ListenerPID and ListenerStart identify the host process that listens
	// on the agent's socket when it is not PID 1: runsc's gofer, which
	// binds the sockets the sandbox binds (see dialAgent).
	ListenerPID   int    `json:"listener_pid,omitempty"`
	ListenerStart uint64 `json:"listener_start,omitempty"`
	// UIDBase is the host uid (and gid) that the sandbox's uid 0 maps to
	// in its user namespace (userns.go), or 0 when it has none.
	UIDBase uint32 `json:"uid_base,omitempty"`
}

// listener returns the host process that must listen on the agent's
// socket, and its start time.
func (rec *record) listener() (int, uint64) {
	if rec.ListenerPID != 0 {
		return rec.ListenerPID, rec.ListenerStart
	}
	return rec.PID, rec.PIDStart
}

// writeRecord replaces dir's record atomically (temp file + rename). It does
// not fsync: the record must survive a killed process, not a power loss; a
// torn record after a crash reads as garbage and is cleaned up.
func writeRecord(dir string, rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, recordFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, recordFile))
}

func readRecord(dir string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, recordFile), err)
	}
	if err := validID(rec.ID); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, recordFile), err)
	}
	return &rec, nil
}

// idPattern: an id is a hostname label and an OCI container id at once.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func validID(id string) error {
	if !idPattern.MatchString(id) {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec,
			"sandbox id %q is invalid: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	}
	return nil
}
