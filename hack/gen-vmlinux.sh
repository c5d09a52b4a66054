#!/usr/bin/env bash
# Regenerates bpf/include/{amd64,arm64}/vmlinux.h from a kernel's BTF.
#
# CO-RE relocates every kernel field offset at load time, so one vmlinux.h taken
# from any recent kernel describes the types the programs read on every kernel.
# Only the register layout the perf-event context embeds differs by
# architecture: on arm64 bpf_user_pt_regs_t is struct user_pt_regs, and the
# verifier checks context offsets (sample_period, addr) against that layout, so
# the arm64 header swaps that one typedef. Everything else is shared.
set -euo pipefail

btf="${1:-/sys/kernel/btf/vmlinux}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/bpf/include"

if ! command -v bpftool >/dev/null; then
	echo "gen-vmlinux: bpftool not found; run hack/install-deps.sh" >&2
	exit 1
fi
if [[ ! -r "$btf" ]]; then
	echo "gen-vmlinux: $btf not readable; this kernel has no BTF (CONFIG_DEBUG_INFO_BTF)" >&2
	exit 1
fi

mkdir -p "$out/amd64" "$out/arm64"
bpftool btf dump file "$btf" format c >"$out/amd64/vmlinux.h"

# The arm64 variant: replace the x86 register typedef with arm64's user_pt_regs.
awk '
/^typedef struct pt_regs bpf_user_pt_regs_t;$/ {
	print "struct user_pt_regs {"
	print "\t__u64 regs[31];"
	print "\t__u64 sp;"
	print "\t__u64 pc;"
	print "\t__u64 pstate;"
	print "};"
	print ""
	print "typedef struct user_pt_regs bpf_user_pt_regs_t;"
	replaced = 1
	next
}
{ print }
END { if (!replaced) { print "gen-vmlinux: bpf_user_pt_regs_t typedef not found" > "/dev/stderr"; exit 1 } }
' "$out/amd64/vmlinux.h" >"$out/arm64/vmlinux.h"

echo "gen-vmlinux: wrote $out/amd64/vmlinux.h and $out/arm64/vmlinux.h from $btf ($(uname -r))"
