package deploy

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// The shipped rules in a real Prometheus, scraping a real agent: a
// container whose only process is OOM-killed fires LeakwatchContainerOOMKilled
// (the container is gone at once, its count must still rise), and the
// counter matches the kernel's own count.
func TestLiveAlertOOMKilled(t *testing.T) {
	cgtest.RequirePrivileged(t)
	prometheus := requireTool(t, "prometheus", "install the Debian package prometheus (hack/install-deps.sh does)",
		"/usr/bin/prometheus")
	memwork, _ := cgtest.Workloads(t)

	agentAddr := agenttest.Start(t, "--interval", "1s").Addr
	promURL := startPrometheus(t, prometheus, agentAddr)

	g := cgtest.New(t, 64*mib)
	p := g.Start(t, memwork)
	p.Do(t, "nop")
	series := `leakwatch_container_oom_kills_total{cgroup="` + g.Rel + `"}`
	// The counter is exported from 0 before any kill.
	waitQuery(t, promURL, series+" == 0", time.Minute)

	p.Send(t, "oom")
	if st := p.Wait(t, 60*time.Second); st.Success() {
		t.Fatalf("memwork in %s exited cleanly, want OOM-killed", g.Rel)
	}
	kernel, err := g.OOMKills()
	if err != nil || kernel != 1 {
		t.Fatalf("the kernel counted %d OOM kills in %s (err %v), want 1", kernel, g.Rel, err)
	}
	start := time.Now()
	deadline := start.Add(time.Minute)
	for {
		for _, a := range activeAlerts(t, promURL) {
			if a.Labels["alertname"] == "LeakwatchContainerOOMKilled" && a.Labels["cgroup"] == g.Rel {
				t.Logf("LeakwatchContainerOOMKilled %s for %s %v after the kill", a.State, g.Rel, time.Since(start).Round(time.Second))
				if a.State != "firing" {
					t.Errorf("state %q, want firing (the rule has no for:)", a.State)
				}
				waitQuery(t, promURL, series+" == 1", 10*time.Second)
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("LeakwatchContainerOOMKilled not firing for %s within a minute of its kill", g.Rel)
		}
		time.Sleep(time.Second)
	}
}

// waitQuery waits until a PromQL query returns at least one series.
func waitQuery(t *testing.T, promURL, query string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(query))
		if err != nil {
			t.Fatalf("querying %s: %v", query, err)
		}
		var body struct {
			Data struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatalf("querying %s: %v", query, err)
		}
		if len(body.Data.Result) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s returned nothing within %v", query, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
