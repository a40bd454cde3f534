// Command sbx-testimages builds sbx's offline test images: the busybox image
// from Debian's busybox-static and the Debian python3 image made with
// debootstrap (cached under /var/cache/sbx-test). scripts/test.sh runs it
// before go test so that the slow first debootstrap happens once with its
// progress on the terminal, instead of inside a test whose output go test
// holds back until the package finishes. (sbx-offline-registry serves the
// same images from a registry.)
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/sbx-run/sbx/internal/testenv"
)

func main() {
	python := flag.Bool("python", true, "build the python image too")
	flag.Parse()

	start := time.Now()
	if _, err := testenv.NewBusyboxImage(); err != nil {
		fail(err)
	}
	if *python {
		if _, err := testenv.NewPythonImage(os.Stderr); err != nil {
			fail(err)
		}
	}
	fmt.Fprintf(os.Stderr, "sbx-testimages: test images ready in %s (cache %s)\n", time.Since(start).Round(time.Second), testenv.CacheDir())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sbx-testimages:", err)
	os.Exit(1)
}
