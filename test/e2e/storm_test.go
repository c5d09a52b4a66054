package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
	"github.com/leakwatch/leakwatch/test/storm"
)

// stormDuration is shorter than the bench's minute: the bounds checked
// here are reached within seconds (the peak RSS in the first few builds).
const stormDuration = 20 * time.Second

// stormContainers is fewer than the bench's stormContainers: with 1,800
// the peak was 89 MiB on a moderately busy host but 98.9 MiB with two
// hack/busy-load.sh runs and four builds beside it (the collector starved
// of CPU lets the heap overshoot its goal), so the test's margin under the
// bound would be the node's to take. The bench measures the full scale.
const stormContainers = 1500

// A scrape storm inside the pod's memory limit: 50 clients scraping
// /metrics in a loop, with 1,500 containers added to the node, must neither
// get the agent OOM-killed nor add more than storm.MaxGrowth to its peak RSS
// (the absolute 96 MiB is the bench's, on a quiet node: here the RSS before
// the storm is the node's), and /metrics and /healthz must keep answering
// (a 429 from the scrape cap is an answer).
// Before the shared per-view page, 8 concurrent scrapes at 2,000
// containers OOM-killed the agent within a second; with it, but with label
// pairs built per scrape and Go's default GOGC, the peak was 112-128 MiB.
// The latencies are logged; their targets are checked by `make bench`
// (section storm).
func TestScrapeStormInsideThePodLimit(t *testing.T) {
	cgtest.RequirePrivileged(t)
	bin := agenttest.Build(t)
	prober, err := storm.BuildProber(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pod := cgtest.New(t, storm.PodLimit)

	start := time.Now()
	for i := range stormContainers {
		g, err := cgtest.Make(t, 16*mib)
		if err != nil {
			t.Fatalf("container %d: %v", i, err)
		}
		if _, err := g.Launch(t, "/bin/sleep", "3600"); err != nil {
			t.Fatalf("container %d: %v", i, err)
		}
	}
	t.Logf("%d containers with a process each made in %v", stormContainers, time.Since(start).Round(time.Millisecond))

	// What the node does must not grow the agent during the storm, or the
	// growth measured would be the node's: the agent forgets gone
	// containers at once (the cgroups other programs make and remove would
	// otherwise be retained, up to 1,000 by default, and grow the page the
	// storm scrapes), and walks stacks by frame pointer only (with stack
	// copies, every new program the node runs gets an unwinding table).
	a := agenttest.LaunchIn(t, pod.Dir, []string{"GOMEMLIMIT=" + storm.GoMemLimit}, bin, "--interval", "2s",
		"--max-gone-containers", "0", "--stack-copy-bytes", "0")
	pid := a.Cmd.Process.Pid
	deadline := time.Now().Add(60 * time.Second)
	for {
		tracked, err := trackedContainers(a.URL)
		if err == nil && tracked >= stormContainers {
			t.Logf("agent tracks %d containers", tracked)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent tracks %d containers after 60 s, want at least %d (%v)", tracked, stormContainers, err)
		}
		time.Sleep(500 * time.Millisecond)
	}

	before, err := vmHWM(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent peak RSS before the storm %.1f MiB", float64(before)/mib)
	res, err := storm.Run(t.Context(), storm.Config{URL: a.URL, Scrapers: storm.Scrapers, Duration: stormDuration, Prober: prober})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("storm: %d scrapes of %d KiB (p50 %v, p99 %v), %d refused with 429, %d failed; /healthz p99 %v over %d probes, %d failed",
		len(res.Scrapes), res.ScrapeBytes>>10, storm.Quantile(res.Scrapes, 0.5), storm.Quantile(res.Scrapes, 0.99),
		res.Refused, res.Failed, storm.Quantile(res.Probes, 0.99), len(res.Probes), res.ProbeFailures)

	if kills, err := pod.OOMKills(); err != nil || kills != 0 {
		t.Fatalf("agent's cgroup: %d OOM kills (%v), want 0", kills, err)
	}
	hwm, err := vmHWM(pid)
	if err != nil {
		t.Fatalf("agent gone after the storm? %v", err)
	}
	if tracked, err := trackedContainers(a.URL); err == nil {
		t.Logf("agent tracks %d containers after the storm", tracked)
	}
	t.Logf("agent peak RSS %.1f MiB, %.1f MiB above its peak before the storm (bound %d MiB)", float64(hwm)/mib, float64(hwm-before)/mib, storm.MaxGrowth/mib)
	if hwm-before > storm.MaxGrowth {
		t.Errorf("the storm took the agent's peak RSS from %.1f to %.1f MiB, want at most %d MiB more", float64(before)/mib, float64(hwm)/mib, storm.MaxGrowth/mib)
	}
	if len(res.Scrapes) == 0 || res.Failed != 0 {
		t.Errorf("%d scrapes served, %d failed (first error: %s); want every scrape answered 200 or 429", len(res.Scrapes), res.Failed, res.FirstError)
	}
	if res.ProbeFailures != 0 {
		t.Errorf("/healthz failed %d times during the storm (first error: %s)", res.ProbeFailures, res.FirstError)
	}
}

// trackedContainers reads leakwatch_containers_tracked.
func trackedContainers(url string) (int, error) {
	code, body, err := (&churnClient{url: url, http: http.DefaultClient}).get("/metrics")
	if err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %d %w", code, err)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "leakwatch_containers_tracked ") {
			return int(metricValue(line)), nil
		}
	}
	return 0, fmt.Errorf("no leakwatch_containers_tracked in /metrics")
}

// vmHWM is a process's peak resident memory in bytes.
func vmHWM(pid int) (uint64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
