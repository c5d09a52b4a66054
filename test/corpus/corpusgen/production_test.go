package corpusgen

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestProductionDeterministic(t *testing.T) {
	a, b := Production(1000), Production(1000)
	if !reflect.DeepEqual(labelsOf(a), labelsOf(b)) {
		t.Fatal("labels differ between two runs of the same seed")
	}
	for i := range a {
		if !reflect.DeepEqual(a[i].Points, b[i].Points) {
			t.Fatalf("%s: points differ between two runs of the same seed", a[i].File)
		}
	}
}

// The seed moves the shapes, not only the noise: two seeds give different
// leak starts and GC periods.
func TestProductionSeedMovesShapes(t *testing.T) {
	a, b := Production(1), Production(2)
	for i := range a {
		if a[i].Leak && a[i].LeakStart == b[i].LeakStart {
			t.Errorf("%s: same leak start %v for seeds 1 and 2", a[i].File, a[i].LeakStart)
		}
		if a[i].Cycle > 0 && a[i].Cycle == b[i].Cycle {
			t.Errorf("%s: same GC cycle %v for seeds 1 and 2", a[i].File, a[i].Cycle)
		}
	}
}

func labelsOf(ss []ProdSeries) []ProdLabel {
	out := make([]ProdLabel, len(ss))
	for i, s := range ss {
		out[i] = s.ProdLabel
	}
	return out
}

// Every family is there, healthy and leaking, and each label matches its
// series: a healthy series has no trend beyond its shapes, a leaking one
// grows after its start by about its rate, and never before.
func TestProductionFamiliesAndLabels(t *testing.T) {
	families := map[string][2]int{} // family: healthy, leaking
	for seed := uint64(1); seed <= 5; seed++ {
		for _, s := range Production(seed) {
			c := families[s.Family]
			if s.Leak {
				c[1]++
				if s.Target == TargetNone || s.Rate <= 0 || s.LeakStart < 30*minute || s.MaxDetect <= 0 {
					t.Errorf("seed %d %s: leaking with label %+v", seed, s.File, s.ProdLabel)
				}
			} else {
				c[0]++
				if s.Target != TargetNone || s.Rate != 0 || s.LeakStart != 0 {
					t.Errorf("seed %d %s: healthy with label %+v", seed, s.File, s.ProdLabel)
				}
			}
			families[s.Family] = c
			checkGrowth(t, seed, s)
		}
	}
	for _, f := range []string{"gc_long", "gc_load", "heap_expand", "highwater", "queue", "cache", "daily"} {
		if c := families[f]; c[0] == 0 || c[1] == 0 {
			t.Errorf("family %s: %d healthy, %d leaking series; want both", f, c[0], c[1])
		}
	}
	for _, f := range []string{"leak_traffic", "leak_accel", "leak_steps", "leak_oom"} {
		if families[f][1] == 0 {
			t.Errorf("family %s missing", f)
		}
	}
}

// checkGrowth compares the series' minimum over its last hour with its
// minimum over the hour before the leak starts (or over the hour after its
// shapes have settled, for healthy series): the leak's growth shows in the
// floor, the shapes' do not.
func checkGrowth(t *testing.T, seed uint64, s ProdSeries) {
	t.Helper()
	if s.Family == "leak_oom" || s.Family == "daily" {
		return // restarts and daily cycles move the floor by construction
	}
	end := s.Points[len(s.Points)-1].T
	floor := func(from, to float64) float64 {
		m := 0.0
		for _, p := range s.Points {
			if p.T >= from && p.T < to && (m == 0 || p.Bytes < m) {
				m = p.Bytes
			}
		}
		return m
	}
	late := floor(end-hour, end)
	if !s.Leak {
		// shapes settle within 3 h (cache time constants ≤ 30 min, expansion ≤ 40 min)
		if early := floor(3*hour, 4*hour); late > early*1.02+64*mib && s.Family != "highwater" {
			t.Errorf("seed %d %s: healthy floor grew from %.0f to %.0f", seed, s.File, early, late)
		}
		return
	}
	grown := late - floor(s.LeakStart-hour/2, s.LeakStart)
	if s.Family == "leak_accel" || s.Family == "leak_steps" {
		if grown <= 0 {
			t.Errorf("seed %d %s: leak did not grow the floor", seed, s.File)
		}
		return
	}
	want := s.Rate * (end - hour - s.LeakStart)
	if s.Family == "leak_traffic" {
		want *= 0.5 // the load swings by up to ±50%
	}
	if grown < want*0.8-256*mib {
		t.Errorf("seed %d %s: floor grew %.0f after the leak start, want about %.0f at least", seed, s.File, grown, want)
	}
}

// Each leaking series equals, point for point, the same series built
// without its leak until the labelled start, and departs from it within
// 10 minutes after: the label's start is the construction's. (Limits may
// differ: a leaking series' limit is set from its peak.)
func TestProductionLeakStartIsConstruction(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		defs := prodDefs(rand.New(rand.NewPCG(seed, 0x9d0c)))
		for i, s := range Production(seed) {
			if !s.Leak {
				continue
			}
			healthy := defs[i]
			healthy.rate, healthy.oom = 0, false
			without := healthy.points(seriesRand(seed, i))
			departed := false
			for j, p := range s.Points {
				switch {
				case p.T <= s.LeakStart && (p.T != without[j].T || p.Bytes != without[j].Bytes):
					t.Fatalf("seed %d %s: differs at %vs from the series without its leak, before its labelled start %vs", seed, s.File, p.T, s.LeakStart)
				case p.T > s.LeakStart && p.T <= s.LeakStart+10*minute && p.Bytes > without[j].Bytes:
					departed = true
				}
			}
			if !departed {
				t.Errorf("seed %d %s: no growth in the 10 minutes after the labelled start %vs", seed, s.File, s.LeakStart)
			}
		}
	}
}
