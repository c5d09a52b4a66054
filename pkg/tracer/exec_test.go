package tracer_test

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/tracer"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// A fault taken inside execve, while the kernel loads the new program (its
// bss, its first stack page), counts for the new image (its exec id), but
// the user registers are still those of the program that called execve:
// their stack is the old image's execve wrapper, an address the new image
// has nothing at (issue 16: a lone unnamed libc address in an OOM victim's
// faults). Every fault is sampled here, so memwork's exec is seen: no
// sample of its image may have a stack that starts outside its own code,
// and the exec's faults are still counted, without a stack.
func TestFaultsInsideExecHaveNoStackOfTheCaller(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	// Every fault of the node is sampled, so on a busy node (make test
	// runs the packages' tests side by side) the tables of fault keys and
	// of stacks fill within seconds: memwork's samples are then dropped,
	// or counted without a stack for want of room, which would read as a
	// pass. An attempt that saw such a drop proves nothing and is made
	// again with a fresh tracer (empty tables), at most five times.
	var (
		tr    *tracer.Tracer
		p     *cgtest.Proc
		s     *tracer.Snapshot
		code  addrRanges
		image uint32 // memwork's: the last exec id of the process (the shell's is the one before)
	)
	for attempt := 1; ; attempt++ {
		if attempt > 5 {
			t.Fatal("every attempt lost samples to full tables (see the log): the node is too busy to sample all its faults")
		}
		var stop func()
		tr, stop = startTracerFor(t, func(c *tracer.Config) { c.FaultSampleBytes = uint64(os.Getpagesize()) })
		p = g.Start(t, memwork) // a shell, moved into g, that execs memwork
		p.Do(t, "nop")
		code = executableRanges(t, p.PID)
		s = snapshot(t, tr)
		image = 0
		for _, f := range s.Faults {
			if f.PID == uint32(p.PID) && f.Memcg == g.ID {
				image = max(image, f.ExecID)
			}
		}
		lost := s.Drops[tracer.DropFaultsFull] + s.Drops[tracer.DropStacksFull]
		if lost == 0 && image != 0 {
			t.Cleanup(stop)
			break
		}
		t.Logf("attempt %d: pid %d's image %d; %d fault keys on the node, drops %v", attempt, p.PID, image, len(s.Faults), s.Drops)
		p.Kill()
		stop()
	}
	var named, unknown, outside uint64
	for _, f := range s.Faults {
		if f.PID != uint32(p.PID) || f.Memcg != g.ID || f.ExecID != image {
			continue
		}
		if f.StackID == 0 {
			unknown += f.Samples
			continue
		}
		st, ok := tr.Stack(f.StackID)
		if !ok || len(st.Frames) == 0 {
			t.Fatalf("stack %d of %d samples is gone", f.StackID, f.Samples)
		}
		if !code.holds(st.Frames[0]) {
			outside += f.Samples
			t.Errorf("%d samples of memwork's image start at %#x, in none of its executable mappings (frames %x)", f.Samples, st.Frames[0], st.Frames)
			continue
		}
		named += f.Samples
	}
	t.Logf("memwork's image (exec id %d): %d samples start in its code, %d have no stack, %d start elsewhere", image, named, unknown, outside)
	if named == 0 {
		t.Error("no sample of memwork's image starts in its code")
	}
	if unknown == 0 {
		t.Error("no sample of memwork's image without a stack: the faults of its exec were not seen")
	}
}

type addrRanges [][2]uint64

func (r addrRanges) holds(a uint64) bool {
	for _, x := range r {
		if a >= x[0] && a < x[1] {
			return true
		}
	}
	return false
}

// executableRanges reads the executable mappings of a process.
func executableRanges(t *testing.T, pid int) addrRanges {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out addrRanges
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || !strings.Contains(fields[1], "x") {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		out = append(out, [2]uint64{hexAddr(t, lo), hexAddr(t, hi)})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// An exec replaces the process's memory: what the old image mapped is gone
// from the moment the kernel reports the exec, and must not be counted for
// the new image, as it was for two seconds (issue 16: an OOM victim's inuse
// profile held the shell's mappings from before it exec'd the program).
func TestExecDropsTheOldImagesMappings(t *testing.T) {
	tr := startTracer(t, nil)
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 256*mib)
	p := g.Start(t, memwork)
	const old = 8 * mib // exact: longer than a sampled mapping
	p.Do(t, fmt.Sprintf("map %d", old>>10))
	before := waitFor(t, tr, "the old image's mapping", func(s *tracer.Snapshot) bool {
		return mappedBytes(s, p.PID) >= old
	})
	t.Logf("before the exec: %d bytes mapped by pid %d", mappedBytes(before, p.PID), p.PID)

	// The shell's exec of memwork was reported before this moment.
	sent := time.Now()
	p.Do(t, "exec")
	deadline := time.After(15 * time.Second)
	for seen := false; !seen; {
		select {
		case ev := <-tr.Events():
			seen = ev.Type == tracer.EventExec && ev.Process.PID == uint32(p.PID) && ev.Time.After(sent)
		case <-deadline:
			t.Fatalf("no exec event for pid %d within 15s", p.PID)
		}
	}
	// The new image's own small start-up mappings may be sampled (512 KiB
	// each, three of them); the old 8 MiB must be gone.
	if got := mappedBytes(snapshot(t, tr), p.PID); got >= old {
		t.Errorf("right after the exec, pid %d has %d bytes mapped, want the old image's %d gone", p.PID, got, old)
	}
}

func mappedBytes(s *tracer.Snapshot, pid int) uint64 {
	var n uint64
	for _, a := range pidAllocations(s, pid) {
		if a.Kind != tracer.KindBrk {
			n += a.Bytes
		}
	}
	return n
}
