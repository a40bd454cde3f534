package local

import (
	"context"
	"os"
	"path/filepath"
)

// deleteContainer removes the OCI runtime's container of the sandbox rec
// describes. recorded says rec's PID 1 is the one Create recorded after the
// runtime's run returned, not one read back from a pid file.
//
// A crun container whose recorded PID 1 is gone is removed by deleting
// crun's state dir (<root>/<id>: its status, config copy and seccomp
// program) ourselves. That is all `crun delete` would still do for it but
// remove its cgroups, which release removes right after (killing whatever
// might be left in them): when a PID namespace's init exits the kernel
// kills every other process of the namespace and waits for them before
// init itself becomes a zombie, so nothing of the container runs any more.
// `crun delete` costs about 30 ms of CPU per sandbox here: its dynamic
// loader, and the v1 freezer it writes on the way, whose first and last
// users toggle a static key, which rewrites kernel text on every CPU.
//
// Everything else (a live PID 1, one we only know from the pid file of a
// killed Create, runc, runsc, and recovery's orphans) goes through the
// runtime's own delete.
func (r *Runtime) deleteContainer(ctx context.Context, rec record, recorded bool) error {
	if r.oci.name == "crun" && recorded && rec.PID > 0 && !alive(rec.PID, rec.PIDStart) {
		return os.RemoveAll(filepath.Join(r.oci.root, rec.ID))
	}
	return r.oci.delete(ctx, rec.ID)
}
