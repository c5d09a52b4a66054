package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// goneAPI is what the API says of a container that may be gone.
type goneAPI struct {
	ID          string     `json:"id"`
	Cgroup      string     `json:"cgroup"`
	Status      string     `json:"status"`
	Gone        bool       `json:"gone"`
	GoneAt      *time.Time `json:"gone_at"`
	WasLeaking  bool       `json:"was_leaking"`
	Leaking     bool       `json:"leaking"`
	Growth      float64    `json:"growth_bytes_per_second"`
	Confidence  float64    `json:"confidence"`
	TimeToLimit *float64   `json:"time_to_limit_seconds"`
	LastSeen    time.Time  `json:"last_seen"`
}

// goneContainer returns the API's record of the container at cgroup.
func (a *agent) goneContainer(t *testing.T, cgroup string) (goneAPI, bool) {
	t.Helper()
	resp, err := http.Get(a.url + "/api/v1/containers")
	if err != nil {
		t.Fatalf("GET /api/v1/containers: %v", err)
	}
	defer resp.Body.Close()
	var list []goneAPI
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("decoding /api/v1/containers: %v", err)
	}
	for _, c := range list {
		if c.Cgroup == cgroup {
			return c, true
		}
	}
	return goneAPI{}, false
}

// scrape parses /metrics and returns, per family, the samples whose cgroup
// label is cgroup, with the label sets that name them.
func (a *agent) scrape(t *testing.T, cgroup string) map[string][]*dto.Metric {
	t.Helper()
	resp, err := http.Get(a.url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string][]*dto.Metric{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cgroup" && l.GetValue() == cgroup {
					out[name] = append(out[name], m)
				}
			}
		}
	}
	return out
}

// collections is the agent's count of completed collections.
func (a *agent) collections(t *testing.T) uint64 {
	t.Helper()
	resp, err := http.Get(a.url + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	var r struct {
		Collections uint64 `json:"collections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("decoding /readyz: %v", err)
	}
	return r.Collections
}

// waitCollections waits, for 15 s at most, until n more collections have
// completed than when it was called.
func (a *agent) waitCollections(t *testing.T, n uint64) {
	t.Helper()
	want := a.collections(t) + n
	deadline := time.Now().Add(15 * time.Second)
	for a.collections(t) < want {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d collections in 15s", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantOnlyOOMKills fails unless the only series of cgroup in /metrics is
// its OOM kill counter: nothing of a gone container reads as current.
func wantOnlyOOMKills(t *testing.T, when string, series map[string][]*dto.Metric) {
	t.Helper()
	for name, ms := range series {
		if name != "leakwatch_container_oom_kills_total" {
			t.Errorf("%s: /metrics still has %d %s series of the gone container", when, len(ms), name)
		}
	}
}

// wantGoneInAPI fails unless the API lists the container as gone, since
// about when, with no current verdict.
func wantGoneInAPI(t *testing.T, a *agent, when, cgroup string, wasLeaking bool, after time.Time) goneAPI {
	t.Helper()
	c, ok := a.goneContainer(t, cgroup)
	switch {
	case !ok:
		t.Errorf("%s: the API no longer lists %s; want it retained as gone", when, cgroup)
	case !c.Gone || c.Status != "gone" || c.GoneAt == nil:
		t.Errorf("%s: %s is %+v, want gone with gone_at", when, cgroup, c)
	case c.GoneAt.Before(after) || c.GoneAt.After(time.Now()):
		t.Errorf("%s: %s gone at %v, want between %v and now", when, cgroup, c.GoneAt, after)
	case c.Leaking || c.Growth != 0 || c.Confidence != 0 || c.TimeToLimit != nil:
		t.Errorf("%s: gone %s still has a verdict: %+v", when, cgroup, c)
	case c.WasLeaking != wasLeaking:
		t.Errorf("%s: %s was_leaking %v, want %v", when, cgroup, c.WasLeaking, wasLeaking)
	}
	return c
}

// A leaking workload is flagged; then its process is ended (by pid) and its
// cgroup removed. Within two collections its gauges are off /metrics (only
// its OOM kill counter stays), the API says it is gone and when, and `top`
// lists it after every live container, marked. The alerts, evaluated by
// promtool on the series recorded from this agent, resolve once it is gone.
// After a restart on the same --state-dir it is still gone, and so is a
// container whose cgroup went while the agent was down.
func TestGoneContainerLeavesMetricsAndStaysGoneAcrossRestart(t *testing.T) {
	cgtest.RequirePrivileged(t)
	memwork, _ := cgtest.Workloads(t)
	bin := agenttest.Build(t)
	stateDir := t.TempDir()
	flags := []string{"--state-dir", stateDir, "--interval", "1s", "--detect-warm-up", "15s", "--detect-window", "5s", "--detect-persistence", "20s"}
	a := wrap(agenttest.Launch(t, bin, flags...))

	leakCG := cgtest.New(t, 1024*mib)
	leaker := leakCG.Start(t, memwork)
	// 4 MiB/s, bounded to 700 MiB by the loop and 1 GiB by the cgroup.
	stopLeak := leaker.Repeat(t, "leak 1024 1", 250*time.Millisecond, 700)
	defer stopLeak()
	// A quiet workload whose cgroup goes while the agent is down.
	downCG := cgtest.New(t, 256*mib)
	quiet := downCG.Start(t, memwork)
	quiet.Do(t, "touch 8192")

	// Record the alerting series of the leaker, one scrape a second, from
	// before it is flagged until after it is gone.
	rec := &recording{}
	start := time.Now()
	for {
		if time.Since(start) > 120*time.Second {
			t.Fatal("leak not flagged (with a time to limit) within 120s")
		}
		s := a.scrape(t, leakCG.Rel)
		rec.add(s)
		if c, _ := a.goneContainer(t, leakCG.Rel); c.Leaking && len(s["leakwatch_container_time_to_limit_seconds"]) == 1 {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("leak flagged after %v", time.Since(start).Round(time.Second))
	// Long enough leaking for the time-to-limit alert (10m, a minute a scrape).
	for range 12 {
		time.Sleep(time.Second)
		rec.add(a.scrape(t, leakCG.Rel))
	}
	firingStep := len(rec.steps) - 1

	stopLeak()
	removed := time.Now()
	leakCG.Remove(t) // ends the leaker by its pid, then removes the cgroup
	a.waitCollections(t, 2)
	after := a.scrape(t, leakCG.Rel)
	rec.add(after)
	wantOnlyOOMKills(t, "two collections after the removal", after)
	if len(after) == 0 {
		t.Error("the gone container's OOM kill counter left /metrics at once; it must stay for the retention")
	}
	a.promtoolCheck(t)
	c := wantGoneInAPI(t, a, "after the removal", leakCG.Rel, true, removed)
	for range 2 {
		time.Sleep(time.Second)
		rec.add(a.scrape(t, leakCG.Rel))
	}
	rec.promtoolTest(t, firingStep, len(rec.steps)-1)

	// top: every live container first, then the gone ones, marked.
	out, err := exec.Command(bin, "top", "--once", "--limit", "100000", "--server", a.url).CombinedOutput()
	if err != nil {
		t.Fatalf("leakwatch top: %v\n%s", err, out)
	}
	rows := strings.Split(strings.TrimSpace(string(out)), "\n")[1:]
	ours, firstGone, lastLive := -1, -1, -1
	for i, r := range rows {
		r = strings.TrimSpace(r)
		// The LEAK column, then the container's name, last.
		isGone := strings.Contains(r, "  gone  ") || strings.Contains(r, "  gone (was LEAK)  ")
		if strings.Fields(r)[0] == c.ID {
			ours = i
			if !strings.Contains(r, "  gone (was LEAK)  ") {
				t.Errorf("top shows the gone leaker as %q, want it marked gone (was LEAK)", r)
			}
		}
		if isGone && firstGone < 0 {
			firstGone = i
		}
		if !isGone {
			lastLive = i
		}
	}
	if ours < 0 || ours < lastLive || firstGone >= 0 && lastLive > firstGone {
		t.Errorf("top: gone leaker at row %d, first gone row %d, last live row %d; want gone ones after every live one:\n%s",
			ours, firstGone, lastLive, out)
	}

	// Restart: the quiet workload's cgroup goes while the agent is down.
	// Its last sighting is the agent's last collection, a second or so
	// before it is asked to stop.
	if d, ok := a.goneContainer(t, downCG.Rel); !ok || d.Gone {
		t.Fatalf("quiet workload before the restart: %+v (listed %v), want tracked and live", d, ok)
	}
	stopping := time.Now()
	a.Stop()
	if _, err := os.Stat(filepath.Join(stateDir, "leakwatch.db")); err != nil {
		t.Fatalf("no state store after a clean stop: %v", err)
	}
	downCG.Remove(t)
	a = wrap(agenttest.Launch(t, bin, flags...))
	for _, when := range []string{"first collection after the restart", "third collection after the restart"} {
		wantOnlyOOMKills(t, when, a.scrape(t, leakCG.Rel))
		wantOnlyOOMKills(t, when, a.scrape(t, downCG.Rel))
		wantGoneInAPI(t, a, when, leakCG.Rel, true, removed)
		d := wantGoneInAPI(t, a, when, downCG.Rel, false, stopping.Add(-5*time.Second))
		if d.GoneAt != nil && !d.GoneAt.Equal(d.LastSeen) {
			t.Errorf("%s: gone while the agent was down, gone at %v, want its last sighting %v", when, d.GoneAt, d.LastSeen)
		}
		a.promtoolCheck(t)
		a.waitCollections(t, 2)
	}
}

// recording holds the alerting series of one container, one step a scrape.
type recording struct {
	labels string               // the container's labels, as in the exposition
	steps  []map[string]float64 // family → value; absent when not exported
}

var alertFamilies = []string{
	"leakwatch_container_leaking",
	"leakwatch_container_leak_confidence",
	"leakwatch_container_time_to_limit_seconds",
}

func (r *recording) add(series map[string][]*dto.Metric) {
	step := map[string]float64{}
	for _, name := range alertFamilies {
		ms := series[name]
		if len(ms) != 1 {
			continue
		}
		step[name] = ms[0].GetGauge().GetValue()
		if r.labels == "" {
			var ls []string
			for _, l := range ms[0].GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			r.labels = strings.Join(ls, ",")
		}
	}
	r.steps = append(r.steps, step)
}

// promtoolTest runs the shipped rules with promtool on the recording, one
// scrape a minute: LeakwatchContainerMemoryLimitSoon fires at firing (the
// recording must be meaningful), and neither container alert fires at end,
// once the series are gone (Prometheus marks them stale at the first scrape
// without them).
func (r *recording) promtoolTest(t *testing.T, firing, end int) {
	t.Helper()
	var b strings.Builder
	rules, err := filepath.Abs(filepath.Join(agenttest.ModuleRoot(), "deploy", "prometheus", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "rule_files: [%q]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n", rules)
	for _, name := range alertFamilies {
		var vals []string
		seen := false
		for _, s := range r.steps {
			v, ok := s[name]
			switch {
			case ok:
				seen = true
				vals = append(vals, fmt.Sprint(v))
			case seen:
				vals = append(vals, "stale")
			default:
				vals = append(vals, "_")
			}
		}
		fmt.Fprintf(&b, "      - series: '%s{job=\"leakwatch\",instance=\"e2e\",%s}'\n        values: '%s'\n",
			name, r.labels, strings.Join(vals, " "))
	}
	fmt.Fprintf(&b, "    promql_expr_test:\n")
	fmt.Fprintf(&b, "      - eval_time: %dm\n        expr: count(ALERTS{alertname=\"LeakwatchContainerMemoryLimitSoon\",alertstate=\"firing\"})\n        exp_samples: [{labels: '{}', value: 1}]\n", firing)
	fmt.Fprintf(&b, "    alert_rule_test:\n")
	for _, alert := range []string{"LeakwatchContainerLeaking", "LeakwatchContainerMemoryLimitSoon"} {
		fmt.Fprintf(&b, "      - eval_time: %dm\n        alertname: %s\n        exp_alerts: []\n", end, alert)
	}
	file := filepath.Join(t.TempDir(), "recorded_test.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("promtool", "test", "rules", file).CombinedOutput()
	if err != nil {
		t.Errorf("promtool test rules on the series recorded from the agent: %v\n%s\n%s", err, out, b.String())
	}
}
