package local

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The sandbox's /etc/hosts and /etc/hostname, written into its dir and
// bind-mounted, as Docker, Podman and the kubelet do: images rarely ship
// them, and without them neither "localhost" nor the sandbox's own name
// resolves (servers that listen on localhost, and every tool that looks up
// its own hostname, fail).
const (
	hostsFile    = "hosts"
	hostnameFile = "hostname"
)

// hostsLoopbackName is where the sandbox's name points until its network
// is set up, and always without a network: a loopback address, as Debian
// does for a host without a fixed address.
var hostsLoopbackName = netip.MustParseAddr("127.0.1.1")

// etcMounts writes dir/hosts and dir/hostname for the sandbox id and
// returns the bind mounts that put them in /etc. /etc/hosts is writable, as
// elsewhere: a sandbox may add names of its own.
func etcMounts(dir, id string) ([]specs.Mount, error) {
	if err := writeHosts(dir, id, hostsLoopbackName); err != nil {
		return nil, err
	}
	hostname := filepath.Join(dir, hostnameFile)
	if err := os.WriteFile(hostname, []byte(id+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write /etc/hostname: %w", err)
	}
	opts := []string{"bind", "nosuid", "nodev", "noexec"}
	return []specs.Mount{
		{Destination: "/etc/hosts", Type: "bind", Source: filepath.Join(dir, hostsFile), Options: append([]string{"rw"}, opts...)},
		{Destination: "/etc/hostname", Type: "bind", Source: hostname, Options: append([]string{"ro"}, opts...)},
	}, nil
}

// writeHosts writes the hosts file with the sandbox's name at addr. It
// rewrites the file in place, never by rename: once the container runs,
// its bind mount holds the file's inode.
func writeHosts(dir, id string, addr netip.Addr) error {
	var b strings.Builder
	b.WriteString("# written by sbx\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	fmt.Fprintf(&b, "%s\t%s\n", addr, id)
	f, err := os.OpenFile(filepath.Join(dir, hostsFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("write /etc/hosts: %w", err)
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write /etc/hosts: %w", err)
	}
	return nil
}
