#!/usr/bin/env bash
# What a sampled page fault costs the page-fault program, build against
# build: for each round, runs each given leakwatch binary in turn beside the
# page-fault loop (hack/fault-loop.sh) and prints handle_page_fault's mean
# ns per run from bpf_stats and the stack copies made. Every run is a
# sampled fault (a perf event with a sample period), so ns per run is the
# cost of a sampled event. Run as root:
#   hack/fault-cost.sh BIN...
# Environment: ROUNDS (3), COPY (--stack-copy-bytes, 0), and MODE and
# CFLAGS_LOOP as for hack/fault-loop.sh.
set -euo pipefail

[ $# -gt 0 ] || { echo "usage: $0 BIN..." >&2; exit 2; }
# shellcheck source=hack/fault-loop.sh
. "$(dirname "$0")/fault-loop.sh"

for r in $(seq "${ROUNDS:-3}"); do
	for bin in "$@"; do
		read -r t n k < <(one "$bin" "${COPY:-0}")
		echo "round $r $bin: $((t / n)) ns/run over $n runs, $k copies"
	done
done
