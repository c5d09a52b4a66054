package detect

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// gib1 is a floor of a GiB: a 12 KiB/s leak on it is within a daily load
// cycle's pace, so only the onset tier can call it on the first day.
const gib1 = 1 << 30

// sawtooth is a GC cycle of period seconds and amplitude amp above 0.
func sawtooth(s, period, amp float64) float64 {
	return amp * math.Mod(s, period) / period
}

func TestOnsetFindsSlowLeakOnLargeFloor(t *testing.T) {
	const start = 2 * 3600.0
	rng := rand.New(rand.NewPCG(1, 2))
	d := newDetector(t)
	var first float64 = -1
	v := feed(t, d, 0, start+4*3600, func(s float64) (float64, float64) {
		leak := 0.0
		if s > start {
			leak = 12 << 10 * (s - start)
		}
		return gib1 + leak + sawtooth(s, 90, 300*mib) + rng.NormFloat64()*4*mib, 8 * gib1
	}, func(s float64, v Verdict) {
		if v.Leaking && first < 0 {
			first = s
			if v.Tier != TierOnset || v.Why == nil || v.Why.Tier != TierOnset {
				t.Errorf("leaking at %.0f min on tier %v, want onset", s/60, v.Tier)
			}
		}
	})
	switch {
	case first < 0:
		t.Fatalf("a 12 KiB/s leak on a 1 GiB floor not found within 4 h: %v", v)
	case first < start:
		t.Fatalf("leaking at %.0f min, before the leak began at %.0f", first/60, start/60)
	}
	t.Logf("found %.0f min after the start", (first-start)/60)
	// The explanation dates the growth: the hinge's tau is near the start.
	if tau := d.onsetTau; math.Abs(tau-start) > 30*60 {
		t.Errorf("onset at %.0f min, the leak began at %.0f", tau/60, start/60)
	}
}

// A daily load cycle leaves its trough smoothly: the onset tier must not
// read its rising half as a leak, on the first day or later.
func TestOnsetQuietOnDailyCycle(t *testing.T) {
	for _, phase := range []float64{0, 0.15, 0.3} {
		rng := rand.New(rand.NewPCG(3, uint64(phase*100)))
		d := newDetector(t)
		feed(t, d, 0, 3*86400, func(s float64) (float64, float64) {
			day := 2 * math.Pi * (s/86400 + phase)
			load := 1 - 0.25*math.Cos(day) + 0.05*math.Cos(2*day)
			return gib1*load + sawtooth(s, 60, 200*mib*load) + rng.NormFloat64()*4*mib, 8 * gib1
		}, func(s float64, v Verdict) {
			if v.Leaking {
				t.Fatalf("phase %.2f: a daily cycle flagged at %.1f h (tier %v)", phase, s/3600, v.Tier)
			}
		})
	}
}

// A cache that fills with a time constant of half an hour slows down: the
// onset tier's halves test must hold it. (The other tiers may read the
// first minutes of so steep a fill as a leak, a limit the package
// documentation states; this test is the onset tier's.)
func TestOnsetQuietOnCache(t *testing.T) {
	const start = 2 * 3600.0
	rng := rand.New(rand.NewPCG(5, 6))
	d := newDetector(t)
	feed(t, d, 0, start+5*3600, func(s float64) (float64, float64) {
		cache := 0.0
		if s > start {
			cache = 400 * mib * (1 - math.Exp(-(s-start)/1800))
		}
		return gib1 + cache + sawtooth(s, 60, 200*mib) + rng.NormFloat64()*2*mib, 8 * gib1
	}, func(s float64, v Verdict) {
		if d.onset.passing {
			t.Fatalf("the onset tier passed on a filling cache at %.1f h", s/3600)
		}
	})
}

// On a quiet series the onset tier's hinge fit fails, and the verdict must
// not report its tier or its slope: a quiet container reads as the slow
// tier's evidence, as before the onset tier.
func TestQuietSeriesNotReportedOnOnset(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	d := newDetector(t)
	v := feed(t, d, 0, 5*3600, func(s float64) (float64, float64) {
		return gib1 + sawtooth(s, 90, 300*mib) + rng.NormFloat64()*4*mib, 8 * gib1
	}, func(s float64, v Verdict) {
		if v.Leaking {
			t.Fatalf("a flat series flagged at %.1f h (tier %v)", s/3600, v.Tier)
		}
		if v.Tier == TierOnset && !d.onset.passing && d.onset.effectiveConf() == 0 {
			t.Fatalf("at %.1f h: tier onset with a failed fit (growth %.0f B/s)", s/3600, v.GrowthBytesPerSecond)
		}
	})
	if !d.onset.valid {
		t.Fatal("the onset tier never evaluated in 5 h")
	}
	if v.Tier == TierOnset {
		t.Errorf("quiet series reported on tier onset, growth %.0f B/s", v.GrowthBytesPerSecond)
	}
}

func TestFitHingeRecoversCorner(t *testing.T) {
	var xs, ys []float64
	for i := range 300 {
		x := 1e6 + float64(i)*60 // far from zero, as the agent's times are
		y := 2e9
		if i >= 120 {
			y += 5000 * (x - (1e6 + 120*60))
		}
		xs, ys = append(xs, x), append(ys, y)
	}
	i, a, s, sse := fitHinge(xs, ys, 45, 90)
	if i != 120 || math.Abs(a-2e9) > 1 || math.Abs(s-5000) > 1e-3 || sse > 1 {
		t.Fatalf("fitHinge = %d, %.0f, %.3f, %.3g; want 120, 2e9, 5000, 0", i, a, s, sse)
	}
	// A cubic through the points of a cubic leaves nothing; through the
	// corner, something.
	var cy []float64
	for _, x := range xs {
		h := (x - xs[0]) / 3600
		cy = append(cy, 3+2*h-h*h+0.5*h*h*h)
	}
	if e := polySSE(xs, cy, 3); e > 1e-12 {
		t.Errorf("cubic through a cubic: squared error %g", e)
	}
	if polySSE(xs, ys, 3) <= 1 {
		t.Error("cubic through a corner fits exactly")
	}
}

// BenchmarkEvalOnset is one onset evaluation (one per SlowBucket per
// container) on 6 h of a series: a slow leak, where every test runs, and
// a flat floor, where the cheap tests end it.
func BenchmarkEvalOnset(b *testing.B) {
	for _, c := range []struct {
		name string
		rate float64
	}{{"leak", 12 << 10}, {"flat", 0}} {
		b.Run(c.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			d, err := New(DefaultConfig())
			if err != nil {
				b.Fatal(err)
			}
			var end float64
			for s := 0.0; s < 6*3600; s += 10 {
				leak := c.rate * max(0, s-2*3600)
				d.Observe(Point{T: t0.Add(time.Duration(s) * time.Second), Bytes: gib1 + leak + sawtooth(s, 90, 300*mib) + rng.NormFloat64()*4*mib})
				end = s
			}
			if d.evalOnset(end).pass != (c.rate > 0) {
				b.Fatal("the onset test's outcome is not the case's: the benchmark would time the other path")
			}
			for b.Loop() {
				d.evalOnset(end)
			}
		})
	}
}
