// Package agent is leakwatch's daemon loop: every interval it lists the
// node's memory cgroups, reads their statistics, names their owners, feeds
// each container's leak signal to its detector, adds what the tracer sees,
// and publishes the result as an immutable view.Snapshot. It is the view's
// only writer; exporters read the view and never this package.
package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leakwatch/leakwatch/pkg/cgroups"
	"github.com/leakwatch/leakwatch/pkg/containers"
	"github.com/leakwatch/leakwatch/pkg/cri"
	"github.com/leakwatch/leakwatch/pkg/detect"
	"github.com/leakwatch/leakwatch/pkg/lookup"
	"github.com/leakwatch/leakwatch/pkg/oomrecord"
	"github.com/leakwatch/leakwatch/pkg/podpolicy"
	"github.com/leakwatch/leakwatch/pkg/profile"
	"github.com/leakwatch/leakwatch/pkg/series"
	"github.com/leakwatch/leakwatch/pkg/state"
	"github.com/leakwatch/leakwatch/pkg/tiering"
	"github.com/leakwatch/leakwatch/pkg/tracer"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// Config sets the loop's pace and bounds.
type Config struct {
	// Interval is the time between two collections.
	Interval time.Duration
	// Retention is how long a container whose cgroup is gone stays in the
	// view (record, series, profile, OOM kills), from when it went, before
	// it is forgotten.
	Retention time.Duration
	// MaxContainers bounds the live containers tracked; more are counted,
	// not tracked. Gone containers do not take these slots.
	MaxContainers int
	// MaxGoneContainers bounds the gone containers retained, a budget of
	// its own: churn (jobs, crash loops) must never cost a live container
	// its slot. Beyond it the longest gone are forgotten before their
	// retention ends.
	MaxGoneContainers int
	Detect            detect.Config
	History           series.Config
	// Profile bounds the profile data; its Step follows Interval.
	Profile profile.Config
	// FaultSampleBytes is the tracer's page-fault sampling distance, the
	// period written into faults profiles.
	FaultSampleBytes uint64
	// StateDir, when set, holds the state store (see pkg/state): the agent
	// restores its containers from it at start and saves them every
	// SaveEvery and when Run ends, so a restart needs no new warm-up.
	StateDir  string
	SaveEvery time.Duration
}

// DefaultConfig is what `leakwatch run` starts from.
func DefaultConfig() Config {
	return Config{
		Interval:          10 * time.Second,
		Retention:         time.Hour,
		MaxContainers:     2000,
		MaxGoneContainers: 1000,
		Detect:            detect.DefaultConfig(),
		History:           series.DefaultConfig(),
		Profile:           profile.DefaultConfig(),
		SaveEvery:         time.Minute,
	}
}

// Validate reports settings the loop cannot run with.
func (c Config) Validate() error {
	switch {
	case c.Interval < 100*time.Millisecond:
		return errors.New("interval must be at least 100ms")
	case c.Retention < c.Interval:
		return errors.New("retention must be at least one interval")
	case c.MaxContainers < 1:
		return errors.New("max containers must be at least 1")
	case c.MaxGoneContainers < 0:
		return errors.New("max gone containers must not be negative")
	}
	d := c.Detect
	d.Interval = c.Interval
	if err := d.Validate(); err != nil {
		return err
	}
	return nil
}

// Parts the agent can run without, named in view.Agent.Degraded.
const (
	PartTracer        = "tracer"
	PartFaultSampling = "fault_sampling"
	PartMappings      = view.PartMappings
)

// Error kinds counted in view.Agent.Errors.
const (
	errCgroupGone     = "cgroup_gone"
	errMemoryRead     = "memory_read"
	errScan           = "cgroup_scan"
	errTracerSnapshot = "tracer_snapshot"
	errDetector       = "detector"
	errStateSave      = "state_save"
	errOOMRecord      = "oom_record_dropped" // a kill that found the recorder's queue full
)

// Symbolizer resolves the addresses in profiles; pkg/symbolize provides
// it. Capture records a live process's memory map so that its addresses
// can be resolved after it exits.
type Symbolizer interface {
	profile.Resolver
	Capture(pid uint32, startTime uint64) error
	Forget(pid uint32, startTime uint64)
}

// Parts are the optional pieces the agent works with; any may be nil.
type Parts struct {
	Tracer     *tracer.Tracer // the kernel side; nil: cgroup statistics only
	CRI        *cri.Client    // pod and container names
	Symbolizer Symbolizer     // function names in profiles
	// Tiers decides the tracer's tier (nil without a tracer): the agent
	// tells it which containers are leaking after each collection.
	Tiers *tiering.Policy
}

// Agent runs the collection loop.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	hier   cgroups.Hierarchy
	files  *cgroups.OpenFiles // the collection loop's, held across rounds
	tracer *tracer.Tracer
	cri    *cri.Client
	sym    Symbolizer
	tiers  *tiering.Policy // nil without the tracer
	prof   *profile.Store  // nil without the tracer
	degr   map[string]string

	snap atomic.Pointer[view.Snapshot]

	mu        sync.RWMutex // guards entries for Series (the loop is the only writer)
	entries   map[uint64]*entry
	errs      map[string]uint64
	overLimit uint64
	collects  uint64
	ooms      map[uint64]uint64 // OOM kills per memory cgroup, from the tracer
	oomsMu    sync.Mutex
	recent    recentProcs // processes announced by the tracer, for those gone by the next collection
	oom       *oomrecord.Recorder
	// foldMu keeps a tracer snapshot and its fold into the profile store
	// together, so that the collection and an OOM record, which both read
	// the tracer, fold in the order they read.
	foldMu     sync.Mutex
	lastReport time.Time
	store      *state.Store // nil without a state directory
	saves      view.StateSaves
}

// entry is one tracked container's state.
type entry struct {
	c       view.Container
	det     *detect.Detector
	history *series.History
	// policy is the annotations' policy applied to det (zero: none).
	policy podpolicy.Policy
	// restored is set on entries read from the state store until the first
	// collection, which tells whether their cgroup outlived the restart.
	restored bool
}

// New returns an agent over the given hierarchy; degraded names parts that
// do not run on this host, with the reason.
func New(cfg Config, hier cgroups.Hierarchy, parts Parts, degraded map[string]string, logger *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	cfg.Detect.Interval = cfg.Interval
	cfg.Profile.Step = cfg.Interval
	d := make(map[string]string, len(degraded))
	for k, v := range degraded {
		d[k] = v
	}
	var store *profile.Store
	if parts.Tracer != nil {
		store = profile.NewStore(cfg.Profile)
	}
	// The files of tracked cgroups and their ancestors stay open, within
	// the open-file limit (a reserve of 1024 for the rest of the agent).
	files := hier.NewOpenFiles(cgroups.HeldGroupsFor(cfg.MaxContainers+heldAncestors, 1024))
	a := &Agent{
		cfg:     cfg,
		log:     logger,
		files:   files,
		hier:    hier,
		tracer:  parts.Tracer,
		cri:     parts.CRI,
		sym:     parts.Symbolizer,
		tiers:   parts.Tiers,
		prof:    store,
		degr:    d,
		entries: make(map[uint64]*entry),
		errs:    make(map[string]uint64),
		ooms:    make(map[uint64]uint64),
	}
	oc := oomrecord.DefaultConfig()
	oc.Window = min(oc.Window, cfg.Profile.Horizon)
	oc.FaultSampleBytes = cfg.FaultSampleBytes
	src := oomrecord.Sources{Hier: &a.hier, Names: a.oomNames, Memory: a.readMemory, Inuse: a.inuseCoverage}
	if parts.Tracer != nil {
		src.Made = parts.Tracer.CgroupPath
	}
	if store != nil {
		src.Profiles, src.Refresh = store, a.refreshProfiles
		if a.sym != nil {
			src.Resolver = a.sym
		}
	}
	a.oom = oomrecord.New(oc, src, logger)
	if cfg.StateDir != "" {
		st, err := state.Open(state.Config{Dir: cfg.StateDir}, logger)
		if err != nil {
			return nil, err
		}
		a.store = st
		a.saves.Path = st.Path()
		a.restore(st.Loaded())
	}
	return a, nil
}

// Close closes the state store; Run has saved into it when it ended. It is
// idempotent.
func (a *Agent) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.store
	a.store = nil
	return st.Close()
}

// heldAncestors is room among the held cgroups for the tracked ones'
// ancestors, whose limits a round reads too.
const heldAncestors = 256

// closeFiles closes the cgroup files the collection loop holds open.
func (a *Agent) closeFiles() {
	a.foldMu.Lock()
	defer a.foldMu.Unlock()
	a.files.Close()
}

// Snapshot implements view.Source.
func (a *Agent) Snapshot() *view.Snapshot { return a.snap.Load() }

// Series implements view.Source.
func (a *Agent) Series(id string) ([]view.Point, bool) {
	memcg, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return nil, false
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	e, ok := a.entries[memcg]
	if !ok {
		return nil, false
	}
	return e.history.Points(), true
}

// Run collects every interval until ctx ends. The first collection happens at
// once, so the view is ready within one interval of start.
func (a *Agent) Run(ctx context.Context) error {
	if a.tracer != nil {
		go a.handleEvents(a.tracer.Events())
	}
	oomCtx, stopOOM := context.WithCancel(ctx)
	oomDone := make(chan struct{})
	go func() { a.oom.Run(oomCtx); close(oomDone) }()
	defer func() { stopOOM(); <-oomDone }()
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	defer a.closeFiles()
	saveEvery := max(1, uint64(a.cfg.SaveEvery/a.cfg.Interval))
	for {
		a.collect(time.Now())
		if a.collects%saveEvery == 0 {
			_ = a.save() // logged; the next round tries again
		}
		select {
		case <-ctx.Done():
			// The last save is what a restart finds: say whether it
			// happened, at the level an operator reads.
			if a.store != nil {
				if err := a.save(); err != nil {
					a.log.Error("state not saved before stopping", "path", a.store.Path(), "err", err)
				} else {
					a.log.Info("state saved before stopping", "path", a.store.Path())
				}
			}
			return nil
		case <-tick.C:
		}
	}
}

// handleEvents counts OOM kills and hands them to the recorder, finalizes
// the profile data of processes that exit, and re-reads the memory map of
// processes that exec. It does nothing slow: an OOM record is built by the
// recorder's own goroutine.
func (a *Agent) handleEvents(events <-chan tracer.Event) {
	for ev := range events {
		switch ev.Type {
		case tracer.EventOOMKill:
			a.oomsMu.Lock()
			a.ooms[ev.Memcg]++
			a.oomsMu.Unlock()
			a.oom.Add(ev)
		case tracer.EventExit:
			a.prof.ProcessExited(ev.Process.PID)
		case tracer.EventExec, tracer.EventTracked:
			start, ok := ProcStartTime(a.procRoot(), ev.Process.PID)
			if !ok {
				continue // gone already
			}
			a.recent.add(ev.Process.PID, procMeta{start: start, comm: ev.Comm})
			if a.sym != nil {
				_ = a.sym.Capture(ev.Process.PID, start)
			}
		}
	}
}

// collect is one pass: scan, read, detect, publish.
func (a *Agent) collect(now time.Time) {
	start := time.Now()
	groups, scanErr := a.hier.Scan()
	if scanErr != nil {
		a.errs[errScan]++
		a.logEvery("scanning cgroups", scanErr)
		if groups == nil {
			a.publish(now, start, nil)
			return
		}
	}

	var ts *tracer.Snapshot
	a.foldMu.Lock()
	defer a.foldMu.Unlock()
	if a.tracer != nil {
		var err error
		if ts, err = a.tracer.Snapshot(); err != nil {
			a.errs[errTracerSnapshot]++
			a.logEvery("reading tracer maps", err)
		}
	}
	a.oomsMu.Lock()
	ooms := make(map[uint64]uint64, len(a.ooms))
	for k, v := range a.ooms {
		ooms[k] = v
	}
	a.oomsMu.Unlock()

	children := childrenOf(groups)
	seen := make(map[uint64]bool, len(groups))
	// One reader a round: it reads each ancestor's limit once for all the
	// cgroups below it, and limits can change between rounds.
	mem := a.files.NewMemoryReader()
	type newGroup struct {
		g     cgroups.Group
		stats cgroups.MemoryStats
	}
	var fresh []newGroup
	a.mu.Lock()
	for _, g := range groups {
		if !a.tracks(g, children[g.Path], mem) {
			continue
		}
		stats, err := mem.Read(g.Path)
		if err != nil {
			switch {
			case errors.Is(err, cgroups.ErrGone):
				a.errs[errCgroupGone]++
			case errors.Is(err, cgroups.ErrNoController):
			default:
				a.errs[errMemoryRead]++
				a.logEvery("reading memory statistics of "+g.Path, err)
				// A failed read is no sign that the cgroup went: it
				// keeps its last figures rather than being reported gone.
				if e := a.entries[g.ID]; e != nil && !e.c.Gone {
					seen[g.ID] = true
				}
			}
			continue
		}
		e := a.entries[g.ID]
		if e != nil && (e.c.Gone || e.c.Cgroup != "" && e.c.Cgroup != g.Path) {
			// The id (a kernfs inode) now names another cgroup, or a
			// cgroup found gone for want of processes has new ones: what
			// the entry judged is gone, this one starts afresh.
			delete(a.entries, g.ID)
			e = nil
		}
		if e == nil {
			fresh = append(fresh, newGroup{g, stats})
			continue
		}
		seen[g.ID] = true
		a.update(e, g, stats, ts, now)
	}
	// New containers are admitted once the pass knows which tracked ones
	// are still alive: the live slots hold exactly those seen, so a
	// container that went frees its slot in the pass that replaces it,
	// and gone ones (budgeted apart, in expire) never hold one.
	for _, n := range fresh {
		if len(seen) >= a.cfg.MaxContainers {
			a.overLimit++
			continue
		}
		det, err := detect.New(a.cfg.Detect)
		if err != nil {
			a.errs[errDetector]++
			continue
		}
		e := &entry{det: det, history: series.New(a.cfg.History)}
		e.c = view.Container{ID: strconv.FormatUint(n.g.ID, 10), MemcgID: n.g.ID, FirstSeen: now}
		a.entries[n.g.ID] = e
		seen[n.g.ID] = true
		a.update(e, n.g, n.stats, ts, now)
	}
	a.addKilledUnseen(ooms, seen, now)
	// A container that went before CRI had named it (OOM-killed within a
	// second of its start) is named once CRI lists it: runtimes keep an
	// exited container until it is removed. Cache reads only.
	for _, e := range a.entries {
		if e.c.Gone && e.c.Pod == "" && e.c.ContainerID != "" {
			a.enrich(&e.c)
		}
	}
	// A kill counts in its container whether or not anything in it
	// survived: one whose last process was killed is not seen again.
	for memcg, e := range a.entries {
		e.c.OOMKills = max(e.c.OOMKills, ooms[memcg])
	}
	if scanErr == nil {
		// A scan that stopped early did not see every cgroup: what it
		// missed is not gone.
		a.expire(seen, now)
	}
	a.mu.Unlock()
	if ts != nil {
		a.prof.Update(now, ts, a.procInfo)
	}
	if a.tiers != nil {
		a.tiers.Observe(now, a.leakingIDs())
	}
	a.publish(now, start, ts)
}

// leakingIDs lists the live containers judged leaking, by name where known.
func (a *Agent) leakingIDs() []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var ids []string
	for _, e := range a.entries {
		if e.c.Verdict.Leaking && !e.c.Gone {
			ids = append(ids, lookup.Names{Cgroup: e.c.Cgroup, Namespace: e.c.Namespace, Pod: e.c.Pod, Container: e.c.Container}.Name())
		}
	}
	slices.Sort(ids)
	return ids
}

// addKilledUnseen gives an entry to each memory cgroup with OOM kills that
// no scan found with processes: a container made and killed between two
// collections (a crash-looping pod that runs out at start-up) has its kills
// counted too. It is named from its kill's record, and expire finds it gone
// in the same pass.
func (a *Agent) addKilledUnseen(ooms map[uint64]uint64, seen map[uint64]bool, now time.Time) {
	for memcg, n := range ooms {
		// No live slot is taken: expire finds it gone in this pass, and
		// the gone budget keeps the most recent.
		if n == 0 || seen[memcg] || a.entries[memcg] != nil {
			continue
		}
		k, ok := a.oom.Latest(memcg)
		if !ok || k.Cgroup == "" {
			continue // its record is not built yet: the next pass
		}
		det, err := detect.New(a.cfg.Detect)
		if err != nil {
			a.errs[errDetector]++
			continue
		}
		id := containers.Parse(k.Cgroup)
		a.entries[memcg] = &entry{det: det, history: series.New(a.cfg.History), c: view.Container{
			ID: k.ID, MemcgID: memcg, Cgroup: k.Cgroup, FirstSeen: now, LastSeen: now,
			Kind: id.Kind, Runtime: id.Runtime, ContainerID: k.ContainerID, PodUID: k.PodUID,
			Namespace: k.Namespace, Pod: k.Pod, Container: k.Container,
		}}
	}
}

// tracks says whether a cgroup is a container worth a series: a container or
// service by its path, or a leaf cgroup with processes. Parents (slices,
// pods, a v1 cgroup holding processes and child cgroups) are left out: their
// statistics include their children's, so a leak would be reported twice.
// A container scope with a nested cgroup of the same container (some
// runtimes add one) is tracked once, at the nested level.
func (a *Agent) tracks(g cgroups.Group, children []string, mem *cgroups.MemoryReader) bool {
	if g.Path == "/" {
		return false
	}
	id := containers.Parse(g.Path)
	switch id.Kind {
	case containers.KindContainer, containers.KindService:
		for _, c := range children {
			if cid := containers.Parse(c); cid.Kind == id.Kind && cid.ContainerID == id.ContainerID && cid.Name == id.Name {
				return false
			}
		}
		return true
	case containers.KindPod, containers.KindConmon:
		return false
	}
	if len(children) > 0 {
		return false
	}
	has, err := mem.HasProcesses(g.Path)
	return err == nil && has
}

// childrenOf maps each cgroup path to the paths of its direct children.
func childrenOf(groups []cgroups.Group) map[string][]string {
	m := make(map[string][]string)
	for _, g := range groups {
		if g.Path != "/" {
			parent := filepath.Dir(g.Path)
			m[parent] = append(m[parent], g.Path)
		}
	}
	return m
}

func (a *Agent) update(e *entry, g cgroups.Group, st cgroups.MemoryStats, ts *tracer.Snapshot, now time.Time) {
	c := &e.c
	c.Cgroup = g.Path
	c.LastSeen = now
	id := containers.Parse(g.Path)
	c.Kind, c.Runtime, c.ContainerID, c.PodUID = id.Kind, id.Runtime, id.ContainerID, id.PodUID
	if c.Container == "" {
		c.Container = id.Name
	}
	a.applyPolicy(e, a.enrich(c))

	c.Memory = memoryView(st)
	// The kernel's count, which may predate the agent; the tracer's is
	// added by the caller.
	c.OOMKills = max(c.OOMKills, st.OOMKills)
	if ts != nil {
		tc := ts.Cgroups[g.ID]
		c.MappedBytes = tc.MappedBytes + tc.BrkBytes
		c.FaultedBytes = tc.FaultBytes
	}

	e.history.Add(now, c.Memory.LeakSignal, c.Memory.Usage)
	v := e.det.Observe(detect.Point{T: now, Bytes: float64(c.Memory.LeakSignal), Limit: float64(c.Memory.Limit)})
	if e.policy.Ignore {
		// Still observed, so that lifting the annotation finds a
		// detector that has followed the container all along.
		v = detect.Verdict{}
	}
	was := c.Verdict.Leaking
	c.Verdict = view.Verdict{
		Leaking:              v.Leaking,
		GrowthBytesPerSecond: v.GrowthBytesPerSecond,
		Confidence:           v.Confidence,
		TimeToLimit:          v.TimeToLimit,
		LeakingSince:         v.LeakingSince,
		WarmingUp:            v.WarmingUp,
		Why:                  v.Why.JSON(),
	}
	if v.Leaking != was {
		msg := "leak detected"
		if !v.Leaking {
			msg = "leak resolved"
		}
		a.log.Info(msg, "id", c.ID, "cgroup", c.Cgroup, "namespace", c.Namespace, "pod", c.Pod,
			"container", c.Container, "growth_bytes_per_second", v.GrowthBytesPerSecond,
			"confidence", v.Confidence)
	}
}

// enrich adds Kubernetes names from the CRI cache, which never blocks, and
// returns the container's policy (zero when CRI does not know it).
func (a *Agent) enrich(c *view.Container) podpolicy.Policy {
	if a.cri == nil {
		return podpolicy.Policy{}
	}
	if c.ContainerID != "" {
		if info, ok := a.cri.Lookup(c.ContainerID); ok {
			c.Namespace, c.Pod, c.Container, c.Image = info.Namespace, info.PodName, info.ContainerName, info.Image
			if c.PodUID == "" {
				c.PodUID = info.PodUID
			}
			return info.Policy
		}
	}
	if c.PodUID != "" {
		if info, ok := a.cri.LookupPod(c.PodUID); ok {
			c.Namespace, c.Pod = info.Namespace, info.PodName
		}
	}
	return podpolicy.Policy{}
}

// applyPolicy tunes a container's detector to what its annotations ask
// for, once they are known or when they change, and says so in the log
// (annotations with values it could not use as a warning).
func (a *Agent) applyPolicy(e *entry, p podpolicy.Policy) {
	if p == e.policy {
		return
	}
	if p == (podpolicy.Policy{}) && e.policy != (podpolicy.Policy{}) {
		return // CRI forgot it for now: keep what applied
	}
	if err := e.det.Tune(p.Apply(a.cfg.Detect)); err != nil {
		a.errs[errDetector]++
		return
	}
	e.policy = p
	e.c.Policy = &view.Policy{Ignore: p.Ignore, WarmUpSeconds: p.WarmUp.Seconds(), Sensitivity: string(p.Sensitivity), Invalid: p.Invalid}
	c := &e.c
	a.log.Info("container policy", "id", c.ID, "namespace", c.Namespace, "pod", c.Pod, "container", c.Container,
		"ignore", p.Ignore, "warmup", p.WarmUp, "sensitivity", p.Sensitivity)
	if p.Invalid != "" {
		a.log.Warn("annotations not applied: their values are not valid", "id", c.ID, "namespace", c.Namespace,
			"pod", c.Pod, "container", c.Container, "annotations", p.Invalid)
	}
}

// expire marks containers not seen this pass as gone, and forgets those gone
// longer than the retention, then the longest gone beyond the gone budget.
func (a *Agent) expire(seen map[uint64]bool, now time.Time) {
	var gone []*entry
	for memcg, e := range a.entries {
		restored := e.restored
		e.restored = false
		if seen[memcg] {
			continue
		}
		if !e.c.Gone {
			at := now
			if restored {
				// Gone while the agent was down: its retention runs from
				// when it was last seen, not from now.
				at = e.c.LastSeen
			}
			markGone(&e.c, at)
			// Containers come and go all day; one that went leaking is news.
			lvl := slog.LevelDebug
			if e.c.WasLeaking {
				lvl = slog.LevelInfo
			}
			a.log.Log(context.Background(), lvl, "container gone", "id", e.c.ID, "cgroup", e.c.Cgroup,
				"namespace", e.c.Namespace, "pod", e.c.Pod, "container", e.c.Container, "was_leaking", e.c.WasLeaking)
		}
		if now.Sub(e.c.GoneAt) < a.cfg.Retention {
			gone = append(gone, e)
			continue
		}
		a.forget(memcg)
	}
	if len(gone) <= a.cfg.MaxGoneContainers {
		return
	}
	slices.SortFunc(gone, func(x, y *entry) int {
		return cmp.Or(x.c.GoneAt.Compare(y.c.GoneAt), cmp.Compare(x.c.MemcgID, y.c.MemcgID))
	})
	for _, e := range gone[:len(gone)-a.cfg.MaxGoneContainers] {
		a.forget(e.c.MemcgID)
	}
}

// forget drops everything the agent holds about one memory cgroup.
func (a *Agent) forget(memcg uint64) {
	delete(a.entries, memcg)
	if a.tracer != nil {
		if err := a.tracer.ForgetCgroup(memcg); err != nil {
			a.log.Debug("forgetting cgroup counters", "memcg", memcg, "err", err)
		}
	}
	a.oomsMu.Lock()
	delete(a.ooms, memcg)
	a.oomsMu.Unlock()
	if a.prof != nil {
		for _, p := range a.prof.Forget(memcg) {
			if a.sym != nil {
				a.sym.Forget(p.PID, p.StartTime)
			}
		}
	}
}

// markGone ends a container's verdict: nothing runs in it to be judged, so
// its last verdict is kept only as WasLeaking, and nothing of it reads as
// current. Restoring a record saved gone goes through here too, so that a
// store written before GoneAt existed (or by a build that kept the verdict)
// comes back the same way.
func markGone(c *view.Container, at time.Time) {
	c.WasLeaking = c.WasLeaking || c.Verdict.Leaking
	c.Gone = true
	if c.GoneAt.IsZero() {
		c.GoneAt = at
	}
	c.Verdict = view.Verdict{TimeToLimit: detect.UnknownTimeToLimit}
}

func (a *Agent) publish(now, start time.Time, ts *tracer.Snapshot) {
	a.collects++
	snap := &view.Snapshot{Taken: now, OOMKills: a.oom.Kills()}
	a.mu.RLock()
	snap.Containers = make([]view.Container, 0, len(a.entries))
	for _, e := range a.entries {
		snap.Containers = append(snap.Containers, e.c)
	}
	a.mu.RUnlock()
	slices.SortFunc(snap.Containers, func(x, y view.Container) int {
		switch {
		case x.MemcgID < y.MemcgID:
			return -1
		case x.MemcgID > y.MemcgID:
			return 1
		}
		return 0
	})

	ag := &snap.Agent
	ag.Ready = true
	ag.Collections = a.collects
	ag.CollectDuration = time.Since(start)
	ag.Tracked = len(snap.Containers)
	ag.OverLimit = a.overLimit
	ag.CgroupLayout = a.hier.Layout.String()
	if a.tiers != nil {
		st := a.tiers.State()
		ag.Tracing = &st
	}
	ag.Errors = make(map[string]uint64, len(a.errs))
	for k, v := range a.errs {
		ag.Errors[k] = v
	}
	if n := a.oom.Dropped(); n > 0 {
		ag.Errors[errOOMRecord] = n
	}
	if len(a.degr) > 0 {
		ag.Degraded = make(map[string]string, len(a.degr))
		for k, v := range a.degr {
			ag.Degraded[k] = v
		}
	}
	if a.store != nil {
		saves := a.saves
		ag.State = &saves
	}
	if a.cri != nil {
		ag.CRIAvailable = a.cri.Available()
	}
	if a.tracer != nil {
		ag.FaultSampling = a.tracer.Features().FaultSampling
		if mem, err := a.tracer.MapMemory(); err == nil {
			ag.MapMemoryBytes = mem
		}
	}
	if ts != nil {
		ag.Drops = make(map[string]uint64, len(ts.Drops))
		for k, v := range ts.Drops {
			ag.Drops[string(k)] = v
		}
		if len(ts.StackCopies) > 0 {
			ag.StackCopies = make(map[string]uint64, len(ts.StackCopies))
			for k, v := range ts.StackCopies {
				ag.StackCopies[string(k)] = v
			}
		}
		for _, m := range ts.Maps {
			ag.Maps = append(ag.Maps, view.MapUsage{Name: m.Name, Entries: m.Entries, Capacity: m.Capacity})
		}
		ag.UnwindTableBytes, ag.UnwindTablesRefused = ts.UnwindTables.Bytes, ts.UnwindTables.Refused
	}
	a.snap.Store(snap)
}

// logEvery logs a failure at most once a minute, so a broken part cannot
// flood the log; the counters keep the full tally.
func (a *Agent) logEvery(what string, err error) {
	if time.Since(a.lastReport) < time.Minute {
		return
	}
	a.lastReport = time.Now()
	a.log.Warn(what, "err", err)
}
