// Package agenttest runs the real leakwatch binary for end-to-end tests: it
// builds it, starts `leakwatch run` on a free loopback port, waits until it
// is ready, passes its log to the test, and stops it with SIGINT or SIGTERM
// (checking it exits 0) when asked or when the test ends.
package agenttest

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Agent is a running `leakwatch run`.
type Agent struct {
	URL  string // http://127.0.0.1:PORT
	Addr string // 127.0.0.1:PORT
	Cmd  *exec.Cmd

	mu    sync.Mutex
	lines []string
	stop  func(os.Signal)
}

// Build builds leakwatch into the test's temp dir and returns its path.
func Build(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "leakwatch")
	build := exec.Command("go", "build", "-o", bin, "./cmd/leakwatch")
	build.Dir = ModuleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building leakwatch: %v\n%s", err, out)
	}
	return bin
}

// Start builds leakwatch and runs it with the given flags.
func Start(t testing.TB, flags ...string) *Agent {
	t.Helper()
	return Launch(t, Build(t), flags...)
}

// Launch runs an already built leakwatch with the given flags until Stop or
// the end of the test, and returns once /readyz answers 200 (or fails the
// test after 30 s).
func Launch(t testing.TB, bin string, flags ...string) *Agent {
	t.Helper()
	return LaunchIn(t, "", nil, bin, flags...)
}

// LaunchIn is Launch with the agent inside the cgroup directory cgroupDir
// (when not empty: a shell writes its own pid there, then execs the agent,
// so that everything the agent allocates, its BPF maps included, is charged
// there as in its pod) and with env added to its environment.
func LaunchIn(t testing.TB, cgroupDir string, env []string, bin string, flags ...string) *Agent {
	t.Helper()
	addr := FreePort(t)
	args := []string{"run", "--listen", addr}
	if !slices.ContainsFunc(flags, func(f string) bool { return strings.HasPrefix(f, "--tracing") }) {
		// The tests here check the inuse view from the agent's start:
		// the auto mode's escalation is tested on its own (tiers_test.go).
		args = append(args, "--tracing=full")
	}
	args = append(args, flags...)
	cmd := exec.Command(bin, args...)
	if cgroupDir != "" {
		procs := filepath.Join(cgroupDir, "cgroup.procs")
		cmd = exec.Command("/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, procs, bin}, args...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &Agent{URL: "http://" + addr, Addr: addr, Cmd: cmd}
	var logWG sync.WaitGroup
	logWG.Go(func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			a.mu.Lock()
			a.lines = append(a.lines, sc.Text())
			a.mu.Unlock()
			t.Log("leakwatch: " + sc.Text())
		}
	})
	var once sync.Once
	a.stop = func(sig os.Signal) {
		once.Do(func() {
			_ = cmd.Process.Signal(sig)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("leakwatch run exited with %v after %v, want 0", err, sig)
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				t.Errorf("leakwatch run did not stop within 15s of %v", sig)
				if err := <-done; err != nil {
					t.Logf("killed leakwatch run: %v", err)
				}
			}
			logWG.Wait()
		})
	}
	t.Cleanup(a.Stop)

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(a.URL + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("leakwatch not ready within 30s (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the agent with SIGINT and waits for it; it is idempotent.
func (a *Agent) Stop() { a.stop(os.Interrupt) }

// Terminate stops the agent with SIGTERM, as Kubernetes and systemd do,
// and waits for it; once stopped, Stop does nothing.
func (a *Agent) Terminate() { a.stop(syscall.SIGTERM) }

// Signal sends sig to the agent without waiting for anything.
func (a *Agent) Signal(sig os.Signal) error { return a.Cmd.Process.Signal(sig) }

// Logged reports whether the agent's log has a line containing s.
func (a *Agent) Logged(s string) bool { return a.CountLogged(s) > 0 }

// CountLogged counts the lines of the agent's log that contain s.
func (a *Agent) CountLogged(s string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, l := range a.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// FreePort returns a loopback address with a port free at the time.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// ModuleRoot is the repository's root directory.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
