package main

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const mib = 1 << 20

// footprint runs one agent through the node's growth and records its CPU
// time, memory and map memory at each step.
func (b *bench) footprint() error {
	// The agent's own pprof endpoint (off by default, on here) gives a heap
	// profile at the end of each step: what its memory holds.
	a, err := startAgent(b.agent, b.log, "--web.enable-pprof")
	if err != nil {
		return err
	}
	defer a.stop()
	var cgs []*benchCgroup
	defer func() { stopAll(cgs) }()

	// The reference for the CPU rows: a process that only wakes once a
	// second. On a VM whose host is busy, a wake-up is charged far more than
	// its work (this process 0.00-0.03% of a core in the runs so far, a Go
	// program waiting on a one-second ticker 0.09%), and the agent's figures
	// move with it.
	tick := exec.Command(b.loops, "tick", "86400")
	if err := tick.Start(); err != nil {
		return fmt.Errorf("starting the reference process: %w", err)
	}
	defer func() {
		_ = tick.Process.Kill()
		_ = tick.Wait()
	}()
	b.refPID = tick.Process.Pid

	// Start-up: the first minute, RSS every second; its second half is the
	// idle measurement.
	var rss []float64
	for time.Since(a.started) < time.Minute-3*b.o.window {
		s, err := a.sample()
		if err != nil {
			return err
		}
		rss = append(rss, float64(s.rss)/mib)
		time.Sleep(time.Second)
	}
	idleRSS, last, err := b.step(a, "idle node", nil)
	if err != nil {
		return err
	}
	startupPeak := float64(last.hwm) / mib
	steady := median(idleRSS)
	b.add(row{Section: "footprint", Measure: "startup: peak RSS in the first minute (MiB)", Values: []float64{startupPeak}, Note: fmt.Sprintf("RSS 1 s after start %.1f MiB", rss[min(1, len(rss)-1)])})
	b.add(row{Section: "footprint", Measure: "startup: peak / steady RSS (idle, 30-60 s)", Values: []float64{startupPeak / steady}, Limit: 1.5, Target: "≤1.5x", Note: fmt.Sprintf("steady %.1f MiB", steady)})

	for _, n := range []int{10, 100, 500} {
		var names []string
		for len(cgs) < n {
			c, err := b.h.newCgroup(64 * mib)
			if err != nil {
				return err
			}
			cgs = append(cgs, c)
			if err := c.start(b.loops, "hold", "256"); err != nil {
				return err
			}
		}
		for _, c := range cgs {
			names = append(names, filepath.Base(c.dir))
		}
		if err := waitSeen(a, names); err != nil {
			return err
		}
		if _, _, err := b.step(a, fmt.Sprintf("%d cgroups", n), nil); err != nil {
			return err
		}
	}
	stopAll(cgs)
	cgs = nil

	// 20,000 distinct allocating stacks in one cgroup, and its profile.
	c, err := b.h.newCgroup(1 << 30)
	if err != nil {
		return err
	}
	cgs = append(cgs, c)
	if err := c.start(b.loops, "stacks", "20000"); err != nil {
		return err
	}
	if err := waitSeen(a, []string{filepath.Base(c.dir)}); err != nil {
		return err
	}
	extra := func() []row {
		ids, err := a.containerIDs()
		if err != nil {
			return nil
		}
		var id string
		for cg, i := range ids {
			if strings.HasSuffix(cg, "/"+filepath.Base(c.dir)) {
				id = i
			}
		}
		start := time.Now()
		size, err := a.profile(id, "inuse")
		if err != nil {
			progress("profile: %v", err)
			return nil
		}
		return []row{{Section: "footprint", Measure: "20k stacks: inuse profile download (s)", Values: []float64{time.Since(start).Seconds()}, Note: fmt.Sprintf("%d bytes, first download, symbolized", size)}}
	}
	if _, _, err := b.step(a, "20k stacks", extra); err != nil {
		return err
	}
	stopAll(cgs)
	cgs = nil

	// A sustained page-fault loop, the agent's CPU while it runs.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var loopErr error
	wg.Go(func() {
		for !stop.Load() {
			if _, err := runLoop(b.loops, allLoops[0]); err != nil {
				loopErr = err
				return
			}
		}
	})
	_, _, err = b.step(a, "page-fault loop", nil)
	stop.Store(true)
	wg.Wait()
	return errors.Join(err, loopErr)
}

// settle is how long a footprint step waits before it measures: the agent's
// default collection interval.
const settle = 10 * time.Second

// step waits settle (but in the idle step, which follows the first minute),
// measures three CPU windows and adds the rows of one footprint step, with
// the agent's heap profile saved beside the raw numbers; extra (if any)
// runs after the first window and adds rows of its own. It
// returns the RSS samples taken (MiB, one a second) and the last sample.
func (b *bench) step(a *agent, label string, extra func() []row) ([]float64, procSample, error) {
	progress("footprint: %s", label)
	if label != "idle node" {
		// One collection interval for the agent to take in what the step
		// started (capture the new processes, first reads): the rows are
		// its steady state.
		time.Sleep(settle)
	}
	var cpu, refCPU, rss []float64
	s0, err := a.sample()
	if err != nil {
		return nil, s0, err
	}
	var extraRows []row
	for w := range 3 {
		start := s0
		refStart, refErr := sampleProc(b.refPID)
		end := time.Now().Add(b.o.window)
		for time.Now().Before(end) {
			time.Sleep(time.Second)
			s, err := a.sample()
			if err != nil {
				return nil, s, err
			}
			rss = append(rss, float64(s.rss)/mib)
			s0 = s
		}
		cpu = append(cpu, cpuPercent(start, s0))
		if refEnd, err := sampleProc(b.refPID); refErr == nil && err == nil {
			refCPU = append(refCPU, cpuPercent(refStart, refEnd))
		}
		if w == 0 && extra != nil {
			extraRows = extra()
			s0, err = a.sample() // the download's own cost is not idle CPU
			if err != nil {
				return nil, s0, err
			}
		}
	}
	m, err := a.metrics()
	if err != nil {
		return nil, s0, err
	}
	heapNote := ""
	heapFile := filepath.Join(b.o.out, "heap-"+strings.ReplaceAll(label, " ", "-")+".pb.gz")
	if err := a.saveHeapProfile(heapFile); err != nil {
		progress("heap profile: %v", err)
	} else {
		heapNote = "; heap profile " + filepath.Base(heapFile)
	}
	cpuLimit, cpuTarget := 0.0, ""
	switch label {
	case "idle node":
		cpuLimit, cpuTarget = 0.2, "≤0.2% (idle)"
	case "100 cgroups":
		cpuLimit, cpuTarget = 0.3, "≤0.3% (100 containers)"
	case "page-fault loop":
		cpuLimit, cpuTarget = 2, "≤2%"
	}
	entries := fmt.Sprintf("entries: mappings %.0f, stacks %.0f, fault keys %.0f, cgroups %.0f; stacks_full drops %.0f",
		m[`leakwatch_bpf_map_entries{map="live_mappings"}`], m[`leakwatch_bpf_map_entries{map="stack_traces"}`],
		m[`leakwatch_bpf_map_entries{map="fault_samples"}`], m[`leakwatch_bpf_map_entries{map="cgroup_counters"}`],
		m[`leakwatch_drops_total{reason="stacks_full"}`])
	// The mean of the windows, not their median: the agent works once an
	// interval (10 s), so a window holds one collection, or two, or none.
	windows := make([]string, len(cpu))
	for i, c := range cpu {
		windows[i] = fmt.Sprintf("%.2f", c)
	}
	b.add(row{Section: "footprint", Measure: label + ": agent CPU (% of a core)", Values: []float64{mean(cpu)}, Limit: cpuLimit, Target: cpuTarget,
		Note: fmt.Sprintf("mean of %d windows of %s: %s; a process waking once a second: %.2f", len(cpu), b.o.window, strings.Join(windows, ", "), mean(refCPU))})
	b.add(row{Section: "footprint", Measure: label + ": agent RSS (MiB)", Values: rss, Limit: 40, Target: "≤40 MiB",
		Note: fmt.Sprintf("at end: anon %.1f, file %.1f, Go heap in use %.1f MiB%s",
			float64(s0.anon)/mib, float64(s0.rss-s0.anon)/mib, m["go_memstats_heap_inuse_bytes"]/mib, heapNote)})
	b.add(row{Section: "footprint", Measure: label + ": agent peak RSS so far, VmHWM (MiB)", Values: []float64{float64(s0.hwm) / mib}, Limit: 40, Target: "≤40 MiB"})
	b.add(row{Section: "footprint", Measure: label + ": BPF map memory (MiB)", Values: []float64{m["leakwatch_bpf_map_memory_bytes"] / mib}, Limit: 32, Target: "≤32 MiB", Note: entries})
	for _, r := range extraRows {
		b.add(r)
	}
	return rss, s0, nil
}

// waitSeen waits until the agent lists a container for each cgroup name,
// for at most 45 s (the default interval is 10 s).
func waitSeen(a *agent, names []string) error {
	deadline := time.Now().Add(45 * time.Second)
	for {
		ids, err := a.containerIDs()
		if err == nil {
			seen := make(map[string]bool, len(ids))
			for cg := range ids {
				seen[filepath.Base(cg)] = true
			}
			missing := 0
			for _, n := range names {
				if !seen[n] {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("agent lists %d of %d bench cgroups after 45s", len(names)-missing, len(names))
			}
		} else if time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Second)
	}
}
