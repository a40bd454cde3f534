package agent_test

import (
	"os"
	"testing"

	"github.com/sbx-run/sbx/internal/testenv"
)

// TestMain removes the binaries the tests built (testenv.Binary).
func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }
