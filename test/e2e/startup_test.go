package e2e

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// runOnce runs `leakwatch run` expecting it to stop by itself, and returns
// its exit code and stderr.
func runOnce(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), stderr.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, stderr.String()
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		err := <-done
		t.Fatalf("leakwatch kept running (killed: %v); stderr:\n%s", err, stderr.String())
	}
	return 0, ""
}

// Without the privileges it needs, leakwatch stops at once with exit code
// 3 and a message that says what is missing and how to fix it: as an
// unprivileged user, and as root with every capability dropped.
func TestStartupWithoutPrivileges(t *testing.T) {
	cgtest.RequirePrivileged(t)
	bin := agenttest.Build(t)
	// The unprivileged user must be able to reach and run the binary (test
	// temp dirs are 0700 up to the test's own).
	for d := filepath.Dir(bin); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) not found: %v", err)
	}
	for name, cmd := range map[string]*exec.Cmd{
		"nobody": func() *exec.Cmd {
			c := exec.Command(bin, "run", "--listen", agenttest.FreePort(t))
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			return c
		}(),
		"root without capabilities": exec.Command(setpriv, "--inh-caps=-all", "--bounding-set=-all", "--",
			bin, "run", "--listen", agenttest.FreePort(t)),
	} {
		code, stderr := runOnce(t, cmd)
		t.Logf("%s: exit %d: %s", name, code, strings.TrimSpace(stderr))
		if code != 3 || !strings.Contains(stderr, "CAP_BPF") || !strings.Contains(stderr, "fix:") {
			t.Errorf("%s: exit %d, stderr %q; want exit 3 naming CAP_BPF and the fix", name, code, stderr)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Where a part cannot run, the agent runs without it and says so: here
// page-fault sampling is turned off, and /readyz and the metrics name it.
func TestDegradedModeIsReported(t *testing.T) {
	a := startAgent(t, "--interval", "1s", "--fault-sample-bytes", "0")
	resp, body := get(t, a.url+"/readyz")
	if resp != 200 || !strings.Contains(body, "fault_sampling") {
		t.Errorf("/readyz: %d %s; want ready, listing fault_sampling as degraded", resp, body)
	}
	_, metrics := get(t, a.url+"/metrics")
	if !strings.Contains(metrics, `leakwatch_degraded{part="fault_sampling"} 1`) {
		t.Errorf("/metrics lacks leakwatch_degraded{part=\"fault_sampling\"} 1")
	}
}
