// Package image is sbx's image store: it pulls OCI and Docker images from
// registries (with mirrors, plain-HTTP registries and credentials from
// config), imports OCI layouts and image tarballs, and keeps a
// content-addressed cache of unpacked layers under one root directory, ready
// to be stacked as overlayfs lowerdirs.
//
// Layout of Root (paths are short on purpose: an overlay mount option string
// must stay under 4096 bytes with ~40 lowerdirs):
//
//	<root>/l/<16 hex of diffID>/        one unpacked layer (whiteouts in overlayfs form)
//	<root>/l/<16 hex>.json              the layer's record: full diffID, size
//	<root>/i/<sha256 of ref>.json       ref -> manifest digest (the tag index)
//	<root>/m/<manifest hex>.json        manifest digest -> config, layer diffIDs, size
//	<root>/u/<manifest hex>/<holder>    one empty file per holder using the image
//	<root>/t/                           temp dirs of pulls in progress; GC removes leftovers
//
// The runtime calls Get for the image of a sandbox, Use(digest, sandboxID)
// before mounting its Layers, and Release when the sandbox is gone; Remove
// refuses images in use, and GC frees the layers that no image references.
//
// A layer dir appears under l/ only by rename from t/ after its content was
// verified against its digest and unpacked completely, so nothing half-written
// is ever visible in the cache.
package image

import (
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Config configures a Store. It is built by cmd/ from the server config.
type Config struct {
	// Root is the cache root, e.g. <data-dir>/images.
	Root string
	// UsesDir is where the uses of images by sandboxes are recorded (Use):
	// a dir per manifest digest, an empty file per holder. Empty means
	// <Root>/u. sbx serve gives one in its run root, a tmpfs: uses end
	// with their sandboxes, which no reboot keeps, and on the disk each
	// sandbox cost a file created and removed. New moves the uses of
	// <Root>/u (an earlier server's) into it.
	UsesDir string
	// Mirrors maps a registry host ("docker.io") to mirror endpoints
	// ("http://127.0.0.1:5000") tried in order before the registry itself.
	Mirrors map[string][]string
	// Insecure lists registry hosts (host[:port]) allowed over plain HTTP.
	Insecure []string
	// Auth maps a registry host to its credentials.
	Auth map[string]Credentials
	// AllowedRegistries, when not empty, lists the only registry hosts
	// (host[:port], mirrors included) the store may contact. A reference
	// whose registry and mirrors are all outside it fails with
	// PermissionDenied REGISTRY_NOT_ALLOWED before any network traffic.
	// It keeps users from making the server fetch from internal addresses,
	// and keeps air-gapped servers (and tests) from trying the internet when
	// a mirror lacks an image.
	AllowedRegistries []string
	// Platform is the platform to pick from multi-platform images; nil means
	// linux/runtime.GOARCH.
	Platform *v1.Platform
	// MaxImageBytes bounds an image: the compressed sizes its manifest
	// declares for its layers (checked before any download) and the file
	// content its layers unpack to (checked while unpacking, so a layer
	// that decompresses to far more stops at the bound). 0: no bound.
	MaxImageBytes int64
	// OnPull, when set, is called once after every pull from a registry
	// (concurrent callers of one reference share a pull, and count once;
	// Get from the cache is no pull) with the normalized reference, how
	// long it took and its error (nil on success). It is for metrics; it
	// must not block.
	OnPull func(ref string, d time.Duration, err error)
}

// Credentials authenticate to a private registry: a username and password,
// or a bearer/identity token.
type Credentials struct{ Username, Password, Token string }

// Image is an image in the store, unpacked and ready to run.
type Image struct {
	// Ref is the normalized reference, e.g. "docker.io/library/python:3.11"
	// or "docker.io/library/python@sha256:...".
	Ref string
	// Digest is the manifest digest ("sha256:...").
	Digest string
	// Config is what the image says about how to run it.
	Config sandbox.ImageConfig
	// Layers are the absolute dirs of the unpacked layers, bottom first,
	// ready as overlay lowerdirs (overlayfs wants them top first: reverse).
	Layers []string
	// Size is the number of unpacked bytes.
	Size int64
	// Created is the image's creation time from its config.
	Created time.Time
}

// Progress is one pull progress event. The progress callbacks of Get, Pull
// and Import are never called concurrently for one call.
type Progress struct {
	// Ref is the normalized reference being pulled; Layer is a layer digest,
	// empty for image-wide events.
	Ref, Layer string
	// Done and Total are bytes (compressed, as transferred) of Layer.
	Done, Total int64
	// Status is "resolving", "downloading", "unpacking", "cached" or "done".
	Status string
}

// The Progress statuses.
const (
	StatusResolving   = "resolving"
	StatusDownloading = "downloading"
	StatusUnpacking   = "unpacking"
	StatusCached      = "cached"
	StatusDone        = "done"
)
