package detect

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// leakWithNoise is a quiet start, then 64 KiB/s under a GC-like sawtooth
// and noise: every tier has state worth keeping by the time it is saved.
func leakWithNoise(seed uint64) func(s float64) (float64, float64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	return func(s float64) (float64, float64) {
		b := 300*mib + 8*mib*math.Mod(s, 40)/40 + rng.NormFloat64()*mib
		if s > 1200 {
			b += 64 << 10 * (s - 1200)
		}
		return b, 4096 * mib
	}
}

func sameVerdict(a, b Verdict) bool {
	return a.Leaking == b.Leaking && a.GrowthBytesPerSecond == b.GrowthBytesPerSecond &&
		a.Confidence == b.Confidence && a.TimeToLimit == b.TimeToLimit && a.Tier == b.Tier &&
		a.LeakingSince.Equal(b.LeakingSince) && a.SegmentStart.Equal(b.SegmentStart) &&
		a.NewSegment == b.NewSegment && a.WarmingUp == b.WarmingUp
}

// TestStateRoundTrip: a detector restored from another's state at any point
// of a series (before any point, in warm-up, while the tiers build up, while
// leaking) gives the very same verdicts on the following points.
func TestStateRoundTrip(t *testing.T) {
	for _, cut := range []float64{0, 120, 1500, 2400, 4000} {
		series := leakWithNoise(7)
		orig := newDetector(t)
		feed(t, orig, 0, cut, series, nil)
		data, err := orig.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		restored := newDetector(t)
		if err := restored.UnmarshalBinary(data); err != nil {
			t.Fatalf("cut %v: %v", cut, err)
		}
		again, _ := restored.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Fatalf("cut %v: state changes through a round trip", cut)
		}
		leaking := false
		for s := cut; s < 6000; s += 10 {
			b, l := series(s)
			p := Point{T: t0.Add(time.Duration(s) * time.Second), Bytes: b, Limit: l}
			want, got := orig.Observe(p), restored.Observe(p)
			if !sameVerdict(want, got) {
				t.Fatalf("cut %v, at %vs: restored detector says %v, the original %v", cut, s, got, want)
			}
			leaking = leaking || got.Leaking
		}
		if !leaking {
			t.Errorf("cut %v: the leak was never flagged; the test exercises too little", cut)
		}
	}
}

func TestStateRejectsBadInput(t *testing.T) {
	d := newDetector(t)
	feed(t, d, 0, 3000, leakWithNoise(3), nil)
	good, _ := d.MarshalBinary()
	before, _ := d.MarshalBinary()

	for n := 0; n < len(good); n++ {
		if err := d.UnmarshalBinary(good[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: accepted", n, len(good))
		}
	}
	if err := d.UnmarshalBinary(append(append([]byte(nil), good...), 0)); err == nil {
		t.Error("trailing byte accepted")
	}
	foreign := append([]byte(nil), good...)
	foreign[0] = stateVersion + 1
	if err := d.UnmarshalBinary(foreign); err == nil {
		t.Error("foreign version accepted")
	}
	after, _ := d.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Error("a failed UnmarshalBinary changed the detector")
	}

	cfg := DefaultConfig()
	cfg.WarmUp = time.Minute
	other, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.UnmarshalBinary(good); !errors.Is(err, ErrConfigMismatch) {
		t.Errorf("state of other settings: %v, want ErrConfigMismatch", err)
	}
}

// FuzzDecodeDetectorState: no input makes UnmarshalBinary, or the detector
// it accepts, panic; what it accepts encodes back to the same bytes.
func FuzzDecodeDetectorState(f *testing.F) {
	d, err := New(DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	empty, _ := d.MarshalBinary()
	f.Add(empty)
	series := leakWithNoise(1)
	for s := 0.0; s < 3000; s += 10 {
		b, l := series(s)
		d.Observe(Point{T: t0.Add(time.Duration(s) * time.Second), Bytes: b, Limit: l})
	}
	full, _ := d.MarshalBinary()
	f.Add(full)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := New(DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		if d.UnmarshalBinary(data) != nil {
			return
		}
		again, _ := d.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Fatal("accepted state does not encode back to itself")
		}
		next := d.lastTime.Add(10 * time.Second)
		if next.IsZero() || !d.seen {
			next = t0
		}
		for i := range 40 {
			d.Observe(Point{T: next.Add(time.Duration(i) * 10 * time.Second), Bytes: float64(i) * mib, Limit: 1 << 30})
		}
	})
}
