package detect

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

const mib = 1 << 20

var t0 = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

// feed runs fn(seconds) every 10 s for dur seconds and calls check with
// each verdict.
func feed(t *testing.T, d *Detector, from, dur float64, fn func(s float64) (bytes, limit float64), check func(s float64, v Verdict)) Verdict {
	t.Helper()
	var v Verdict
	for s := from; s < from+dur; s += 10 {
		b, l := fn(s)
		v = d.Observe(Point{T: t0.Add(time.Duration(s) * time.Second), Bytes: b, Limit: l})
		if check != nil {
			check(s, v)
		}
	}
	return v
}

func newDetector(t *testing.T) *Detector {
	t.Helper()
	return newDetectorWith(t, DefaultConfig())
}

func newDetectorWith(t *testing.T, cfg Config) *Detector {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tiersOnly is DefaultConfig without the persistence test: the tiers alone
// turn the verdict, as they did before it, for tests of their own timing.
func tiersOnly() Config {
	cfg := DefaultConfig()
	cfg.Persistence = 0
	return cfg
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := DefaultConfig()
	bad.EnvelopeWindow = 20 * time.Second
	bad.Consistency = 2
	if _, err := New(bad); err == nil {
		t.Fatal("New accepted an invalid config")
	}
}

// TestTimeToLimit: on a clean linear series the projection is exact to 1%.
func TestTimeToLimit(t *testing.T) {
	d := newDetector(t)
	const rate, limit = 100 << 10, 2048 * mib
	line := func(s float64) (float64, float64) {
		if s < 1800 {
			return 200 * mib, limit
		}
		return 200*mib + rate*(s-1800), limit
	}
	v := feed(t, d, 0, 3*3600, line, nil)
	if !v.Leaking {
		t.Fatalf("clean 100 KiB/s leak not detected after 2.5h: %v", v)
	}
	if math.Abs(v.GrowthBytesPerSecond-rate)/rate > 0.01 {
		t.Errorf("growth %.0f B/s, want %d ±1%%", v.GrowthBytesPerSecond, rate)
	}
	last, _ := line(3*3600 - 10)
	want := (limit - last) / rate
	if got := v.TimeToLimit.Seconds(); math.Abs(got-want)/want > 0.01 {
		t.Errorf("time to limit %.0fs, want %.0fs ±1%%", got, want)
	}

	// No limit, no projection.
	d = newDetector(t)
	v = feed(t, d, 0, 3*3600, func(s float64) (float64, float64) { b, _ := line(s); return b, 0 }, nil)
	if !v.Leaking || v.TimeToLimit != UnknownTimeToLimit {
		t.Errorf("without a limit: %v, want leaking with unknown time to limit", v)
	}
}

// TestHysteresis: a leak with noise and GC sawtooth stays leaking from its
// first detection on, through quiet samples, and clears only after the
// growth has stopped for ClearAfter.
func TestHysteresis(t *testing.T) {
	d := newDetector(t)
	rng := rand.New(rand.NewPCG(1, 2))
	const start, stop = 1800.0, 1800 + 2*3600.0
	sig := func(s float64) (float64, float64) {
		b := 300*mib + 64*mib*math.Mod(s, 60)/60 + 4*mib*rng.NormFloat64()
		b += 50 << 10 * (min(s, stop) - min(s, start))
		if int(s)%600 == 0 {
			b -= 40 * mib // one quiet, low sample every 10 minutes
		}
		return b, 0
	}
	var on, off float64 = -1, -1
	flips := 0
	prev := false
	feed(t, d, 0, stop+3600, sig, func(s float64, v Verdict) {
		if v.Leaking != prev {
			flips++
			prev = v.Leaking
			if v.Leaking {
				on = s
			} else {
				off = s
			}
		}
	})
	if flips != 2 {
		t.Fatalf("leaking flipped %d times (on at %v, last off at %v), want on once and off once", flips, on, off)
	}
	if on < start || on > start+3600 {
		t.Errorf("turned leaking at %vs, want within an hour of %vs", on, start)
	}
	if off < stop+DefaultConfig().ClearAfter.Seconds() {
		t.Errorf("cleared at %vs, before the growth had stopped (%vs) for ClearAfter", off, stop)
	}
}

// TestRestartStartsSegment: a drop to near zero starts a new segment with
// its own warm-up, and clears a leaking verdict (the tiers alone turn it on
// here, within the ten minutes of leak).
func TestRestartStartsSegment(t *testing.T) {
	d := newDetectorWith(t, tiersOnly())
	leak := func(s float64) (float64, float64) { return 200*mib + (1<<20)*max(0, s-1200), 0 }
	v := feed(t, d, 0, 1800, leak, nil)
	if !v.Leaking {
		t.Fatalf("1 MiB/s leak not detected after 10 minutes: %v", v)
	}
	restart := 1800.0
	v = d.Observe(Point{T: t0.Add(time.Duration(restart) * time.Second), Bytes: 20 * mib})
	if !v.NewSegment || v.Leaking || !v.WarmingUp || !v.SegmentStart.Equal(t0.Add(30*time.Minute)) {
		t.Fatalf("after a drop to near zero: %+v, want a new segment, warming up, not leaking", v)
	}
	// The new process grows fast during its warm-up, then stays flat: no
	// verdict, however steep the start-up.
	grow := func(s float64) (float64, float64) { return 20*mib + 300*mib*min(1, (s-restart)/180), 0 }
	feed(t, d, restart+10, 3600, grow, func(s float64, v Verdict) {
		if v.Leaking || v.NewSegment {
			t.Fatalf("at %vs after the restart: %v (new segment %v)", s-restart, v, v.NewSegment)
		}
		if want := s-restart < DefaultConfig().WarmUp.Seconds(); v.WarmingUp != want {
			t.Fatalf("at %vs after the restart: warming up %v, want %v", s-restart, v.WarmingUp, want)
		}
	})
}

// TestFastLeakUnderSawtooth: 1 MiB/s under a 60 s GC sawtooth is caught
// by the tiers within 3 minutes, and with the persistence test within two
// of its spans, whatever the phase of the GC cycle.
func TestFastLeakUnderSawtooth(t *testing.T) {
	for _, c := range []struct {
		name   string
		cfg    Config
		within float64
	}{
		{"tiers", tiersOnly(), 180},
		{"default", DefaultConfig(), 2 * DefaultConfig().Persistence.Seconds()},
	} {
		for phase := 0.0; phase < 60; phase += 10 {
			d := newDetectorWith(t, c.cfg)
			const start = 1800.0
			var at float64 = -1
			feed(t, d, 0, start+3600, func(s float64) (float64, float64) {
				return 256*mib + 128*mib*math.Mod(s+phase, 60)/60 + mib*max(0, s-start), 0
			}, func(s float64, v Verdict) {
				if v.Leaking && at < 0 {
					at = s
				}
			})
			if at < start || at-start > c.within {
				t.Errorf("%s, phase %v: detected at %vs, want within %vs of %vs", c.name, phase, at, c.within, start)
			}
		}
	}
}

func TestOutOfOrderAndInvalidPointsIgnored(t *testing.T) {
	d := newDetector(t)
	v1 := d.Observe(Point{T: t0, Bytes: 100})
	if v := d.Observe(Point{T: t0, Bytes: 1}); v != v1 {
		t.Errorf("repeated timestamp changed the verdict: %v", v)
	}
	if v := d.Observe(Point{T: t0.Add(time.Second), Bytes: math.NaN()}); v != v1 {
		t.Errorf("NaN changed the verdict: %v", v)
	}
	if v := d.Observe(Point{T: t0.Add(-time.Second), Bytes: 1}); v != v1 || v.NewSegment {
		t.Errorf("a point in the past changed the verdict: %v", v)
	}
}

func TestStatistics(t *testing.T) {
	xs := []float64{0, 1, 2, 3, 4, 5, 6, 7}
	ys := []float64{1, 3, 5, 7, 9, 11, 100, 15} // slope 2 with one outlier
	if got := theilSen(xs, ys); got != 2 {
		t.Errorf("theilSen = %v, want 2", got)
	}
	if p := mannKendall(ys); p > 0.01 {
		t.Errorf("mannKendall(rising) = %v, want < 0.01", p)
	}
	if p := mannKendall([]float64{5, 5, 5, 5, 5, 5}); p != 1 {
		t.Errorf("mannKendall(flat) = %v, want 1", p)
	}
	if p := mannKendall([]float64{1, 9, 2, 8, 3, 7, 4, 6}); p < 0.1 {
		t.Errorf("mannKendall(zigzag) = %v, want no trend", p)
	}
}

func TestTuneChangesOnlyPolicyFields(t *testing.T) {
	cfg := DefaultConfig()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.EnvelopeWindow *= 2
	if err := d.Tune(bad); err == nil {
		t.Error("Tune accepted a new EnvelopeWindow")
	}
	plain, _ := New(cfg)
	long := cfg
	long.WarmUp = 2 * time.Hour
	step := int64(cfg.Interval / time.Second)
	var tuned, untuned Verdict
	// A flat hour, one point per interval; the 2 h warm-up is tuned in at
	// the third point, before the analysis began.
	for i := int64(0); i*step <= 3600; i++ {
		p := Point{T: time.Unix(i*step, 0), Bytes: 1 << 20}
		tuned, untuned = d.Observe(p), plain.Observe(p)
		if i == 2 {
			if err := d.Tune(long); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !tuned.WarmingUp {
		t.Errorf("at 1h with a 2h warm-up tuned in before the analysis: not warming up")
	}
	if untuned.WarmingUp {
		t.Errorf("at 1h with the default warm-up (%v): still warming up", cfg.WarmUp)
	}
}
