package detect

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/test/corpus/corpusgen"
)

// TestCorpusSeeds replays the corpus generated for a few seeds other than
// the committed one (and other than the 1..32 that benchdetect -seeds 32
// measures), so that a change tuned to particular noise shows up: no
// non-leak series may turn leaking, and every leak must be found; the
// tiers alone within the label's target, a 1 MiB/s leak within 3m30s; with
// the persistence test within two of its spans.
func TestCorpusSeeds(t *testing.T) {
	seeds := []uint64{101, 102, 103}
	if testing.Short() {
		seeds = seeds[:1]
	}
	span := DefaultConfig().Persistence.Seconds()
	for _, seed := range seeds {
		for _, s := range corpusgen.Generate(seed) {
			for _, cfg := range []Config{tiersOnly(), DefaultConfig()} {
				d := newDetectorWith(t, cfg)
				at := math.NaN()
				for _, p := range s.Points {
					v := d.Observe(Point{T: t0.Add(time.Duration(p.T * float64(time.Second))), Bytes: p.Bytes, Limit: p.Limit})
					if v.Leaking {
						at = p.T
						break
					}
				}
				target := s.MaxDetect
				switch {
				case cfg.Persistence > 0:
					target = max(target, 2*span)
				case s.Rate == mib:
					target = 210
				}
				switch {
				case !s.Leak && !math.IsNaN(at):
					t.Errorf("seed %d %s, persistence %v: not a leak, but turned leaking at %vs", seed, s.File, cfg.Persistence, at)
				case !s.Leak:
				case math.IsNaN(at):
					t.Errorf("seed %d %s, persistence %v: leak starting at %vs never detected", seed, s.File, cfg.Persistence, s.LeakStart)
				case at < s.LeakStart:
					t.Errorf("seed %d %s, persistence %v: turned leaking at %vs, before the leak started at %vs", seed, s.File, cfg.Persistence, at, s.LeakStart)
				case at-s.LeakStart > target:
					t.Errorf("seed %d %s, persistence %v: detected %vs after the leak started, target %vs", seed, s.File, cfg.Persistence, at-s.LeakStart, target)
				}
			}
		}
	}
}

// e2eConfig is what the daemon's end-to-end test runs with: --interval 1s
// --detect-warm-up 15s --detect-window 5s --detect-persistence 20s, the
// bucket tiers scaled by
// window/1m as `leakwatch run` does.
func e2eConfig() Config {
	cfg := DefaultConfig()
	cfg.Interval = time.Second
	cfg.WarmUp = 15 * time.Second
	cfg.EnvelopeWindow = 5 * time.Second
	scale := float64(cfg.EnvelopeWindow) / float64(time.Minute)
	cfg.MediumBucket = time.Duration(float64(DefaultConfig().MediumBucket) * scale)
	cfg.SlowBucket = time.Duration(float64(DefaultConfig().SlowBucket) * scale)
	cfg.Persistence = 20 * time.Second
	return cfg
}

// TestDaemonE2ESettings: with the end-to-end test's settings, a 4 MiB/s
// leak with small noise starting right after the warm-up is flagged within
// 45 s, and a 0 to 16 MiB sawtooth with a 4 s period never is.
func TestDaemonE2ESettings(t *testing.T) {
	run := func(t *testing.T, secs int, bytes func(s float64) float64) float64 {
		t.Helper()
		d, err := New(e2eConfig())
		if err != nil {
			t.Fatal(err)
		}
		for s := range secs {
			v := d.Observe(Point{T: t0.Add(time.Duration(s) * time.Second), Bytes: bytes(float64(s))})
			if v.Leaking {
				return float64(s)
			}
		}
		return math.NaN()
	}
	t.Run("leak", func(t *testing.T) {
		for seed := range uint64(5) {
			rng := rand.New(rand.NewPCG(seed, 7))
			const start = 15.0
			at := run(t, 300, func(s float64) float64 {
				return 64*mib + 4*mib*max(0, s-start) + 256<<10*rng.NormFloat64()
			})
			t.Logf("seed %d: flagged %vs after the leak started", seed, at-start)
			if math.IsNaN(at) || at < start || at-start > 45 {
				t.Errorf("seed %d: 4 MiB/s leak from %vs flagged at %vs, want within 45s", seed, start, at)
			}
		}
	})
	t.Run("sawtooth", func(t *testing.T) {
		// From zero (each trough reads as a restart) and above a floor.
		for _, floor := range []float64{0, 64 * mib} {
			for phase := range 4 {
				if at := run(t, 180, func(s float64) float64 {
					return floor + 16*mib*math.Mod(s+float64(phase), 4)/4
				}); !math.IsNaN(at) {
					t.Errorf("floor %v, phase %d: a 16 MiB, 4 s sawtooth flagged at %vs", floor, phase, at)
				}
			}
		}
	})
}
