package sqlite_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sbx-run/sbx/internal/store/sqlite"
)

// crashWriterEnv makes the test binary act as a writer process that prints
// each sandbox id once its create has committed, until it is killed.
const crashWriterEnv = "SBX_SQLITE_CRASH_WRITER"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashWriterEnv); path != "" {
		crashWriter(path)
		return
	}
	os.Exit(m.Run())
}

func crashWriter(path string) {
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		if err := s.CreateSandbox(context.Background(), benchSandbox(i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(benchSandbox(i).ID)
	}
}

// A kill -9 of the writing process loses no create it acknowledged.
func TestKill9LosesNoCommittedWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sbx.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashWriterEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for len(acked) < 200 && sc.Scan() {
		acked = append(acked, sc.Text())
	}
	cmd.Process.Kill() // SIGKILL, mid-write
	cmd.Wait()
	if len(acked) < 200 {
		t.Fatalf("writer stopped after %d creates", len(acked))
	}

	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer s.Close()
	for _, id := range acked {
		if _, err := s.GetSandbox(t.Context(), "t1", id); err != nil {
			t.Fatalf("acknowledged create of %s lost after kill -9: %v", id, err)
		}
	}
}
