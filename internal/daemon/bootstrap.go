package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"

	sbx "github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// LocalTenant is the id of the tenant local mode creates.
const LocalTenant = "local"

var lookPath = exec.LookPath

// bootstrapLocal makes sure the local tenant exists and that the
// credentials file holds a key of it that works for url and names the
// API's Unix socket ("" when it has none), which local clients use instead
// of url when they can reach it. It creates a key (printing it once, on
// stderr) when the tenant is new, or when the file is missing, unreadable
// or holds a key the store does not know (e.g. a fresh data dir);
// otherwise it only refreshes the URL and socket in the file.
func bootstrapLocal(ctx context.Context, st store.Store, path, url, socket string, log *slog.Logger) error {
	if path == "" {
		path = sbx.DefaultCredentialsPath()
	}
	if _, err := st.GetTenant(ctx, LocalTenant); errors.Is(err, sandbox.ErrNotFound) {
		if err := st.CreateTenant(ctx, &sandbox.Tenant{ID: LocalTenant, Name: "local"}); err != nil && !errors.Is(err, sandbox.ErrAlreadyExists) {
			return fmt.Errorf("create the local tenant: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("look up the local tenant: %w", err)
	}
	if c, err := sbx.ReadCredentials(path); err == nil && c.APIKey != "" {
		if k, err := st.LookupAPIKey(ctx, auth.HashKey(c.APIKey)); err == nil && k.TenantID == LocalTenant {
			if c.URL != url || c.UnixSocket != socket {
				c.URL, c.UnixSocket = url, socket
				if err := sbx.WriteCredentials(path, c); err != nil {
					return fmt.Errorf("update credentials file %s: %w", path, err)
				}
			}
			log.Info("local mode: using the API key in the credentials file", "path", path)
			return nil
		}
	}
	key, err := auth.NewKey(ctx, st, LocalTenant)
	if err != nil {
		return fmt.Errorf("create the local API key: %w", err)
	}
	if err := sbx.WriteCredentials(path, sbx.Credentials{URL: url, UnixSocket: socket, APIKey: key}); err != nil {
		return fmt.Errorf("write credentials file %s (set --credentials-path to a writable place): %w", path, err)
	}
	fmt.Fprintf(os.Stderr, "sbx serve: created API key for tenant %q (written to %s):\n\n    export SBX_URL=%s\n    export SBX_API_KEY=%s\n\n", LocalTenant, path, url, key)
	log.Info("local mode: created an API key", "tenant", LocalTenant, "path", path)
	return nil
}
