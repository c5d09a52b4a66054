#!/usr/bin/env bash
# What a stack copy costs the page-fault program, measured with bpf_stats:
# runs the agent with stack copies on and off, ROUNDS times interleaved,
# each time under the page-fault loop (test/bench/loops, gcc -O2, main
# thread) in a memory cgroup (1 GiB) made beneath this script's own, and
# prints handle_page_fault's mean ns per run, the copies made and the cost
# of a copy (the difference in total run time over the copies). Run as root:
#   hack/copy-cost.sh [leakwatch binary] [rounds]   (default: out/leakwatch 3)
set -euo pipefail

bin=${1:-out/leakwatch}
rounds=${2:-3}
listen=127.0.0.1:9799
own=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)
cg=/sys/fs/cgroup/memory${own%/}/copy-cost-$$
work=$(mktemp -d)
apid=
stats_was=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
	if [ -n "$apid" ]; then kill "$apid" 2>/dev/null || true; wait "$apid" 2>/dev/null || true; fi
	sysctl -qw kernel.bpf_stats_enabled="$stats_was"
	rmdir "$cg" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

gcc -O2 -o "$work/loops" "$(dirname "$0")/../test/bench/loops/loops.c"
mkdir "$cg"
echo $((1 << 30)) >"$cg/memory.limit_in_bytes"

# prog_stats prints run_time_ns and run_cnt of handle_page_fault.
prog_stats() {
	bpftool prog show name handle_page_fault | awk '{for (i = 1; i < NF; i++) { if ($i == "run_time_ns") t = $(i+1); if ($i == "run_cnt") c = $(i+1) }} END { print t + 0, c + 0 }'
}
copies() { curl -s "$listen/metrics" | awk '/^leakwatch_stack_copies_total\{result="copied"\}/ { print $2 + 0 }'; }

# one BYTES: one run of the loop beside the agent with --stack-copy-bytes=BYTES;
# prints "ns_total runs copies".
one() {
	"$bin" run --stack-copy-bytes="$1" --listen "$listen" >"$work/agent.log" 2>&1 &
	apid=$!
	for _ in $(seq 100); do curl -sf "$listen/readyz" >/dev/null && break; sleep 0.2; done
	sysctl -qw kernel.bpf_stats_enabled=1
	read -r t0 c0 < <(prog_stats)
	k0=$(copies)
	sh -c 'echo $$ >"$0/cgroup.procs"; exec "$1" faults 256 20' "$cg" "$work/loops" >/dev/null
	read -r t1 c1 < <(prog_stats)
	k1=$(copies)
	sysctl -qw kernel.bpf_stats_enabled=0
	kill "$apid"
	wait "$apid" 2>/dev/null || true
	apid=
	echo "$((t1 - t0)) $((c1 - c0)) $((k1 - k0))"
}

printf '%-6s %-24s %-24s %s\n' round "copies on: ns/run, copies" "copies off: ns/run" "µs per copy"
for r in $(seq "$rounds"); do
	read -r ton con kon < <(one 16384)
	read -r toff coff _ < <(one 0)
	awk -v r="$r" -v ton="$ton" -v con="$con" -v kon="$kon" -v toff="$toff" -v coff="$coff" 'BEGIN {
		on = ton / con; off = toff / coff
		printf "%-6d %-24s %-24s %.2f\n", r, sprintf("%.0f, %d", on, kon), sprintf("%.0f", off), kon ? (on - off) * con / kon / 1000 : 0
	}'
done
