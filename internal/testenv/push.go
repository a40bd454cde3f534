package testenv

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// PushImage pushes img to the plain-HTTP registry at registryHost as repoTag
// (for example "library/busybox:latest") and returns the full reference,
// "127.0.0.1:PORT/library/busybox:latest".
func PushImage(t testing.TB, registryHost, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := Push(context.Background(), registryHost, repoTag, img)
	if err != nil {
		t.Fatalf("push test image: %v", err)
	}
	return ref
}

// Push is PushImage for use outside tests.
func Push(ctx context.Context, registryHost, repoTag string, img v1.Image) (string, error) {
	ref, err := name.ParseReference(registryHost+"/"+repoTag, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("reference %q: %w", registryHost+"/"+repoTag, err)
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return ref.String(), nil
}

// PushIndex pushes a multi-platform index (with its images) as repoTag and
// returns the full reference.
func PushIndex(t testing.TB, registryHost, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref, err := name.ParseReference(registryHost+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatalf("reference %q: %v", registryHost+"/"+repoTag, err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	return ref.String()
}

// PushBusybox pushes BusyboxImage as library/busybox:latest and returns
// "HOST/library/busybox:latest".
func PushBusybox(t testing.TB, registryHost string) string {
	t.Helper()
	return PushImage(t, registryHost, "library/busybox:latest", BusyboxImage(t))
}

// PushPython pushes PythonImage as library/python:3.11 (the name users
// ask for) and returns "HOST/library/python:3.11".
func PushPython(t testing.TB, registryHost string) string {
	t.Helper()
	return PushImage(t, registryHost, "library/python:3.11", PythonImage(t))
}

// ExportOCILayout writes img into a new OCI image layout directory dir,
// annotated with refName (org.opencontainers.image.ref.name, e.g. "busybox:latest"
// or "latest") when it is not empty, and returns dir.
func ExportOCILayout(t testing.TB, dir, refName string, img v1.Image) string {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatalf("create OCI layout %s: %v", dir, err)
	}
	var opts []layout.Option
	if refName != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": refName}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		t.Fatalf("write image to OCI layout %s: %v", dir, err)
	}
	return dir
}

// SaveTarball writes img to path in the `docker save` format, tagged ref
// (for example "busybox:latest"), and returns path.
func SaveTarball(t testing.TB, path, ref string, img v1.Image) string {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatalf("tag %q: %v", ref, err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatalf("save %s to %s: %v", ref, path, err)
	}
	return path
}
