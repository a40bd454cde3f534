package rowcodec

import (
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// SessionColumns are the columns of the sessions table, in the order
// ScanSession reads them; both stores use the same schema for sessions.
const SessionColumns = `id, tenant_id, defaults, lease, created_at, last_heartbeat, closed_at, close_reason`

// Scanner is a row of either database driver (database/sql or pgx).
type Scanner interface{ Scan(dest ...any) error }

// ScanSession reads one row of SessionColumns.
func ScanSession(row Scanner) (*sandbox.Session, error) {
	var (
		s                                sandbox.Session
		defaults                         []byte
		lease, created, heartbeat, close int64
	)
	if err := row.Scan(&s.ID, &s.TenantID, &defaults, &lease, &created, &heartbeat, &close, &s.CloseReason); err != nil {
		return nil, err
	}
	s.Lease = time.Duration(lease)
	s.CreatedAt = Time(created)
	s.LastHeartbeat = Time(heartbeat)
	s.ClosedAt = Time(close)
	if err := DecodeJSON("defaults of session "+s.ID, defaults, &s.Defaults); err != nil {
		return nil, err
	}
	return &s, nil
}
