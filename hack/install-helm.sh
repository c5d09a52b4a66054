#!/usr/bin/env bash
# Installs the helm binary into ./bin from the Go module proxy, for the
# chart tests (test/deploy) and `make deploy-check`. It is a tool of the
# tests, not a dependency of leakwatch: go.mod is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${HELM_VERSION:-v3.22.0}
bin=$PWD/bin
if [[ -x $bin/helm ]] && "$bin/helm" version --short 2>/dev/null | grep -q "^${version}"; then
	exit 0
fi
echo "install-helm: installing helm ${version} into ${bin}" >&2
mkdir -p "$bin"
# Outside the module, so that `go install pkg@version` does not consult or
# change leakwatch's go.mod.
cd /
GOBIN=$bin GOFLAGS=-mod=mod go install -ldflags "-X helm.sh/helm/v3/internal/version.version=${version}" \
	"helm.sh/helm/v3/cmd/helm@${version}"
