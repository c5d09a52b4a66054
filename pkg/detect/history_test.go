package detect

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// replay feeds bytes(t) every 10 s for secs seconds and returns the times
// at which the verdict turned leaking.
func replay(t *testing.T, secs float64, bytes func(t float64) float64) []float64 {
	t.Helper()
	d, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var turns []float64
	was := false
	for s := 0.0; s <= secs; s += 10 {
		v := d.Observe(Point{T: t0.Add(time.Duration(s) * time.Second), Bytes: bytes(s)})
		if v.Leaking && !was {
			turns = append(turns, s)
		}
		was = v.Leaking
	}
	return turns
}

// queue is a backlog that builds at rate for build seconds every period
// seconds from first on, then drains in 2 minutes, above a 512 MiB base
// with a 45 s GC sawtooth and noise.
func queue(rng *rand.Rand, first, period, build, rate float64) func(float64) float64 {
	return func(t float64) float64 {
		v := 512*mib + 64*mib*math.Mod(t, 45)/45 + 2*mib*rng.NormFloat64()
		if t >= first {
			switch d := math.Mod(t-first, period); {
			case d < build:
				v += rate * d
			case d < build+120:
				v += rate * build * (1 - (d-build)/120)
			}
		}
		return v
	}
}

// A queue that builds at 1 MiB/s for 10 minutes and drains, every 30
// minutes, looks like a fast leak the first time; every later build only
// climbs back to where the first one went, and must not turn the verdict
// on. The same leak rate kept for good under it must.
func TestRepeatedBacklogIsNotALeak(t *testing.T) {
	const (
		first, period, build = 600.0, 1800.0, 600.0
		rate                 = mib
	)
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 11))
		turns := replay(t, 6*3600, queue(rng, first, period, build, rate))
		for _, at := range turns {
			if at > first+period {
				t.Errorf("seed %d: turned leaking at %v, during a build the series has done before", seed, time.Duration(at)*time.Second)
			}
		}
		// A leak of the build's own rate from 2 h on, under the same queue.
		rng = rand.New(rand.NewPCG(seed, 11))
		q := queue(rng, first, period, build, rate)
		const leakAt = 2 * 3600
		turns = replay(t, 3*3600, func(s float64) float64 { return q(s) + rate*max(0, s-leakAt) })
		found := math.NaN()
		for _, at := range turns {
			if at > leakAt {
				found = at
				break
			}
		}
		// Within 20 minutes of the tiers' and two spans of the persistence test.
		within := 20*60 + 2*DefaultConfig().Persistence.Seconds()
		if math.IsNaN(found) || found-leakAt > within {
			t.Errorf("seed %d: a 1 MiB/s leak under the queue from %v flagged at %v (turns %v), want within %v", seed, time.Duration(leakAt)*time.Second, time.Duration(found)*time.Second, turns, time.Duration(within)*time.Second)
		}
	}
}

// A GC sawtooth of 1 GiB with a 15-minute cycle: once the detector has
// seen its drops, the floor is taken over whole cycles and the ramps are
// no growth. A leak under it raises the floor of every cycle and is found.
func TestLongGCCycleFloor(t *testing.T) {
	const cycle = 900.0
	saw := func(rng *rand.Rand) func(float64) float64 {
		phase := rng.Float64() * cycle
		return func(s float64) float64 {
			return 400*mib + 1024*mib*math.Mod(s+phase, cycle)/cycle + mib*rng.NormFloat64()
		}
	}
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 12))
		for _, at := range replay(t, 6*3600, saw(rng)) {
			// Three drops make a cycle; until then the first ramps may
			// read as growth (see the package doc).
			if at > 3*cycle+900 {
				t.Errorf("seed %d: a healthy 15-minute GC cycle turned leaking at %v", seed, time.Duration(at)*time.Second)
			}
		}
		rng = rand.New(rand.NewPCG(seed, 12))
		s := saw(rng)
		const leakAt, rate = 2 * 3600, 256 << 10
		turns := replay(t, 4*3600, func(x float64) float64 { return s(x) + rate*max(0, x-leakAt) })
		found := false
		for _, at := range turns {
			found = found || at > leakAt
		}
		if !found {
			t.Errorf("seed %d: a 256 KiB/s leak under a 15-minute GC cycle from 2 h was never flagged (turns %v)", seed, turns)
		}
	}
}

func TestHistoryCycleAndLevel(t *testing.T) {
	h := newHistory(60)
	// A sawtooth of 5-minute cycles: 0..300 MiB, drops at every cycle.
	for s := 0.0; s < 3600; s += 10 {
		h.add(s, 100*mib+300*mib*math.Mod(s, 300)/300, mib)
	}
	if c := h.cycle(3600, 0); c < 290 || c > 320 {
		t.Errorf("cycle %v s, want about 300", c)
	}
	// The top of a ramp is no new level: earlier cycles reached it.
	if ok, now, before := h.newLevel(3590, 0, 180, 3*mib, 390*mib, 1); ok {
		t.Errorf("the top of a ramp read as a new level (now %.0f MiB, before %.0f MiB)", now/mib, before/mib)
	}
	// A floor above every earlier floor is.
	for s := 3600.0; s < 4800; s += 10 {
		h.add(s, 400*mib+300*mib*math.Mod(s, 300)/300, mib)
	}
	if ok, now, before := h.newLevel(4790, 0, 180, 3*mib, 690*mib, 1); !ok {
		t.Errorf("a floor 300 MiB up did not read as a new level (now %.0f MiB, before %.0f MiB)", now/mib, before/mib)
	}
}

// queueSeries is a backlog that builds for 15 minutes to 300 MiB, drains
// in 5 and stays drained for 20, over a 100-second GC sawtooth of 64 MiB
// on 300 MiB, with 1 MiB of noise, plus leak bytes/s from leakFrom.
func queueSeries(leak, leakFrom float64) func(s float64) float64 {
	r := rand.New(rand.NewPCG(7, 11))
	return func(s float64) float64 {
		q, phase := 0.0, math.Mod(s, 2400)
		switch {
		case phase < 900:
			q = 300 * mib * phase / 900
		case phase < 1200:
			q = 300 * mib * (1200 - phase) / 300
		}
		return 300*mib + 64*mib*math.Mod(s, 100)/100 + q + leak*max(0, s-leakFrom) + r.NormFloat64()*mib
	}
}

// The floor's cycle is the queue's, not the collector's: the drops find
// only the 100-second cycle, and the floor over a window shorter than the
// 20 minutes the backlog stands above it rises with every build and falls
// with every drain. A leak under the queue leaves it; a daily cycle, which
// falls slowly, and a level left once are no cycle.
func TestFloorCycleFollowsTheSlowestReturn(t *testing.T) {
	cases := []struct {
		name          string
		bytes         func(s float64) float64
		minP, maxP    float64 // period, seconds
		minAmp        float64
		growthNotHeld float64 // bytes/s for which the cycle no longer counts
	}{
		{"queue", queueSeries(0, 0), 1200 / cycleFactor, 2400, 250 * mib, 1 << 20},
		{"queue over a slow leak", queueSeries(12<<10, 3600), 1200 / cycleFactor, 2400, 250 * mib, 1 << 20},
		{"daily cycle", func(s float64) float64 {
			return 1024*mib*(1+0.25*math.Sin(2*math.Pi*s/86400)) + 64*mib*math.Mod(s, 100)/100
		}, 0, 0, 0, 0},
		{"one step down", func(s float64) float64 {
			if s < 3*3600 {
				return 800*mib + 64*mib*math.Mod(s, 100)/100
			}
			return 500*mib + 64*mib*math.Mod(s, 100)/100
		}, 0, 0, 0, 0},
	}
	for _, c := range cases {
		h := newHistory(60)
		end := 6 * 3600.0
		for s := 0.0; s < end; s += 10 {
			h.add(s, c.bytes(s), mib)
		}
		p, amp := h.floorCycle(end)
		t.Logf("%s: floor cycle %.0f s, amplitude %.0f MiB; drops' cycle %.0f s", c.name, p, amp/mib, h.dropCycle(end))
		if p < c.minP || p > c.maxP || amp < c.minAmp {
			t.Errorf("%s: floor cycle %.0f s with amplitude %.0f MiB, want %.0f-%.0f s and at least %.0f MiB", c.name, p, amp/mib, c.minP, c.maxP, c.minAmp/mib)
		}
		if c.growthNotHeld > 0 {
			if got := h.cycle(end, 12<<10); got < c.minP {
				t.Errorf("%s: cycle for 12 KiB/s %.0f s, want the floor's", c.name, got)
			}
			if got := h.cycle(end, c.growthNotHeld); got >= c.minP {
				t.Errorf("%s: cycle for %.0f B/s %.0f s, want the drops' alone: that growth outruns the queue", c.name, c.growthNotHeld, got)
			}
		}
	}
}
