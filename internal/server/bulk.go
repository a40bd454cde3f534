package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// The bulk file endpoint moves a file's bytes as one raw HTTP body, with no
// protobuf framing, for large transfers:
//
//	PUT BulkPrefix{sandbox_id}/file?path=/abs/path&mode=644   (Content-Length: N, body: N bytes)
//	  -> 200 {"size": N}
//	GET BulkPrefix{sandbox_id}/file?path=/abs/path
//	  -> 200, the content (Content-Length when the file is a regular one)
//
// It has the same auth (Bearer API key, the tenant's own running sandboxes
// only), validation, bounds and errors as the WriteFile and ReadFile RPCs,
// and goes through the sandbox's agent the same way, which resolves the
// path inside the sandbox. Errors are Connect's JSON error body
// ({"code": "not_found", "message": ...}) with the reason in Sbx-Reason and
// a retry delay in Retry-After.
const BulkPrefix = "/v1/sandboxes/"

// NewBulk returns the bulk file endpoint's handler; route BulkPrefix to it.
// It uses cfg's Manager, Auth and Logger.
func NewBulk(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Calls == nil {
		cfg.Calls = NewCallLimit(0)
	}
	b := &bulkService{deps: &deps{m: cfg.Manager, log: cfg.Logger}, auth: cfg.Auth, calls: cfg.Calls}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT "+BulkPrefix+"{id}/file", b.write)
	mux.HandleFunc("GET "+BulkPrefix+"{id}/file", b.read)
	mux.HandleFunc(BulkPrefix, func(w http.ResponseWriter, r *http.Request) {
		b.fail(w, sandbox.NotFound(sandbox.ReasonInvalidSpec, "%s %s: no such endpoint; use GET or PUT %s{sandbox_id}/file?path=...", r.Method, r.URL.Path, BulkPrefix))
	})
	return mux
}

type bulkService struct {
	*deps
	auth  *auth.Authenticator
	calls *CallLimit
}

// begin authenticates the caller, validates the sandbox id and path, and
// counts the transfer as one of the tenant's calls in flight until the
// caller calls release.
func (b *bulkService) begin(r *http.Request) (ctx context.Context, id, path string, release func(), err error) {
	ctx = r.Context()
	tenantID, err := b.auth.Authenticate(ctx, r.Header.Get("Authorization"))
	if err != nil {
		return nil, "", "", nil, err
	}
	id, path = r.PathValue("id"), r.URL.Query().Get("path")
	if err := lifecycle.ValidateID("sandbox_id", id); err != nil {
		return nil, "", "", nil, err
	}
	if err := lifecycle.ValidatePath("path", path); err != nil {
		return nil, "", "", nil, err
	}
	release, err = b.calls.acquire(tenantID)
	if err != nil {
		return nil, "", "", nil, err
	}
	return auth.WithTenant(ctx, tenantID), id, path, release, nil
}

// write is WriteFile with a raw body: the agent receives exactly
// Content-Length bytes and replaces the file only once all arrived.
func (b *bulkService) write(w http.ResponseWriter, r *http.Request) {
	ctx, id, path, release, err := b.begin(r)
	if err != nil {
		b.fail(w, err)
		return
	}
	defer release()
	mode, err := parseBulkMode(r.URL.Query().Get("mode"))
	if err != nil {
		b.fail(w, err)
		return
	}
	size := r.ContentLength
	if size < 0 {
		b.fail(w, invalidf("send the file's size as Content-Length: the bulk endpoint takes no chunked bodies (stream content of unknown size with the WriteFile RPC)"))
		return
	}
	err = b.withAgent(ctx, id, func(a sandbox.Agent) error {
		return a.WriteFile(ctx, path, mode, agent.Sized(r.Body, size))
	})
	if err != nil {
		b.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]int64{"size": size})
}

// parseBulkMode reads the octal mode parameter as WriteFile's header.
func parseBulkMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0o644, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, invalidf("mode %q is not an octal permission mode of at most 7777", s)
	}
	if fileMode(uint32(m)) == 0 {
		return 0o644, nil
	}
	return fileMode(uint32(m)), nil
}

// read is ReadFile with a raw body. From the agent's bulk reader the
// bytes go from its socket to the caller's with splice(2).
func (b *bulkService) read(w http.ResponseWriter, r *http.Request) {
	ctx, id, path, release, err := b.begin(r)
	if err != nil {
		b.fail(w, err)
		return
	}
	defer release()
	var copyErr error
	err = b.withAgent(ctx, id, func(a sandbox.Agent) error {
		rc, err := a.ReadFile(ctx, path)
		if err != nil {
			return err
		}
		defer rc.Close()
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		if s, ok := rc.(interface{ Size() int64 }); ok && s.Size() >= 0 {
			h.Set("Content-Length", strconv.FormatInt(s.Size(), 10))
		}
		w.WriteHeader(http.StatusOK)
		_, copyErr = io.Copy(w, rc)
		return nil
	})
	if err != nil {
		b.fail(w, err)
		return
	}
	if copyErr != nil {
		// The status is sent: cut the connection, so that the caller sees
		// a short body rather than a complete-looking one.
		if !errors.Is(copyErr, context.Canceled) {
			b.log.Warn("bulk read cut", "sandbox", id, "path", path, "error", copyErr)
		}
		panic(http.ErrAbortHandler)
	}
}

// fail writes err as Connect's JSON error body, mapped once by toConnect.
func (b *bulkService) fail(w http.ResponseWriter, err error) {
	ce := toConnect(b.log, err).(*connect.Error)
	h := w.Header()
	for k, v := range ce.Meta() {
		h[k] = v
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus(ce.Code()))
	json.NewEncoder(w).Encode(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{ce.Code().String(), ce.Message()})
}

// httpStatus is the HTTP status Connect uses for code.
func httpStatus(code connect.Code) int {
	switch code {
	case connect.CodeCanceled:
		return 499
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		return http.StatusBadRequest
	case connect.CodeDeadlineExceeded:
		return http.StatusGatewayTimeout
	case connect.CodeNotFound:
		return http.StatusNotFound
	case connect.CodeAlreadyExists, connect.CodeAborted:
		return http.StatusConflict
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	case connect.CodeUnimplemented:
		return http.StatusNotImplemented
	case connect.CodeUnavailable:
		return http.StatusServiceUnavailable
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}
