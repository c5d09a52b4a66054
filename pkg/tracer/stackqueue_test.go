package tracer_test

import (
	"testing"
	"time"

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
