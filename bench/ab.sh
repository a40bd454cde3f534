#!/bin/bash
# bench/ab.sh compares two builds of sbx on this machine, interleaved.
#
# The benchmark VM's own speed drifts by more than most changes move a
# figure (the bare `crun run` took 13 to 20 ms within ten minutes), so one
# run of each build says little. This runs sbx-bench's cold create and exec
# scenarios on build A, then on build B, ROUNDS times, with a pause between
# runs for the host to settle, and prints each run and the medians.
#
#   go build -o /tmp/sbx-bench ./bench/cmd/sbx-bench
#   bash bench/ab.sh DIR_A DIR_B [ROUNDS] [more sbx-bench flags]
#
# DIR_A and DIR_B each hold an `sbx` and a static `sbx-agent`, e.g.
#   git worktree add /tmp/old OLD_COMMIT && cd /tmp/old &&
#   CGO_ENABLED=0 go build -o /tmp/binA/ ./cmd/sbx ./cmd/sbx-agent
# SBX_BENCH (default /tmp/sbx-bench) is the harness binary, AB_PAUSE (15)
# the seconds between runs.
set -euo pipefail

a=${1:?usage: bench/ab.sh DIR_A DIR_B [ROUNDS] [sbx-bench flags]}
b=${2:?usage: bench/ab.sh DIR_A DIR_B [ROUNDS] [sbx-bench flags]}
rounds=${3:-8}
shift $(($# < 3 ? $# : 3))
bench=${SBX_BENCH:-/tmp/sbx-bench}
pause=${AB_PAUSE:-15}
for d in "$a" "$b"; do
	[ -x "$d/sbx" ] && [ -x "$d/sbx-agent" ] || { echo "ab.sh: $d has no sbx and sbx-agent" >&2; exit 2; }
done
[ -x "$bench" ] || { echo "ab.sh: no harness at $bench: go build -o $bench ./bench/cmd/sbx-bench" >&2; exit 2; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
results=$out/results
for i in $(seq 1 "$rounds"); do
	for side in A B; do
		dir=$a
		[ "$side" = B ] && dir=$b
		sleep "$pause"
		"$bench" --out "$out/run" --creates 40 --warm 0 --execs 50 --sustained 0 --burst 0 \
			--density 0 --baselines=false --pool-rate 0 --server-bin "$dir" "$@" >"$out/log" 2>&1 ||
			{ echo "ab.sh: sbx-bench failed on $dir:" >&2; tail -5 "$out/log" >&2; exit 1; }
		# cold p50, create → RUNNING p50, exec p50 from the report's latency table.
		line=$(awk -F'|' '$2 ~ /sbx/ && $3 ~ /^ (cold_create|create_running|exec_true) $/ {gsub(/ /, "", $3); gsub(/ /, "", $5); printf "%s=%s ", $3, $5}' "$out/run/report.md")
		echo "round $i $side $line" | tee -a "$results"
	done
done
for side in A B; do
	for m in cold_create create_running exec_true; do
		grep " $side " "$results" | grep -o "$m=[0-9.]*" | cut -d= -f2 | sort -n |
			awk -v s="$side" -v m="$m" '{v[NR]=$1} END {if (NR%2) med=v[(NR+1)/2]; else med=(v[NR/2]+v[NR/2+1])/2; printf "%s %-15s median %.1f ms (min %.1f, max %.1f, n %d)\n", s, m, med, v[1], v[NR], NR}'
	done
done
