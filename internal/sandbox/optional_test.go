package sandbox_test

import (
	"testing"

	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/sandbox"
)

type admitting struct{ *lifecycletest.Runtime }

func (admitting) Admit() error { return nil }

type wrapper struct{ sandbox.Runtime }

func (w wrapper) Unwrap() sandbox.Runtime { return w.Runtime }

// TestOptionalOf: an optional interface is found on the runtime itself and
// through wrappers, and not where no runtime implements it.
func TestOptionalOf(t *testing.T) {
	inner := admitting{lifecycletest.NewRuntime()}
	for _, rt := range []sandbox.Runtime{inner, wrapper{inner}, wrapper{wrapper{inner}}} {
		if _, ok := sandbox.OptionalOf[sandbox.Admitter](rt); !ok {
			t.Errorf("%T: the Admitter inside was not found", rt)
		}
	}
	if _, ok := sandbox.OptionalOf[sandbox.Admitter](wrapper{lifecycletest.NewRuntime()}); ok {
		t.Error("found an Admitter where none is")
	}
	if _, ok := sandbox.OptionalOf[sandbox.StatsReader](wrapper{inner}); ok {
		t.Error("found a StatsReader where none is")
	}
}
