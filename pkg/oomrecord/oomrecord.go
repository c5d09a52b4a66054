// Package oomrecord keeps the forensic records of OOM kills: who was killed,
// whose limit fired (as the kernel side read it at the kill), the cgroup's
// memory, and the victim's own growth in the minutes before as profiles.
// Records are built by one worker goroutine, never on the path of the
// tracer's events, and only the last Keep are kept.
package oomrecord

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leakwatch/leakwatch/pkg/cgroups"
	"github.com/leakwatch/leakwatch/pkg/containers"
	"github.com/leakwatch/leakwatch/pkg/profile"
	"github.com/leakwatch/leakwatch/pkg/tracer"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// Triggers: whose limit fired (view.OOMKill.Trigger).
const (
	TriggerContainer = "container" // the victim's own memory cgroup
	TriggerAncestor  = "ancestor"  // a cgroup above it
	TriggerNode      = "node"      // the node ran out
	TriggerUnknown   = "unknown"   // the kernel side found none
)

// Config bounds a Recorder.
type Config struct {
	// Keep is how many records are kept, the oldest dropped first.
	Keep int
	// Window is how far before a kill its profiles look.
	Window time.Duration
	// TopStacks is how many stacks a record lists as text.
	TopStacks int
	// Queue bounds the kills waiting to be recorded; past it a kill is
	// counted in Dropped and logged.
	Queue int
	// FaultSampleBytes is the tracer's fault sampling distance, the period
	// of the faults profile.
	FaultSampleBytes uint64
}

// DefaultConfig keeps the last 64 kills with five minutes before each.
func DefaultConfig() Config {
	return Config{Keep: 64, Window: 5 * time.Minute, TopStacks: 5, Queue: 256}
}

// Sources is what records are built from; any field may be nil.
type Sources struct {
	// Hier names memory cgroups by id.
	Hier *cgroups.Hierarchy
	// Made names, by id, a memory cgroup made while the agent ran, even
	// one removed before any scan saw it; nil: none.
	Made func(memcg uint64) (string, bool)
	// Memory reads a cgroup's memory figures.
	Memory func(cgroup string) (view.Memory, error)
	// Profiles holds the growth by stack; Resolver symbolizes it.
	Profiles *profile.Store
	Resolver profile.Resolver
	// Refresh folds the tracer's maps into Profiles now: a fast leak fills
	// a limit between two collections, and the victim's mappings are swept
	// soon after its exit.
	Refresh func()
	// Names fills in what the agent knows of a tracked container (cgroup
	// path, ids, Kubernetes names); false when it tracks none by that id.
	Names func(memcg uint64, k *view.OOMKill) bool
	// Inuse says whether the tracer traces mappings now and since when
	// (zero: since it started); nil: always, from the start. A kill
	// recorded without mappings traced has no inuse profile.
	Inuse func() (since time.Time, on bool)
}

// Record is one kill with its profiles (gzipped pprof, nil when none could
// be built).
type Record struct {
	Kill          view.OOMKill
	Inuse, Faults []byte
}

// Recorder builds and keeps the records. Add never blocks; Run builds.
type Recorder struct {
	cfg   Config
	src   Sources
	log   *slog.Logger
	queue chan tracer.Event

	mu      sync.Mutex // guards seq and records
	seq     uint64
	records []Record

	dropped atomic.Uint64
}

// New returns a Recorder; Run must run for kills to be recorded.
func New(cfg Config, src Sources, logger *slog.Logger) *Recorder {
	d := DefaultConfig()
	if cfg.Keep <= 0 {
		cfg.Keep = d.Keep
	}
	if cfg.Queue <= 0 {
		cfg.Queue = d.Queue
	}
	if cfg.TopStacks <= 0 {
		cfg.TopStacks = d.TopStacks
	}
	return &Recorder{cfg: cfg, src: src, log: logger, queue: make(chan tracer.Event, cfg.Queue)}
}

// Add queues a kill to be recorded. It never blocks: a kill that finds the
// queue full is counted and logged, not recorded.
func (r *Recorder) Add(ev tracer.Event) {
	select {
	case r.queue <- ev:
	default:
		r.dropped.Add(1)
		r.log.Warn("OOM kill not recorded: too many queued", "pid", ev.Process.PID, "memcg", ev.Memcg)
	}
}

// Run records queued kills, in the order they came, until ctx ends.
func (r *Recorder) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-r.queue:
			r.keep(r.build(ev))
		}
	}
}

// Dropped counts kills not recorded because the queue was full.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// build makes the record of one kill: who, whose limit fired, the cgroup's
// memory now, and the victim's own growth before the kill.
func (r *Recorder) build(ev tracer.Event) Record {
	k := view.OOMKill{
		Time: ev.Time, ID: strconv.FormatUint(ev.Memcg, 10), PID: ev.Process.PID, Comm: ev.Comm,
		AnonRSSBytes: ev.AnonRSSBytes, FileRSSBytes: ev.FileRSSBytes,
		ShmemRSSBytes: ev.ShmemRSSBytes, TotalVMBytes: ev.TotalVMBytes,
	}
	if r.src.Names == nil || !r.src.Names(ev.Memcg, &k) {
		if path, ok := r.path(ev.Memcg); ok {
			k.Cgroup = path
			id := containers.Parse(path)
			k.ContainerID, k.PodUID, k.Container = id.ContainerID, id.PodUID, id.Name
		}
	}
	if k.Cgroup != "" && r.src.Memory != nil {
		if m, err := r.src.Memory(k.Cgroup); err == nil {
			k.Memory = m
		}
	}
	k.Trigger, k.TriggerCgroup = r.trigger(ev)

	rec := Record{}
	if r.src.Profiles != nil {
		if r.src.Refresh != nil {
			r.src.Refresh()
		}
		meta := profile.Meta{Container: k.Container, Cgroup: k.Cgroup, Now: ev.Time, FaultSampleBytes: r.cfg.FaultSampleBytes}
		victim := profile.Image{Process: profile.Process{PID: ev.Process.PID, StartTime: ev.Process.StartTime}, ExecID: ev.ExecID}
		var inuse, faults []string
		inuseOn := true
		if r.src.Inuse != nil {
			var since time.Time
			since, inuseOn = r.src.Inuse()
			if inuseOn && !since.IsZero() && ev.Time.Add(-r.cfg.Window).Before(since) {
				meta.InuseSince = since
			}
		}
		// Without mappings traced, no inuse profile: an empty one would
		// read as "nothing mapped".
		if inuseOn {
			if p, err := r.src.Profiles.BuildImage(ev.Memcg, victim, profile.Inuse, r.cfg.Window, r.src.Resolver, meta); err == nil {
				inuse = profile.TopStacks(p, r.cfg.TopStacks, 4)
				rec.Inuse = encode(p)
			}
		}
		if p, err := r.src.Profiles.BuildImage(ev.Memcg, victim, profile.Faults, r.cfg.Window, r.src.Resolver, meta); err == nil {
			faults = profile.TopStacks(p, r.cfg.TopStacks, 4)
			rec.Faults = encode(p)
		}
		// Faulted bytes are mostly what the cgroup was charged for (a
		// read of never-written memory maps the zero page, charges
		// nothing, and counts too: docs/architecture.md); mapped bytes
		// may be reserved and never touched (an allocator's arenas), so
		// they are the fallback when faults were not sampled.
		k.TopStacks, k.TopStacksOf = faults, view.StacksFaulted
		if len(faults) == 0 {
			k.TopStacks, k.TopStacksOf = inuse, view.StacksInuse
		}
	}
	rec.Kill = k
	return rec
}

// trigger names whose limit fired from what the kernel side read at the
// kill.
func (r *Recorder) trigger(ev tracer.Event) (string, string) {
	switch {
	case ev.OOMKind == tracer.OOMGlobal:
		return TriggerNode, ""
	case ev.TriggerMemcg == 0:
		return TriggerUnknown, ""
	}
	path, _ := r.path(ev.TriggerMemcg)
	if ev.TriggerMemcg == ev.Memcg {
		return TriggerContainer, path
	}
	return TriggerAncestor, path
}

// path names a memory cgroup by id, scanning once more for one made since
// the last scan, and asking Made for one already removed.
func (r *Recorder) path(memcg uint64) (string, bool) {
	if r.src.Hier != nil {
		if g, ok := r.src.Hier.Lookup(memcg); ok {
			return g.Path, true
		}
		_, _ = r.src.Hier.Scan()
		if g, ok := r.src.Hier.Lookup(memcg); ok {
			return g.Path, true
		}
	}
	if r.src.Made != nil {
		return r.src.Made(memcg)
	}
	return "", false
}

// keep numbers a record and keeps it, dropping the oldest past Keep.
func (r *Recorder) keep(rec Record) {
	r.mu.Lock()
	r.seq++
	rec.Kill.Seq = r.seq
	if rec.Inuse != nil {
		rec.Kill.ProfileURL = "/api/v1/oomkills/" + strconv.FormatUint(rec.Kill.Seq, 10) + "/profile"
	}
	r.records = append(r.records, rec)
	if len(r.records) > r.cfg.Keep {
		r.records = append(r.records[:0], r.records[len(r.records)-r.cfg.Keep:]...)
	}
	r.mu.Unlock()

	k := rec.Kill
	r.log.Warn("OOM kill", "seq", k.Seq, "cgroup", k.Cgroup, "namespace", k.Namespace, "pod", k.Pod,
		"container", k.Container, "pid", k.PID, "comm", k.Comm, "trigger", k.Trigger,
		"trigger_cgroup", k.TriggerCgroup, "anon_rss_bytes", k.AnonRSSBytes)
}

// Kills returns the kept kills, oldest first.
func (r *Recorder) Kills() []view.OOMKill {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]view.OOMKill, len(r.records))
	for i, rec := range r.records {
		out[i] = rec.Kill
	}
	return out
}

// Latest returns the last kept kill in a memory cgroup, which names it
// (path, container and pod) even after the cgroup is gone.
func (r *Recorder) Latest(memcg uint64) (view.OOMKill, bool) {
	id := strconv.FormatUint(memcg, 10)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.records) - 1; i >= 0; i-- {
		if r.records[i].Kill.ID == id {
			return r.records[i].Kill, true
		}
	}
	return view.OOMKill{}, false
}

// Profile returns a kept kill's profile: "faults", or the inuse one.
func (r *Recorder) Profile(seq uint64, kind string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.records {
		if rec.Kill.Seq != seq {
			continue
		}
		data := rec.Inuse
		if kind == string(profile.Faults) {
			data = rec.Faults
		}
		if data == nil {
			return nil, fmt.Errorf("OOM kill %d has no %s profile: %w", seq, kind, view.ErrNotFound)
		}
		return data, nil
	}
	return nil, fmt.Errorf("OOM kill %d: %w (only the last %d are kept)", seq, view.ErrNotFound, r.cfg.Keep)
}

// Records returns the kept records and the last sequence number given, to
// be saved.
func (r *Recorder) Records() (uint64, []Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq, append([]Record(nil), r.records...)
}

// Restore takes up saved records; numbering goes on after seq.
func (r *Recorder) Restore(seq uint64, recs []Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq = seq
	r.records = r.records[:0]
	for _, rec := range recs {
		r.records = append(r.records, rec)
		r.seq = max(r.seq, rec.Kill.Seq)
	}
	if len(r.records) > r.cfg.Keep {
		r.records = r.records[len(r.records)-r.cfg.Keep:]
	}
}

func encode(p interface{ Write(w io.Writer) error }) []byte {
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		return nil
	}
	return b.Bytes()
}
