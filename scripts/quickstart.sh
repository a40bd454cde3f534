#!/usr/bin/env bash
# quickstart.sh: from a fresh Debian 12 machine (as root) to a sandbox
# printing "hello from sbx". It installs the dependencies (scripts/deps.sh),
# builds bin/sbx and bin/sbx-agent, starts `sbx serve` on its embedded
# defaults in the background (log: /var/log/sbx-serve.log), makes sure
# python:3.11 can be had, and runs a sandbox. Running it again reuses what
# is there.
#
# Where Docker Hub is unreachable, python:3.11 (and busybox) are built from
# Debian packages with debootstrap and served from a registry on
# 127.0.0.1:7421 (bin/sbx-offline-registry), which the server uses as its
# docker.io mirror.
set -euo pipefail
cd "$(dirname "$0")/.."

LOG=/var/log/sbx-serve.log
REGISTRY_LOG=/var/log/sbx-offline-registry.log
REGISTRY=127.0.0.1:7421
URL=http://127.0.0.1:7420

say() { echo "quickstart: $*" >&2; }
die() { echo "quickstart: ERROR: $*" >&2; exit 1; }
up() { curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null; }
# The offline registry is ready once python:3.11 is pushed, not when it listens.
registry_ready() { curl -fsS -m 2 "http://$REGISTRY/v2/library/python/tags/list" 2>/dev/null | grep -q '"3.11"'; }

[ "$(id -u)" = 0 ] || die "run as root: sbx creates containers, mounts and cgroups"

scripts/deps.sh
export PATH=/usr/local/go/bin:$PATH

say "building bin/sbx and bin/sbx-agent"
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -o bin/sbx ./cmd/sbx
CGO_ENABLED=0 go build -trimpath -o bin/sbx-agent ./cmd/sbx-agent

# Docker Hub answers /v2/ with 401 when reachable; any HTTP answer will do.
mirror=()
if curl -sS -m 5 -o /dev/null https://registry-1.docker.io/v2/ 2>/dev/null; then
	say "Docker Hub is reachable: images are pulled from docker.io"
else
	say "Docker Hub is unreachable: serving python:3.11 built from Debian packages on $REGISTRY"
	if ! registry_ready; then
		CGO_ENABLED=0 go build -trimpath -o bin/sbx-offline-registry ./internal/testenv/cmd/sbx-offline-registry
		say "building the image with debootstrap (a few minutes the first time; progress in $REGISTRY_LOG)"
		setsid nohup bin/sbx-offline-registry -listen "$REGISTRY" >>"$REGISTRY_LOG" 2>&1 </dev/null &
		echo $! >/run/sbx-offline-registry.pid
		for _ in $(seq 1 900); do
			registry_ready && break
			kill -0 $! 2>/dev/null || { tail -20 "$REGISTRY_LOG" >&2; die "the offline registry failed (see $REGISTRY_LOG)"; }
			sleep 1
		done
		registry_ready || die "the offline registry did not start in 15 minutes (see $REGISTRY_LOG)"
	fi
	mirror=(--registry-mirror "docker.io=http://$REGISTRY")
fi

if up "$URL/healthz"; then
	say "sbx serve is already running at $URL"
else
	say "starting sbx serve (log: $LOG)"
	setsid nohup "$PWD/bin/sbx" serve "${mirror[@]}" >>"$LOG" 2>&1 </dev/null &
	echo $! >/run/sbx-serve.pid
	for _ in $(seq 1 120); do
		up "$URL/healthz" && break
		kill -0 $! 2>/dev/null || { tail -20 "$LOG" >&2; die "sbx serve exited (see $LOG)"; }
		sleep 0.5
	done
	up "$URL/healthz" || { tail -20 "$LOG" >&2; die "sbx serve did not answer on $URL within 60s (see $LOG)"; }
fi

say "running a sandbox (the first run pulls python:3.11)"
bin/sbx run --image python:3.11 -- python3 -c 'print("hello from sbx")'

cat >&2 <<'NEXT'

sbx is running. Try next:
  bin/sbx run -d --image python:3.11 --lifetime 30m       # an idle sandbox; prints its id
  bin/sbx exec SANDBOX python3 -c 'import sys; print(sys.version)'
  bin/sbx cp ./some-dir SANDBOX:/work                      # files in (and out with SANDBOX:/path .)
  bin/sbx ls ; bin/sbx logs SANDBOX ; bin/sbx stop SANDBOX ; bin/sbx rm SANDBOX
  key=$(sed -n 's/.*"api_key": *"\([^"]*\)".*/\1/p' ~/.config/sbx/credentials)
  curl -s -H "Authorization: Bearer $key" http://127.0.0.1:7420/metrics | grep ^sbx_   # Prometheus metrics (admins)
The API key is in ~/.config/sbx/credentials (the CLI and the Go SDK read it).
Sandboxes get their own network (bridge sbx0, subnet 10.203.0.0/16, nftables table sbx): the
internet yes; this host, private ranges, cloud metadata and other sandboxes no
(bin/sbx run --deny-egress / --allow-cidr CIDR[:PORT,...] change that per sandbox).
A second server on this host needs its own --network-bridge, --network-subnet and
--network-table (or --network none).
The server keeps running in the background; stop it with: kill $(cat /run/sbx-serve.pid)
(its sandboxes keep running, and the next start re-attaches to them).
NEXT
