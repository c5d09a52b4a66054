#!/usr/bin/env bash
# record.sh builds the workloads and the recorder, then records the ten runs
# of test/corpus/real in parallel, each in a memory cgroup (and a cpu cgroup
# capped at 10% of a core) of its own beneath this shell's, and waits for
# them. Run as root from the repository root:
#
#   test/corpus/real/record.sh [OUTDIR]      # default: test/corpus/real
#
# SET=second records the second set instead, into test/corpus/real/second:
# other runtimes' settings and a third-party server (see README.md).
#
# DURATION (default 70m) and INTERVAL (default 10s) override the recording
# length and the time between points. The labels in labels.csv hold for the
# defaults: every leak starts at 600 s (LEAK_AFTER).
set -euo pipefail
set_name=${SET:-first}
default_out=test/corpus/real
[ "$set_name" = first ] || default_out=test/corpus/real/$set_name
out=${1:-$default_out}
duration=${DURATION:-70m}
interval=${INTERVAL:-10s}
leak_after=${LEAK_AFTER:-600}
bin=$(mktemp -d /tmp/leakwatch-traces.XXXXXX)
w=test/corpus/real/workloads
python=/usr/bin/python3 # Debian's, not a pyenv shim
mkdir -p "$out"

go build -o "$bin/record" ./test/corpus/real/record
go build -o "$bin/goservice" ./$w/goservice
gcc -O2 -Wall -pthread -o "$bin/cservice" $w/cservice/cservice.c -lm
javac -d "$bin/jvm" $w/jvm/Service.java
{ java -version; node --version; $python --version; go version; gcc --version | head -1; ldd --version | head -1; } >"$bin/versions.txt" 2>&1

# name, memory limit, workload command
run() {
	local name=$1 limit=$2
	shift 2
	setsid nohup "$bin/record" -name "$name" -out "$out/$name.csv" -log "$bin/$name.log" \
		-duration "$duration" -interval "$interval" -mem-limit "$limit" -cpu 0.10 -- "$@" \
		>"$bin/$name.record.log" 2>&1 &
	echo "$name: recorder pid $!"
}

case $set_name in
first)
	run go-healthy 800Mi env GOGC=50 "$bin/goservice" -live 256 -cache 96 -leak-rate 0
	run go-leak 1100Mi env GOGC=50 "$bin/goservice" -live 256 -cache 96 -leak-rate 65536 -leak-after ${leak_after}s
	run jvm-healthy 1200Mi java -XX:+UseG1GC -Xmx1g -cp "$bin/jvm" Service 128 96 0 "$leak_after"
	run jvm-leak 1400Mi java -XX:+UseG1GC -Xmx1g -cp "$bin/jvm" Service 128 96 98304 "$leak_after"
	run node-healthy 500Mi node $w/node/service.js 96 48 0 "$leak_after"
	run node-leak 700Mi node $w/node/service.js 96 48 65536 "$leak_after"
	run py-healthy 400Mi $python $w/python/service.py 96 48 0 "$leak_after"
	run py-leak 550Mi $python $w/python/service.py 96 48 49152 "$leak_after"
	run c-healthy 450Mi "$bin/cservice" 128 64 0 "$leak_after"
	run c-leak 800Mi "$bin/cservice" 128 64 131072 "$leak_after"
	;;
second)
	# ZGC gives memory back after ZUncommitDelay (300 s by default).
	run jvm-zgc-healthy 1200Mi java -XX:+UseZGC -Xmx1g -cp "$bin/jvm" Service 128 96 0 "$leak_after"
	run jvm-zgc-leak 1400Mi java -XX:+UseZGC -Xmx1g -cp "$bin/jvm" Service 128 96 98304 "$leak_after"
	# Go held near its memory limit: the GC cycles with the heap at the
	# limit instead of at live x 2.
	run go-memlimit-healthy 900Mi env GOGC=off GOMEMLIMIT=600MiB "$bin/goservice" -live 256 -cache 96 -leak-rate 0
	run go-memlimit-leak 900Mi env GOGC=off GOMEMLIMIT=600MiB "$bin/goservice" -live 256 -cache 96 -leak-rate 65536 -leak-after ${leak_after}s
	run redis-healthy 400Mi $w/redis/service.sh 16379 40000 40 0 "$leak_after"
	run redis-leak 600Mi $w/redis/service.sh 16380 40000 40 65536 "$leak_after"
	run py-slow-leak 400Mi $python $w/python/service.py 64 32 24576 "$leak_after"
	;;
*)
	echo "SET must be first or second" >&2
	exit 2
	;;
esac
echo "logs and binaries in $bin"
wait
