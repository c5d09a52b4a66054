package detect

import (
	"math"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/corpus/corpusgen"
)

// firstLeaking replays points through a detector with cfg and returns the
// time of the first leaking verdict (NaN for none).
func firstLeaking(t *testing.T, cfg Config, points []corpusgen.Point) float64 {
	t.Helper()
	d := newDetectorWith(t, cfg)
	for _, p := range points {
		if d.Observe(Point{T: t0.Add(time.Duration(p.T * float64(time.Second))), Bytes: p.Bytes, Limit: p.Limit}).Leaking {
			return p.T
		}
	}
	return math.NaN()
}

// TestPersistenceOnProductionShapes replays the production family of
// test/corpus/corpusgen for seeds neither the persistence test was tuned
// on (0-39) nor make bench-detect reports (1000-1099): with the default
// settings, no healthy series (GC cycles up to 15 minutes, load-driven GC,
// heaps expanding to a cap, allocator high-water marks, queue backlogs,
// caches filling, seven days of daily load) turns leaking, nor a leaking one
// before its leak starts, and the fast leaks (1 MiB/s) and those under a
// daily cycle are all found. Without the persistence test the same healthy
// series are flagged, which is what makes this test able to fail.
func TestPersistenceOnProductionShapes(t *testing.T) {
	seeds := []uint64{2000, 2001, 2002}
	if testing.Short() {
		seeds = seeds[:1]
	}
	falseWithout := 0
	for _, seed := range seeds {
		for _, s := range corpusgen.Production(seed) {
			at := firstLeaking(t, DefaultConfig(), s.Points)
			switch {
			case !s.Leak && !math.IsNaN(at):
				t.Errorf("seed %d %s: healthy, but turned leaking at %v", seed, s.File, time.Duration(at)*time.Second)
			case s.Leak && at < s.LeakStart:
				t.Errorf("seed %d %s: turned leaking at %v, before its leak started at %v", seed, s.File, time.Duration(at)*time.Second, time.Duration(s.LeakStart)*time.Second)
			case s.Leak && math.IsNaN(at) && (s.Target == corpusgen.TargetFast || s.Target == corpusgen.TargetDaily):
				t.Errorf("seed %d %s: leak of %.0f B/s from %v never found", seed, s.File, s.Rate, time.Duration(s.LeakStart)*time.Second)
			}
			if !s.Leak {
				if at := firstLeaking(t, tiersOnly(), s.Points); !math.IsNaN(at) {
					falseWithout++
				}
			}
		}
	}
	if falseWithout == 0 {
		t.Errorf("no healthy series turns leaking without the persistence test either: these seeds test nothing")
	}
	t.Logf("healthy series flagged without the persistence test: %d", falseWithout)
}

// While the persistence test holds a verdict back, the explanation says
// why: a fast leak waits for its spans, slow growth on a large floor for the
// day before; once leaking, it names the span the growth persisted over.
func TestExplanationSaysWhatHoldsTheVerdictBack(t *testing.T) {
	cases := []struct {
		name  string
		bytes func(s float64) float64
		secs  float64
		held  string
		leaks bool
	}{
		{"fast leak", func(s float64) float64 { return 256*mib + mib*max(0, s-1800) }, 2 * 3600, heldSpans, true},
		// 20 KiB/s on 2 GiB: under a daily cycle's pace for the first day.
		{"slow growth on a large floor", func(s float64) float64 { return 2048*mib + 20*1024*s }, 12 * 3600, heldLoadCycle, false},
	}
	for _, c := range cases {
		d := newDetector(t)
		sawHeld, leaking := false, false
		feed(t, d, 0, c.secs, func(s float64) (float64, float64) { return c.bytes(s), 0 }, func(s float64, v Verdict) {
			switch {
			case v.Leaking && !leaking:
				leaking = true
				if v.Why == nil || v.Why.HeldBack != "" || v.Why.Persistence < DefaultConfig().Persistence {
					t.Errorf("%s: turned leaking at %vs with explanation %+v, want a persistence span and nothing held back", c.name, s, v.Why)
				}
			case !v.Leaking && v.Why != nil && v.Why.HeldBack == c.held:
				sawHeld = true
			}
		})
		if !sawHeld {
			t.Errorf("%s: no explanation said %q", c.name, c.held)
		}
		if leaking != c.leaks {
			t.Errorf("%s: leaking %v, want %v", c.name, leaking, c.leaks)
		}
	}
}

// A slow leak (12 KiB/s, 1 GB a day) under a queue that builds for 15
// minutes and drains every 40, over a 100-second GC cycle, is found within
// the series' six hours, and the queue alone is not. With the floor taken
// over the collector's cycle only, every build stood above the last drain's
// floor and the leak's growth never cleared the history gate.
func TestSlowLeakUnderAQueueIsFound(t *testing.T) {
	const leakFrom, end = 3600.0, 6 * 3600.0
	for _, c := range []struct {
		name  string
		leak  float64
		leaks bool
	}{{"queue", 0, false}, {"queue over a slow leak", 12 << 10, true}} {
		d := newDetector(t)
		at := math.NaN()
		bytes := queueSeries(c.leak, leakFrom)
		feed(t, d, 0, end, func(s float64) (float64, float64) { return bytes(s), 0 }, func(s float64, v Verdict) {
			if v.Leaking && math.IsNaN(at) {
				at = s
			}
		})
		switch {
		case !c.leaks && !math.IsNaN(at):
			t.Errorf("%s: healthy, but turned leaking at %v", c.name, time.Duration(at)*time.Second)
		case c.leaks && math.IsNaN(at):
			t.Errorf("%s: never turned leaking in %v", c.name, time.Duration(end)*time.Second)
		case c.leaks && at < leakFrom:
			t.Errorf("%s: turned leaking at %v, before the leak began", c.name, time.Duration(at)*time.Second)
		case c.leaks:
			t.Logf("%s: leaking %v after the leak began", c.name, time.Duration(at-leakFrom)*time.Second)
		}
	}
}
