package agent

// WaitStreamsPrepared waits until the background connections that
// WaitReady opens for c's event streams are made (or failed), so that a
// test can change the agent's socket without the helper's client dialing
// the new one.
func WaitStreamsPrepared(c *Client) { c.preparing.Wait() }

// FDTransfers is how many reads and writes of this process went by
// descriptor (client_files_fd.go).
func FDTransfers() int64 { return fdTransfers.Load() }
