package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// MaxPorts is how many ports one sandbox may publish.
const MaxPorts = 32

// TokenLen is the length of a public port's token: 128 random bits in
// lower-case base32 without padding, so that it fits a DNS label.
const TokenLen = 26

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newToken returns a fresh public-port token.
func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return strings.ToLower(tokenEncoding.EncodeToString(b))
}

// ValidatePort checks one TCP port number from a user; field names it.
func ValidatePort(field string, port int) error {
	if port < 1 || port > 65535 {
		return invalid("%s %d is out of range: give a TCP port from 1 to 65535", field, port)
	}
	return nil
}

// validatePorts checks a create request's ports: in range, distinct, at
// most MaxPorts; errors name the field ("ports[2].port").
func validatePorts(ports []sandbox.Port) error {
	if len(ports) > MaxPorts {
		return invalid("ports has %d entries: at most %d are allowed", len(ports), MaxPorts)
	}
	seen := make(map[int]bool, len(ports))
	for i, p := range ports {
		field := fmt.Sprintf("ports[%d].port", i)
		if err := ValidatePort(field, p.Port); err != nil {
			return err
		}
		if seen[p.Port] {
			return invalid("%s %d is given twice: list each port once", field, p.Port)
		}
		seen[p.Port] = true
	}
	return nil
}

// withTokens returns the ports of a new record: user-given tokens are
// dropped, and every public port gets a fresh one.
func withTokens(ports []sandbox.Port) []sandbox.Port {
	if len(ports) == 0 {
		return nil
	}
	out := make([]sandbox.Port, len(ports))
	for i, p := range ports {
		out[i] = sandbox.Port{Port: p.Port, Public: p.Public}
		if p.Public {
			out[i].Token = newToken()
		}
	}
	return out
}

// errUnchanged aborts a store update that would write the same record.
var errUnchanged = errors.New("unchanged")

// ExposePort publishes port of a tenant's sandbox, or changes its
// visibility: going public makes a new token, going private drops it.
// Asking for what is already published changes nothing. The sandbox must
// be PENDING, CREATING or RUNNING. It returns the record and the port.
func (m *Manager) ExposePort(ctx context.Context, tenantID, id string, port int, public bool) (*sandbox.Sandbox, sandbox.Port, error) {
	if err := ValidateID("sandbox_id", id); err != nil {
		return nil, sandbox.Port{}, err
	}
	if err := ValidatePort("port.port", port); err != nil {
		return nil, sandbox.Port{}, err
	}
	if _, err := m.st.GetSandbox(ctx, tenantID, id); err != nil {
		return nil, sandbox.Port{}, err
	}
	sb, err := m.st.UpdateSandbox(ctx, id, func(sb *sandbox.Sandbox) error {
		if sb.TenantID != tenantID {
			return sandbox.NotFound(sandbox.ReasonSandboxNotFound, "sandbox %q not found: check the id, or list your sandboxes", id)
		}
		if !slices.Contains(active, sb.State) {
			return sandbox.FailedPrecondition(sandbox.ReasonSandboxNotRunning, "sandbox %s is %s: only a pending, creating or running sandbox can publish ports", id, sb.State)
		}
		i := slices.IndexFunc(sb.Ports, func(p sandbox.Port) bool { return p.Port == port })
		switch {
		case i >= 0 && sb.Ports[i].Public == public:
			return errUnchanged
		case i >= 0:
			sb.Ports[i] = sandbox.Port{Port: port, Public: public}
		case len(sb.Ports) >= MaxPorts:
			return sandbox.FailedPrecondition(sandbox.ReasonTooManyPorts, "sandbox %s publishes %d ports already, the most allowed: unexpose one first", id, len(sb.Ports))
		default:
			sb.Ports = append(sb.Ports, sandbox.Port{Port: port, Public: public})
			i = len(sb.Ports) - 1
		}
		if public {
			sb.Ports[i].Token = newToken()
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		sb, err = m.st.GetSandbox(ctx, tenantID, id)
	}
	if err != nil {
		return nil, sandbox.Port{}, err
	}
	for _, p := range sb.Ports {
		if p.Port == port {
			return sb, p, nil
		}
	}
	return nil, sandbox.Port{}, sandbox.Internal("port %d of sandbox %s vanished while it was published", port, id)
}

// UnexposePort stops publishing port of a tenant's sandbox; a port that is
// not published is fine. It returns the record.
func (m *Manager) UnexposePort(ctx context.Context, tenantID, id string, port int) (*sandbox.Sandbox, error) {
	if err := ValidateID("sandbox_id", id); err != nil {
		return nil, err
	}
	if err := ValidatePort("port", port); err != nil {
		return nil, err
	}
	if _, err := m.st.GetSandbox(ctx, tenantID, id); err != nil {
		return nil, err
	}
	sb, err := m.st.UpdateSandbox(ctx, id, func(sb *sandbox.Sandbox) error {
		if sb.TenantID != tenantID {
			return sandbox.NotFound(sandbox.ReasonSandboxNotFound, "sandbox %q not found: check the id, or list your sandboxes", id)
		}
		n := len(sb.Ports)
		sb.Ports = slices.DeleteFunc(sb.Ports, func(p sandbox.Port) bool { return p.Port == port })
		if len(sb.Ports) == n {
			return errUnchanged
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return m.st.GetSandbox(ctx, tenantID, id)
	}
	return sb, err
}

// Lookup returns the record of sandbox id whichever tenant owns it, for
// the port proxy, which checks the caller against the record itself (a
// public port has no caller tenant). Callers must answer "not found" alike
// for a missing and for another tenant's sandbox.
func (m *Manager) Lookup(ctx context.Context, id string) (*sandbox.Sandbox, error) {
	if err := ValidateID("sandbox id", id); err != nil {
		return nil, err
	}
	return m.st.GetSandbox(ctx, "", id)
}
