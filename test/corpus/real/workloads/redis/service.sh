#!/bin/sh
# Debian's redis-server used as a cache: every second a client SETs
# SETS_PER_S values of 2 KiB to random keys of a bounded keyspace, so the
# cache fills (time constant KEYSPACE/SETS_PER_S seconds) and then stays; with
# a leak rate, from LEAK_AFTER seconds on it also SETs that many bytes a
# second to keys that are never written again and never expire.
#   service.sh PORT KEYSPACE SETS_PER_S LEAK_RATE LEAK_AFTER
set -eu
port=$1 keyspace=$2 sets=$3 leak_rate=$4 leak_after=$5
value=2048
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
	--maxmemory 0 --protected-mode yes --loglevel warning &
i=0
while ! redis-cli -p "$port" ping >/dev/null 2>&1; do
	i=$((i + 1))
	[ "$i" -lt 100 ] || { echo "redis-server did not start" >&2; exit 1; }
	sleep 0.1
done
start=$(date +%s)
leak_sets=$((leak_rate / value))
while :; do
	redis-benchmark -p "$port" -q -c 1 -n "$sets" -r "$keyspace" -d "$value" -t set >/dev/null
	if [ "$leak_sets" -gt 0 ] && [ $(($(date +%s) - start)) -ge "$leak_after" ]; then
		# A keyspace a million times larger: practically every key is new.
		redis-benchmark -p "$port" -q -c 1 -n "$leak_sets" -r 1000000000 -d "$value" -t set >/dev/null
	fi
	sleep 1
done
