#!/usr/bin/env bash
# What the agent's collection costs in CPU beside N quiet cgroups, for two
# agent binaries side by side: makes N memory cgroups (64 MiB limit) beneath
# this script's own, each holding one sleeping process, then runs binary A
# and binary B alternately, ROUNDS times each, and for each run prints the
# agent's user+system CPU (% of a core, from /proc/PID/stat) over WINDOW
# seconds that start WARM seconds after it started. Run as root:
#   hack/agent-cpu.sh A B [cgroups] [rounds] [warm] [window]
#   (default: 100 cgroups, 3 rounds, 30 s, 60 s)
set -euo pipefail

a=$1
b=$2
n=${3:-100}
rounds=${4:-3}
warm=${5:-30}
window=${6:-60}
listen=127.0.0.1:9798
own=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)
base=/sys/fs/cgroup/memory${own%/}/agent-cpu-$$
state=$(mktemp -d)
pids=()
apid=
cleanup() {
	if [ -n "$apid" ]; then kill "$apid" 2>/dev/null || true; wait "$apid" 2>/dev/null || true; fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for d in "$base"/c*; do [ -d "$d" ] && rmdir "$d"; done
	rmdir "$base" 2>/dev/null || true
	rm -rf "$state"
}
trap cleanup EXIT

mkdir "$base"
for i in $(seq 1 "$n"); do
	mkdir "$base/c$i"
	echo $((64 << 20)) >"$base/c$i/memory.limit_in_bytes"
	sh -c "echo \$\$ >$base/c$i/cgroup.procs && exec sleep 86400" &
	pids+=($!)
done

hz=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
one() {
	rm -rf "${state:?}"/*
	"$1" run --listen "$listen" --log-level warn --state-dir "$state" >"$state.log" 2>&1 &
	apid=$!
	sleep "$warm"
	local t0 t1
	t0=$(ticks "$apid")
	sleep "$window"
	t1=$(ticks "$apid")
	kill "$apid"
	wait "$apid" 2>/dev/null || true
	apid=
	echo "scale=3; 100 * ($t1 - $t0) / $hz / $window" | bc
}
echo "# $n cgroups, agent CPU (% of a core) over ${window}s after ${warm}s"
for r in $(seq 1 "$rounds"); do
	echo "round $r A $(one "$a")"
	echo "round $r B $(one "$b")"
done
