package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/leakwatch/leakwatch/test/storm"
)

// stormDuration is the bench's storm: a minute (the end-to-end test's is
// shorter).
const stormDuration = time.Minute

// storm runs the scrape storm and records the agent's peak RSS, its OOM
// kills and the latencies of /metrics and /healthz.
func (b *bench) storm() error {
	pod, err := b.h.newCgroup(storm.PodLimit)
	if err != nil {
		return err
	}
	defer pod.stop()
	var cgs []*benchCgroup
	defer func() { stopAll(cgs) }()
	var names []string
	for len(cgs) < storm.Containers {
		c, err := b.h.newCgroup(16 * mib)
		if err != nil {
			return err
		}
		cgs = append(cgs, c)
		if err := c.start(b.loops, "hold", "64"); err != nil {
			return err
		}
		names = append(names, filepath.Base(c.dir))
		if len(cgs)%500 == 0 {
			progress("storm: %d of %d cgroups", len(cgs), storm.Containers)
		}
	}
	prober, err := storm.BuildProber(b.bins)
	if err != nil {
		return err
	}
	a, err := startAgentIn(b.agent, b.log, pod.dir, []string{"GOMEMLIMIT=" + storm.GoMemLimit})
	if err != nil {
		return err
	}
	defer a.stop()
	if err := waitSeen(a, names); err != nil {
		return err
	}
	before, err := a.sample()
	if err != nil {
		return err
	}
	progress("storm: %d scrapers for %v", storm.Scrapers, stormDuration)
	res, err := storm.Run(context.Background(), storm.Config{URL: a.base, Scrapers: storm.Scrapers, Duration: stormDuration, Prober: prober})
	if err != nil {
		return err
	}
	after, err := a.sample()
	if err != nil {
		return fmt.Errorf("agent gone after the storm: %w", err)
	}
	kills, err := oomKills(pod.dir, b.h.v2)
	if err != nil {
		return err
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	setting := fmt.Sprintf("%d containers, %d scrapers for %v, agent in a %d MiB cgroup with GOMEMLIMIT=%s", storm.Containers, storm.Scrapers, stormDuration, storm.PodLimit/mib, storm.GoMemLimit)
	b.add(row{Section: "storm", Measure: "agent peak RSS (MiB)", Values: []float64{float64(after.hwm) / mib}, Limit: storm.MaxRSS / mib, Target: fmt.Sprintf("≤%d MiB", storm.MaxRSS/mib),
		Note: fmt.Sprintf("%s; before the storm %.1f MiB", setting, float64(before.hwm)/mib)})
	b.add(row{Section: "storm", Measure: "OOM kills in the agent's cgroup", Values: []float64{float64(kills)}, Note: "must be 0"})
	b.add(row{Section: "storm", Measure: "/healthz p99 (ms)", Values: []float64{ms(storm.Quantile(res.Probes, 0.99))}, Limit: 50, Target: "≤50 ms",
		Note: fmt.Sprintf("median %.1f ms, %d probes from a process of their own, %d failed", ms(storm.Quantile(res.Probes, 0.5)), len(res.Probes), res.ProbeFailures)})
	b.add(row{Section: "storm", Measure: "/healthz p99 (ms), asked from the scrapers' process", Values: []float64{ms(storm.Quantile(res.InProcessProbes, 0.99))}, Target: "reference",
		Note: fmt.Sprintf("median %.1f ms, %d probes; waits for that process's scheduler behind %d scrapers", ms(storm.Quantile(res.InProcessProbes, 0.5)), len(res.InProcessProbes), storm.Scrapers)})
	b.add(row{Section: "storm", Measure: "/metrics p99 (s)", Values: []float64{storm.Quantile(res.Scrapes, 0.99).Seconds()}, Limit: 1, Target: "≤1 s",
		Note: fmt.Sprintf("median %.3f s; %d served (%d KiB each), %d refused with 429, %d failed", storm.Quantile(res.Scrapes, 0.5).Seconds(), len(res.Scrapes), res.ScrapeBytes>>10, res.Refused, res.Failed)})
	if kills != 0 || res.Failed != 0 || res.ProbeFailures != 0 {
		return fmt.Errorf("%d OOM kills, %d failed scrapes, %d failed probes (first error: %s)", kills, res.Failed, res.ProbeFailures, res.FirstError)
	}
	return nil
}

// oomKills reads a memory cgroup's OOM kill count: memory.events on v2,
// memory.oom_control on v1.
func oomKills(dir string, v2 bool) (uint64, error) {
	file := "memory.oom_control"
	if v2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no oom_kill in %s", filepath.Join(dir, file))
}
