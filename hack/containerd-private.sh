#!/usr/bin/env bash
# Starts or stops a containerd that owns nothing outside one directory: its
# root, state, socket, config and log all live under DIR, so a test (or a
# person) can run the real CRI API without touching a node's containerd.
# The CRI plugin uses the cgroupfs driver (this host's memory controller is
# v1; systemd is not the cgroup manager here) and has no CNI: pods are meant
# to run with host networking. The sandbox image is one the caller imports.
#
#   hack/containerd-private.sh start DIR [SANDBOX_IMAGE]  # prints the socket path
#   hack/containerd-private.sh stop DIR                   # kills it, unmounts, removes DIR
set -euo pipefail

cmd=${1:?usage: $0 start|stop DIR [SANDBOX_IMAGE]}
dir=${2:?usage: $0 start|stop DIR [SANDBOX_IMAGE]}

case "$cmd" in
start)
	image=${3:-leakwatch.test/pause:1}
	mkdir -p "$dir"
	cat >"$dir/config.toml" <<CFG
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$image"
  # The sandbox's OOM score is -998 by default, and lowering a score needs
  # CAP_SYS_RESOURCE, which hosts like this one's VM withhold: runc's init
  # then dies ("can't get final child's PID from pipe"). Restricted, scores
  # are kept no lower than containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
CFG
	containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
	echo $! >"$dir/containerd.pid"
	# Bounded wait for the socket: 10 s is far beyond a cold start here (~0.1 s).
	for _ in $(seq 1 100); do
		if [[ -S "$dir/containerd.sock" ]]; then
			echo "$dir/containerd.sock"
			exit 0
		fi
		sleep 0.1
	done
	echo "containerd-private: no socket after 10s; log: $dir/containerd.log" >&2
	exit 1
	;;
stop)
	if [[ -f "$dir/containerd.pid" ]]; then
		pid=$(cat "$dir/containerd.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	# Snapshots and shm mounts stay behind under root/state if a shim died
	# unclean; unmount deepest first so rm does not walk into them.
	awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m" || true
	done
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start|stop DIR [SANDBOX_IMAGE]" >&2
	exit 2
	;;
esac
