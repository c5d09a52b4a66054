package detect

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// steps is a floor of base that rises by size at each of the times at,
// under a short GC sawtooth and noise.
func steps(rng *rand.Rand, base, size float64, at []float64) func(s float64) (float64, float64) {
	return func(s float64) (float64, float64) {
		v := base
		for _, a := range at {
			if s >= a {
				v += size
			}
		}
		return v + sawtooth(s, 30, 20*mib) + rng.NormFloat64()*mib, 8 * gib1
	}
}

// CPython leaking a list of objects grows its resident memory in alike
// steps minutes apart (test/corpus/real's py-leak: about 30 MiB every 8
// minutes; py-slow-leak: 11-17 MiB every 6-9). The persistence test held
// both for the whole recording: its spans' halves hold one step or none,
// and the start-up before the steps was no flat level. The stairs tier
// calls them within the hour the labels allow; the healthy recordings of
// the same runtimes and of others stay quiet.
func TestStairsOnRecordedRuntimes(t *testing.T) {
	const real = "../../test/corpus/real"
	for _, c := range []struct {
		file  string
		leak  bool
		start float64 // the leak's start (labels.csv)
	}{
		{"py-leak.csv", true, 600},
		{"second/py-slow-leak.csv", true, 600},
		{"py-healthy.csv", false, 0},
		{"go-healthy.csv", false, 0},
		{"jvm-healthy.csv", false, 0},
		{"node-healthy.csv", false, 0},
		{"c-healthy.csv", false, 0},
		{"second/redis-healthy.csv", false, 0},
		{"second/jvm-zgc-healthy.csv", false, 0},
		{"second/go-memlimit-healthy.csv", false, 0},
	} {
		t.Run(c.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(real, c.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			first, tier := -1.0, TierNone
			err = Replay(f, DefaultConfig(), func(rel float64, v Verdict) {
				if v.Leaking && first < 0 {
					first, tier = rel, v.Tier
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case !c.leak && first >= 0:
				t.Errorf("healthy recording flagged at %.0f min on tier %v", first/60, tier)
			case c.leak && first < 0:
				t.Error("leaking recording never called")
			case c.leak && (first < c.start || first > c.start+3600):
				t.Errorf("called at %.0f min, want within the hour after the leak's start at %.0f", first/60, c.start/60)
			case c.leak:
				t.Logf("called at %.0f min on tier %v", first/60, tier)
			}
		})
	}
}

// Steps that stop (a heap expanding to its cap), that come at irregular
// intervals (an allocator's high-water mark raised by the bursts that beat
// the one before) or in unlike sizes are not a staircase.
func TestStairsQuietOnStepsThatAreNotALeak(t *testing.T) {
	for name, at := range map[string][]float64{
		// five steps, 6 minutes apart, then the cap: too few to call
		"cap": {10 * 60, 16 * 60, 22 * 60, 28 * 60, 34 * 60},
		// seven steps, ever further apart
		"high-water": {10 * 60, 13 * 60, 19 * 60, 31 * 60, 55 * 60, 103 * 60, 199 * 60},
	} {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 6))
			d := newDetector(t)
			feed(t, d, 0, 4*3600, steps(rng, 300*mib, 30*mib, at), func(s float64, v Verdict) {
				if d.stairs.passing {
					t.Fatalf("the stairs tier passed at %.0f min", s/60)
				}
				if v.Tier == TierStairs {
					t.Fatalf("at %.0f min the verdict reports the stairs tier, which did not pass", s/60)
				}
			})
		})
	}
	t.Run("unlike sizes", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 8))
		d := newDetector(t)
		sizes := []float64{5, 40, 5, 40, 5, 40, 5, 40}
		feed(t, d, 0, 3*3600, func(s float64) (float64, float64) {
			v := 300.0 * mib
			for i, sz := range sizes {
				if s >= float64(20+8*i)*60 {
					v += sz * mib
				}
			}
			return v + sawtooth(s, 30, 20*mib) + rng.NormFloat64()*mib, 8 * gib1
		}, func(s float64, v Verdict) {
			if d.stairs.passing {
				t.Fatalf("the stairs tier passed at %.0f min on steps of 5 and 40 MiB", s/60)
			}
		})
	})
}
