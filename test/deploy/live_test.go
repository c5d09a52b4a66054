package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

const mib = 1 << 20

// The shipped rules in a real Prometheus, scraping a real agent that watches
// a workload leaking 4 MiB/s: LeakwatchContainerLeaking goes pending (its
// for: is 15 minutes) for that workload's cgroup within two minutes, and
// LeakwatchAgentDown does not go off for the agent. Once the workload is
// ended and its cgroup removed, the alert leaves within seconds: a
// container that no longer exists does not leak.
func TestLiveAlertLeaking(t *testing.T) {
	cgtest.RequirePrivileged(t)
	prometheus := requireTool(t, "prometheus", "install the Debian package prometheus (hack/install-deps.sh does)",
		"/usr/bin/prometheus")
	memwork, _ := cgtest.Workloads(t)

	agentAddr := agenttest.Start(t, "--interval", "1s", "--detect-warm-up", "15s", "--detect-window", "5s", "--detect-persistence", "20s").Addr
	promURL := startPrometheus(t, prometheus, agentAddr)

	g := cgtest.New(t, 1024*mib)
	leaker := g.Start(t, memwork)
	// 4 MiB/s, bounded to 600 MiB by the loop and 1 GiB by the cgroup.
	stopLeak := leaker.Repeat(t, "leak 1024 1", 250*time.Millisecond, 600)

	start := time.Now()
	deadline := start.Add(2 * time.Minute)
	for !leakAlerted(t, promURL, g.Rel) {
		alerts := activeAlerts(t, promURL)
		for _, a := range alerts {
			// Before the first scrape, absent(up) is rightly pending; a
			// failed scrape of the agent (up == 0) is not.
			if a.Labels["alertname"] == "LeakwatchAgentDown" && a.Labels["instance"] != "" {
				t.Fatalf("LeakwatchAgentDown is %s while the agent runs: %v", a.State, a.Labels)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("LeakwatchContainerLeaking not pending for %s within %v; active alerts: %+v",
				g.Rel, deadline.Sub(start), alerts)
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("LeakwatchContainerLeaking active for %s after %v", g.Rel, time.Since(start).Round(time.Second))

	stopLeak()
	g.Remove(t) // ends the leaker by its pid, then removes the cgroup
	removed := time.Now()
	for leakAlerted(t, promURL, g.Rel) {
		if time.Since(removed) > 30*time.Second {
			t.Fatalf("LeakwatchContainerLeaking still active for %s 30s after its cgroup was removed", g.Rel)
		}
		time.Sleep(time.Second)
	}
	t.Logf("LeakwatchContainerLeaking left %v after the cgroup was removed", time.Since(removed).Round(time.Second))
}

// leakAlerted says whether LeakwatchContainerLeaking is pending or firing
// for cgroup.
func leakAlerted(t *testing.T, promURL, cgroup string) bool {
	t.Helper()
	for _, a := range activeAlerts(t, promURL) {
		if a.Labels["alertname"] == "LeakwatchContainerLeaking" && a.Labels["cgroup"] == cgroup {
			if a.State != "pending" && a.State != "firing" {
				t.Errorf("LeakwatchContainerLeaking state %q, want pending or firing", a.State)
			}
			return true
		}
	}
	return false
}

type alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func activeAlerts(t *testing.T, promURL string) []alert {
	t.Helper()
	resp, err := http.Get(promURL + "/api/v1/alerts")
	if err != nil {
		t.Fatalf("GET /api/v1/alerts: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []alert `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		t.Fatalf("GET /api/v1/alerts: status %q, %v", body.Status, err)
	}
	return body.Data.Alerts
}

// startLeakwatch builds the agent, runs it on a free loopback port until the
// test ends, and returns its address once it is ready.
// startPrometheus runs Prometheus with the shipped rules, scraping and
// evaluating every second, until the test ends, and returns its URL once
// it is ready.
func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: leakwatch
    honor_labels: true
    static_configs:
      - targets: [%q]
`, repoPath(rulesFile), target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := agenttest.FreePort(t)
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	startLogged(t, cmd, "prometheus", os.Interrupt)
	waitHTTP(t, "http://"+addr+"/-/ready", 30*time.Second)
	return "http://" + addr
}

// startLogged starts cmd with its stderr in the test log, and at the end of
// the test stops it by its pid with sig, killing it after 15 s.
func startLogged(t *testing.T, cmd *exec.Cmd, name string, sig os.Signal) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	var logWG sync.WaitGroup
	logWG.Go(func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log(name + ": " + sc.Text())
		}
	})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s exited with %v after %v", name, err, sig)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			if err := <-done; err != nil {
				t.Logf("killed %s: %v", name, err)
			}
			t.Errorf("%s (pid %d) did not stop within 15s of %v; killed", name, cmd.Process.Pid, sig)
		}
		logWG.Wait()
	})
}

func waitHTTP(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %v (last: %v)", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
