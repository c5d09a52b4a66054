#!/usr/bin/env bash
# Makes a busy node for a bounded time, to run the tests beside: cgroup
# churn (memory cgroups made and removed beneath this script's own memory
# cgroup, each running a short process), builds (a new small program
# compiled and run in such a cgroup every few seconds: a node keeps running
# programs the agent has not seen before) and allocation (a few processes
# that allocate and free memory, each under a memory limit in a cgroup of
# its own). It ends every process it started, by pid, and removes every
# cgroup and file it made, when its time is up or when it is interrupted.
#
#   sudo hack/busy-load.sh [seconds]        # default 600
#
#   BUSY_CHURNERS   parallel churn loops (default 4)
#   BUSY_ALLOCATORS allocating processes (default 3)
#   BUSY_ALLOC_MIB  what each allocates per round, MiB (default 48; limit +16)
#   BUSY_BUILDS     build loops (default 1; 0 without a C compiler)
#
# Run as root, like the privileged tests. Only cgroups beneath the caller's
# own memory cgroup are touched; on cgroup v2 that cgroup must delegate the
# memory controller (as for the tests).
set -euo pipefail

duration=${1:-600}
churners=${BUSY_CHURNERS:-4}
allocators=${BUSY_ALLOCATORS:-3}
alloc_mib=${BUSY_ALLOC_MIB:-48}
builds=${BUSY_BUILDS:-1}
command -v cc >/dev/null || builds=0
limit=$(((alloc_mib + 16) << 20))

[[ $duration =~ ^[0-9]+$ ]] && ((duration > 0 && duration <= 86400)) ||
	{ echo "busy-load: seconds must be 1..86400, got $duration" >&2; exit 2; }
((EUID == 0)) || { echo "busy-load: needs root (it makes cgroups)" >&2; exit 2; }

# The caller's memory cgroup: v1's memory line, else v2's unified one when
# it offers the memory controller.
own_cgroup() {
	local v1 v2 mnt
	v1=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
	mnt=$(awk '$0 ~ / - cgroup / && $NF ~ /(^|,)memory(,|$)/ {print $5; exit}' /proc/self/mountinfo)
	if [[ -n $v1 && -n $mnt ]]; then
		version=1 dir=$mnt${v1%/}
		return
	fi
	v2=$(awk -F: '$1 == "0" && $2 == "" {print $3}' /proc/self/cgroup)
	mnt=$(awk '$0 ~ / - cgroup2 / {print $5; exit}' /proc/self/mountinfo)
	if [[ -n $mnt ]] && grep -qw memory "$mnt${v2%/}/cgroup.controllers" 2>/dev/null; then
		version=2 dir=$mnt${v2%/}
		return
	fi
	echo "busy-load: no memory cgroup controller found" >&2
	exit 2
}
own_cgroup
if ((version == 2)) && ! grep -qw memory "$dir/cgroup.subtree_control"; then
	echo +memory >"$dir/cgroup.subtree_control" || {
		echo "busy-load: $dir does not delegate the memory controller (run from e.g. systemd-run --scope -p Delegate=yes)" >&2
		exit 2
	}
fi
base=$dir/busy-load-$$
mkdir "$base"
work=$(mktemp -d /tmp/busy-load-XXXXXX)
end=$((SECONDS + duration))

set_limit() { # cgroup dir
	if ((version == 1)); then
		echo "$limit" >"$1/memory.limit_in_bytes"
	else
		echo "$limit" >"$1/memory.max"
		echo 0 >"$1/memory.swap.max" 2>/dev/null || true
	fi
}

# run_in CGROUP CMD...: starts CMD inside CGROUP (it moves itself in before
# exec, so nothing else is ever moved) and leaves its pid in $!.
run_in() {
	local cg=$1
	shift
	sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$@" &
}

# A churn loop: make a cgroup, run a short process in it, remove it.
churn() {
	local i=0 cg t child=
	trap '[[ -n $child ]] && kill "$child" 2>/dev/null; exit 0' TERM
	while ((SECONDS < end)); do
		cg=$base/churn-$1-$i
		i=$((i + 1))
		mkdir "$cg"
		set_limit "$cg"
		# Different programs map different libraries, as a node's do.
		t=0.$((RANDOM % 9 + 1))
		case $((i % 3)) in
		0) run_in "$cg" sleep "$t" ;;
		1) run_in "$cg" perl -MPOSIX -MSocket -MStorable -MDigest::SHA -MList::Util -MEncode \
			-e 'select(undef, undef, undef, $ARGV[0])' "$t" ;;
		2) if [[ -x /usr/bin/python3 ]]; then
			run_in "$cg" /usr/bin/python3 -c 'import sys, time, ssl, sqlite3, decimal, ctypes, lzma, bz2, json, csv, hashlib
time.sleep(float(sys.argv[1]))' "$t"
		else
			run_in "$cg" sleep "$t"
		fi ;;
		esac
		child=$!
		wait "$child" || true
		child=
		rmdir "$cg" 2>/dev/null || true
	done
}

# A build loop: compile a program that no one ran before (its build id is
# new), run it for a moment in a cgroup of its own, delete it.
build() {
	local i=0 cg child= exe
	trap '[[ -n $child ]] && kill "$child" 2>/dev/null; exit 0' TERM
	while ((SECONDS < end)); do
		cg=$base/build-$1-$i exe=$work/prog-$1-$i
		i=$((i + 1))
		printf '#include <unistd.h>\nconst char id[] = "%s";\nint main(void) { usleep(300000); return id[0] == 0; }\n' \
			"$$-$1-$i-$RANDOM" >"$exe.c"
		if ! cc -O0 -o "$exe" "$exe.c"; then
			rm -f "$exe.c"
			break
		fi
		mkdir "$cg"
		set_limit "$cg"
		run_in "$cg" "$exe"
		child=$!
		wait "$child" || true
		child=
		rmdir "$cg" 2>/dev/null || true
		rm -f "$exe" "$exe.c"
		sleep 2
	done
}

# An allocator: in its own limited cgroup, allocate and touch alloc_mib,
# free it, repeat until the end.
allocate() {
	local cg=$base/alloc-$1 child=
	mkdir "$cg"
	set_limit "$cg"
	trap '[[ -n $child ]] && kill "$child" 2>/dev/null; exit 0' TERM
	run_in "$cg" perl -e '
		my ($mib, $end) = @ARGV;
		while (time < $end) {
			my $x = "x" x ($mib << 20);  # allocated and touched
			select(undef, undef, undef, 0.3);
			undef $x;
			select(undef, undef, undef, 0.2);
		}' "$alloc_mib" "$(($(date +%s) + duration))"
	child=$!
	wait "$child" || true
}

workers=()
cleanup() {
	trap - EXIT INT TERM
	local pid
	for pid in "${workers[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${workers[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	# The workers ended their children; a cgroup whose last process is
	# still exiting is busy for a moment.
	local tries=0 left
	while ((tries < 50)); do
		left=$(find "$base" -mindepth 1 -maxdepth 1 -type d 2>/dev/null)
		for cg in $left; do
			rmdir "$cg" 2>/dev/null || true
		done
		rmdir "$base" 2>/dev/null && break
		tries=$((tries + 1))
		sleep 0.1
	done
	rm -rf "$work"
	if [[ -d $base ]]; then
		echo "busy-load: could not remove $base" >&2
		exit 1
	fi
	echo "busy-load: done, every process ended and every cgroup and file removed" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ((n = 0; n < churners; n++)); do
	churn "$n" &
	workers+=($!)
done
for ((n = 0; n < builds; n++)); do
	build "$n" &
	workers+=($!)
done
for ((n = 0; n < allocators; n++)); do
	allocate "$n" &
	workers+=($!)
done
echo "busy-load: $churners churn loops, $builds build loops and $allocators allocators of $alloc_mib MiB beneath $dir for ${duration}s" >&2
# Wait for the workers, or for a signal: wait returns when one arrives.
for pid in "${workers[@]}"; do
	wait "$pid" || true
done
