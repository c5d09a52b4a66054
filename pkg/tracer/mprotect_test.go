package tracer_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/leakwatch/leakwatch/pkg/tracer"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// A VM's heap: 256 MiB reserved PROT_NONE, 128 MiB of it committed by
// mprotect in 1 MiB slices, 32 MiB touched. The committed range is tracked
// (one entry: the slices come from one stack and merge), from the function
// that committed it; JIT-style RX/RW flips of other memory add nothing; made
// PROT_NONE again, it is taken back: a hole in the middle, the
// reservation's tail, then its head.
func TestReservationCommittedByMprotect(t *testing.T) {
	tr := startTracer(t, nil)
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	p.Do(t, "nop")
	base := snapshot(t, tr).Cgroups[g.ID]

	addr := hexAddr(t, strings.TrimPrefix(p.Do(t, "reserve 262144 131072 32768"), "ok "))
	committed := func(want uint64, step string) *tracer.Snapshot {
		t.Helper()
		s := snapshot(t, tr)
		var got uint64
		for _, a := range pidAllocations(s, p.PID) {
			if a.Kind == tracer.KindMprotect {
				got += a.Bytes
			}
		}
		if got != want {
			t.Fatalf("%s: %d bytes committed by mprotect tracked, want %d", step, got, want)
		}
		return s
	}
	s := committed(128*mib, "commit 128 MiB")
	// Flips of code between read-execute and read-write commit nothing.
	p.Do(t, "flip 1000 1024")
	committed(128*mib, "1,000 RX/RW flips of 1 MiB")
	var entries uint64
	for _, a := range pidAllocations(s, p.PID) {
		if a.Kind != tracer.KindMprotect {
			continue
		}
		entries += a.Count
		frames := append([]uint64{s.Stacks[a.StackID].LeafReturn}, s.Stacks[a.StackID].Frames...)
		names, err := cgtest.FuncNames(p.PID, memwork, frames)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(names, "commit_slices") {
			t.Errorf("committed range attributed to %v, want commit_slices among them", names)
		}
	}
	if entries != 1 {
		t.Errorf("128 slices from one stack tracked as %d entries, want 1", entries)
	}
	if c := s.Cgroups[g.ID]; c.MappedBytes-base.MappedBytes != 128*mib {
		t.Errorf("cgroup's mapped bytes grew %d, want 128 MiB", c.MappedBytes-base.MappedBytes)
	}

	p.Do(t, "decommit "+strconv.FormatUint(addr+32*mib, 16)+" 65536")
	committed(64*mib, "decommit 64 MiB from the middle")
	// The rest of the reservation, past what was committed: its start finds
	// the last committed part.
	p.Do(t, "decommit "+strconv.FormatUint(addr+96*mib, 16)+" 163840")
	committed(32*mib, "decommit the reservation's tail")
	p.Do(t, "decommit "+strconv.FormatUint(addr, 16)+" 32768")
	committed(0, "decommit the head")
	c := snapshot(t, tr).Cgroups[g.ID]
	if grew, shrank := c.MprotectGrowBytes-base.MprotectGrowBytes, c.MprotectShrinkBytes-base.MprotectShrinkBytes; grew != 128*mib || shrank != 128*mib {
		t.Errorf("counters grew %d and shrank %d bytes, want 128 MiB each", grew, shrank)
	}
}

// glibc gives each thread an arena of its own, reserved PROT_NONE in 64 MiB
// heaps and grown by mprotect. Four threads leaking 48 MiB each in small
// mallocs: what the tracer holds for the process must be at least 90% of
// the cgroup's anonymous growth, and that growth must be the thread arenas.
func TestThreadArenasTracked(t *testing.T) {
	tr := startTracer(t, nil)
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 512*mib)
	p := g.Start(t, memwork)
	p.Do(t, "nop")
	anon0 := uint64(g.Anon(t))
	s0 := snapshot(t, tr)
	held0 := heldBy(s0, p.PID, g.ID)

	p.Do(t, "arenas 4 49152")
	s := snapshot(t, tr)
	grew := uint64(g.Anon(t)) - anon0
	held := heldBy(s, p.PID, g.ID) - held0
	t.Logf("cgroup anon grew %.1f MiB; tracked for the process %.1f MiB; VMA lookups failed: %d", float64(grew)/mib, float64(held)/mib, s.Drops[tracer.DropVMABusy])
	if grew < 192*mib {
		t.Fatalf("cgroup anon grew %.1f MiB, want at least the 192 MiB leaked", float64(grew)/mib)
	}
	if float64(held) < 0.9*float64(grew) {
		t.Errorf("tracked %.1f MiB of %.1f MiB anonymous growth, want at least 90%%", float64(held)/mib, float64(grew)/mib)
	}

	// glibc is built without frame pointers: the walk from its mprotect
	// stops inside malloc (see docs/architecture.md, Stacks), so the
	// stacks name libc's allocator, not arena_leak. What is checked here is
	// that the growth is tracked as committed reservations, of this
	// process, in this cgroup.
	var committed uint64
	for _, a := range pidAllocations(s, p.PID) {
		if a.Kind == tracer.KindMprotect && a.Memcg == g.ID {
			committed += a.Bytes
		}
	}
	if float64(committed) < 0.9*float64(grew) {
		t.Errorf("tracked %.1f MiB as committed by mprotect of %.1f MiB grown, want at least 90%%", float64(committed)/mib, float64(grew)/mib)
	}
}

// heldBy is what the tracer holds for one process in one cgroup, of every
// kind: the inuse view's total for it.
func heldBy(s *tracer.Snapshot, pid int, memcg uint64) (n uint64) {
	for _, a := range pidAllocations(s, pid) {
		if a.Memcg == memcg {
			n += a.Bytes
		}
	}
	return n
}
