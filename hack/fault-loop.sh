# shellcheck shell=bash
# Sourced by copy-cost.sh and fault-cost.sh: the page-fault loop
# (test/bench/loops, gcc -O2 plus CFLAGS_LOOP) in a memory cgroup of 1 GiB
# made beneath the caller's own, beside one agent at a time, with
# handle_page_fault's bpf_stats read around the loop. Root only.
# Environment: MODE (faults: the main thread; tfaults: another thread),
# CFLAGS_LOOP (extra gcc flags, e.g. -fno-omit-frame-pointer).

listen=127.0.0.1:9797
own=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)
cg=/sys/fs/cgroup/memory${own%/}/fault-loop-$$
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

# shellcheck disable=SC2086 # CFLAGS_LOOP is a list of flags
gcc -O2 ${CFLAGS_LOOP:-} -o "$work/loops" "$(dirname "${BASH_SOURCE[0]}")/../test/bench/loops/loops.c" -lpthread
mkdir "$cg"
echo $((1 << 30)) >"$cg/memory.limit_in_bytes"

# prog_stats prints run_time_ns and run_cnt of handle_page_fault.
prog_stats() {
	bpftool prog show name handle_page_fault | awk '{for (i = 1; i < NF; i++) { if ($i == "run_time_ns") t = $(i+1); if ($i == "run_cnt") c = $(i+1) }} END { print t + 0, c + 0 }'
}
copies() { curl -s "$listen/metrics" | awk '/^leakwatch_stack_copies_total\{result="copied"\}/ { print $2 + 0 }'; }

# one BIN BYTES: one run of the loop beside BIN run with
# --stack-copy-bytes=BYTES; prints "ns_total runs copies".
one() {
	"$1" run --stack-copy-bytes="$2" --listen "$listen" >"$work/agent.log" 2>&1 &
	apid=$!
	local ready=
	for _ in $(seq 100); do curl -sf "$listen/readyz" >/dev/null && { ready=1; break; }; sleep 0.2; done
	if [ -z "$ready" ]; then
		echo "$1: not ready in 20 s; its log:" >&2
		cat "$work/agent.log" >&2
		return 1
	fi
	sysctl -qw kernel.bpf_stats_enabled=1
	read -r t0 c0 < <(prog_stats)
	k0=$(copies)
	sh -c 'echo $$ >"$0/cgroup.procs"; exec "$1" "$2" 256 20' "$cg" "$work/loops" "${MODE:-faults}" >/dev/null
	read -r t1 c1 < <(prog_stats)
	k1=$(copies)
	sysctl -qw kernel.bpf_stats_enabled=0
	kill "$apid"
	wait "$apid" 2>/dev/null || true
	apid=
	echo "$((t1 - t0)) $((c1 - c0)) $((${k1:-0} - ${k0:-0}))"
}
