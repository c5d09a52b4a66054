#!/usr/bin/env bash
# Makes a burst of stack copies under a running agent and prints its
# stack-copy counters: redis-server filled by redis-benchmark, python3
# growing a list, and a gcc -O2 C program touching 1.5 GiB of malloc'd
# blocks, all at once, in a memory cgroup (2 GiB) made beneath this
# script's own. About 4,000 copies at the default budget; a ring or queue
# too small shows as ring_full or queue_full. Run as root:
#   hack/stack-burst.sh [leakwatch binary]   (default: out/leakwatch)
# Needs redis-server and redis-tools (hack/install-deps.sh installs them).
set -euo pipefail

bin=${1:-out/leakwatch}
own=$(awk -F: '$2=="memory"{print $3}' /proc/self/cgroup)
cg=/sys/fs/cgroup/memory${own%/}/stack-burst-$$
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rmdir "$cg" 2>/dev/null || echo "could not remove $cg: $(cat "$cg/cgroup.procs" 2>/dev/null | wc -l) processes left in it" >&2
	rm -rf "$work"
}
trap cleanup EXIT

mkdir "$cg"
echo $((2 << 30)) >"$cg/memory.limit_in_bytes"
# in_cg runs a command inside the burst's cgroup. It execs, so that the pid
# of `in_cg ... &` is the command's own and cleanup ends the command.
in_cg() { exec sh -c 'echo $$ >"$0/cgroup.procs"; exec "$@"' "$cg" "$@"; }

cat >"$work/leak.c" <<'C'
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
void *volatile keep[1500];
__attribute__((noinline)) static void *grow(size_t n) { void *p = malloc(n); memset(p, 1, n); return p; }
__attribute__((noinline)) static void level2(int i) { keep[i] = grow((1 << 20) + (i % 64) * 512); }
int main(void) { for (int i = 0; i < 1500; i++) level2(i); sleep(2); return 0; }
C
gcc -O2 -o "$work/leak" "$work/leak.c"

port=$((19000 + RANDOM % 1000))
"$bin" run --listen "127.0.0.1:$port" >"$work/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do
	curl -sf "127.0.0.1:$port/readyz" >/dev/null && break
	sleep 0.5
done
curl -sf "127.0.0.1:$port/readyz" >/dev/null || { cat "$work/agent.log" >&2; echo "the agent did not become ready in 30 s" >&2; exit 1; }

rport=$((20000 + RANDOM % 1000))
in_cg redis-server --port "$rport" --save '' --appendonly no >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

in_cg redis-benchmark -p "$rport" -t set,lpush -n 200000 -r 1000000 -d 256 -q >/dev/null 2>&1 &
burst=($!)
in_cg python3 -c 'l = [str(i) * 3 for i in range(3000000)]' &
burst+=($!)
in_cg "$work/leak" &
burst+=($!)
wait "${burst[@]}" || true
sleep 3 # the agent's next collection
curl -s "127.0.0.1:$port/metrics" | grep '^leakwatch_stack_copies_total'
