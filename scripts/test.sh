#!/usr/bin/env bash
# test.sh runs sbx's whole test suite on Debian 12, as root: it installs the
# prerequisites (scripts/deps.sh), builds the cached test images, then runs
# go vet, gofmt, a check that gen/ matches api/, go test and the Python
# SDK's tests. Every check runs even if an earlier one failed; the script
# exits non-zero if any did.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin"
# Prerequisites are installed below, so a missing one is a failure, not a
# skip (see testenv.Require).
export CI="${CI:-true}"
# A CI checkout may belong to another user than root, and git then refuses
# to answer go build's VCS stamping; tests do not need the stamp.
case " ${GOFLAGS:-} " in *" -buildvcs="*) ;; *) export GOFLAGS="${GOFLAGS:-} -buildvcs=false" ;; esac
# SBX_TEST_PKGS narrows vet and go test to some packages while developing.
read -r -a PKGS <<<"${SBX_TEST_PKGS:-./...}"

failed=()
step() { printf '\n==> %s\n' "$*"; }
run() { # run NAME CMD...: run a check, remember a failure, carry on
	local name=$1 start=$SECONDS
	shift
	step "$name"
	if "$@"; then
		echo "--> $name: ok ($((SECONDS - start))s)"
	else
		echo "--> $name: FAILED ($((SECONDS - start))s)"
		failed+=("$name")
	fi
}

step "dependencies"
bash scripts/deps.sh

# Use the Go that deps.sh installed when the one on PATH is older than go.mod's.
want=$(awk '$1 == "go" { print $2; exit }' go.mod)
have=$(go env GOVERSION 2>/dev/null | sed 's/^go//') || have=""
if [ "$(printf '%s\n%s\n' "$want" "${have:-0}" | sort -V | head -n1)" != "$want" ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi

step "test images (the first build runs debootstrap, a few minutes; later runs use /var/cache/sbx-test)"
go run ./internal/testenv/cmd/sbx-testimages

gofmt_check() {
	local out rc=0
	out=$(find . \( -name .git -o -name testdata -o -name vendor -o -name node_modules \) -prune -o -name '*.go' -print0 | xargs -0 -r gofmt -l) || rc=$?
	if [ -n "$out" ]; then
		echo "not gofmt-formatted (run gofmt -w on them):"
		echo "$out"
		return 1
	fi
	return "$rc"
}

# gen/ must be what `make generate` makes from api/, with the plugin versions
# go.mod pins (built from the module cache, so no checksum database is needed).
# It generates into a temporary directory: the working tree is not touched.
gen_check() {
	local tmp rc=0
	tmp=$(mktemp -d)
	go build -o "$tmp/" google.golang.org/protobuf/cmd/protoc-gen-go connectrpc.com/connect/cmd/protoc-gen-connect-go &&
		PATH="$tmp:$PATH" make -s generate GEN_DIR="$tmp/gen" &&
		diff -r gen "$tmp/gen" || rc=$?
	rm -rf "$tmp"
	[ "$rc" = 0 ] || echo "gen/ is not what 'make generate' makes from api/: run make generate and commit gen/"
	return "$rc"
}

run "go vet" go vet "${PKGS[@]}"
run "gofmt" gofmt_check
if [ -d api ] && grep -q '^generate:' Makefile 2>/dev/null; then
	run "generated code" gen_check
fi
# One package at a time: the hygiene tests of internal/runtime/local and
# internal/network compare host-wide state (mounts, cgroups, links, nftables,
# network namespaces) before and after, and another package's sandboxes or
# test networks appearing meanwhile would make them fail. About 5 minutes.
run "go test" go test -p 1 -timeout 25m "${PKGS[@]}"

pytest_check() {
	local rc=0 py=python3
	# Debian's python3-pytest is in /usr/bin/python3, which another python3
	# earlier on PATH (pyenv, a venv) may hide.
	"$py" -c 'import pytest' 2>/dev/null || py=/usr/bin/python3
	# The SDK is imported from the tree (python/sbx), not an installed copy;
	# no cache dir, so the checkout stays clean.
	PYTHONPATH="python${PYTHONPATH:+:$PYTHONPATH}" "$py" -m pytest -q -p no:cacheprovider python/tests || rc=$?
	# 5 is pytest's "no tests collected": not a failure while the SDK has none.
	[ "$rc" = 0 ] || [ "$rc" = 5 ]
}
if [ -d python/tests ]; then
	run "pytest" pytest_check
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
	echo "FAILED: ${failed[*]}"
	exit 1
fi
echo "all checks passed (${SECONDS}s)"
