#!/usr/bin/env bash
# build-crun.sh builds crun as one static binary, from Debian's source of
# the crun package installed here (same version, same Debian patches), into
# /usr/local/libexec/sbx/crun, where `sbx serve` looks first (docs/BENCHMARKS.md,
# "Cold create"). Debian's crun is dynamically linked to ten libraries,
# libsystemd and its compression and crypto libraries among them: on a VM,
# where every page a new process touches costs a fault, loading them is a
# third of `crun run`. The static build, without the systemd cgroup driver
# (sbx uses cgroupfs), starts in about 5 ms instead of 11.
#
# It is idempotent: it does nothing when the binary of the installed crun
# version is there. On failure it says why and exits 1; sbx then runs
# Debian's crun, slower but the same. Run as root, after deps.sh installed crun.
# SBX_CRUN_DIR installs elsewhere (tests of this script).
set -euo pipefail

DEST=${SBX_CRUN_DIR:-/usr/local/libexec/sbx}
# Build dependencies: dpkg-source unpacks and patches the source package;
# the -dev packages hold the static libraries crun links; python3 generates
# the OCI spec parser (libocispec).
BUILD_PACKAGES=(dpkg-dev gcc make pkg-config python3 xz-utils libseccomp-dev libcap-dev libyajl-dev)
# RECIPE names how this script builds; a binary of an older recipe is rebuilt.
RECIPE=2

log() { echo "build-crun: $*" >&2; }
die() { echo "build-crun: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
version=$(dpkg-query -W -f='${Version}' crun 2>/dev/null) || die "Debian's crun is not installed (scripts/deps.sh installs it)"
if [ -x "$DEST/crun" ] && [ "$(cat "$DEST/crun.version" 2>/dev/null)" = "$version" ] &&
	[ "$(cat "$DEST/crun.recipe" 2>/dev/null)" = "$RECIPE" ]; then
	exit 0
fi
log "building a static crun $version from Debian's source into $DEST (about 2 minutes, once)"

work=$(mktemp -d /tmp/sbx-build-crun.XXXXXX)
trap 'rm -rf "$work"' EXIT
out="$work/log"
run() { # run a step quietly; show its output if it fails
	if ! "$@" >>"$out" 2>&1; then
		tail -40 "$out" >&2
		die "failed: $*"
	fi
}

missing=()
for p in "${BUILD_PACKAGES[@]}"; do
	[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$out" 2>&1; then
		run apt-get update -qq # the lists may be missing or stale
		run apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
fi

# The source package comes from the mirrors this host already uses, read
# into a private apt state so that the host's own lists stay as they are:
# every deb line of its sources becomes a deb-src line. apt checks the
# downloaded files against the signed Sources index.
mkdir -p "$work/parts" "$work/lists/partial" "$work/cache/archives/partial" "$work/dl"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
	[ -f "$f" ] && sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >>"$work/parts/src.list"
done
for f in /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" >"$work/parts/$(basename "$f")"
done
apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/parts"
	-o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root")
run apt-get "${apt_opts[@]}" update
(cd "$work/dl" && run apt-get "${apt_opts[@]}" source --download-only "crun=$version")
run dpkg-source -x "$work"/dl/crun_*.dsc "$work/src"

cd "$work/src"
# Without libgcrypt, as Debian builds it: with it, crun would also keep a
# cache of compiled seccomp programs in its state dir, which sbx does not
# need (it passes the compiled program itself, internal/runtime/local/seccomp.go).
run ./configure PYTHON=/usr/bin/python3 ac_cv_search_gcry_check_version=no --disable-systemd --disable-criu --enable-static --disable-shared --disable-dependency-tracking
# Debian ships yajl's static library as libyajl_s.a; -lyajl must find it.
mkdir -p "$work/lib"
ln -s /usr/lib/"$(dpkg-architecture -qDEB_HOST_MULTIARCH)"/libyajl_s.a "$work/lib/libyajl.a"
jobs=$(nproc)
run make -j"$jobs" git-version.h
run make -j"$jobs" -C libocispec
run make -j"$jobs" crun LDFLAGS="-all-static -L$work/lib" FOUND_LIBS="-lseccomp -lcap -lyajl"
run strip crun
if ldd ./crun >/dev/null 2>&1; then
	die "the built crun is not static"
fi
./crun --version | grep -q "^crun version ${version%%-*}" || die "the built crun does not report version ${version%%-*}"

mkdir -p "$DEST"
install -m 0755 crun "$DEST/crun.new"
mv -f "$DEST/crun.new" "$DEST/crun"
echo "$version" >"$DEST/crun.version"
echo "$RECIPE" >"$DEST/crun.recipe"
log "installed $DEST/crun ($(./crun --version | head -1))"
