package profile

import (
	"sort"
	"sync"
	"time"

	"github.com/leakwatch/leakwatch/pkg/tracer"
)

// Config bounds a Store.
type Config struct {
	// Step is the resolution of the history behind ?seconds=N (the agent's
	// interval); Horizon is how far back it goes, the largest N served.
	Step    time.Duration
	Horizon time.Duration
	// MaxKeys bounds the (cgroup, process, stack) keys kept across the node;
	// past it, keys of exited processes go first, then the oldest.
	MaxKeys int
	// MaxStacks bounds the stacks' frames kept.
	MaxStacks int
}

// DefaultConfig keeps an hour of history at 10 s.
func DefaultConfig() Config {
	return Config{Step: 10 * time.Second, Horizon: time.Hour, MaxKeys: 50000, MaxStacks: 32768}
}

// Type selects what a profile shows.
type Type string

const (
	// Inuse is outstanding anonymous mappings and heap by allocating stack.
	Inuse Type = "inuse"
	// Faults is sampled page-fault bytes by faulting stack.
	Faults Type = "faults"
)

// key is one (cgroup, process, stack, origin) series. Origin separates mmap
// from brk for inuse, and is 0 for faults.
type key struct {
	memcg  uint64
	pid    uint32
	typ    Type
	kind   tracer.Kind
	stack  uint64
	starts uint64 // process start time, so a reused pid is another key
	exec   uint32 // faults: the image (tracer.FaultSample.ExecID)
}

// value is what a key holds at one time: bytes and objects (inuse) or
// cumulative bytes and samples (faults).
type value struct {
	bytes, count int64
}

type point struct {
	step int64 // time / Step
	v    value
}

// series is a key's history: one point per step in which it changed,
// bounded by Horizon/Step, plus the current value.
type series struct {
	cur  value
	hist []point
	seen int64 // last step the key was present in a snapshot
	// update is the last Update whose snapshot held the key. Presence is
	// judged by it, not by the step: two snapshots can fold into one step
	// (an OOM record's refresh beside the collection), and a key the
	// second lacks is gone all the same.
	update uint64
	// exited: its process exited, so it no longer changes. An inuse key
	// keeps the value it had at the exit (growth windows count up to it);
	// the current inuse view leaves it out.
	exited bool
}

// proc is what is known of one process.
type proc struct {
	comm      string
	startTime uint64
}

// Store accumulates tracer snapshots into per-container profile data. The
// agent loop is its only writer (Update); profiles are built concurrently
// (Build). Memory is bounded by MaxKeys keys of at most Horizon/Step+1
// points each, and MaxStacks stacks.
type Store struct {
	cfg Config

	mu     sync.RWMutex
	keys   map[key]*series
	stacks map[uint64]tracer.Stack
	procs  map[uint32]*proc
	now    int64  // current step
	update uint64 // Updates so far
	// evicted counts keys and stacks dropped to stay within bounds.
	evicted uint64
}

// NewStore returns an empty store.
func NewStore(cfg Config) *Store {
	if cfg.Step <= 0 {
		cfg.Step = DefaultConfig().Step
	}
	return &Store{
		cfg:    cfg,
		keys:   make(map[key]*series),
		stacks: make(map[uint64]tracer.Stack),
		procs:  make(map[uint32]*proc),
	}
}

// ProcInfo names a process: its command and start time. The agent supplies
// it from /proc when a pid is first seen.
type ProcInfo func(pid uint32) (comm string, startTime uint64, ok bool)

// Update folds one tracer snapshot in. Keys absent from it have gone to zero
// (inuse: unmapped or exited) or keep their last value (faults: the tracer
// drops the counters of exited processes after their final read).
func (s *Store) Update(now time.Time, snap *tracer.Snapshot, info ProcInfo) {
	step := now.UnixNano() / int64(s.cfg.Step)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = step
	s.update++
	for id, st := range snap.Stacks {
		s.stacks[id] = st
	}
	for _, a := range snap.Allocations {
		p := s.proc(a.PID, info)
		k := key{memcg: a.Memcg, pid: a.PID, typ: Inuse, kind: a.Kind, stack: a.StackID, starts: p.startTime}
		s.set(k, value{bytes: int64(a.Bytes), count: int64(a.Count)}, step)
	}
	for _, f := range snap.Faults {
		p := s.proc(f.PID, info)
		k := key{memcg: f.Memcg, pid: f.PID, typ: Faults, stack: f.StackID, starts: p.startTime, exec: f.ExecID}
		s.set(k, value{bytes: int64(f.Bytes), count: int64(f.Samples)}, step)
	}
	// Inuse keys not in the snapshot are zero now: unmapped, or the
	// process exec'd. A process that exited keeps its last value: its
	// memory went with it, which is not the program releasing it, so a
	// growth window over its exit shows what it grew until then. The
	// snapshot names the exits it swept, for when the exit event that
	// ProcessExited brings is late or was lost; only keys absent from it
	// are the exited process's (a new process may have its pid).
	swept := make(map[uint32]bool, len(snap.Exited))
	for _, pid := range snap.Exited {
		swept[pid] = true
	}
	// An exited process whose mappings this snapshot still holds (the
	// tracer keeps them a moment after the exit) is described by it in
	// full: a key of it that the snapshot lacks was unmapped before the
	// exit, or its mapping moved to another key (a stack copy unwound
	// since the last snapshot names its stack now). Kept at its last
	// value, it counted the mapping twice: an OOM victim's inuse profile
	// held 80.6 MiB in a 64 MiB cgroup on a busy host.
	type procKey struct {
		pid    uint32
		starts uint64
	}
	present := make(map[procKey]bool)
	for k, sr := range s.keys {
		if k.typ == Inuse && sr.update == s.update {
			present[procKey{k.pid, k.starts}] = true
		}
	}
	for k, sr := range s.keys {
		if sr.update == s.update {
			continue
		}
		if k.typ == Inuse && swept[k.pid] {
			sr.exited = true
		}
		described := !swept[k.pid] && present[procKey{k.pid, k.starts}]
		if k.typ == Inuse && sr.cur != (value{}) && (!sr.exited || described) {
			s.record(sr, value{}, step)
		}
		if k.typ == Faults {
			sr.exited = true
		}
	}
	s.trim(step)
}

func (s *Store) proc(pid uint32, info ProcInfo) *proc {
	if p, ok := s.procs[pid]; ok {
		return p
	}
	p := &proc{comm: "?"}
	if info != nil {
		if comm, start, ok := info(pid); ok {
			p.comm, p.startTime = comm, start
		}
	}
	s.procs[pid] = p
	return p
}

// ProcessExited marks a pid's data as final, so bounds evict it first and
// its outstanding memory is not taken for memory it released. The tracer
// reports an exit before it drops the process's mappings (see deadGrace in
// pkg/tracer), and the snapshot that drops them says so too (Exited).
func (s *Store) ProcessExited(pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.procs[pid]; ok {
		// A new process may reuse the pid; it will be looked up afresh.
		delete(s.procs, pid)
		for k, sr := range s.keys {
			if k.pid == pid && k.starts == p.startTime {
				sr.exited = true
			}
		}
	}
}

func (s *Store) set(k key, v value, step int64) {
	sr := s.keys[k]
	if sr == nil {
		sr = &series{}
		s.keys[k] = sr
	}
	sr.seen, sr.update = step, s.update
	if v != sr.cur || len(sr.hist) == 0 {
		s.record(sr, v, step)
	}
}

// record sets the current value and notes it in the history, one point per
// step.
func (s *Store) record(sr *series, v value, step int64) {
	sr.cur = v
	if n := len(sr.hist); n > 0 && sr.hist[n-1].step == step {
		sr.hist[n-1].v = v
		return
	}
	sr.hist = append(sr.hist, point{step: step, v: v})
}

// trim drops history older than the horizon (keeping the last point before
// it as the baseline), inuse keys that are zero (or of an exited process)
// and quiet past the horizon, and enforces the bounds.
func (s *Store) trim(step int64) {
	horizon := int64(s.cfg.Horizon / s.cfg.Step)
	used := make(map[uint64]bool)
	for k, sr := range s.keys {
		cut := 0
		for cut+1 < len(sr.hist) && sr.hist[cut+1].step <= step-horizon {
			cut++
		}
		if cut > 0 {
			sr.hist = append(sr.hist[:0], sr.hist[cut:]...)
		}
		quiet := len(sr.hist) > 0 && sr.hist[len(sr.hist)-1].step <= step-horizon
		if k.typ == Inuse && (sr.cur == (value{}) || sr.exited) && quiet {
			delete(s.keys, k)
			continue
		}
		used[k.stack] = true
	}
	if over := len(s.keys) - s.cfg.MaxKeys; over > 0 && s.cfg.MaxKeys > 0 {
		s.evictKeys(over)
	}
	for id := range s.stacks {
		if !used[id] {
			delete(s.stacks, id)
		}
	}
	if over := len(s.stacks) - s.cfg.MaxStacks; over > 0 && s.cfg.MaxStacks > 0 {
		// Stacks still referenced but over the bound: their keys show as
		// unknown stacks; counted.
		for id := range s.stacks {
			if over == 0 {
				break
			}
			delete(s.stacks, id)
			over--
			s.evicted++
		}
	}
}

// evictKeys removes n keys: exited processes' first, then the least
// recently seen.
func (s *Store) evictKeys(n int) {
	type cand struct {
		k      key
		exited bool
		seen   int64
	}
	cands := make([]cand, 0, len(s.keys))
	for k, sr := range s.keys {
		cands = append(cands, cand{k, sr.exited, sr.seen})
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].exited != cands[j].exited {
			return cands[i].exited
		}
		return cands[i].seen < cands[j].seen
	})
	for _, c := range cands[:n] {
		delete(s.keys, c.k)
		s.evicted++
	}
}

// Process identifies a process in the store: pid and start time.
type Process struct {
	PID       uint32
	StartTime uint64
}

// Image is a program a process runs: the process and its exec generation
// (tracer.Event.ExecID). Memory a process faulted before an exec went with
// the old image.
type Image struct {
	Process
	ExecID uint32
}

// Forget drops everything of a memory cgroup that is no longer tracked, and
// returns the processes of which nothing is left, so that what else is kept
// of them (their captured memory maps) can go too.
func (s *Store) Forget(memcg uint64) []Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	gone := make(map[Process]bool)
	for k := range s.keys {
		if k.memcg == memcg {
			delete(s.keys, k)
			gone[Process{k.pid, k.starts}] = true
		}
	}
	for k := range s.keys {
		delete(gone, Process{k.pid, k.starts})
	}
	out := make([]Process, 0, len(gone))
	for p := range gone {
		out = append(out, p)
		if pr, ok := s.procs[p.PID]; ok && pr.startTime == p.StartTime {
			delete(s.procs, p.PID)
		}
	}
	return out
}

// Evicted counts keys and stacks dropped to stay within the bounds.
func (s *Store) Evicted() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.evicted
}

// at returns the key's value at step, or zero when it did not exist then.
func (sr *series) at(step int64) value {
	i := sort.Search(len(sr.hist), func(i int) bool { return sr.hist[i].step > step })
	if i == 0 {
		return value{}
	}
	return sr.hist[i-1].v
}
