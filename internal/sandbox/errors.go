package sandbox

import (
	"errors"
	"fmt"
	"time"
)

// The error kinds. Every error that sbx returns to a caller wraps exactly one
// of them, so that errors.Is(err, sandbox.ErrNotFound) works across packages
// and, once mapped by the server and back by the SDKs, across the wire.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrResourceExhausted  = errors.New("resource exhausted")
	ErrUnavailable        = errors.New("unavailable")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrUnauthenticated    = errors.New("unauthenticated")
	ErrDeadlineExceeded   = errors.New("deadline exceeded")
	ErrInternal           = errors.New("internal")
)

// Kinds lists every error kind, in the order above.
var Kinds = []error{
	ErrNotFound, ErrAlreadyExists, ErrInvalidArgument, ErrFailedPrecondition,
	ErrResourceExhausted, ErrUnavailable, ErrPermissionDenied, ErrUnauthenticated,
	ErrDeadlineExceeded, ErrInternal,
}

// Error is an error of one kind with a machine-readable reason and a message
// that tells the user what was wrong and what to do.
type Error struct {
	// Kind is one of the Err* sentinels above.
	Kind error
	// Reason is a stable upper-case code such as "IMAGE_NOT_FOUND".
	Reason string
	// Message is the human sentence, without the cause.
	Message string
	// RetryAfter, when set, tells the caller when trying again may succeed.
	RetryAfter time.Duration
	// Err is the underlying cause, if any.
	Err error
}

// Error returns the message followed by the cause.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Is reports whether target is this error's kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind and reason. A %w verb in format
// records the wrapped error as the cause (and leaves it out of the message).
func Errorf(kind error, reason, format string, args ...any) *Error {
	wrapped := fmt.Errorf(format, args...)
	e := &Error{Kind: kind, Reason: reason, Message: wrapped.Error()}
	if cause := errors.Unwrap(wrapped); cause != nil {
		e.Err = cause
		// Keep the cause out of Message; Error() appends it.
		e.Message = trimSuffix(e.Message, ": "+cause.Error())
	}
	return e
}

func trimSuffix(s, suffix string) string {
	if len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)]
	}
	return s
}

// KindOf returns the kind of err: one of the Err* sentinels, or ErrInternal
// for an error that carries none.
func KindOf(err error) error {
	for _, k := range Kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	return ErrInternal
}

// ReasonOf returns the reason of the outermost *Error in err's chain, or "".
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// RetryAfterOf returns the retry delay carried by err, or zero.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// Reasons: stable machine-readable codes carried by errors. Add new ones here
// with one sentence of doc, so the vocabulary stays in one place.
const (
	// ReasonInvalidSpec: a field of a request is malformed or out of range.
	ReasonInvalidSpec = "INVALID_ARGUMENT"
	// ReasonSandboxNotFound: no sandbox with that id exists (for this tenant).
	ReasonSandboxNotFound = "SANDBOX_NOT_FOUND"
	// ReasonSandboxExists: a sandbox with that id already exists.
	ReasonSandboxExists = "SANDBOX_ALREADY_EXISTS"
	// ReasonSandboxNotRunning: the call needs a running sandbox.
	ReasonSandboxNotRunning = "SANDBOX_NOT_RUNNING"
	// ReasonInvalidImageRef: the image reference cannot be parsed.
	ReasonInvalidImageRef = "INVALID_IMAGE_REFERENCE"
	// ReasonImageNotFound: the registry has no such repository, tag or digest.
	ReasonImageNotFound = "IMAGE_NOT_FOUND"
	// ReasonRegistryUnavailable: the registry could not be reached or answered with a server error.
	ReasonRegistryUnavailable = "REGISTRY_UNAVAILABLE"
	// ReasonRegistryAuth: the registry refused our credentials or asked for some.
	ReasonRegistryAuth = "REGISTRY_AUTH_FAILED"
	// ReasonRegistryNotAllowed: the registry is not in the server's allowed list.
	ReasonRegistryNotAllowed = "REGISTRY_NOT_ALLOWED"
	// ReasonDigestMismatch: downloaded content does not match its digest, or was cut short.
	ReasonDigestMismatch = "IMAGE_DIGEST_MISMATCH"
	// ReasonPlatformNotAvailable: the image has no variant for this host's platform.
	ReasonPlatformNotAvailable = "IMAGE_PLATFORM_NOT_AVAILABLE"
	// ReasonImageInvalid: an image's content is malformed or unsafe (a layer tar that escapes its directory, an oversized config).
	ReasonImageInvalid = "IMAGE_INVALID"
	// ReasonImageInUse: the image cannot be removed while sandboxes use it.
	ReasonImageInUse = "IMAGE_IN_USE"
	// ReasonRuntimeError: the OCI runtime failed to create or run the container.
	ReasonRuntimeError = "RUNTIME_ERROR"
	// ReasonAgentUnavailable: the agent inside the sandbox does not answer.
	ReasonAgentUnavailable = "AGENT_UNAVAILABLE"
	// ReasonProcessNotFound: no process with that exec id exists in the sandbox.
	ReasonProcessNotFound = "PROCESS_NOT_FOUND"
	// ReasonCommandNotFound: the executable of a command does not exist in the sandbox.
	ReasonCommandNotFound = "COMMAND_NOT_FOUND"
	// ReasonFileNotFound: the path does not exist in the sandbox.
	ReasonFileNotFound = "FILE_NOT_FOUND"
	// ReasonInvalidPath: a path is empty, not absolute, or otherwise unusable.
	ReasonInvalidPath = "INVALID_PATH"
	// ReasonIsDirectory / ReasonNotDirectory: the path has the wrong type for the call.
	ReasonIsDirectory  = "IS_A_DIRECTORY"
	ReasonNotDirectory = "NOT_A_DIRECTORY"
	// ReasonFileExists: the target path exists already.
	ReasonFileExists = "FILE_EXISTS"
	// ReasonFilePermission: the sandbox's filesystem refused the operation.
	ReasonFilePermission = "FILE_PERMISSION_DENIED"
	// ReasonFileTooLarge: a file or a chunk exceeds a configured bound.
	ReasonFileTooLarge = "FILE_TOO_LARGE"
	// ReasonDiskLimit: the sandbox's disk limit (resources.disk_bytes) is reached.
	ReasonDiskLimit = "DISK_LIMIT_REACHED"
	// ReasonDiskPoolFull: the server's disk for all sandboxes is full, or its data dir's filesystem is below its reserve; retry after the delay given.
	ReasonDiskPoolFull = "DISK_POOL_FULL"
	// ReasonQuotaExceeded: a tenant or server limit was reached; retry later.
	ReasonQuotaExceeded = "QUOTA_EXCEEDED"
	// ReasonTooManyCalls: the tenant has as many calls in flight as the server allows; retry after the delay given.
	ReasonTooManyCalls = "TOO_MANY_CALLS"
	// ReasonCreateQueueFull: the server is creating as many sandboxes as it can and its queue is full; retry after the delay given.
	ReasonCreateQueueFull = "CREATE_QUEUE_FULL"
	// ReasonLifetimeTooLong: max_lifetime_seconds is zero, negative or over the maximum.
	ReasonLifetimeTooLong = "LIFETIME_OUT_OF_RANGE"
	// ReasonSessionNotFound: no session with that id exists (for this tenant).
	ReasonSessionNotFound = "SESSION_NOT_FOUND"
	// ReasonSessionClosed: the session has been closed; it takes no new sandboxes.
	ReasonSessionClosed = "SESSION_CLOSED"
	// ReasonUnauthenticated: no or an unknown API key.
	ReasonUnauthenticated = "UNAUTHENTICATED"
	// ReasonInternal: a bug or an unexpected host failure; see the server log.
	ReasonInternal = "INTERNAL"
	// ReasonStatsUnsupported: the server's runtime does not report sandboxes' resource usage.
	ReasonStatsUnsupported = "STATS_UNSUPPORTED"
)

// Convenience constructors for the common kinds.

// NotFound returns an ErrNotFound error.
func NotFound(reason, format string, args ...any) *Error {
	return Errorf(ErrNotFound, reason, format, args...)
}

// InvalidArgument returns an ErrInvalidArgument error.
func InvalidArgument(reason, format string, args ...any) *Error {
	return Errorf(ErrInvalidArgument, reason, format, args...)
}

// FailedPrecondition returns an ErrFailedPrecondition error.
func FailedPrecondition(reason, format string, args ...any) *Error {
	return Errorf(ErrFailedPrecondition, reason, format, args...)
}

// Unavailable returns an ErrUnavailable error.
func Unavailable(reason, format string, args ...any) *Error {
	return Errorf(ErrUnavailable, reason, format, args...)
}

// Internal returns an ErrInternal error.
func Internal(format string, args ...any) *Error {
	return Errorf(ErrInternal, ReasonInternal, format, args...)
}

// Reasons returned by the store (internal/store).
const (
	// ReasonRequestIDExists: the tenant already created a sandbox with that request id.
	ReasonRequestIDExists = "REQUEST_ID_ALREADY_USED"
	// ReasonSessionExists: a session with that id already exists.
	ReasonSessionExists = "SESSION_ALREADY_EXISTS"
	// ReasonTenantNotFound: no tenant with that id exists.
	ReasonTenantNotFound = "TENANT_NOT_FOUND"
	// ReasonTenantExists: a tenant with that id already exists.
	ReasonTenantExists = "TENANT_ALREADY_EXISTS"
	// ReasonAPIKeyNotFound: no API key with that id or hash exists.
	ReasonAPIKeyNotFound = "API_KEY_NOT_FOUND"
	// ReasonAPIKeyExists: an API key with that id or hash already exists.
	ReasonAPIKeyExists = "API_KEY_ALREADY_EXISTS"
	// ReasonInvalidPageToken: a list call's page token is malformed; start again without one.
	ReasonInvalidPageToken = "INVALID_PAGE_TOKEN"
)

// Reasons of the sandbox agent.
const (
	// ReasonAgentInitialized: Init was already applied to this sandbox; a sandbox starts once.
	ReasonAgentInitialized = "AGENT_ALREADY_INITIALIZED"
	// ReasonProcessExited: the call needs a running process, and this one has ended.
	ReasonProcessExited = "PROCESS_EXITED"
)

// Reasons of sandbox networking (internal/network).
const (
	// ReasonNetworkSetup: the host could not set up or remove a sandbox's network (bridge, veth, firewall).
	ReasonNetworkSetup = "NETWORK_SETUP_FAILED"
	// ReasonSubnetExhausted: the sandbox subnet has no free address, or the bridge no free port, left.
	ReasonSubnetExhausted = "NETWORK_SUBNET_EXHAUSTED"
	// ReasonNameResolverOff: the policy has allow_names, but the server does not run sbx's DNS resolver that enforces them.
	ReasonNameResolverOff = "NETWORK_NAME_RESOLVER_OFF"
	// ReasonNetworkRequired: published ports need sandbox networking, and this server runs with --network none.
	ReasonNetworkRequired = "NETWORK_REQUIRED"
	// ReasonTooManyPorts: the sandbox already publishes the most ports allowed (32).
	ReasonTooManyPorts = "TOO_MANY_PORTS"
	// ReasonPortNotListening: nothing in the sandbox accepts connections on the port.
	ReasonPortNotListening = "PORT_NOT_LISTENING"
)

// Reasons of the image service (internal/server).
const (
	// ReasonImageAdminRequired: the call changes the image cache that all tenants share, and the caller is not an image admin.
	ReasonImageAdminRequired = "IMAGE_ADMIN_REQUIRED"
	// ReasonImageTooLarge: an image's layers, compressed or unpacked, exceed the server's max image size.
	ReasonImageTooLarge = "IMAGE_TOO_LARGE"
	// ReasonImportTooLarge: an imported tarball exceeds the server's max import size.
	ReasonImportTooLarge = "IMAGE_IMPORT_TOO_LARGE"
	// ReasonImportAborted: the client abandoned an image import; nothing was stored.
	ReasonImportAborted = "IMAGE_IMPORT_ABORTED"
)

// Reasons of the secret store (internal/secrets).
const (
	// ReasonSecretNotFound: the tenant has no secret by that name; set it with `sbx secret set NAME`.
	ReasonSecretNotFound = "SECRET_NOT_FOUND"
	// ReasonTooManySecrets: the tenant already stores the most secrets allowed (1000); delete some first.
	ReasonTooManySecrets = "TOO_MANY_SECRETS"
	// ReasonSecretUnreadable: a stored secret cannot be decrypted with the server's key (the key was lost or replaced); set the secret again.
	ReasonSecretUnreadable = "SECRET_UNREADABLE"
	// ReasonSecretsUnavailable: this server runs without a secret store.
	ReasonSecretsUnavailable = "SECRETS_UNAVAILABLE"
)

// Reasons of tenant and API-key administration (internal/server/admin.go).
const (
	// ReasonAdminRequired: the call manages tenants or another tenant's keys, and the caller is not an admin tenant.
	ReasonAdminRequired = "ADMIN_REQUIRED"
	// ReasonTooManyTenants: the server already holds the most tenants allowed (10000).
	ReasonTooManyTenants = "TOO_MANY_TENANTS"
	// ReasonTooManyAPIKeys: the tenant already has the most API keys allowed (100); revoke some first.
	ReasonTooManyAPIKeys = "TOO_MANY_API_KEYS"
	// ReasonLastAdminKey: the key is the last one of an admin tenant; create another before revoking it.
	ReasonLastAdminKey = "LAST_ADMIN_KEY"
)
