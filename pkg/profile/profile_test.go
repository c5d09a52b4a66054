package profile

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/leakwatch/leakwatch/pkg/tracer"
)

// fakeResolver names addresses from a table, as a symbolizer would for one
// executable mapping; it stands in for pkg/symbolize so that these tests
// check the profile logic alone.
type fakeResolver struct {
	names   map[uint64]string  // lookup address -> function
	callers map[[2]uint64]bool // {leaf, hint} pairs whose hint is the skipped caller
	calls   int
}

var exe = &Mapping{Start: 0x1000, Limit: 0x9000, File: "/app", BuildID: "abc", Executable: true}

func (r *fakeResolver) Resolve(_ uint32, _ uint64, addrs []uint64) ([]Location, error) {
	r.calls++
	out := make([]Location, len(addrs))
	for i, a := range addrs {
		out[i] = Location{Address: a}
		if a >= exe.Start && a < exe.Limit {
			out[i].Mapping = exe
		}
		if n, ok := r.names[a]; ok {
			out[i].Frames = []Frame{{Function: n, File: "app.c", Line: 1}}
		}
	}
	return out, nil
}

func (r *fakeResolver) SkippedCaller(_ uint32, _ uint64, leaf, ret uint64) bool {
	return r.callers[[2]uint64{leaf, ret}]
}

const (
	memcg = 42
	pid   = 7
)

func procInfo(uint32) (string, uint64, bool) { return "app", 1000, true }

func snap(allocs []tracer.Allocation, faults []tracer.FaultSample, stacks map[uint64]tracer.Stack) *tracer.Snapshot {
	return &tracer.Snapshot{Allocations: allocs, Faults: faults, Stacks: stacks}
}

// topFunction returns the innermost function of the sample with the most
// bytes of the default sample type, as `pprof -top` would put first.
func topFunction(t *testing.T, p *profile.Profile) (string, int64) {
	t.Helper()
	i := sampleTypeIndex(t, p, p.DefaultSampleType)
	var best *profile.Sample
	for _, s := range p.Sample {
		if best == nil || s.Value[i] > best.Value[i] {
			best = s
		}
	}
	if best == nil {
		t.Fatal("profile has no samples")
	}
	l := best.Location[0]
	if len(l.Line) == 0 {
		return "", best.Value[i]
	}
	return l.Line[0].Function.Name, best.Value[i]
}

func TestInuseGrowthWindowAndTrimming(t *testing.T) {
	s := NewStore(Config{Step: 10 * time.Second, Horizon: time.Hour, MaxKeys: 100, MaxStacks: 100})
	// Stack 1: mmap (libc, trimmed) <- leak (via the leaf hint) <- main.
	// Stack 2: startup <- main, allocated once.
	stacks := map[uint64]tracer.Stack{
		1: {Frames: []uint64{0x2000, 0x3001}, LeafReturn: 0x4001},
		2: {Frames: []uint64{0x5000, 0x3001}},
	}
	res := &fakeResolver{
		names:   map[uint64]string{0x2000: "__mmap", 0x3000: "main", 0x4000: "leak", 0x5000: "startup"},
		callers: map[[2]uint64]bool{{0x2000, 0x4001}: true},
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 13 { // two minutes: leak grows 1 MiB per 10 s
		a := []tracer.Allocation{
			{Memcg: memcg, PID: pid, StackID: 1, Kind: tracer.KindMmap, Bytes: uint64(i+1) << 20, Count: uint64(i + 1)},
			{Memcg: memcg, PID: pid, StackID: 2, Kind: tracer.KindMmap, Bytes: 64 << 20, Count: 1},
		}
		st := map[uint64]tracer.Stack(nil)
		if i == 0 {
			st = stacks
		}
		s.Update(t0.Add(time.Duration(i)*10*time.Second), snap(a, nil, st), procInfo)
	}
	now := t0.Add(120 * time.Second)

	all, err := s.Build(memcg, Inuse, 0, res, Meta{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if fn, b := topFunction(t, all); fn != "startup" || b != 64<<20 {
		t.Errorf("inuse top: %s %d bytes, want startup with 64 MiB", fn, b)
	}

	growth, err := s.Build(memcg, Inuse, 60*time.Second, res, Meta{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	fn, b := topFunction(t, growth)
	if fn != "leak" || b != 6<<20 {
		t.Errorf("growth over 60s top: %s %d bytes, want leak (through the leaf hint, mmap trimmed) with 6 MiB", fn, b)
	}
	for _, smp := range growth.Sample {
		if smp.Label["comm"][0] != "app" || smp.NumLabel["pid"][0] != pid {
			t.Errorf("sample labels %v %v, want comm app and pid %d", smp.Label, smp.NumLabel, pid)
		}
	}
	// Valid pprof, and it survives the wire.
	var buf bytes.Buffer
	if err := growth.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := profile.Parse(&buf); err != nil {
		t.Fatalf("parsing our own profile: %v", err)
	}

	if _, err := s.Build(memcg, Inuse, 2*time.Hour, res, Meta{Now: now}); !errors.Is(err, ErrWindow) {
		t.Errorf("window beyond the horizon: %v, want ErrWindow", err)
	}
}

// A hint that the resolver cannot show to be the skipped caller's return
// address (here: a stale word in a Go frame, an address in code that never
// ran on this stack) is not a frame.
func TestUnprovenLeafHintAddsNoFrame(t *testing.T) {
	s := NewStore(DefaultConfig())
	st := map[uint64]tracer.Stack{
		1: {Frames: []uint64{0x2000, 0x3001}, LeafReturn: 0x4001}, // proven
		2: {Frames: []uint64{0x5000, 0x3001}, LeafReturn: 0x6001}, // not
	}
	s.Update(time.Now(), snap([]tracer.Allocation{
		{Memcg: memcg, PID: pid, StackID: 1, Kind: tracer.KindMmap, Bytes: 1 << 20, Count: 1},
		{Memcg: memcg, PID: pid, StackID: 2, Kind: tracer.KindMmap, Bytes: 2 << 20, Count: 1},
	}, nil, st), procInfo)
	res := &fakeResolver{
		names:   map[uint64]string{0x2000: "__mmap", 0x3000: "main.main", 0x4000: "map_anon", 0x5000: "main.leakHere", 0x6000: "time.Sleep"},
		callers: map[[2]uint64]bool{{0x2000, 0x4001}: true},
	}
	p, err := s.Build(memcg, Inuse, 0, res, Meta{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"map_anon main.main": true, "main.leakHere main.main": true}
	for _, smp := range p.Sample {
		var names []string
		for _, l := range smp.Location {
			names = append(names, l.Line[0].Function.Name)
		}
		if got := strings.Join(names, " "); !want[got] {
			t.Errorf("stack %q, want one of %v", got, want)
		}
	}
}

func TestFreedMemoryLeavesInuse(t *testing.T) {
	s := NewStore(DefaultConfig())
	t0 := time.Now()
	st := map[uint64]tracer.Stack{1: {Frames: []uint64{0x6000}}}
	s.Update(t0, snap([]tracer.Allocation{{Memcg: memcg, PID: pid, StackID: 1, Kind: tracer.KindBrk, Bytes: 8 << 20, Count: 1}}, nil, st), procInfo)
	s.Update(t0.Add(10*time.Second), snap(nil, nil, nil), procInfo)

	res := &fakeResolver{names: map[uint64]string{0x6000: "grow_heap"}}
	p, err := s.Build(memcg, Inuse, 0, res, Meta{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Sample) != 0 {
		t.Errorf("freed memory still in inuse: %d samples", len(p.Sample))
	}
	g, err := s.Build(memcg, Inuse, 30*time.Second, res, Meta{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Sample) != 0 {
		t.Errorf("allocated and freed within the window: %d samples, want none", len(g.Sample))
	}
}

func TestFaultsAreCumulativeAndUnknownStacksAreNamed(t *testing.T) {
	s := NewStore(DefaultConfig())
	t0 := time.Now()
	f := []tracer.FaultSample{
		{Memcg: memcg, PID: pid, StackID: 0, Bytes: 1 << 20, Samples: 2},
		{Memcg: memcg, PID: pid, StackID: 9, Bytes: 4 << 20, Samples: 8},
		{Memcg: memcg + 1, PID: 8, StackID: 9, Bytes: 99 << 20, Samples: 198},
	}
	s.Update(t0, snap(nil, f, map[uint64]tracer.Stack{9: {Frames: []uint64{0x7000}}}), procInfo)
	res := &fakeResolver{names: map[uint64]string{0x7000: "touch"}}
	p, err := s.Build(memcg, Faults, 0, res, Meta{Now: t0, FaultSampleBytes: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Sample) != 2 || p.Period != 512<<10 || p.DefaultSampleType != "faulted_space" {
		t.Fatalf("%d samples, period %d, default %q; want 2, 512 KiB, faulted_space", len(p.Sample), p.Period, p.DefaultSampleType)
	}
	names := map[string]int64{}
	for _, smp := range p.Sample {
		names[smp.Location[0].Line[0].Function.Name] += smp.Value[1]
	}
	if names["touch"] != 4<<20 || names["[stack not recorded]"] != 1<<20 {
		t.Errorf("faults by function %v; want touch 4 MiB and the unrecorded stack 1 MiB, other cgroups excluded", names)
	}
}

func TestBoundsEvictExitedProcessesFirst(t *testing.T) {
	s := NewStore(Config{Step: time.Second, Horizon: time.Minute, MaxKeys: 2, MaxStacks: 10})
	t0 := time.Now()
	f := func(p uint32) tracer.FaultSample {
		return tracer.FaultSample{Memcg: memcg, PID: p, StackID: 1, Bytes: 1, Samples: 1}
	}
	s.Update(t0, snap(nil, []tracer.FaultSample{f(1), f(2)}, nil), procInfo)
	s.ProcessExited(1)
	s.Update(t0.Add(time.Second), snap(nil, []tracer.FaultSample{f(2), f(3)}, nil), procInfo)
	if s.Evicted() == 0 {
		t.Fatal("three keys in a store bounded to two: nothing evicted")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k := range s.keys {
		if k.pid == 1 {
			t.Errorf("the exited process's key survived while live ones were kept")
		}
	}
}

func TestForgetReturnsProcessesWithNothingLeft(t *testing.T) {
	s := NewStore(DefaultConfig())
	t0 := time.Now()
	a := func(memcg uint64, pid uint32) tracer.Allocation {
		return tracer.Allocation{Memcg: memcg, PID: pid, StackID: 1, Kind: tracer.KindMmap, Bytes: 1, Count: 1}
	}
	// pid 1 only in cgroup 10; pid 2 in 10 and 11 (it moved).
	s.Update(t0, snap([]tracer.Allocation{a(10, 1), a(10, 2), a(11, 2)}, nil, nil), procInfo)
	gone := s.Forget(10)
	if len(gone) != 1 || gone[0].PID != 1 || gone[0].StartTime != 1000 {
		t.Errorf("Forget(10) = %+v, want only pid 1 (start 1000): pid 2 still has data in cgroup 11", gone)
	}
}

// sampleTypeIndex is the index of a sample type, failing the test when the
// profile has none of that name.
func sampleTypeIndex(t *testing.T, p *profile.Profile, name string) int {
	t.Helper()
	for i, st := range p.SampleType {
		if st.Type == name {
			return i
		}
	}
	t.Fatalf("profile has no sample type %s: %v", name, p.SampleType)
	return -1
}

// byFunction sums one sample type by innermost function, failing the test
// on any negative value in any sample type.
func byFunction(t *testing.T, p *profile.Profile, name string) map[string]int64 {
	t.Helper()
	i := sampleTypeIndex(t, p, name)
	out := map[string]int64{}
	for _, smp := range p.Sample {
		for j, v := range smp.Value {
			if v < 0 {
				t.Errorf("sample %s = %d at %s: negative", p.SampleType[j].Type, v, smp.Location[0].Line[0].Function.Name)
			}
		}
		out[smp.Location[0].Line[0].Function.Name] += smp.Value[i]
	}
	return out
}

// Memory freed in a window is released_space, never a negative inuse_space:
// one stack frees 8 MiB it had before the window while another grows 3 MiB.
func TestGrowthShowsReleasedMemoryApart(t *testing.T) {
	s := NewStore(DefaultConfig())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := map[uint64]tracer.Stack{1: {Frames: []uint64{0x6000}}, 2: {Frames: []uint64{0x7000}}}
	res := &fakeResolver{names: map[uint64]string{0x6000: "cache_fill", 0x7000: "leak"}}
	a := func(stack uint64, mib, n uint64) tracer.Allocation {
		return tracer.Allocation{Memcg: memcg, PID: pid, StackID: stack, Kind: tracer.KindMmap, Bytes: mib << 20, Count: n}
	}
	s.Update(t0, snap([]tracer.Allocation{a(1, 8, 4), a(2, 1, 1)}, nil, st), procInfo)
	s.Update(t0.Add(60*time.Second), snap([]tracer.Allocation{a(2, 2, 2)}, nil, nil), procInfo)
	s.Update(t0.Add(70*time.Second), snap([]tracer.Allocation{a(2, 4, 3)}, nil, nil), procInfo)

	g, err := s.Build(memcg, Inuse, 30*time.Second, res, Meta{Now: t0.Add(70 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if g.DefaultSampleType != "inuse_space" || g.SampleType[len(g.SampleType)-1].Type != "inuse_space" {
		t.Errorf("default sample type %q, sample types %v; want inuse_space, and last", g.DefaultSampleType, g.SampleType)
	}
	grown, released := byFunction(t, g, "inuse_space"), byFunction(t, g, "released_space")
	if grown["leak"] != 3<<20 || grown["cache_fill"] != 0 {
		t.Errorf("inuse_space over 30 s %v, want leak 3 MiB and nothing for cache_fill", grown)
	}
	if released["cache_fill"] != 8<<20 || released["leak"] != 0 {
		t.Errorf("released_space over 30 s %v, want cache_fill 8 MiB", released)
	}
	if objs := byFunction(t, g, "released_objects"); objs["cache_fill"] != 4 {
		t.Errorf("released_objects %v, want cache_fill 4", objs)
	}

	// The current view has no released types: nothing is released "now".
	cur, err := s.Build(memcg, Inuse, 0, res, Meta{Now: t0.Add(70 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(cur.SampleType) != 2 {
		t.Errorf("inuse without a window has sample types %v, want inuse_objects and inuse_space", cur.SampleType)
	}
}

// A process that exits in the window: what it grew until the exit is its
// growth, and its exit releases nothing; the current view leaves it out.
// The store learns of the exit from the event (ProcessExited) or, when the
// event came late or not at all, from the snapshot that drops the mappings.
func TestExitedProcessIsNotReleased(t *testing.T) {
	for _, how := range []string{"event", "snapshot"} {
		t.Run(how, func(t *testing.T) { testExitedProcessIsNotReleased(t, how == "event") })
	}
}

func testExitedProcessIsNotReleased(t *testing.T, event bool) {
	s := NewStore(Config{Step: 10 * time.Second, Horizon: 10 * time.Minute, MaxKeys: 100, MaxStacks: 100})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := map[uint64]tracer.Stack{1: {Frames: []uint64{0x4000}}}
	res := &fakeResolver{names: map[uint64]string{0x4000: "leak"}}
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 10 * time.Second) }
	for i := range 10 { // 100 MiB at t0, then 50 MiB more per step
		a := []tracer.Allocation{{Memcg: memcg, PID: pid, StackID: 1, Kind: tracer.KindMmap, Bytes: uint64(100+50*i) << 20, Count: uint64(1 + i)}}
		s.Update(at(i), snap(a, nil, st), procInfo)
	}
	// The tracer reports the exit, then drops the mappings from its maps.
	swept := snap(nil, nil, nil)
	if event {
		s.ProcessExited(pid)
	} else {
		swept.Exited = []uint32{pid}
	}
	s.Update(at(10), swept, procInfo)
	s.Update(at(11), snap(nil, nil, nil), procInfo)

	g, err := s.Build(memcg, Inuse, 60*time.Second, res, Meta{Now: at(11)})
	if err != nil {
		t.Fatal(err)
	}
	// The window starts at step 5 (350 MiB); the process held 550 MiB at
	// its exit.
	if grown := byFunction(t, g, "inuse_space"); grown["leak"] != 200<<20 {
		t.Errorf("inuse_space over 60 s %v, want leak 200 MiB, its growth until its exit", grown)
	}
	if released := byFunction(t, g, "released_space"); released["leak"] != 0 {
		t.Errorf("released_space %v: the exit is taken for a release", released)
	}
	for _, smp := range g.Sample {
		if smp.Label["exited"] == nil {
			t.Errorf("sample of the exited process has labels %v, want exited=true", smp.Label)
		}
	}

	cur, err := s.Build(memcg, Inuse, 0, res, Meta{Now: at(11)})
	if err != nil {
		t.Fatal(err)
	}
	if len(cur.Sample) != 0 {
		t.Errorf("inuse of a container whose process exited: %d samples, want none", len(cur.Sample))
	}

	// A window that starts after the exit shows nothing; past the horizon
	// the key is gone.
	late, err := s.Build(memcg, Inuse, 10*time.Second, res, Meta{Now: at(11)})
	if err != nil {
		t.Fatal(err)
	}
	if len(late.Sample) != 0 {
		t.Errorf("window after the exit: %d samples, want none", len(late.Sample))
	}
	s.Update(at(11).Add(11*time.Minute), snap(nil, nil, nil), procInfo)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.keys) != 0 {
		t.Errorf("%d keys kept past the horizon after the exit, want none", len(s.keys))
	}
}

// A mapping of a process that exited moves to another key in the snapshot
// after the exit (its stack copy was unwound in between, so its stack id
// became the unwound stack's): it counts once, under the new key, not also
// under the old one frozen at the exit.
func TestMovedKeyOfExitedProcessCountsOnce(t *testing.T) {
	s := NewStore(DefaultConfig())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := map[uint64]tracer.Stack{1: {Frames: []uint64{0x4000}}}
	res := &fakeResolver{names: map[uint64]string{0x4000: "leak"}}
	a := func(stack, mib uint64) tracer.Allocation {
		return tracer.Allocation{Memcg: memcg, PID: pid, StackID: stack, Kind: tracer.KindMmap, Bytes: mib << 20, Count: mib / 8}
	}
	s.Update(t0, snap([]tracer.Allocation{a(1, 8), a(99, 8)}, nil, st), procInfo) // 99: a copy not unwound yet
	s.ProcessExited(pid)
	s.Update(t0.Add(10*time.Second), snap([]tracer.Allocation{a(1, 16)}, nil, st), procInfo)
	s.Update(t0.Add(20*time.Second), snap(nil, nil, nil), procInfo) // swept

	g, err := s.Build(memcg, Inuse, time.Minute, res, Meta{Now: t0.Add(20 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, v := range byFunction(t, g, "inuse_space") {
		total += v
	}
	if total != 16<<20 {
		t.Errorf("inuse_space of the exited process totals %d MiB, want 16 (8 MiB counted twice?)", total>>20)
	}
}

// Two snapshots can fold into one step (an OOM record's refresh beside
// the collection): a key the second lacks is gone, as in any later step.
// Kept, a mapping that moved to another key between them counted twice.
func TestKeyGoneWithinAStep(t *testing.T) {
	s := NewStore(DefaultConfig())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := map[uint64]tracer.Stack{1: {Frames: []uint64{0x4000}}}
	res := &fakeResolver{names: map[uint64]string{0x4000: "leak"}}
	a := func(stack uint64) tracer.Allocation {
		return tracer.Allocation{Memcg: memcg, PID: pid, StackID: stack, Kind: tracer.KindMmap, Bytes: 8 << 20, Count: 1}
	}
	s.Update(t0, snap([]tracer.Allocation{a(99)}, nil, st), procInfo) // 99: a copy not unwound yet
	s.Update(t0.Add(time.Second), snap([]tracer.Allocation{a(1)}, nil, st), procInfo)
	cur, err := s.Build(memcg, Inuse, 0, res, Meta{Now: t0.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, smp := range cur.Sample {
		total += smp.Value[sampleTypeIndex(t, cur, "inuse_space")]
	}
	if total != 8<<20 {
		t.Errorf("inuse totals %d MiB after the mapping moved key within a step, want 8", total>>20)
	}
}

// A snapshot that names a swept exit freezes only that pid's keys it no
// longer holds: mappings present in it belong to a live process (a new one
// with the pid, as far as the store can tell) and stay in the inuse view.
func TestSweptExitLeavesPresentKeysLive(t *testing.T) {
	s := NewStore(DefaultConfig())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := map[uint64]tracer.Stack{1: {Frames: []uint64{0x4000}}, 2: {Frames: []uint64{0x5000}}}
	res := &fakeResolver{names: map[uint64]string{0x4000: "old_leak", 0x5000: "new_work"}}
	a := func(stack uint64) tracer.Allocation {
		return tracer.Allocation{Memcg: memcg, PID: pid, StackID: stack, Kind: tracer.KindMmap, Bytes: 8 << 20, Count: 1}
	}
	s.Update(t0, snap([]tracer.Allocation{a(1), a(2)}, nil, st), procInfo)
	swept := snap([]tracer.Allocation{a(2)}, nil, st)
	swept.Exited = []uint32{pid}
	s.Update(t0.Add(10*time.Second), swept, procInfo)

	cur, err := s.Build(memcg, Inuse, 0, res, Meta{Now: t0.Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if got := byFunction(t, cur, "inuse_space"); got["new_work"] != 8<<20 || got["old_leak"] != 0 {
		t.Errorf("inuse after a swept exit %v, want new_work 8 MiB (present) and not old_leak (exited)", got)
	}
	g, err := s.Build(memcg, Inuse, time.Minute, res, Meta{Now: t0.Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if rel := byFunction(t, g, "released_space"); rel["old_leak"] != 0 {
		t.Errorf("released_space %v: the swept exit is taken for a release", rel)
	}
}

// A current inuse profile given residency carries inuse_resident_space per
// sample, keyed by process (pid and start time) and stack; a growth window
// has no residency history and leaves it out.
func TestInuseResidentSpace(t *testing.T) {
	s := NewStore(Config{Step: 10 * time.Second, Horizon: time.Hour, MaxKeys: 100, MaxStacks: 100})
	stacks := map[uint64]tracer.Stack{1: {Frames: []uint64{0x2000}}, 2: {Frames: []uint64{0x5000}}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 2 {
		s.Update(t0.Add(time.Duration(i)*10*time.Second), snap([]tracer.Allocation{
			{Memcg: memcg, PID: pid, StackID: 1, Kind: tracer.KindMprotect, Bytes: 256 << 20, Count: 1},
			{Memcg: memcg, PID: pid, StackID: 2, Kind: tracer.KindMmap, Bytes: 8 << 20, Count: 2},
		}, nil, stacks), procInfo)
	}
	res := &fakeResolver{names: map[uint64]string{0x2000: "commit", 0x5000: "startup"}}
	meta := Meta{Now: t0, Resident: map[ResidentKey]int64{
		{PID: pid, StartTime: 1000, Stack: 1}: 64 << 20,
		{PID: pid, StartTime: 999, Stack: 2}:  1 << 20, // another process that had the pid
	}}
	p, err := s.Build(memcg, Inuse, 0, res, meta)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.SampleType); n != 3 || p.SampleType[0].Type != "inuse_resident_space" || p.SampleType[0].Unit != "bytes" ||
		p.SampleType[2].Type != "inuse_space" {
		t.Fatalf("sample types %v, want inuse_resident_space first and inuse_space last", p.SampleType)
	}
	got := map[string][2]int64{}
	for _, sm := range p.Sample {
		got[sm.Location[0].Line[0].Function.Name] = [2]int64{sm.Value[2], sm.Value[0]}
	}
	if want := [2]int64{256 << 20, 64 << 20}; got["commit"] != want {
		t.Errorf("commit: inuse/resident %v, want %v", got["commit"], want)
	}
	if want := [2]int64{8 << 20, 0}; got["startup"] != want {
		t.Errorf("startup: inuse/resident %v, want %v (residency of another process)", got["startup"], want)
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := profile.Parse(&buf); err != nil {
		t.Fatalf("profile does not parse back: %v", err)
	}

	p, err = s.Build(memcg, Inuse, 10*time.Second, res, meta)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range p.SampleType {
		if st.Type == "inuse_resident_space" {
			t.Errorf("a growth profile has sample type %s, want no resident one", st.Type)
		}
	}
}

// A frame-pointer walk that left the stack (a heap address, then 0, then
// noise, as through redis built without frame pointers) ends the stack at
// the first word outside code; a stack of a process whose mappings are not
// known is kept whole.
func TestWalkEndsWhereItLeftTheCode(t *testing.T) {
	s := NewStore(DefaultConfig())
	t0 := time.Now()
	f := []tracer.FaultSample{
		{Memcg: memcg, PID: pid, StackID: 1, Bytes: 4 << 20, Samples: 8},
		{Memcg: memcg, PID: pid, StackID: 2, Bytes: 1 << 20, Samples: 2},
	}
	stacks := map[uint64]tracer.Stack{
		1: {Frames: []uint64{0x7000, 0x5001, 0x7f33076001c0, 0, 0xff69c9870f043c07}},
		2: {Frames: []uint64{0xa000, 0xb001}},
	}
	s.Update(t0, snap(nil, f, stacks), procInfo)
	res := &fakeResolver{names: map[uint64]string{0x7000: "dictFind", 0x5000: "dictAdd"}}
	p, err := s.Build(memcg, Faults, 0, res, Meta{Now: t0, FaultSampleBytes: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	byBytes := map[int64][]uint64{}
	for _, smp := range p.Sample {
		for _, l := range smp.Location {
			byBytes[smp.Value[1]] = append(byBytes[smp.Value[1]], l.Address)
		}
	}
	if got := byBytes[4<<20]; len(got) != 2 || got[0] != 0x7000 || got[1] != 0x5001 {
		t.Errorf("walk through code then data: frames %x, want 7000 5001", got)
	}
	if got := byBytes[1<<20]; len(got) != 2 {
		t.Errorf("stack of unknown mappings: frames %x, want both kept", got)
	}
}
