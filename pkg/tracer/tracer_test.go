package tracer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/tracer"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

func TestMain(m *testing.M) { cgtest.Main(m) }

// startTracer loads a tracer for one test and runs it until the test ends;
// before, if given, sets it up before it runs.
func startTracer(t *testing.T, mutate func(*tracer.Config), before ...func(*tracer.Tracer)) *tracer.Tracer {
	t.Helper()
	tr, stop := startTracerFor(t, mutate, before...)
	t.Cleanup(stop)
	return tr
}

// startTracerFor loads a tracer and runs it until stop, which may be
// called more than once.
func startTracerFor(t *testing.T, mutate func(*tracer.Config), before ...func(*tracer.Tracer)) (tr *tracer.Tracer, stop func()) {
	t.Helper()
	cgtest.RequirePrivileged(t)
	cfg := tracer.DefaultConfig()
	cfg.SweepInterval = time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	tr, err := tracer.New(cfg, slog.New(slog.NewTextHandler(testLog{t}, nil)))
	if err != nil {
		t.Fatalf("starting tracer: %v", err)
	}
	for _, f := range before {
		f(tr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	var once sync.Once
	return tr, func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if err := tr.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func snapshot(t *testing.T, tr *tracer.Tracer) *tracer.Snapshot {
	t.Helper()
	s, err := tr.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return s
}

// waitFor polls cond on fresh snapshots until it holds or 15 s pass.
func waitFor(t *testing.T, tr *tracer.Tracer, what string, cond func(*tracer.Snapshot) bool) *tracer.Snapshot {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := snapshot(t, tr)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 15s waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hexAddr(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatalf("bad address %q: %v", s, err)
	}
	return v
}

func pidAllocations(s *tracer.Snapshot, pid int) []tracer.Allocation {
	var out []tracer.Allocation
	for _, a := range s.Allocations {
		if a.PID == uint32(pid) {
			out = append(out, a)
		}
	}
	return out
}

// Mappings shorter than MmapSampleBytes are sampled by size and weighed, so
// the estimate of many small ones is unbiased: 4,096 mappings of 16 KiB at
// the default 512 KiB are about 128 samples, a standard error of 9%; the
// bounds are four of them. Unweighted samples would read 2 MiB; weights
// that differ between mmap and munmap leave bytes behind after "free".
func TestSmallMappingsSampledUnbiased(t *testing.T) {
	tr := startTracer(t, nil)
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	p.Do(t, "nop")
	base := snapshot(t, tr)
	p.Do(t, "leak 16 4096")
	s := snapshot(t, tr)
	var bytes, count uint64
	for _, a := range pidAllocations(s, p.PID) {
		if a.Kind == tracer.KindMmap {
			bytes += a.Bytes
			count += a.Count
		}
	}
	if bytes < 64*mib*65/100 || bytes > 64*mib*135/100 {
		t.Errorf("4,096 mappings of 16 KiB estimated as %.1f MiB, want 64 MiB ±35%%", float64(bytes)/mib)
	}
	if count < 4096*65/100 || count > 4096*135/100 {
		t.Errorf("estimated %d mappings, want 4,096 ±35%%", count)
	}
	if n := len(s.Allocations); n == 0 {
		t.Fatal("no allocations")
	}
	mapped := s.Cgroups[g.ID].MmapBytes - base.Cgroups[g.ID].MmapBytes
	if mapped < 64*mib*65/100 || mapped > 64*mib*135/100 {
		t.Errorf("mmap counter grew %.1f MiB, want 64 MiB ±35%%", float64(mapped)/mib)
	}
	t.Logf("64 MiB in 16 KiB mappings: estimated %.1f MiB in %d mappings", float64(bytes)/mib, count)

	p.Do(t, "free")
	s = snapshot(t, tr)
	// Relative to base: the loader's own small anonymous mappings (8 and
	// 12 KiB) are sampled too, about one start in 25, and stay mapped.
	if left := int64(s.Cgroups[g.ID].MappedBytes - base.Cgroups[g.ID].MappedBytes); left != 0 {
		t.Errorf("%d bytes left mapped after unmapping every sampled mapping (%d before the leak)", left, base.Cgroups[g.ID].MappedBytes)
	}
	freed := s.Cgroups[g.ID].MunmapBytes - base.Cgroups[g.ID].MunmapBytes
	if freed != mapped {
		t.Errorf("munmap counter grew %d, mmap counter %d: sampled mappings must weigh the same both ways", freed, mapped)
	}
}

// The mapping bookkeeping is exact: every figure below is checked to the
// byte, since the workload does nothing else once in its cgroup.
func TestMmapMunmapMremap(t *testing.T) {
	tr := startTracer(t, nil)
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 512*mib)
	other := cgtest.New(t, 64*mib)
	p := g.Start(t, memwork)
	idle := other.Start(t, memwork)
	p.Do(t, "nop")
	idle.Do(t, "nop")
	// What the loader and libc mapped at start-up is the baseline.
	s0 := snapshot(t, tr)
	base, idleBase := s0.Cgroups[g.ID].MappedBytes, s0.Cgroups[other.ID].MappedBytes

	mapped := func(want uint64, step string) {
		t.Helper()
		s := snapshot(t, tr)
		if got := s.Cgroups[g.ID].MappedBytes - base; got != want {
			t.Fatalf("%s: cgroup %d mapped %d bytes more than at start, want %d", step, g.ID, got, want)
		}
		if got := s.Cgroups[other.ID].MappedBytes; got != idleBase {
			t.Fatalf("%s: idle sibling cgroup went from %d to %d mapped bytes", step, idleBase, got)
		}
		for _, a := range pidAllocations(s, p.PID) {
			if a.Memcg != g.ID && a.Bytes >= mib {
				t.Fatalf("%s: %d bytes of pid %d landed on cgroup %d, not %d", step, a.Bytes, p.PID, a.Memcg, g.ID)
			}
		}
	}

	a := hexAddr(t, p.Do(t, "map 65536"))
	mapped(64*mib, "map 64 MiB")

	p.Do(t, fmt.Sprintf("unmap %x %d", a, 16384)) // head: [0,16) goes
	mapped(48*mib, "unmap head 16 MiB")
	p.Do(t, fmt.Sprintf("unmap %x %d", a+48*mib, 16384)) // tail: [48,64) goes
	mapped(32*mib, "unmap tail 16 MiB")
	p.Do(t, fmt.Sprintf("unmap %x %d", a+24*mib, 4096)) // hole: [24,28) goes
	mapped(28*mib, "unmap a 4 MiB hole inside")         // [16,24) and [28,48) remain

	b := hexAddr(t, p.Do(t, "map 8192"))
	mapped(36*mib, "map 8 MiB more")
	nb := hexAddr(t, p.Do(t, fmt.Sprintf("remap %x 8192 32768", b)))
	mapped(60*mib, "mremap 8 MiB to 32 MiB")

	p.Do(t, fmt.Sprintf("unmap %x %d", a+16*mib, 8192))  // [16,24)
	p.Do(t, fmt.Sprintf("unmap %x %d", a+28*mib, 20480)) // [28,48)
	p.Do(t, fmt.Sprintf("unmap %x %d", nb, 32768))
	mapped(0, "unmap everything")
	idle.Send(t, "exit")

	s := snapshot(t, tr)
	if c := s.Cgroups[g.ID]; c.MmapCalls-s0.Cgroups[g.ID].MmapCalls != 2 || c.MremapCalls != 1 {
		t.Errorf("counters: %d mmap calls and %d mremap calls since start, want 2 and 1",
			c.MmapCalls-s0.Cgroups[g.ID].MmapCalls, c.MremapCalls)
	}
}

// glibc here has no frame pointers, so a stack taken inside its frameless
// mmap() wrapper walks from the wrapper straight to the caller's caller: the
// function that called mmap() (map_anon) is only in LeafReturn.
func TestLeafReturnRecoversTheCallerOfAFramelessWrapper(t *testing.T) {
	tr := startTracer(t, nil)
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	p.Do(t, "nop")
	p.Do(t, "map 4096")

	s := snapshot(t, tr)
	for _, a := range pidAllocations(s, p.PID) {
		if a.Bytes != 4*mib {
			continue
		}
		st, ok := tr.Stack(a.StackID)
		if !ok {
			t.Fatalf("stack %d of the 4 MiB mapping is gone", a.StackID)
		}
		names, err := cgtest.FuncNames(p.PID, memwork, append([]uint64{st.LeafReturn}, st.Frames...))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("leaf return %s, frames %v", names[0], names[1:])
		if names[0] != "map_anon" {
			t.Errorf("leaf return resolves to %q, want map_anon (the caller of mmap)", names[0])
		}
		if !slices.Contains(names[1:], "main") {
			t.Errorf("frame-pointer walk %v lacks main", names[1:])
		}
		return
	}
	t.Fatal("the 4 MiB mapping was not tracked")
}

func TestBrkGrowthAndShrink(t *testing.T) {
	tr := startTracer(t, nil)
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	p.Do(t, "nop") // libc's own heap set-up is the baseline
	s0 := snapshot(t, tr)
	base := s0.Cgroups[g.ID]

	heap := func(want uint64, step string) *tracer.Snapshot {
		t.Helper()
		s := snapshot(t, tr)
		if got := s.Cgroups[g.ID].BrkBytes - base.BrkBytes; got != want {
			t.Fatalf("%s: heap grown by %d bytes since start, want %d", step, got, want)
		}
		return s
	}
	brkEntries := func(s *tracer.Snapshot) (n uint64) {
		for _, a := range pidAllocations(s, p.PID) {
			if a.Kind == tracer.KindBrk {
				n += a.Count
			}
		}
		return n
	}
	p.Do(t, "brk 10240")
	n1 := brkEntries(heap(10*mib, "grow 10 MiB"))
	p.Do(t, "brk 2048")
	if n2 := brkEntries(heap(12*mib, "grow 2 MiB more")); n2 != n1 {
		t.Errorf("a second growth from the same stack added an entry (%d -> %d), want it merged", n1, n2)
	}
	p.Do(t, "brk -4096")
	heap(8*mib, "shrink 4 MiB")
	p.Do(t, "brk -8192")
	heap(0, "shrink the rest")
	c := snapshot(t, tr).Cgroups[g.ID]
	if grew, shrank := c.BrkGrowBytes-base.BrkGrowBytes, c.BrkShrinkBytes-base.BrkShrinkBytes; grew != 12*mib || shrank != 12*mib {
		t.Errorf("counters grew %d and shrank %d bytes, want 12 MiB each", grew, shrank)
	}
}

// startFaultWorkload starts a tracer that samples page faults (see
// startTracer for mutate and before) and a memwork in a 512 MiB cgroup of
// its own, ready for commands.
func startFaultWorkload(t *testing.T, mutate func(*tracer.Config), before ...func(*tracer.Tracer)) (*tracer.Tracer, *cgtest.Group, *cgtest.Proc, string) {
	t.Helper()
	tr := startTracer(t, mutate, before...)
	if !tr.Features().FaultSampling {
		t.Fatalf("fault sampling unavailable: %s", tr.Features().FaultNote)
	}
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 512*mib)
	p := g.Start(t, memwork)
	p.Do(t, "nop")
	return tr, g, p, memwork
}

// Fault sampling estimates bytes faulted in: with 512 KiB between samples,
// 128 MiB gives about 256 samples, so ±10% is several standard errors wide
// while still catching a weight that is off by a factor.
func TestPageFaultSamplesC(t *testing.T) {
	tr, g, p, memwork := startFaultWorkload(t, nil)
	before := snapshot(t, tr).Cgroups[g.ID].FaultBytes
	p.Do(t, "touch 131072")

	s := snapshot(t, tr)
	checkEstimate(t, s.Cgroups[g.ID].FaultBytes-before, 128*mib, 0.10)
	checkTopFrame(t, s, p.PID, memwork, g.ID, "touch_pages")
}

// Faults on file-backed memory (here a memfd: shared memory, which has a
// file) are page cache, not anonymous memory: a few VMA lookups per fault
// key tell them apart. 128 MiB of each, from two stacks, must come out as
// 128 MiB of each kind (about 256 samples each: ±20% is three standard
// errors), per cgroup and per process.
func TestFileBackedFaultsToldApart(t *testing.T) {
	tr, g, p, memwork := startFaultWorkload(t, nil)
	before := snapshot(t, tr).Cgroups[g.ID]
	p.Do(t, "touch 131072")
	p.Do(t, "readfile 131072")

	s := snapshot(t, tr)
	c := s.Cgroups[g.ID]
	t.Logf("cgroup: %.1f MiB anonymous, %.1f MiB file-backed faulted", float64(c.FaultBytes-before.FaultBytes)/mib, float64(c.FileFaultBytes-before.FileFaultBytes)/mib)
	checkEstimate(t, c.FaultBytes-before.FaultBytes, 128*mib, 0.20)
	checkEstimate(t, c.FileFaultBytes-before.FileFaultBytes, 128*mib, 0.20)
	var anon, file uint64
	for _, f := range s.Faults {
		if f.PID == uint32(p.PID) {
			anon += f.Bytes
			file += f.FileBytes
		}
	}
	t.Logf("process: %.1f MiB anonymous, %.1f MiB file-backed", float64(anon)/mib, float64(file)/mib)
	checkEstimate(t, anon, 128*mib, 0.20)
	checkEstimate(t, file, 128*mib, 0.20)
	checkTopFrame(t, s, p.PID, memwork, g.ID, "touch_pages")
}

func TestPageFaultSamplesGo(t *testing.T) {
	tr := startTracer(t, nil)
	_, gowork := cgtest.Workloads(t)
	g := cgtest.New(t, 512*mib)
	p := g.Start(t, gowork)
	p.Do(t, "nop")
	s0 := snapshot(t, tr).Cgroups[g.ID]
	p.Do(t, "leak 131072")

	s := snapshot(t, tr)
	// The Go runtime also faults in its own metadata, so allow more above.
	got := s.Cgroups[g.ID].FaultBytes - s0.FaultBytes
	if got < 115*mib || got > 150*mib {
		t.Errorf("estimated %d MiB faulted, want 128 MiB (115..150)", got/mib)
	}
	if m := s.Cgroups[g.ID].MappedBytes - s0.MappedBytes; m < 128*mib {
		t.Errorf("Go heap mappings: %d MiB mapped, want at least 128 MiB", m/mib)
	}
	checkTopFrame(t, s, p.PID, gowork, g.ID, "main.retainBytes")
}

func checkEstimate(t *testing.T, got, want uint64, tol float64) {
	t.Helper()
	if d := (float64(got) - float64(want)) / float64(want); d < -tol || d > tol {
		t.Errorf("estimated %.1f MiB faulted, want %.1f MiB ±%.0f%%", float64(got)/mib, float64(want)/mib, tol*100)
	}
}

// checkTopFrame asserts that fn is in the stacks carrying most of the
// process's sampled fault bytes.
func checkTopFrame(t *testing.T, s *tracer.Snapshot, pid int, exe string, memcg uint64, fn string) {
	t.Helper()
	var total, withFn, outside uint64
	for _, f := range s.Faults {
		if f.PID != uint32(pid) {
			continue
		}
		if f.Memcg != memcg {
			// The shell that execs the workload starts in the test's own
			// cgroup: its first faults there may be sampled, rightly.
			outside += f.Bytes + f.FileBytes
			continue
		}
		total += f.Bytes
		names, err := cgtest.FuncNames(pid, exe, s.Stacks[f.StackID].Frames)
		if err != nil {
			t.Fatalf("naming frames: %v", err)
		}
		if slices.Contains(names, fn) {
			withFn += f.Bytes
		}
	}
	if total == 0 || float64(withFn) < 0.9*float64(total) {
		t.Errorf("%s is in stacks holding %d of %d sampled bytes, want at least 90%%", fn, withFn, total)
	}
	if outside > 1*mib {
		t.Errorf("%d bytes of pid %d's fault samples on other cgroups than %d, want at most two samples (the shell before its move)", outside, pid, memcg)
	}
}

func TestOOMKillIsReportedOnce(t *testing.T) {
	tr := startTracer(t, nil)
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 64*mib)
	p := g.Start(t, memwork)
	p.Send(t, "oom")

	var kills []tracer.Event
	deadline := time.After(60 * time.Second)
	for exited := false; !exited; {
		select {
		case ev := <-tr.Events():
			if ev.Process.PID != uint32(p.PID) {
				continue
			}
			switch ev.Type {
			case tracer.EventOOMKill:
				kills = append(kills, ev)
			case tracer.EventExit:
				exited = true // the kill's event precedes the exit's
			}
		case <-deadline:
			t.Fatalf("no exit of pid %d within 60s (%d kills seen)", p.PID, len(kills))
		}
	}
	if len(kills) != 1 {
		t.Fatalf("%d OOM-kill events for pid %d, want exactly 1", len(kills), p.PID)
	}
	k := kills[0]
	if k.Memcg != g.ID || k.TriggerMemcg != g.ID || k.OOMKind != tracer.OOMMemcg || k.Comm != "memwork" || k.AnonRSSBytes < 32*mib {
		t.Errorf("OOM kill: memcg %d (limit of %d fired, %s OOM) comm %q anon rss %d; want memcg %d for both, memcg, memwork, >= 32 MiB",
			k.Memcg, k.TriggerMemcg, k.OOMKind, k.Comm, k.AnonRSSBytes, g.ID)
	}
	if st := p.Wait(t, 10*time.Second); st.Success() {
		t.Errorf("workload exited cleanly, want killed")
	}
}

// oomKillEvent runs memwork's "oom" in g and returns the kill's event.
func oomKillEvent(t *testing.T, tr *tracer.Tracer, g *cgtest.Group, memwork string) tracer.Event {
	t.Helper()
	p := g.Start(t, memwork)
	p.Send(t, "oom")
	deadline := time.After(60 * time.Second)
	for {
		select {
		case ev := <-tr.Events():
			if ev.Type == tracer.EventOOMKill && ev.Process.PID == uint32(p.PID) {
				p.Wait(t, 10*time.Second)
				return ev
			}
		case <-deadline:
			t.Fatalf("no OOM kill of pid %d in %s within 60s", p.PID, g.Rel)
		}
	}
}

// The limit that fired is read in the kernel at the kill: a parent's lower
// limit is the parent's, a container's own limit is the container's, every
// time (the kernel's own count is the check).
func TestOOMTriggerIsTheLimitThatFired(t *testing.T) {
	tr := startTracer(t, nil)
	memwork, _ := cgtest.Workloads(t)

	t.Run("ancestor", func(t *testing.T) {
		parent := cgtest.New(t, 64*mib)
		child := parent.Child(t, 256*mib)
		k := oomKillEvent(t, tr, child, memwork)
		t.Logf("kill in child %d: limit of %d fired, found by %s, %s OOM", k.Memcg, k.TriggerMemcg, k.TriggerFoundBy, k.OOMKind)
		if k.Memcg != child.ID || k.TriggerMemcg != parent.ID || k.OOMKind != tracer.OOMMemcg {
			t.Errorf("kill in %d: limit of %d fired (found by %s, %s OOM); want %d in child %d, memcg",
				k.Memcg, k.TriggerMemcg, k.TriggerFoundBy, k.OOMKind, parent.ID, child.ID)
		}
	})
	t.Run("container, repeatedly", func(t *testing.T) {
		const kills = 20
		g := cgtest.New(t, 64*mib)
		var wrong []string
		for i := range kills {
			k := oomKillEvent(t, tr, g, memwork)
			if k.TriggerMemcg != g.ID || k.OOMKind != tracer.OOMMemcg {
				wrong = append(wrong, fmt.Sprintf("kill %d: limit of %d (found by %s, %s OOM)", i+1, k.TriggerMemcg, k.TriggerFoundBy, k.OOMKind))
			}
		}
		if len(wrong) > 0 {
			t.Errorf("%d of %d kills blamed on another limit than %d's:\n%s", len(wrong), kills, g.ID, strings.Join(wrong, "\n"))
		}
		if n, err := g.OOMKills(); err != nil || n != kills {
			t.Errorf("the kernel counted %d OOM kills in %s (err %v), want %d", n, g.Rel, err, kills)
		}
	})
}

// A process is announced when it first gets tracked state, so that user
// space can read its memory map while it runs.
func TestFirstTrackedStateIsAnnounced(t *testing.T) {
	tr := startTracer(t, nil)
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	p.Do(t, "map 1024")
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-tr.Events():
			// The shell that execs memwork is announced first, as "sh".
			if ev.Type == tracer.EventTracked && ev.Process.PID == uint32(p.PID) && ev.Comm == "memwork" {
				if ev.Memcg != g.ID || ev.Process.StartTime == 0 {
					t.Errorf("tracked event %+v: want memcg %d and a start time", ev, g.ID)
				}
				return
			}
		case <-deadline:
			t.Fatalf("no tracked event for pid %d within 10s", p.PID)
		}
	}
}

// An exit's mappings are swept through its event (after deadGrace) or, if
// the periodic sweep comes first, as those of a process that no longer
// exists; either way the snapshot that leaves them out lists the process in
// Exited.
func TestExitClearsState(t *testing.T) {
	for name, sweep := range map[string]time.Duration{"event": time.Hour, "sweep": time.Second} {
		t.Run(name, func(t *testing.T) { testExitClearsState(t, sweep) })
	}
}

func testExitClearsState(t *testing.T, sweep time.Duration) {
	tr := startTracer(t, func(c *tracer.Config) { c.SweepInterval = sweep })
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	p.Do(t, "map 32768")
	p.Do(t, "touch 16384")
	s := snapshot(t, tr)
	if len(pidAllocations(s, p.PID)) == 0 {
		t.Fatal("no allocations tracked before exit")
	}
	p.Do(t, "brk 1024")
	p.Send(t, "exit")
	p.Wait(t, 10*time.Second)

	listed := false
	waitFor(t, tr, "the exited process's mappings to be swept", func(s *tracer.Snapshot) bool {
		listed = listed || slices.Contains(s.Exited, uint32(p.PID))
		return len(pidAllocations(s, p.PID)) == 0 && s.Cgroups[g.ID].MappedBytes == 0 && s.Cgroups[g.ID].BrkBytes == 0
	})
	if !listed {
		t.Error("the snapshot that swept the exited process's mappings does not list it in Exited")
	}
	// Its fault counters are handed out once more, then dropped.
	waitFor(t, tr, "the exited process's fault counters to be dropped", func(s *tracer.Snapshot) bool {
		for _, f := range s.Faults {
			if f.PID == uint32(p.PID) {
				return false
			}
		}
		return true
	})
}

// A ring buffer nobody reads fills up: the kernel side counts what it
// could not send and goes on; once read, events flow again.
func TestFullRingBufferCountsDrops(t *testing.T) {
	cgtest.RequirePrivileged(t)
	cfg := tracer.DefaultConfig()
	cfg.RingBufferBytes = uint32(os.Getpagesize()) // about 30 events
	tr, err := tracer.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	}()
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	// Each workload is announced and exits: two events, nobody reading.
	for range 40 {
		p := g.Start(t, memwork)
		p.Do(t, "map 64")
		p.Send(t, "exit")
		p.Wait(t, 10*time.Second)
	}
	s := snapshot(t, tr)
	if s.Drops[tracer.DropEventsFull] == 0 {
		t.Fatal("80 events into a one-page ring buffer nobody read: nothing counted as dropped")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// The reader may not have drained the backlog yet when the first
	// workload starts, and on a busy node other processes' events can fill
	// one page again between reads: an announcement may be dropped, and is
	// never repeated for that process. So start workloads until one is
	// announced; a reader that never reads again lets none through.
	deadline := time.Now().Add(20 * time.Second)
	for attempt := 1; time.Now().Before(deadline); attempt++ {
		p := g.Start(t, memwork)
		p.Do(t, "map 64")
		wait := time.After(2 * time.Second)
	read:
		for {
			select {
			case ev := <-tr.Events():
				if ev.Type == tracer.EventTracked && ev.Process.PID == uint32(p.PID) && ev.Comm == "memwork" {
					t.Logf("workload %d announced", attempt)
					return
				}
			case <-wait:
				break read
			}
		}
		p.Kill()
	}
	t.Fatal("no workload started in 20s was announced once the ring buffer was read again")
}

func TestFullMapsCountDropsAndRecover(t *testing.T) {
	tr := startTracer(t, func(c *tracer.Config) { c.MaxMappings = 64; c.MmapSampleBytes = 0 })
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	p.Do(t, "nop")
	base := snapshot(t, tr).Cgroups[g.ID].MappedBytes

	var addrs []uint64
	for range 100 {
		addrs = append(addrs, hexAddr(t, p.Do(t, "map 64")))
	}
	s := snapshot(t, tr)
	if s.Drops[tracer.DropMappingsFull] == 0 {
		t.Fatal("100 mappings into a 64-entry map dropped nothing")
	}
	for _, m := range s.Maps {
		if m.Name == "live_mappings" && m.Entries > m.Capacity {
			t.Errorf("live_mappings holds %d entries, capacity %d", m.Entries, m.Capacity)
		}
	}
	for _, a := range addrs {
		p.Do(t, fmt.Sprintf("unmap %x 64", a))
	}
	if left := snapshot(t, tr).Cgroups[g.ID].MappedBytes; left != base {
		t.Fatalf("%d bytes mapped after unmapping everything, %d at start", left, base)
	}
	// Room again: a new mapping is tracked (other processes on the host
	// compete for the same 64 entries, so try a few times).
	waitFor(t, tr, "a new mapping to be tracked after drops", func(s *tracer.Snapshot) bool {
		if s.Cgroups[g.ID].MappedBytes > base {
			return true
		}
		p.Do(t, "map 64")
		return false
	})
}

// The faults tier attaches no syscalls: tracepoint: a workload's mappings
// are not seen (the inuse view is off, and says so), its page faults are.
// The full tier's bookkeeping is what the other tests here check.
func TestFaultsTierTracesNoSystemCalls(t *testing.T) {
	tr := startTracer(t, func(c *tracer.Config) { c.Tier = tracer.TierFaults })
	f := tr.Features()
	if f.Mappings || f.MappingsNote == "" {
		t.Errorf("features %+v: the faults tier must say the mappings are not traced", f)
	}
	if !f.FaultSampling {
		t.Fatalf("fault sampling unavailable: %s", f.FaultNote)
	}
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	p.Do(t, "nop")
	before := snapshot(t, tr).Cgroups[g.ID]
	p.Do(t, "touch 65536")  // maps 64 MiB and touches every page
	p.Do(t, "leak 1024 16") // 16 mappings of 1 MiB
	s := snapshot(t, tr)
	c := s.Cgroups[g.ID]
	if c.MmapBytes != before.MmapBytes || c.MappedBytes != before.MappedBytes || len(pidAllocations(s, p.PID)) != 0 {
		t.Errorf("the faults tier saw mappings: mmap counter %d -> %d, mapped %d -> %d, %d allocations", before.MmapBytes, c.MmapBytes, before.MappedBytes, c.MappedBytes, len(pidAllocations(s, p.PID)))
	}
	checkEstimate(t, c.FaultBytes-before.FaultBytes, 80*mib, 0.25)
}

// SetTier attaches the mapping hooks while the tracer runs and detaches
// them again; each change forgets the mappings known, so the inuse view
// after an escalation holds only what was mapped since.
func TestSetTierEscalatesAndForgets(t *testing.T) {
	tr := startTracer(t, func(c *tracer.Config) { c.Tier = tracer.TierFaults; c.MmapSampleBytes = 0 })
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	p.Do(t, "leak 1024 8") // before: not seen
	if n := len(pidAllocations(snapshot(t, tr), p.PID)); n != 0 {
		t.Fatalf("faults tier: %d allocations seen", n)
	}
	if err := tr.SetTier(tracer.TierFull); err != nil {
		t.Fatal(err)
	}
	if tier := tr.Tier(); tier != tracer.TierFull {
		t.Fatalf("Tier() = %s", tier)
	}
	p.Do(t, "leak 1024 16")
	var bytes uint64
	for _, a := range pidAllocations(snapshot(t, tr), p.PID) {
		bytes += a.Bytes
	}
	if bytes != 16*mib {
		t.Errorf("after escalating: %d bytes tracked, want the 16 MiB mapped since (not the 8 before)", bytes)
	}
	if err := tr.SetTier(tracer.TierFaults); err != nil {
		t.Fatal(err)
	}
	p.Do(t, "leak 1024 4")
	if n := len(pidAllocations(snapshot(t, tr), p.PID)); n != 0 {
		t.Errorf("back in the faults tier: %d allocations still held", n)
	}
	if err := tr.SetTier(tracer.TierFull); err != nil {
		t.Fatal(err)
	}
	p.Do(t, "leak 1024 2")
	bytes = 0
	for _, a := range pidAllocations(snapshot(t, tr), p.PID) {
		bytes += a.Bytes
	}
	if bytes != 2*mib {
		t.Errorf("second escalation: %d bytes tracked, want 2 MiB", bytes)
	}
}

// leakwatch_bpf_map_memory_bytes counts every map the tracer holds: the
// kernel's own figure for each map file descriptor this process has open is
// the reference (the stack-copy ring, its scratch buffers and its budget
// once went uncounted, about 1 MiB). A map without preallocation
// (cgroup_counters) grows as the node's processes touch new cgroups, so the
// reference is read before and after the tracer's figure, and a read that
// the node changed in between is made again.
func TestMapMemoryCountsEveryMap(t *testing.T) {
	tr := startTracer(t, nil)
	for attempt := 1; attempt <= 20; attempt++ {
		before, maps := heldMapMemory(t)
		got, err := tr.ReadMapMemory()
		if err != nil {
			t.Fatal(err)
		}
		if after, _ := heldMapMemory(t); after != before {
			t.Logf("attempt %d: the maps held %d bytes before the read and %d after", attempt, before, after)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		t.Logf("MapMemory %d bytes; %d map descriptors open hold %d", got, maps, before)
		if got != before {
			t.Errorf("MapMemory reports %d bytes, the %d maps this process holds %d", got, maps, before)
		}
		return
	}
	t.Fatal("the node changed the maps' memory during each of 20 reads")
}

// heldMapMemory sums the kernel's memlock figure over the BPF map
// descriptors this process holds, and counts them.
func heldMapMemory(t *testing.T) (bytes, maps uint64) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		info, err := os.ReadFile("/proc/self/fdinfo/" + fd.Name())
		if err != nil || !strings.Contains(string(info), "\nmap_type:") {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "memlock:"); ok {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				if err != nil {
					t.Fatalf("fd %s: memlock %q: %v", fd.Name(), v, err)
				}
				bytes += n
				maps++
			}
		}
	}
	return bytes, maps
}
