package tracer_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/procstat"
	"github.com/leakwatch/leakwatch/pkg/tracer"
)

// slowUnwinder stands in for the real one (pkg/unwind, tested on real
// binaries) where only its pace matters: each copy takes delay, as a new
// process's maps or a binary's first table can.
type slowUnwinder struct{ delay time.Duration }

func (u slowUnwinder) Unwind(c *tracer.StackCopy) (tracer.Stack, error) {
	time.Sleep(u.delay)
	return tracer.Stack{Frames: []uint64{c.IP}}, nil
}

// An unwinder far behind a burst of copies loses none of them silently:
// the ring is drained into the queue, a copy that finds the queue full
// keeps its frame-pointer stack and is counted, and every copy made ends
// in exactly one result. The faulted bytes stay exact whatever became of
// the copies.
func TestSlowUnwinderLosesNoCopyUncounted(t *testing.T) {
	tr, g, p, _ := startFaultWorkload(t, func(cfg *tracer.Config) {
		cfg.FaultSampleBytes = 64 << 10 // 2,048 samples in 128 MiB
		cfg.StackCopiesPerSecond = 1 << 20
	}, func(tr *tracer.Tracer) { tr.SetUnwinder(slowUnwinder{delay: 2 * time.Millisecond}) })
	before := snapshot(t, tr)
	p.Do(t, "touch 131072")

	// Copies are node-wide and never stop on a busy node (other tests'
	// processes fault too), so the check is on totals since the tracer
	// started: every copy made by the end of the burst has a result once
	// the queue has caught up (results come in order), and no copy ever
	// has two (results never outnumber copies). 2,048 copies at 2 ms are
	// about 4 s of unwinding, if none found the queue full.
	userResults := []tracer.CopyResult{tracer.CopyUnwound, tracer.CopyFellBack, tracer.CopyGo, tracer.CopyOverLimits, tracer.CopyQueueFull}
	delta := func(s *tracer.Snapshot, r tracer.CopyResult) uint64 { return s.StackCopies[r] - before.StackCopies[r] }
	ended := func(s *tracer.Snapshot) (n uint64) {
		for _, r := range userResults {
			n += s.StackCopies[r]
		}
		return n
	}
	s := snapshot(t, tr)
	madeByEnd := s.StackCopies[tracer.CopyMade]
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		prev := s
		s = snapshot(t, tr)
		// A snapshot's results against the copies counted by the next
		// one: a copy made while a snapshot is read may be counted by
		// its results and not yet by its copies.
		if e, made := ended(prev), s.StackCopies[tracer.CopyMade]; e > made {
			t.Fatalf("%d copies made and %d results: a copy counted twice", made, e)
		}
		if ended(s) >= madeByEnd {
			break
		}
		if time.Now().After(deadline) {
			for _, r := range append([]tracer.CopyResult{tracer.CopyMade, tracer.CopyRingFull}, userResults...) {
				t.Logf("%s: %d", r, delta(s, r))
			}
			t.Fatalf("after 30 s, %d copies made by the burst's end and %d with a result", madeByEnd, ended(s))
		}
	}
	for _, r := range append([]tracer.CopyResult{tracer.CopyMade, tracer.CopyRingFull}, userResults...) {
		t.Logf("%s: %d", r, delta(s, r))
	}
	if delta(s, tracer.CopyMade) < 1000 {
		t.Errorf("%d copies made of about 2,048 fault samples, want most: the burst did not test the queue", delta(s, tracer.CopyMade))
	}
	if delta(s, tracer.CopyQueueFull) == 0 {
		t.Errorf("an unwinder at 2 ms a copy kept up with a burst of %d copies: no copy counted queue_full", delta(s, tracer.CopyMade))
	}
	if delta(s, tracer.CopyUnwound) < 256 {
		t.Errorf("%d copies unwound, want at least 256 (the queue holds 4 MiB of records)", delta(s, tracer.CopyUnwound))
	}
	checkEstimate(t, s.Cgroups[g.ID].FaultBytes-before.Cgroups[g.ID].FaultBytes, 128*mib, 0.10)
}

// windowRecorder records, per copy of one process, where its window began
// and how long it was.
type windowRecorder struct {
	pid  uint32
	mu   sync.Mutex
	seen []stackWindow
}

type stackWindow struct{ sp, n uint64 }

func (u *windowRecorder) Unwind(c *tracer.StackCopy) (tracer.Stack, error) {
	if c.PID == u.pid {
		u.mu.Lock()
		u.seen = append(u.seen, stackWindow{c.SP, uint64(len(c.Window))})
		u.mu.Unlock()
	}
	return tracer.Stack{Frames: []uint64{c.IP}}, nil
}

func (u *windowRecorder) take() []stackWindow {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.seen
	u.seen = nil
	return s
}

// A copy on the main thread's stack ends a word past where the process's
// first stack pointer stood (mm->start_stack, /proc/PID/stat's startstack):
// no frame lies above it. A copy on another thread's stack ends where that
// stack's mapping does, even when the memory past it could be read (before,
// it read on to the first page that faulted: a page past the stack here,
// and on a VM a faulting read costs microseconds).
func TestMainThreadCopyEndsAtStackTop(t *testing.T) {
	rec := &windowRecorder{}
	tr, _, p, _ := startFaultWorkload(t, func(cfg *tracer.Config) {
		cfg.FaultSampleBytes = 64 << 10
		cfg.StackCopiesPerSecond = 1 << 20
	}, func(tr *tracer.Tracer) { tr.SetUnwinder(rec) })
	rec.mu.Lock()
	rec.pid = uint32(p.PID)
	rec.mu.Unlock()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		t.Fatal(err)
	}
	top, err := procstat.Field(stat, procstat.StartStack)
	if err != nil {
		t.Fatal(err)
	}
	const slack = 64 // STACK_TOP_SLACK in bpf/leakwatch.h

	wait := func(what string) []stackWindow {
		t.Helper()
		var got []stackWindow
		for deadline := time.Now().Add(10 * time.Second); len(got) < 32; time.Sleep(50 * time.Millisecond) {
			snapshot(t, tr) // flushes the ring into the queue
			got = append(got, rec.take()...)
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d copies of the workload's in 10 s, want 32", what, len(got))
			}
		}
		return got
	}

	p.Do(t, "touch 16384")
	short := 0
	for _, w := range wait("main thread") {
		if w.sp >= top || top-w.sp > tracer.MaxStackCopyBytes {
			continue // not on the main stack's last window
		}
		if w.sp+w.n != top+slack {
			t.Fatalf("main-thread copy from sp %#x: %d bytes, ending at %#x; want it to end at startstack %#x + %d", w.sp, w.n, w.sp+w.n, top, slack)
		}
		short++
	}
	if short == 0 {
		t.Fatalf("no copy of the workload's within %d bytes below its startstack %#x", tracer.MaxStackCopyBytes, top)
	}

	out := p.Do(t, "thread 16384")
	end, err := strconv.ParseUint(strings.TrimPrefix(out, "ok "), 16, 64)
	if err != nil {
		t.Fatalf("thread: %q", out)
	}
	const stack = 256 << 10 // memwork's thread stack
	onStack := 0
	for _, w := range wait("thread") {
		if w.sp < end-stack || w.sp >= end {
			continue // not on the thread's stack
		}
		onStack++
		if w.sp+w.n != end {
			t.Errorf("thread copy from sp %#x: %d bytes, ending at %#x; want it to end at the stack mapping's end %#x", w.sp, w.n, w.sp+w.n, end)
		}
	}
	if onStack == 0 {
		t.Fatalf("no copy of the thread's, whose stack ends at %#x", end)
	}
}
