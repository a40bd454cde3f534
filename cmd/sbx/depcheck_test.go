package main

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestClientCommandsUseOnlyTheSDK enforces that the CLI's client commands
// are built on the Go SDK alone: no file of package main except serve.go
// (and serve_*.go, which wire the server) imports sbx's internal packages or
// generated wire code. The fakeapi test double is for tests only.
func TestClientCommandsUseOnlyTheSDK(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no Go files found: run the test from cmd/sbx")
	}
	wire := []string{"github.com/sbx-run/sbx/internal", "github.com/sbx-run/sbx/gen"}
	for _, name := range files {
		switch {
		case name == "serve.go" || strings.HasPrefix(name, "serve_"):
		case strings.HasSuffix(name, "_test.go"):
			// Tests may use the fake API, which is not part of the binary;
			// they still must not reach into internal packages or wire types.
			checkImports(t, name, wire)
		default:
			checkImports(t, name, append(wire, "github.com/sbx-run/sbx/cmd/sbx/fakeapi"))
		}
	}
}

func checkImports(t *testing.T, name string, forbidden []string) {
	t.Helper()
	src, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		for _, bad := range forbidden {
			if path == bad || strings.HasPrefix(path, bad+"/") {
				t.Errorf("%s imports %s: client commands must use only the Go SDK (github.com/sbx-run/sbx); add what is missing to the SDK instead", name, path)
			}
		}
	}
}
