package local

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// startSleep starts `sleep secs` and returns its pid and start time; the
// test reaps it.
func startSleep(t *testing.T, secs string) (int, uint64, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command("sleep", secs)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	t.Cleanup(func() { cmd.Process.Kill() })
	_, start, err := pidStart(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid, start, cmd
}

func TestWaitExited(t *testing.T) {
	ctx := context.Background()
	t.Run("exits", func(t *testing.T) {
		pid, start, _ := startSleep(t, "0.2")
		if !waitExited(ctx, pid, start, 10*time.Second) {
			t.Fatal("waitExited = false for a process that exited")
		}
		if alive(pid, start) {
			t.Fatal("waitExited returned while the process was alive")
		}
	})
	t.Run("killed", func(t *testing.T) {
		pid, start, cmd := startSleep(t, "60")
		go func() { time.Sleep(100 * time.Millisecond); cmd.Process.Kill() }()
		if !waitExited(ctx, pid, start, 10*time.Second) || alive(pid, start) {
			t.Fatal("waitExited did not see the killed process go")
		}
	})
	t.Run("still running", func(t *testing.T) {
		pid, start, _ := startSleep(t, "60")
		if waitExited(ctx, pid, start, 50*time.Millisecond) {
			t.Fatal("waitExited = true for a running process")
		}
	})
	t.Run("ctx ends", func(t *testing.T) {
		pid, start, _ := startSleep(t, "60")
		ctx, cancel := context.WithCancel(ctx)
		go func() { time.Sleep(50 * time.Millisecond); cancel() }()
		done := make(chan bool)
		go func() { done <- waitExited(ctx, pid, start, time.Minute) }()
		select {
		case got := <-done:
			if got {
				t.Fatal("waitExited = true for a running process")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("waitExited did not return when its context ended")
		}
	})
	t.Run("reused pid", func(t *testing.T) {
		pid, start, _ := startSleep(t, "60")
		if !waitExited(ctx, pid, start+1, time.Minute) {
			t.Fatal("waitExited = false for a pid that is another process now")
		}
	})
	t.Run("no such pid", func(t *testing.T) {
		if !waitExited(ctx, 1<<22+1, 1, time.Minute) || !waitExited(ctx, 0, 0, time.Minute) {
			t.Fatal("waitExited = false for a pid that does not exist")
		}
	})
}
