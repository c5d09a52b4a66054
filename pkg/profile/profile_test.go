package profile

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/leakwatch/leakwatch/pkg/tracer"
)

// fakeResolver names addresses from a table, as a symbolizer would for one
// executable mapping; it stands in for pkg/symbolize so that these tests
// check the profile logic alone.
type fakeResolver struct {
	names map[uint64]string // lookup address -> function
	calls int
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

const (
	memcg = 42
	pid   = 7
)

func procInfo(uint32) (string, uint64, bool) { return "app", 1000, true }

func snap(allocs []tracer.Allocation, faults []tracer.FaultSample, stacks map[uint64]tracer.Stack) *tracer.Snapshot {
	return &tracer.Snapshot{Allocations: allocs, Faults: faults, Stacks: stacks}
}

// topFunction returns the innermost function of the sample with the most
// bytes, as `pprof -top` would put first.
func topFunction(t *testing.T, p *profile.Profile) (string, int64) {
	t.Helper()
	var best *profile.Sample
	for _, s := range p.Sample {
		if best == nil || s.Value[1] > best.Value[1] {
			best = s
		}
	}
	if best == nil {
		t.Fatal("profile has no samples")
	}
	l := best.Location[0]
	if len(l.Line) == 0 {
		return "", best.Value[1]
	}
	return l.Line[0].Function.Name, best.Value[1]
}

func TestInuseGrowthWindowAndTrimming(t *testing.T) {
	s := NewStore(Config{Step: 10 * time.Second, Horizon: time.Hour, MaxKeys: 100, MaxStacks: 100})
	// Stack 1: mmap (libc, trimmed) <- leak (via the leaf hint) <- main.
	// Stack 2: startup <- main, allocated once.
	stacks := map[uint64]tracer.Stack{
		1: {Frames: []uint64{0x2000, 0x3001}, LeafReturn: 0x4001},
		2: {Frames: []uint64{0x5000, 0x3001}},
	}
	res := &fakeResolver{names: map[uint64]string{0x2000: "__mmap", 0x3000: "main", 0x4000: "leak", 0x5000: "startup"}}
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

func TestFreedMemoryLeavesInuseAndShowsAsNegativeGrowth(t *testing.T) {
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
