// Command sbx-offline-registry serves sbx's Debian-built images from an OCI
// registry on loopback, for machines that cannot reach Docker Hub: it builds
// (or takes from the cache) the busybox image and the debootstrap python3
// image, serves them as library/busybox:latest and library/python:3.11, and
// runs until killed. Point sbx serve at it as a mirror:
//
//	sbx-offline-registry -listen 127.0.0.1:5000 &
//	sbx serve --registry-mirror docker.io=http://127.0.0.1:5000
//
// so `python:3.11` resolves without the internet. scripts/quickstart.sh
// uses it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sbx-run/sbx/internal/testenv"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5000", "address to serve the registry on (loopback)")
	flag.Parse()
	if err := run(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "sbx-offline-registry:", err)
		os.Exit(1)
	}
}

func run(listen string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	busybox, err := testenv.NewBusyboxImage()
	if err != nil {
		return err
	}
	python, err := testenv.NewPythonImage(os.Stderr)
	if err != nil {
		return err
	}
	host, stopRegistry, err := testenv.ServeRegistry(listen)
	if err != nil {
		return err
	}
	defer stopRegistry()
	if _, err := testenv.Push(ctx, host, "library/busybox:latest", busybox); err != nil {
		return err
	}
	if _, err := testenv.Push(ctx, host, "library/python:3.11", python); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "sbx-offline-registry: serving library/busybox:latest and library/python:3.11 on http://%s\n", host)
	<-ctx.Done()
	return nil
}
