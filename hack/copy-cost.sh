#!/usr/bin/env bash
# What a stack copy costs the page-fault program, measured with bpf_stats:
# runs the agent with stack copies on and off, ROUNDS times interleaved,
# each time under the page-fault loop (hack/fault-loop.sh) and prints
# handle_page_fault's mean ns per run, the copies made and the cost of a
# copy (the difference in total run time over the copies). Run as root:
#   hack/copy-cost.sh [leakwatch binary] [rounds]   (default: out/leakwatch 3)
# MODE and CFLAGS_LOOP as for hack/fault-loop.sh.
set -euo pipefail

bin=${1:-out/leakwatch}
rounds=${2:-3}
# shellcheck source=hack/fault-loop.sh
. "$(dirname "$0")/fault-loop.sh"

printf '%-6s %-24s %-24s %s\n' round "copies on: ns/run, copies" "copies off: ns/run" "µs per copy"
for r in $(seq "$rounds"); do
	read -r ton con kon < <(one "$bin" 16384)
	read -r toff coff _ < <(one "$bin" 0)
	awk -v r="$r" -v ton="$ton" -v con="$con" -v kon="$kon" -v toff="$toff" -v coff="$coff" 'BEGIN {
		on = ton / con; off = toff / coff
		printf "%-6d %-24s %-24s %.2f\n", r, sprintf("%.0f, %d", on, kon), sprintf("%.0f", off), kon ? (on - off) * con / kon / 1000 : 0
	}'
done
