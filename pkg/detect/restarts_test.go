package detect

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// oomLoop is a service under a 60 s GC sawtooth that leaks 2 MiB/s from a
// 400 MiB working set into a 1 GiB limit, is OOM-killed there and starts
// again from 20 MiB, over and over, until fixedAt (seconds; 0: never),
// after which it runs at its working set. Below the limit it looks like
// any service; above the limit the kernel ends it.
func oomLoop(seed uint64, fixedAt float64) func(s float64) (float64, float64) {
	rng := rand.New(rand.NewPCG(seed, 3))
	const limit, base, rate = 1024 * mib, 400 * mib, 2 * mib
	start := 0.0
	return func(s float64) (float64, float64) {
		age := s - start
		warm := min(1, age/120) // the working set is reached in two minutes
		b := 20*mib + warm*(base-20*mib) + 16*mib*math.Mod(s, 60)/60 + rng.NormFloat64()*mib
		if fixedAt == 0 || s < fixedAt {
			b += rate * age
		}
		if b >= limit {
			start = s + 10 // killed; the next point is the new process
			b = limit
		}
		return b, limit
	}
}

// An OOM kill loop is a leak: the verdict turns leaking at the second
// restart from the limit, names the restarts and the climb's rate, and
// stays leaking while the loop goes on; once a fix keeps the service under
// its limit for two cycles the chain ends and the verdict clears. Restarts
// that do not come from the limit (deployments) never count.
func TestOOMKillLoopIsALeak(t *testing.T) {
	d := newDetector(t)
	var restarts []float64
	var leakingAt float64 = -1
	var last Verdict
	feed(t, d, 0, 4*3600, oomLoop(1, 3*3600), func(s float64, v Verdict) {
		if v.NewSegment {
			restarts = append(restarts, s)
		}
		if v.Leaking && leakingAt < 0 {
			leakingAt = s
			last = v
		}
		if s < 3*3600 && len(restarts) >= limitRestartsLeak && s > restarts[limitRestartsLeak-1] && !v.Leaking {
			t.Fatalf("at %vs, after %d restarts at the limit, the verdict is not leaking", s, len(restarts))
		}
	})
	if len(restarts) < 3 {
		t.Fatalf("the loop restarted %d times in 3 h, want several (the series is wrong)", len(restarts))
	}
	if leakingAt != restarts[limitRestartsLeak-1] {
		t.Errorf("leaking from %vs, want at the second restart from the limit (%vs); restarts at %v", leakingAt, restarts[1], restarts)
	}
	if last.Tier != TierRestarts || last.Why == nil || last.Why.Tier != TierRestarts {
		t.Errorf("the verdict names tier %v (explained %+v), want restarts", last.Tier, last.Why)
	}
	if g := last.GrowthBytesPerSecond; g < 1*mib || g > 4*mib {
		t.Errorf("growth %.0f B/s, want about the climb's 2 MiB/s (the working set's warm-up adds to it)", g)
	}
	if last.Confidence < LeakingConfidence {
		t.Errorf("confidence %v below LeakingConfidence while leaking", last.Confidence)
	}
	if v := d.last; v.Leaking {
		t.Errorf("an hour after the fix the verdict is still leaking (%v)", v.Tier)
	}

	// Restarts from below the limit: a deployment every 20 minutes.
	d = newDetector(t)
	rng := rand.New(rand.NewPCG(2, 3))
	feed(t, d, 0, 4*3600, func(s float64) (float64, float64) {
		age := math.Mod(s, 1200)
		return 20*mib + min(1, age/120)*880*mib + 16*mib*math.Mod(s, 60)/60 + rng.NormFloat64()*mib, 1024 * mib
	}, func(s float64, v Verdict) {
		if v.Leaking {
			t.Fatalf("at %vs a service restarted every 20 minutes below its limit (900 of 1024 MiB) is judged leaking (%v)", s, v.Tier)
		}
	})
}

// The chain of restarts survives a save and a restore.
func TestOOMKillLoopStateRoundTrip(t *testing.T) {
	series := oomLoop(3, 0)
	orig := newDetector(t)
	feed(t, orig, 0, 1500, series, nil)
	if orig.limitRestarts == 0 {
		t.Fatal("no restart from the limit in the first 25 minutes (the series is wrong)")
	}
	data, err := orig.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	restored := newDetector(t)
	if err := restored.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if again, _ := restored.MarshalBinary(); !bytes.Equal(again, data) {
		t.Fatal("state changes through a round trip")
	}
	for s := 1500.0; s < 4000; s += 10 {
		b, l := series(s)
		p := Point{T: t0.Add(time.Duration(s) * time.Second), Bytes: b, Limit: l}
		if want, got := orig.Observe(p), restored.Observe(p); !sameVerdict(want, got) {
			t.Fatalf("at %vs: restored detector says %v, the original %v", s, got, want)
		}
	}
}
