// Package deploy tests what deploy/ ships: the alerting rules with promtool,
// the manifests decoded strictly into the Kubernetes API types and held to a
// security policy, the Helm chart against the manifests, the Grafana
// dashboard's queries, and, as root, the rules in a real Prometheus that
// scrapes a real agent watching a leaking workload.
//
// Tools come from Debian packages (promtool, prometheus: hack/install-deps.sh)
// and hack/install-helm.sh (bin/helm). A missing tool skips its tests, or
// fails them when LEAKWATCH_REQUIRE_PRIVILEGED=1 (as in CI).
package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

func TestMain(m *testing.M) { cgtest.Main(m) }

// commandTimeout bounds every tool run, so a hung tool fails its test.
const commandTimeout = 2 * time.Minute

// repoPath returns the absolute path of a file of the repository.
func repoPath(rel ...string) string {
	return filepath.Join(append([]string{agenttest.ModuleRoot()}, rel...)...)
}

// requireTool returns the path of a tool: the first executable of paths,
// else name on PATH. When there is none it skips the test, or fails it
// under LEAKWATCH_REQUIRE_PRIVILEGED=1, saying how to install it.
func requireTool(t testing.TB, name, install string, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found: %s", name, install)
	if os.Getenv("LEAKWATCH_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal(msg + " (LEAKWATCH_REQUIRE_PRIVILEGED=1 forbids skipping)")
	}
	t.Skip(msg)
	return ""
}

func promtool(t testing.TB) string {
	t.Helper()
	return requireTool(t, "promtool", "install the Debian package prometheus (hack/install-deps.sh does)")
}

func helm(t testing.TB) string {
	t.Helper()
	return requireTool(t, "helm", "run hack/install-helm.sh (installs bin/helm)", repoPath("bin", "helm"))
}

// run runs a tool from the repository root and returns its standard output,
// failing the test with its output when it fails.
func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = agenttest.ModuleRoot()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s%s", filepath.Base(name), args, err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

func readFile(t testing.TB, rel ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(rel...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
