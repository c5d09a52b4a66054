#!/usr/bin/env bash
# Installs the Debian packages that building and testing leakwatch needs.
# Idempotent: packages already present are skipped, so `make` targets can call it.
set -euo pipefail

# prometheus brings promtool, used by the metrics tests; it and fzf (3 MB) are
# stripped Go 1.19 binaries as Debian ships them, which pkg/symbolize's tests
# symbolize; binutils' objdump and strip check them. gdb and linux-perf are
# the independent unwinders the profile frame tests compare with;
# redis-server is a real program the OOM-record tests run to its limit.
# pkg/unwind replays perf's samples of Debian's python3 and redis-server
# (redis-tools' redis-benchmark drives it).
packages=(clang clang-format llvm libbpf-dev bpftool make gcc libc6-dev binutils prometheus fzf gdb linux-perf libc6-dbg redis-server redis-tools python3)
# A JDK (javac, java) builds and runs the JVM workload whose series
# test/deploy records (TestRecordAgentSeries).
packages+=(openjdk-17-jdk-headless)
# containerd (with its built-in CRI plugin) and runc are the real container
# runtime the CRI end-to-end test starts on a private root and socket (issue 15).
packages+=(containerd runc)
# g++ builds the C++ program whose stacks the unwinding tests check.
packages+=(g++)
if [[ "${LEAKWATCH_EXTRA_PACKAGES:-}" != "" ]]; then
	read -r -a extra <<<"${LEAKWATCH_EXTRA_PACKAGES}"
	packages+=("${extra[@]}")
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	echo "install-deps: missing packages: ${missing[*]}; run as root or install them with apt-get" >&2
	exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
