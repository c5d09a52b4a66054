package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/cgtest"
)

// stoppableAgent is a `leakwatch run` that a test can stop and start again.
type stoppableAgent struct {
	*agent
	logs *logBuffer
	stop func() // SIGINT, and fails the test unless it exits 0 within 15s; idempotent
}

type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func buildLeakwatch(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "leakwatch")
	build := exec.Command("go", "build", "-o", bin, "./cmd/leakwatch")
	build.Dir = moduleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building leakwatch: %v\n%s", err, out)
	}
	return bin
}

// launchAgent runs an already built leakwatch like startAgent does, and
// hands back a stop function too; the test's cleanup stops it if the test
// has not.
func launchAgent(t *testing.T, bin string, flags ...string) *stoppableAgent {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(bin, append([]string{"run", "--listen", addr}, flags...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	var logWG sync.WaitGroup
	logWG.Go(func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.mu.Lock()
			logs.lines = append(logs.lines, sc.Text())
			logs.mu.Unlock()
			t.Log("leakwatch: " + sc.Text())
		}
	})
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("leakwatch run exited with %v after SIGINT, want 0", err)
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				t.Errorf("leakwatch run did not stop within 15s of SIGINT")
				if err := <-done; err != nil {
					t.Logf("killed leakwatch run: %v", err)
				}
			}
			logWG.Wait()
		})
	}
	t.Cleanup(stop)
	a := &stoppableAgent{agent: &agent{url: "http://" + addr, cmd: cmd}, logs: logs, stop: stop}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(a.url + "/readyz")
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

// seriesTimes returns the times of a container's series from the API.
func (a *agent) seriesTimes(t *testing.T, id string) []time.Time {
	t.Helper()
	resp, err := http.Get(a.url + "/api/v1/containers/" + id)
	if err != nil {
		t.Fatalf("GET container %s: %v", id, err)
	}
	defer resp.Body.Close()
	var detail struct {
		Series []struct {
			T time.Time `json:"t"`
		} `json:"series"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&detail); err != nil {
		t.Fatalf("decoding container %s: %v", id, err)
	}
	out := make([]time.Time, len(detail.Series))
	for i, p := range detail.Series {
		out[i] = p.T
	}
	return out
}

// A leak being flagged is still flagged right after the agent restarts with
// the same --state-dir (no new warm-up), with the series from before the
// restart; a store overwritten with garbage is set aside for a clean start.
func TestRestartKeepsDetectionState(t *testing.T) {
	cgtest.RequirePrivileged(t)
	memwork, _ := cgtest.Workloads(t)
	bin := buildLeakwatch(t)
	stateDir := t.TempDir()
	flags := []string{"--state-dir", stateDir, "--interval", "1s", "--detect-warm-up", "15s", "--detect-window", "5s"}
	a := launchAgent(t, bin, flags...)

	leakCG := cgtest.New(t, 1024*mib)
	leaker := leakCG.Start(t, memwork)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// 4 MiB/s, bounded to 700 MiB by the loop and 1 GiB by the cgroup.
	wg.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for range 700 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if _, err := leaker.Call("leak 1024 1"); err != nil {
					t.Errorf("leaker: %v", err)
					return
				}
			}
		}
	})

	start := time.Now()
	var id string
	for id == "" {
		if time.Since(start) > 90*time.Second {
			t.Fatal("leak not flagged within 90s before the restart")
		}
		if c, ok := a.containers(t)[leakCG.Rel]; ok && c.Leaking {
			id = c.ID
			t.Logf("leak flagged after %v", time.Since(start).Round(time.Second))
		}
		time.Sleep(time.Second)
	}
	before := a.seriesTimes(t, id)

	a.stop()
	if _, err := os.Stat(filepath.Join(stateDir, "leakwatch.db")); err != nil {
		t.Fatalf("no state store after a clean stop: %v", err)
	}
	restart := time.Now()
	a = launchAgent(t, bin, flags...)
	if !a.logs.contains("state restored") {
		t.Error("restart does not log the restored state")
	}
	// Warm-up alone would keep it quiet 15s after the restart; allow 3
	// collections, then it must stay flagged.
	time.Sleep(3 * time.Second)
	for time.Since(restart) < 10*time.Second {
		c, ok := a.containers(t)[leakCG.Rel]
		if !ok || !c.Leaking || c.ID != id {
			t.Fatalf("%v after the restart: container %+v (found %v), want id %s still flagged leaking",
				time.Since(restart).Round(100*time.Millisecond), c, ok, id)
		}
		time.Sleep(500 * time.Millisecond)
	}
	after := a.seriesTimes(t, id)
	var old, fresh int
	for _, ts := range after {
		if ts.Before(restart) {
			old++
		} else {
			fresh++
		}
	}
	if old < len(before)/2 || fresh < 3 || !after[0].Equal(before[0]) {
		t.Errorf("series after the restart: %d points from before it (had %d, first %v now %v), %d after; want the old ones kept and new ones added",
			old, len(before), before[0], after[0], fresh)
	}

	a.stop()
	cancel()
	db := filepath.Join(stateDir, "leakwatch.db")
	if err := os.WriteFile(db, []byte(strings.Repeat("garbage!", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	a = launchAgent(t, bin, flags...)
	if aside, _ := filepath.Glob(db + ".corrupt-*"); len(aside) != 1 {
		t.Errorf("files set aside after a corrupt store: %v, want one", aside)
	}
	if !a.logs.contains("moved aside") {
		t.Error("no log line says the corrupt store was moved aside")
	}
	if c, ok := a.containers(t)[leakCG.Rel]; ok && c.Leaking {
		t.Errorf("fresh start still flags the leak from the discarded store: %+v", c)
	}
}
