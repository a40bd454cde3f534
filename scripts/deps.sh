#!/usr/bin/env bash
# deps.sh installs everything sbx's test suite needs on Debian 12, as root:
# the system packages from apt and, if missing or too old, the Go toolchain
# that go.mod asks for. It is idempotent: a second run changes nothing and
# takes a second. Output is quiet; errors are shown in full.
set -euo pipefail
cd "$(dirname "$0")/.."

# Why each package is here:
#   crun runc runsc      OCI runtimes the local runtime drives (crun default)
#   busybox-static       /bin/busybox, the test busybox image
#   debootstrap          the Debian python3 test image
#   iproute2 procps util-linux  netns, process and mount checks in tests
#   btrfs-progs          mkfs.btrfs for the disk pool (per-sandbox disk limits)
#   protobuf-compiler libprotobuf-dev  `make generate` (api/*.proto; the second
#                        has the well-known types, e.g. google/protobuf/timestamp.proto,
#                        which --no-install-recommends leaves out)
#   nftables             `nft`, with which the Python tests remove their servers' tables
#   postgresql           the store's PostgreSQL tests run against a real server
#   gcc libc6-dev        cgo for `go test -race`
#   python3 python3-pytest  the Python SDK and its tests
#   openssl              the Python TLS test's certificate (python/tests/test_tls.py)
#   git make ca-certificates curl unzip  builds, and fetching Go if needed
PACKAGES=(
	crun runc runsc busybox-static debootstrap
	iproute2 procps util-linux btrfs-progs
	protobuf-compiler libprotobuf-dev nftables postgresql
	gcc libc6-dev make git ca-certificates curl unzip
	python3 python3-pytest openssl
)

log() { echo "deps: $*" >&2; }
die() { echo "deps: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages with apt-get)"
command -v apt-get >/dev/null || die "this script is for Debian 12 (bookworm); apt-get not found"

missing=()
for p in "${PACKAGES[@]}"; do
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	out=$(mktemp)
	trap 'rm -f "$out"' EXIT
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get update -qq >"$out" 2>&1; then
		cat "$out" >&2
		die "apt-get update failed (is a Debian mirror reachable? see above)"
	fi
	if ! apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$out" 2>&1; then
		cat "$out" >&2
		die "apt-get install failed (see above)"
	fi
else
	log "system packages present"
fi

# Go: the version go.mod names, or newer.
want=$(awk '$1 == "go" { print $2; exit }' go.mod)
[ -n "$want" ] || die "no go directive in go.mod"
# SBX_GO_DIR exists so the installer can be tried without touching /usr/local/go.
GO_DIR=${SBX_GO_DIR:-/usr/local/go}
export PATH="$PATH:$GO_DIR/bin"

have=""
if command -v go >/dev/null; then
	have=$(go env GOVERSION 2>/dev/null | sed 's/^go//') || have=""
fi

version_ok() { # $1 >= $2
	[ -n "$1" ] && [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# The toolchain zip served by the Go module proxy (golang.org/toolchain is
# how `go` itself downloads toolchains), pinned by checksum because the
# checksum database may not be reachable from CI.
declare -A GO_ZIP_SHA256=(
	[1.26.8.linux-amd64]=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
)

install_go() {
	local arch key sum proxy url tmp
	arch=$(dpkg --print-architecture)
	key="$want.linux-$arch"
	sum=${GO_ZIP_SHA256[$key]:-}
	[ -n "$sum" ] || return 1
	proxy=${GOPROXY:-https://proxy.golang.org}
	proxy=${proxy%%,*}
	[ "$proxy" != direct ] && [ "$proxy" != off ] || proxy=https://proxy.golang.org
	url="$proxy/golang.org/toolchain/@v/v0.0.1-go$key.zip"
	log "installing Go $want into $GO_DIR from $url"
	tmp=$(mktemp -d)
	if ! curl -fsSL --retry 3 -o "$tmp/go.zip" "$url"; then
		rm -rf "$tmp"
		return 1
	fi
	if ! echo "$sum  $tmp/go.zip" | sha256sum -c --quiet >/dev/null 2>&1; then
		rm -rf "$tmp"
		die "the Go toolchain from $url does not match its pinned checksum; not installing it"
	fi
	unzip -q "$tmp/go.zip" -d "$tmp/x"
	# Module zips do not keep file modes.
	chmod +x "$tmp/x/golang.org/toolchain@v0.0.1-go$key"/bin/* "$tmp/x/golang.org/toolchain@v0.0.1-go$key"/pkg/tool/*/*
	mkdir -p "$(dirname "$GO_DIR")"
	rm -rf "$GO_DIR.new" "$GO_DIR.old"
	mv "$tmp/x/golang.org/toolchain@v0.0.1-go$key" "$GO_DIR.new"
	if [ -e "$GO_DIR" ]; then mv "$GO_DIR" "$GO_DIR.old"; fi
	mv "$GO_DIR.new" "$GO_DIR"
	rm -rf "$tmp" "$GO_DIR.old"
	hash -r
}

if ! version_ok "$have" "$want"; then
	if ! install_go; then
		die "Go $want or newer is needed (found: ${have:-none}). Install it from https://go.dev/dl/:
  curl -fsSL https://go.dev/dl/go$want.linux-$(dpkg --print-architecture).tar.gz | tar -C /usr/local -xz
then add /usr/local/go/bin to PATH and run this script again."
	fi
	have=$("$GO_DIR/bin/go" env GOVERSION | sed 's/^go//')
	version_ok "$have" "$want" || die "installed Go reports $have, want $want"
	if [ "$(command -v go)" != "$GO_DIR/bin/go" ]; then
		log "note: an older go comes first on PATH; put $GO_DIR/bin first (scripts/test.sh does)"
	fi
	log "go $have at $GO_DIR/bin/go"
else
	log "go $have at $(command -v go)"
fi

# A static crun (scripts/build-crun.sh): about 10 ms less per sandbox start.
# Without it sbx runs Debian's crun, so a failed build is a warning here
# (TestStaticCrun fails in CI).
if ! scripts/build-crun.sh; then
	log "warning: the static crun was not built; sbx serve runs Debian's crun (slower to start sandboxes)"
fi
