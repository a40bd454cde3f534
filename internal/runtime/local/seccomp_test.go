package local

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestSeccompBPF: the first crun sandbox gets the seccomp profile, which
// crun compiles; later ones get crun's compiled program of it through the
// annotation, and are as confined.
func TestSeccompBPF(t *testing.T) {
	rt := newRuntime(t, "crun")
	h := harness(t, rt, sandbox.Resources{})
	first, firstAg := runtimetest.Create(t, h, "bpf")
	if rt.seccompBPF.Load() == nil {
		t.Fatal("the compiled seccomp program of the first sandbox was not kept")
	}
	firstBPF, err := os.ReadFile(filepath.Join(rt.oci.root, first, "seccomp.bpf"))
	if err != nil {
		t.Fatal(err)
	}
	second, ag := runtimetest.Create(t, h, "bpf")

	b, _ := rt.lookup(second)
	js, err := os.ReadFile(filepath.Join(b.dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(js, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Linux.Seccomp != nil || spec.Annotations[seccompBPFAnnotation] == "" {
		t.Fatalf("second sandbox: profile %v, annotation %d bytes; want the annotation only", spec.Linux.Seccomp != nil, len(spec.Annotations[seccompBPFAnnotation]))
	}
	secondBPF, err := os.ReadFile(filepath.Join(rt.oci.root, second, "seccomp.bpf"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(firstBPF, secondBPF) {
		t.Errorf("the second sandbox's program (%d bytes) differs from the first's (%d bytes)", len(secondBPF), len(firstBPF))
	}

	// The same filter, loaded the same way: the same mode, count of
	// filters and speculation mitigations (which seccomp's flags decide).
	const status = "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs|Speculation_Store_Bypass|SpeculationIndirectBranch):' /proc/self/status"
	want, got := sh(t, firstAg, status), sh(t, ag, status)
	t.Logf("first sandbox:\n%s", want.Stdout)
	if !strings.Contains(got.Stdout, "Seccomp:\t2") || got.Stdout != want.Stdout {
		t.Errorf("second sandbox:\n%s\nfirst sandbox:\n%s", got.Stdout, want.Stdout)
	}
	// Creating a user namespace needs no capability: only the filter
	// stops it.
	for _, flags := range []string{"-U", "-n", "-m", "-p -f"} {
		if r := sh(t, ag, "unshare "+flags+" true"); r.Exit.Code == 0 {
			t.Errorf("unshare %s succeeded", flags)
		}
	}
	if r := sh(t, ag, "true"); r.Exit.Code != 0 {
		t.Errorf("true failed: %+v", r)
	}
}

// TestSeccompBPFOnlyCrun: runc and runsc ignore crun's annotation, so
// they always get the profile.
func TestSeccompBPFOnlyCrun(t *testing.T) {
	for _, name := range []string{"runc", "runsc"} {
		r := &Runtime{oci: &ociRuntime{name: name}}
		bpf := "AAAA"
		r.seccompBPF.Store(&bpf)
		spec := &specs.Spec{Linux: &specs.Linux{Seccomp: seccompProfile()}}
		r.useSeccompBPF(spec)
		if spec.Linux.Seccomp == nil || spec.Annotations[seccompBPFAnnotation] != "" {
			t.Errorf("%s: the profile was replaced", name)
		}
	}
}
