// Package e2e runs the real leakwatch binary against real workloads in
// cgroups made beneath the test's own, and checks what users see: the
// metrics and the JSON API.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
	"github.com/leakwatch/leakwatch/test/promtool"
)

const mib = 1 << 20

func TestMain(m *testing.M) { cgtest.Main(m) }

// agent is a running `leakwatch run`, with the helpers the tests here use.
type agent struct {
	*agenttest.Agent
	url string
	cmd *exec.Cmd
}

func wrap(a *agenttest.Agent) *agent { return &agent{Agent: a, url: a.URL, cmd: a.Cmd} }

// startAgent builds leakwatch and runs it on a free loopback port with the
// given extra flags, until the test ends.
func startAgent(t *testing.T, flags ...string) *agent {
	t.Helper()
	cgtest.RequirePrivileged(t)
	return wrap(agenttest.Start(t, flags...))
}

type apiContainer struct {
	ID          string   `json:"id"`
	Cgroup      string   `json:"cgroup"`
	Leaking     bool     `json:"leaking"`
	Growth      float64  `json:"growth_bytes_per_second"`
	Confidence  float64  `json:"confidence"`
	MemoryBytes uint64   `json:"memory_bytes"`
	LimitBytes  uint64   `json:"limit_bytes"`
	TimeToLimit *float64 `json:"time_to_limit_seconds"`
	MappedBytes uint64   `json:"mapped_bytes"`
	OOMKills    uint64   `json:"oom_kills"`
}

// getJSON GETs path from the agent and decodes its JSON into v.
func (a *agent) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(a.url + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
}

func (a *agent) containers(t *testing.T) map[string]apiContainer {
	t.Helper()
	var list []apiContainer
	a.getJSON(t, "/api/v1/containers", &list)
	byCgroup := make(map[string]apiContainer, len(list))
	for _, c := range list {
		byCgroup[c.Cgroup] = c
	}
	return byCgroup
}

// leakingMetric reads leakwatch_container_leaking for one cgroup from
// /metrics: 1, 0, or -1 when the series is absent.
func (a *agent) leakingMetric(t *testing.T, cgroup string) int {
	t.Helper()
	resp, err := http.Get(a.url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	label := fmt.Sprintf(`cgroup=%q`, cgroup)
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "leakwatch_container_leaking{") && strings.Contains(line, label) {
			if strings.HasSuffix(line, " 1") {
				return 1
			}
			return 0
		}
	}
	return -1
}

// promtoolCheck checks the live exposition, as Prometheus' own linter.
func (a *agent) promtoolCheck(t *testing.T) {
	t.Helper()
	resp, err := http.Get(a.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: HTTP %d, %v", resp.StatusCode, err)
	}
	promtool.CheckMetrics(t, body, false)
}

// A leaking workload is flagged within a bound, through the API and the
// metrics; a sawtooth workload (a GC-like cycle shorter than the detector's
// window) running at the same time never is.
func TestRunFlagsLeakNotSawtooth(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "1s", "--detect-warm-up", "15s", "--detect-window", "5s", "--detect-persistence", "20s")

	leakCG := cgtest.New(t, 1024*mib)
	sawCG := cgtest.New(t, 512*mib)
	leaker := leakCG.Start(t, memwork)
	sawer := sawCG.Start(t, memwork)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// 4 MiB/s of leak, bounded to 600 MiB by the loop and 1 GiB by the cgroup.
	wg.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 600; i++ {
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
	// Sawtooth: 16 MiB grown over 4 s, then all given back.
	wg.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				cmd := "touch 1024"
				if i%16 == 15 {
					cmd = "free"
				}
				if _, err := sawer.Call(cmd); err != nil {
					t.Errorf("sawtooth: %v", err)
					return
				}
			}
		}
	})

	start := time.Now()
	deadline := start.Add(120 * time.Second)
	var flagged time.Duration
	for time.Now().Before(deadline) {
		cs := a.containers(t)
		if saw, ok := cs[sawCG.Rel]; ok && saw.Leaking {
			t.Fatalf("sawtooth workload flagged as leaking after %v: %+v", time.Since(start), saw)
		}
		if a.leakingMetric(t, sawCG.Rel) == 1 {
			t.Fatalf("sawtooth workload leaking in /metrics after %v", time.Since(start))
		}
		if l, ok := cs[leakCG.Rel]; ok && l.Leaking && flagged == 0 {
			flagged = time.Since(start)
			t.Logf("leak flagged after %v: growth %.0f B/s, confidence %.2f, mapped %d MiB, limit %d MiB",
				flagged, l.Growth, l.Confidence, l.MappedBytes/mib, l.LimitBytes/mib)
			if l.Growth < 2*mib || l.Growth > 6*mib {
				t.Errorf("growth %.0f B/s, want about 4 MiB/s", l.Growth)
			}
			if l.LimitBytes != 1024*mib || l.TimeToLimit == nil || *l.TimeToLimit <= 0 {
				t.Errorf("limit %d, time to limit %v: want 1 GiB and a positive projection", l.LimitBytes, l.TimeToLimit)
			}
			if l.MappedBytes < 32*mib {
				t.Errorf("tracer sees %d MiB mapped by the leaker, want most of what it leaked", l.MappedBytes/mib)
			}
			if m := a.leakingMetric(t, leakCG.Rel); m != 1 {
				t.Errorf("leakwatch_container_leaking for the leaker is %d in /metrics, want 1", m)
			}
			a.promtoolCheck(t)
		}
		// Keep watching the sawtooth for a while after the leak is caught.
		if flagged > 0 && time.Since(start) > flagged+20*time.Second {
			return
		}
		time.Sleep(time.Second)
	}
	if flagged == 0 {
		t.Fatalf("leaking workload not flagged within %v", deadline.Sub(start))
	}
}
