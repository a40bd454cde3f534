// Package rowcodec is what the SQL stores (sqlite, postgres) share: how a
// record's nested parts become JSON columns, how times become integer
// columns, what a page token is, how a SandboxFilter is checked, and the
// errors a store returns. Keeping it in one place keeps both stores' rows and
// tokens the same.
package rowcodec

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// Bounds on what a list call accepts.
const (
	// DefaultPageSize is used when a filter's PageSize is 0.
	DefaultPageSize = 100
	// MaxPageSize caps PageSize; larger values are lowered to it (as AIP-158 asks).
	MaxPageSize = 1000
	// MaxFilterTags bounds the tags of one filter, so a query stays small.
	MaxFilterTags = 64
	// maxPageToken bounds a token's length before it is decoded.
	maxPageToken = 512
)

// Nanos returns t as Unix nanoseconds; the zero time is 0. Integer columns
// keep every digit of a time (PostgreSQL's timestamptz stops at microseconds)
// and sort correctly.
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Time is the inverse of Nanos; times come back in UTC.
func Time(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// SandboxJSON holds a sandbox's nested parts as JSON, one field per column.
type SandboxJSON struct {
	Spec, Start, Tags, Exit, Transitions []byte
}

// EncodeSandbox serializes sb's nested parts. Exit is nil when sb.Exit is.
func EncodeSandbox(sb *sandbox.Sandbox) (SandboxJSON, error) {
	var j SandboxJSON
	var err error
	if j.Spec, err = json.Marshal(specColumn{Spec: sb.Spec, Ports: sb.Ports}); err != nil {
		return j, sandbox.Internal("encode spec of sandbox %s: %w", sb.ID, err)
	}
	if j.Start, err = json.Marshal(sb.Start); err != nil {
		return j, sandbox.Internal("encode start spec of sandbox %s: %w", sb.ID, err)
	}
	if j.Tags, err = json.Marshal(sb.Tags); err != nil {
		return j, sandbox.Internal("encode tags of sandbox %s: %w", sb.ID, err)
	}
	if sb.Exit != nil {
		if j.Exit, err = json.Marshal(sb.Exit); err != nil {
			return j, sandbox.Internal("encode exit of sandbox %s: %w", sb.ID, err)
		}
	}
	if j.Transitions, err = json.Marshal(sb.Transitions); err != nil {
		return j, sandbox.Internal("encode transitions of sandbox %s: %w", sb.ID, err)
	}
	return j, nil
}

// specColumn is what the spec column holds: the spec plus the published
// ports, which are intent too (kept here so that no migration was needed;
// rows written before ports existed decode with none).
type specColumn struct {
	sandbox.Spec
	Ports []sandbox.Port `json:",omitempty"`
}

// DecodeSandbox fills sb's nested parts from j. Empty columns leave their
// field at its zero value.
func DecodeSandbox(j SandboxJSON, sb *sandbox.Sandbox) error {
	var spec specColumn
	defer func() { sb.Spec, sb.Ports = spec.Spec, spec.Ports }()
	parts := []struct {
		name string
		data []byte
		into any
	}{
		{"spec", j.Spec, &spec},
		{"start spec", j.Start, &sb.Start},
		{"tags", j.Tags, &sb.Tags},
		{"exit", j.Exit, &sb.Exit},
		{"transitions", j.Transitions, &sb.Transitions},
	}
	for _, p := range parts {
		if len(p.data) == 0 {
			continue
		}
		if err := json.Unmarshal(p.data, p.into); err != nil {
			return sandbox.Internal("decode %s of sandbox %s (the stored row is corrupt): %w", p.name, sb.ID, err)
		}
	}
	return nil
}

// EncodeJSON serializes v for a JSON column (session defaults).
func EncodeJSON(what string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, sandbox.Internal("encode %s: %w", what, err)
	}
	return b, nil
}

// DecodeJSON is the inverse of EncodeJSON; an empty column leaves v as is.
func DecodeJSON(what string, b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return sandbox.Internal("decode %s (the stored row is corrupt): %w", what, err)
	}
	return nil
}

// Cursor is a position in the newest-first order of ListSandboxes: the
// (created_at, id) of the last record of the previous page. The next page
// starts strictly after it, so inserts between calls (which are newer) never
// shift or repeat records.
type Cursor struct {
	CreatedAt int64 // Unix nanoseconds
	ID        string
}

// EncodePageToken makes an opaque token from c.
func EncodePageToken(c Cursor) string {
	raw := "v1:" + strconv.FormatInt(c.CreatedAt, 10) + ":" + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodePageToken parses a token made by EncodePageToken.
func DecodePageToken(tok string) (Cursor, error) {
	bad := func() (Cursor, error) {
		return Cursor{}, sandbox.InvalidArgument(sandbox.ReasonInvalidPageToken,
			"page token %.40q is not one this server issued: pass the next_page_token of the previous page, or none to start again", tok)
	}
	if len(tok) > maxPageToken {
		return bad()
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return bad()
	}
	parts := strings.SplitN(string(raw), ":", 3)
	if len(parts) != 3 || parts[0] != "v1" || parts[2] == "" {
		return bad()
	}
	ns, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return bad()
	}
	return Cursor{CreatedAt: ns, ID: parts[2]}, nil
}

// Query is a checked SandboxFilter, ready to become SQL.
type Query struct {
	TenantID  string
	SessionID string
	// Tags are de-duplicated; every one must match.
	Tags []string
	// States is never empty.
	States []string
	// Limit is the page size; stores fetch Limit+1 rows to know whether
	// another page follows.
	Limit int
	// After is set when the filter carried a page token.
	After *Cursor
}

// CheckFilter validates f and fills in its defaults.
func CheckFilter(f store.SandboxFilter) (Query, error) {
	q := Query{TenantID: f.TenantID, SessionID: f.SessionID}
	switch {
	case f.PageSize < 0:
		return q, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "page size %d is negative: pass 0 for the default of %d, or up to %d", f.PageSize, DefaultPageSize, MaxPageSize)
	case f.PageSize == 0:
		q.Limit = DefaultPageSize
	case f.PageSize > MaxPageSize:
		q.Limit = MaxPageSize
	default:
		q.Limit = f.PageSize
	}
	for _, t := range f.Tags {
		if !slices.Contains(q.Tags, t) {
			q.Tags = append(q.Tags, t)
		}
	}
	if len(q.Tags) > MaxFilterTags {
		return q, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%d tags in a list filter: at most %d are allowed", len(q.Tags), MaxFilterTags)
	}
	for _, s := range f.States {
		if !s.Valid() {
			return q, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "unknown state %q in a list filter: use one of %v", s, sandbox.States)
		}
		if !slices.Contains(q.States, string(s)) {
			q.States = append(q.States, string(s))
		}
	}
	if len(q.States) == 0 {
		for _, s := range sandbox.States {
			if !s.Terminal() || f.IncludeTerminal {
				q.States = append(q.States, string(s))
			}
		}
	}
	if f.PageToken != "" {
		c, err := DecodePageToken(f.PageToken)
		if err != nil {
			return q, err
		}
		q.After = &c
	}
	return q, nil
}

// Page trims rows fetched with LIMIT q.Limit+1 to one page and returns the
// token of the next page, or "" on the last page.
func Page(q Query, rows []*sandbox.Sandbox) ([]*sandbox.Sandbox, string) {
	if len(rows) <= q.Limit {
		return rows, ""
	}
	rows = rows[:q.Limit]
	last := rows[len(rows)-1]
	return rows, EncodePageToken(Cursor{CreatedAt: Nanos(last.CreatedAt), ID: last.ID})
}

// ActiveStates are the non-terminal states, as column values.
func ActiveStates() []string {
	var out []string
	for _, s := range sandbox.States {
		if !s.Terminal() {
			out = append(out, string(s))
		}
	}
	return out
}

// TerminalStates are the end states, as column values.
func TerminalStates() []string {
	var out []string
	for _, s := range sandbox.States {
		if s.Terminal() {
			out = append(out, string(s))
		}
	}
	return out
}

// CheckImmutable rejects an update function that changed a record's identity.
func CheckImmutable(kind, oldID, oldTenant, newID, newTenant string) error {
	if oldID != newID || oldTenant != newTenant {
		return sandbox.Internal("an update changed the id or tenant of %s %s (to %s, tenant %s): ids and tenants are immutable", kind, oldID, newID, newTenant)
	}
	return nil
}

// Errors a store returns, with messages that say what to do.

// SandboxNotFound is NotFound for a sandbox id.
func SandboxNotFound(id string) error {
	return sandbox.NotFound(sandbox.ReasonSandboxNotFound, "sandbox %q not found: check the id, or list your sandboxes", id)
}

// PoolSandboxNotFound is NotFound for an idle pool sandbox: it was claimed
// or removed.
func PoolSandboxNotFound(id string) error {
	return sandbox.NotFound(sandbox.ReasonSandboxNotFound, "pool sandbox %q not found: it was claimed or removed", id)
}

// RequestNotFound is NotFound for a request id.
func RequestNotFound(requestID string) error {
	return sandbox.NotFound(sandbox.ReasonSandboxNotFound, "no sandbox was created with request id %q", requestID)
}

// SessionNotFound is NotFound for a session id.
func SessionNotFound(id string) error {
	return sandbox.NotFound(sandbox.ReasonSessionNotFound, "session %q not found: check the id, or create a new session", id)
}

// TenantNotFound is NotFound for a tenant id.
func TenantNotFound(id string) error {
	return sandbox.NotFound(sandbox.ReasonTenantNotFound, "tenant %q not found: create it first", id)
}

// APIKeyNotFound is NotFound for a key hash; the hash is not echoed.
func APIKeyNotFound() error {
	return sandbox.NotFound(sandbox.ReasonAPIKeyNotFound, "API key not found: check the key, or create a new one")
}

// SandboxExists is AlreadyExists for a duplicate sandbox id.
func SandboxExists(id string, cause error) error {
	return sandbox.Errorf(sandbox.ErrAlreadyExists, sandbox.ReasonSandboxExists, "sandbox %q already exists: use a new id: %w", id, cause)
}

// RequestIDExists is AlreadyExists for a duplicate (tenant, request id).
func RequestIDExists(tenantID, requestID string, cause error) error {
	return sandbox.Errorf(sandbox.ErrAlreadyExists, sandbox.ReasonRequestIDExists,
		"tenant %q already created a sandbox with request id %q: get that sandbox, or use a new request id: %w", tenantID, requestID, cause)
}

// SessionExists is AlreadyExists for a duplicate session id.
func SessionExists(id string, cause error) error {
	return sandbox.Errorf(sandbox.ErrAlreadyExists, sandbox.ReasonSessionExists, "session %q already exists: use a new id: %w", id, cause)
}

// TenantExists is AlreadyExists for a duplicate tenant id.
func TenantExists(id string, cause error) error {
	return sandbox.Errorf(sandbox.ErrAlreadyExists, sandbox.ReasonTenantExists, "tenant %q already exists: use a new id: %w", id, cause)
}

// APIKeyExists is AlreadyExists for a duplicate key id or hash.
func APIKeyExists(id string, cause error) error {
	return sandbox.Errorf(sandbox.ErrAlreadyExists, sandbox.ReasonAPIKeyExists, "API key %q (or its hash) already exists: generate a new key: %w", id, cause)
}

// Wrap turns a database failure into an Internal error that says which
// operation failed, keeping the cause (so errors.Is(err, context.Canceled)
// still works). Errors that already carry a kind pass through.
func Wrap(op string, err error) error {
	var se *sandbox.Error
	if err == nil || errors.As(err, &se) {
		return err
	}
	return sandbox.Internal("store: %s: %w", op, err)
}
