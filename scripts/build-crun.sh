#!/usr/bin/env bash
# build-crun.sh builds crun as one static binary linked against musl, from
# Debian's source of the crun package installed here (same version, same
# Debian patches), into /usr/local/libexec/sbx/crun, where `sbx serve` looks
# first (docs/BENCHMARKS.md, "Cold create").
#
# Why static: Debian's crun is dynamically linked to ten libraries,
# libsystemd and its compression and crypto libraries among them; on a VM,
# where every page a new process touches costs a fault, loading them is a
# third of `crun run`. Without the systemd cgroup driver (sbx uses
# cgroupfs) it starts in about 5 ms instead of 11.
# Why musl (recipe 3, 2026-11-27): static glibc's start-up runs about 80
# `cpuid` instructions (init_cpu_features, dl_init_cacheinfo), and on a VM
# each traps to the hypervisor: 5.9 µs each on the benchmark machine, so an
# empty static glibc program took 0.51 ms of CPU and musl's 0.03 ms. crun
# runs once per sandbox start: `crun --version` 1.13 → 0.21 ms of CPU, a
# whole `crun run` about 1 ms less.
#
# Everything crun links is built here with musl-gcc, from the Debian source
# packages of the libraries Debian's crun uses (at their installed
# versions): libseccomp, libcap2 and yajl, and argp, which musl lacks, from
# gnulib's argp module (package gnulib). crun's one glibc-only header,
# <error.h>, needs nothing: its configure checks for it and src/libcrun has
# a fallback.
#
# It is idempotent: it does nothing when the binary of the installed crun
# version and of this recipe is there. On failure it says why and exits 1;
# sbx then runs Debian's crun, slower but the same. Run as root, after
# deps.sh installed crun. SBX_CRUN_DIR installs elsewhere (tests of this
# script).
set -euo pipefail

DEST=${SBX_CRUN_DIR:-/usr/local/libexec/sbx}
# Build dependencies: dpkg-source unpacks and patches the source packages;
# musl-gcc is the compiler; linux-libc-dev has the kernel headers; gnulib,
# autoconf, automake and m4 make libargp; gperf regenerates libseccomp's
# syscall table (Debian patches syscalls.csv); python3 generates crun's OCI
# spec parser (libocispec).
BUILD_PACKAGES=(dpkg-dev gcc make pkg-config python3 xz-utils file musl-tools musl-dev linux-libc-dev
	gnulib autoconf automake m4 gperf)
# RECIPE names how this script builds; a binary of an older recipe is rebuilt.
RECIPE=3

log() { echo "build-crun: $*" >&2; }
die() { echo "build-crun: ERROR: $*" >&2; exit 1; }

# source_of BINARY-PACKAGE DEFAULT: "source=version" of an installed binary
# package (a library Debian's crun runs with), else DEFAULT (the newest).
source_of() {
	dpkg-query -W -f='${source:Package}=${source:Version}' "$1" 2>/dev/null || echo "$2"
}

[ "$(id -u)" = 0 ] || die "run as root"
version=$(dpkg-query -W -f='${Version}' crun 2>/dev/null) || die "Debian's crun is not installed (scripts/deps.sh installs it)"
# The libraries' sources, at the versions installed: a security update of
# one of them rebuilds crun too (crun.libs).
libs="$(source_of libseccomp2 libseccomp) $(source_of libcap2 libcap2) $(source_of libyajl2 yajl)"
if [ -x "$DEST/crun" ] && [ "$(cat "$DEST/crun.version" 2>/dev/null)" = "$version" ] &&
	[ "$(cat "$DEST/crun.recipe" 2>/dev/null)" = "$RECIPE" ] && [ "$(cat "$DEST/crun.libs" 2>/dev/null)" = "$libs" ]; then
	exit 0
fi
log "building a static crun $version (musl) from Debian's source into $DEST (about a minute, once)"

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

# The source packages come from the mirrors this host already uses, read
# into a private apt state so that the host's own lists stay as they are:
# every deb line of its sources becomes a deb-src line. apt checks the
# downloaded files against the signed Sources index.
mkdir -p "$work/parts" "$work/lists/partial" "$work/cache/archives/partial" "$work/dl" "$work/src"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
	[ -f "$f" ] && sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >>"$work/parts/src.list"
done
for f in /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" >"$work/parts/$(basename "$f")"
done
apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/parts"
	-o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root")
run apt-get "${apt_opts[@]}" update

fetch() { # fetch SOURCE[=VERSION] DIR: download and unpack into $work/src/DIR
	(cd "$work/dl" && run apt-get "${apt_opts[@]}" source --download-only "$1")
	local dsc
	dsc=$(ls "$work"/dl/"${1%%=*}"_*.dsc | head -1)
	run dpkg-source -x "$dsc" "$work/src/$2"
}
fetch "crun=$version" crun
read -r src_seccomp src_cap src_yajl <<<"$libs"
fetch "$src_seccomp" libseccomp
fetch "$src_cap" libcap2
fetch "$src_yajl" yajl

prefix="$work/prefix"
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
jobs=$(nproc)
[ "$jobs" -le 4 ] || jobs=4
export CC=musl-gcc
# Only pkg-config files of $prefix: none of the host's (glibc) libraries.
export PKG_CONFIG_LIBDIR="$prefix/lib/pkgconfig" PKG_CONFIG_PATH=

# Debian's musl-gcc searches musl's headers and gcc's only: give it the
# kernel headers (linux-libc-dev's directories, asm from the multiarch one).
kinc="$work/kernel-headers"
mkdir -p "$kinc"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for d in $(dpkg -L linux-libc-dev | sed -n 's|^/usr/include/\([^/]*\)/.*|\1|p' | sort -u); do
	[ "$d" = "$multiarch" ] || ln -s "/usr/include/$d" "$kinc/$d"
done
ln -s "/usr/include/$multiarch/asm" "$kinc/asm"

log "libseccomp"
cd "$work/src/libseccomp"
run ./configure --prefix="$prefix" --enable-static --disable-shared --disable-python \
	--disable-dependency-tracking CFLAGS=-O2 CPPFLAGS="-isystem $kinc"
run make -j"$jobs" -C src
run make -C src install
run make -C include install
run make install-pkgconfDATA

log "libcap"
cd "$work/src/libcap2"
# libcap.a only: no shared library, no libpsx, no Go; _makenames is built
# and run on the host, with gcc.
run make -C libcap -j"$jobs" CC=musl-gcc BUILD_CC=gcc COPTS="-O2 -isystem $kinc" \
	SHARED=no PTHREADS=no GOLANG=no prefix="$prefix" lib=lib install-static-cap

log "yajl"
# Upstream builds with cmake; its library is nine C files and one generated
# header, built here as its CMakeLists.txt does (-DYAJL_BUILD, headers in
# include/yajl, yajl_version.h from the version set there).
cd "$work/src/yajl"
yv() { sed -n "s/^SET (YAJL_$1 \([0-9]*\))/\1/p" CMakeLists.txt; }
maj=$(yv MAJOR) min=$(yv MINOR) mic=$(yv MICRO)
[ -n "$maj" ] && [ -n "$min" ] && [ -n "$mic" ] || die "no yajl version in CMakeLists.txt"
mkdir -p "$prefix/include/yajl" build
cp src/api/yajl_parse.h src/api/yajl_gen.h src/api/yajl_common.h src/api/yajl_tree.h "$prefix/include/yajl/"
sed -e "s/\${YAJL_MAJOR}/$maj/; s/\${YAJL_MINOR}/$min/; s/\${YAJL_MICRO}/$mic/" \
	src/api/yajl_version.h.cmake >"$prefix/include/yajl/yajl_version.h"
objs=()
for f in yajl yajl_lex yajl_parser yajl_buf yajl_encode yajl_gen yajl_alloc yajl_tree yajl_version; do
	run musl-gcc -O2 -DNDEBUG -std=c99 -Wall -fvisibility=hidden -DYAJL_BUILD -I"$prefix/include" \
		-c "src/$f.c" -o "build/$f.o"
	objs+=("build/$f.o")
done
run ar rcs "$prefix/lib/libyajl.a" "${objs[@]}"
cat >"$prefix/lib/pkgconfig/yajl.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include/yajl

Name: Yet Another JSON Library
Description: A Portable JSON parsing and serialization library in ANSI C
Version: $maj.$min.$mic
Cflags: -I\${includedir}
Libs: -L\${libdir} -lyajl
EOF

log "argp (gnulib)"
# gnulib-tool makes a package of the argp module and its dependencies
# (getopt, vasnprintf, ...: gnulib's own, renamed rpl_*, no clash with musl).
cd "$work"
run gnulib-tool --create-testdir --dir="$work/argp-gl" --without-tests --lib=libargp argp
mkdir -p "$work/argp-build"
cd "$work/argp-build"
run ../argp-gl/configure CFLAGS=-O2 --disable-dependency-tracking
run make -j"$jobs"
cp gllib/libargp.a "$prefix/lib/"
# gnulib's argp.h uses a few macros of the config.h of gnulib-tool's package;
# a program including it has its own config.h, so the header is installed
# with them defined in front.
{
	cat <<'EOF'
/* gnulib's argp.h, with the macros it takes from gnulib's config.h. */
#ifndef _GL_INLINE_HEADER_BEGIN
# define _GL_INLINE_HEADER_BEGIN
# define _GL_INLINE_HEADER_END
#endif
#ifndef ARGP_EI
/* libargp.a holds the out-of-line copies (argp-xinl.c). */
# define ARGP_EI extern inline __attribute__ ((__gnu_inline__))
#endif
#ifndef _GL_ATTRIBUTE_FORMAT
# define _GL_ATTRIBUTE_FORMAT(spec) __attribute__ ((__format__ spec))
#endif
#ifndef _GL_ATTRIBUTE_SPEC_PRINTF_SYSTEM
# define _GL_ATTRIBUTE_SPEC_PRINTF_SYSTEM __printf__
#endif
#ifndef _GL_ATTRIBUTE_SPEC_PRINTF_STANDARD
# define _GL_ATTRIBUTE_SPEC_PRINTF_STANDARD __printf__
#endif
EOF
	cat "$work/argp-gl/gllib/argp.h"
} >"$prefix/include/argp.h"

log "crun"
cd "$work/src/crun"
# Without libgcrypt, as Debian builds it: with it, crun would also keep a
# cache of compiled seccomp programs in its state dir, which sbx does not
# need (it passes the compiled program itself, internal/runtime/local/seccomp.go).
# configure finds -lseccomp -lcap -lyajl -largp in $prefix.
run ./configure CC=musl-gcc PYTHON=/usr/bin/python3 ac_cv_search_gcry_check_version=no \
	CPPFLAGS="-isystem $kinc -I$prefix/include" LDFLAGS="-L$prefix/lib" \
	--disable-systemd --disable-criu --enable-static --disable-shared --disable-dependency-tracking
run make -j"$jobs" git-version.h
run make -j"$jobs" -C libocispec
run make -j"$jobs" crun LDFLAGS="-all-static -L$prefix/lib"
run strip crun
if ldd ./crun >/dev/null 2>&1; then
	die "the built crun is not static"
fi
file crun | grep -q 'statically linked' || die "file(1) does not call the built crun statically linked"
./crun --version | grep -q "^crun version ${version%%-*}$" || die "the built crun does not report version ${version%%-*}"
for feature in +SECCOMP +CAP +YAJL; do
	./crun --version | grep -q -- "$feature" || die "the built crun lacks $feature"
done

mkdir -p "$DEST"
install -m 0755 crun "$DEST/crun.new"
mv -f "$DEST/crun.new" "$DEST/crun"
echo "$version" >"$DEST/crun.version"
echo "$RECIPE" >"$DEST/crun.recipe"
echo "$libs" >"$DEST/crun.libs"
log "installed $DEST/crun ($(./crun --version | head -1), musl)"
