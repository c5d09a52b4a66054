package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/leakwatch/leakwatch/pkg/cgroups"
	"github.com/leakwatch/leakwatch/pkg/tracer"
)

type traceConfig struct {
	Tracer     tracer.Config
	Interval   time.Duration
	Top        int
	CgroupRoot string
	LogLevel   slog.Level
}

func (c traceConfig) Validate() error {
	if c.Interval < 100*time.Millisecond {
		return errors.New("--interval must be at least 100ms")
	}
	if c.Top < 1 {
		return errors.New("--top must be at least 1")
	}
	return c.Tracer.Validate()
}

func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := traceConfig{Tracer: tracer.DefaultConfig()}
	fs := newFlagSet("trace", "trace [flags]", stderr)
	fs.DurationVar(&cfg.Interval, "interval", 2*time.Second, "time between two tables")
	fs.IntVar(&cfg.Top, "top", 20, "cgroups shown, by outstanding bytes")
	fs.Uint64Var(&cfg.Tracer.FaultSampleBytes, "fault-sample-bytes", cfg.Tracer.FaultSampleBytes, "faulted bytes between two page-fault samples (0: off)")
	fs.Uint64Var(&cfg.Tracer.MmapSampleBytes, "mmap-sample-bytes", cfg.Tracer.MmapSampleBytes, "private anonymous mappings shorter than this are sampled by size, the rest tracked exactly (0: track all)")
	fs.StringVar(&cfg.CgroupRoot, "cgroup-root", "/sys/fs/cgroup", "where the host's cgroup hierarchies are mounted")
	fs.StringVar(&cfg.Tracer.ProcRoot, "proc-root", cfg.Tracer.ProcRoot, "where the host's /proc is mounted")
	cfg.LogLevel = slog.LevelInfo
	fs.Var(levelFlag{&cfg.LogLevel}, "log-level", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)

	hier, err := cgroups.Detect(cfg.CgroupRoot)
	if err != nil {
		return err
	}
	cfg.Tracer.StackCopyBytes = 0 // trace shows figures, no stacks: nothing to unwind
	tr, err := tracer.New(cfg.Tracer, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := tr.Close(); err != nil {
			log.Warn("closing tracer", "err", err)
		}
	}()
	runErr := make(chan error, 1)
	go func() { runErr <- tr.Run(ctx) }()
	go func() {
		for ev := range tr.Events() {
			if ev.Type == tracer.EventOOMKill {
				log.Warn("OOM kill", "pid", ev.Process.PID, "comm", ev.Comm, "memcg", ev.Memcg,
					"anon_rss_bytes", ev.AnonRSSBytes)
			}
		}
	}()

	fmt.Fprintf(stdout, "tracing on %s (cgroup %s, memory controller at %s); fault sampling: %v %s\n",
		tr.Features().Kernel, hier.Layout, hier.Dir, tr.Features().FaultSampling, tr.Features().FaultNote)
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	var prev *tracer.Snapshot
	for {
		select {
		case <-ctx.Done():
			return <-runErr
		case err := <-runErr:
			return err
		case <-tick.C:
		}
		snap, err := tr.Snapshot()
		if err != nil {
			return err
		}
		if _, err := hier.Scan(); err != nil {
			log.Debug("scanning cgroups", "err", err)
		}
		printTrace(stdout, hier, snap, prev, cfg.Top)
		prev = snap
	}
}

func printTrace(w io.Writer, hier cgroups.Hierarchy, snap, prev *tracer.Snapshot, top int) {
	ids := make([]uint64, 0, len(snap.Cgroups))
	for id := range snap.Cgroups {
		ids = append(ids, id)
	}
	held := func(id uint64) uint64 { c := snap.Cgroups[id]; return c.MappedBytes + c.BrkBytes }
	slices.SortFunc(ids, func(a, b uint64) int {
		if d := int64(held(b)) - int64(held(a)); d != 0 {
			return int(min(max(d, -1), 1))
		}
		return int(int64(a) - int64(b))
	})
	var drops uint64
	for _, n := range snap.Drops {
		drops += n
	}
	fmt.Fprintf(w, "\n%s  cgroups %d  allocations %d  fault stacks %d  drops %d",
		snap.Taken.Format(time.TimeOnly), len(snap.Cgroups), len(snap.Allocations), len(snap.Faults), drops)
	for _, m := range snap.Maps {
		fmt.Fprintf(w, "  %s %d/%d", m.Name, m.Entries, m.Capacity)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MEMCG\tMAPPED\tHEAP\tMMAP/s\tMUNMAP/s\tFAULTED/s\tFAULTED\t CGROUP\t")
	secs := 0.0
	if prev != nil {
		secs = snap.Taken.Sub(prev.Taken).Seconds()
	}
	for _, id := range ids[:min(top, len(ids))] {
		c := snap.Cgroups[id]
		var p tracer.CgroupCounters
		if prev != nil {
			p = prev.Cgroups[id]
		}
		rate := func(now, before uint64) string {
			if secs <= 0 || now < before {
				return "-"
			}
			return bytesString(uint64(float64(now-before) / secs))
		}
		path := "?"
		if g, ok := hier.Lookup(id); ok {
			path = g.Path
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t %s\t\n", id,
			bytesString(c.MappedBytes), bytesString(c.BrkBytes),
			rate(c.MmapBytes, p.MmapBytes), rate(c.MunmapBytes, p.MunmapBytes),
			rate(c.FaultBytes, p.FaultBytes), bytesString(c.FaultBytes), path)
	}
	tw.Flush()
}

func bytesString(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1fGi", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1fMi", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1fKi", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%dB", b)
}
