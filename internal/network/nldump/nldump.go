// Package nldump retries netlink dumps that the kernel interrupted.
//
// A dump of links, addresses or routes is answered in several messages;
// when the list changes meanwhile (a container's veth comes or goes), the
// kernel marks the answer NLM_F_DUMP_INTR and vishvananda/netlink returns
// what it got with ErrDumpInterrupted. On a host where sandboxes start and
// end all the time that happens, so every dump sbx decides on is retried
// until it is whole.
package nldump

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Tries is how many times Retry asks before it gives up.
const Tries = 20

// Retry calls list until its answer is not interrupted, at most Tries
// times, and returns the last answer.
func Retry[T any](list func() ([]T, error)) ([]T, error) {
	for i := 1; ; i++ {
		v, err := list()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
		if i == Tries {
			return v, fmt.Errorf("the list changed during each of %d tries: %w", Tries, err)
		}
	}
}
