package agent

// WaitStreamsPrepared waits until the background connections that
// WaitReady opens for c's event streams are made (or failed), so that a
// test can change the agent's socket without the helper's client dialing
// the new one.
func WaitStreamsPrepared(c *Client) { c.preparing.Wait() }

// FDTransfers is how many reads and writes of this process went by
// descriptor (client_files_fd.go).
func FDTransfers() int64 { return fdTransfers.Load() }

// UnlinkDropping is unlinkDropping (droppages.go) for the files of the
// overlay mounted at root, mapped by no process but those in proc.
func UnlinkDropping(root, proc, path string, unlink func() error) error {
	return (&pageDropper{root: root, proc: proc}).unlink(path, unlink)
}

// UpperDev is the device number of files made in the upper layer of the
// overlay at root, 0 for no overlay (pageDropper.upperDev).
func UpperDev(root string) uint64 { return (&pageDropper{root: root}).upperDev() }
