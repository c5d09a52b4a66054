package detect

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/corpus/corpusgen"
)

// agrees fails the test unless the verdict keeps the contract of
// LeakingConfidence: Confidence at least LeakingConfidence exactly while
// Leaking.
func agrees(t *testing.T, where string, v Verdict) {
	t.Helper()
	if v.Leaking != (v.Confidence >= LeakingConfidence) {
		t.Fatalf("%s: %v: leaking and confidence disagree (the contract: confidence >= %v exactly while leaking)", where, v, LeakingConfidence)
	}
}

// Every point of the corpus, and of three other seeds' corpora, keeps the
// contract: leaks, GC sawtooth, steps, caches, restarts.
func TestCorpusVerdictsKeepConfidence(t *testing.T) {
	for _, seed := range []uint64{7, 101, 102} {
		for _, s := range corpusgen.Generate(seed) {
			d := newDetector(t)
			for _, p := range s.Points {
				v := d.Observe(Point{T: t0.Add(time.Duration(p.T * float64(time.Second))), Bytes: p.Bytes, Limit: p.Limit})
				agrees(t, "seed "+strconv.FormatUint(seed, 10)+" "+s.File+" at "+strconv.FormatFloat(p.T, 'f', 0, 64)+"s", v)
			}
		}
	}
}

// A leak that stops: the confidence holds while growth is still found, then
// falls, never rising, through the quiet period, staying at or above
// LeakingConfidence until the verdict clears, and below it after.
func TestConfidenceFallsOnlyWhileQuiet(t *testing.T) {
	d := newDetector(t)
	const stop = 60 * 60.0
	level := func(s float64) (float64, float64) { return 100*mib + math.Min(s, stop)*mib, 0 }
	prev, cleared := 0.0, -1.0
	feed(t, d, 0, 90*60, level, func(s float64, v Verdict) {
		agrees(t, "at "+strconv.FormatFloat(s, 'f', 0, 64)+"s", v)
		switch {
		case s == stop-10 && !v.Leaking:
			t.Fatalf("a 1 MiB/s leak not found after %vs: %v", s, v)
		case s < stop && v.Leaking && v.Confidence < 1-DefaultConfig().Significance:
			t.Errorf("at %vs, while growing: %v, want the confirmed confidence held", s, v)
		case s >= stop && v.Leaking && v.Confidence > prev:
			t.Errorf("at %vs, after the leak stopped: confidence rose from %v to %v", s, prev, v.Confidence)
		case s >= stop && !v.Leaking && cleared < 0:
			cleared = s
		}
		prev = v.Confidence
	})
	if cleared < 0 {
		t.Fatal("the verdict never cleared after the leak stopped")
	}
	t.Logf("cleared %vs after the leak stopped", cleared-stop)
}

// Before any tier confirms, the streak weighting keeps the confidence below
// LeakingConfidence: confirm/(1+confirm) for a tier one pass short.
func TestUnconfirmedConfidenceBelowLeaking(t *testing.T) {
	d := newDetector(t)
	for i, s := range d.tiers() {
		if w := float64(s.confirm) / float64(1+s.confirm); w >= LeakingConfidence {
			t.Errorf("tier %d confirms after %d passes: an unconfirmed confidence reaches %v, not below %v", i, s.confirm, w, LeakingConfidence)
		}
	}
}
