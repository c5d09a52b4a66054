package detect

import (
	"math"
	"slices"
)

// The staircase test: growth in lumps minutes apart, the way a runtime that
// keeps what it takes grows a leaking heap (CPython's). Between two lumps
// the floor is
// flat, so the halves of the persistence test's spans (rose) hold one lump
// or none and are rarely even, and such a leak waited for hours or was
// never called. What tells a leak's staircase from the lumps a healthy
// program also shows is that it goes on, at a kept pace: at least
// stairSteps steps of the floor's record over at least stairSpans spans of
// Config.Persistence, the intervals between them regular (none more than
// stairInterval times the median) and the last step no older than that,
// their sizes alike (none more than stairSize times the smallest), and the
// floor standing at the record now. A heap that expands to its cap steps
// within its first minutes and stops; an allocator's high-water mark
// rises when a burst beats every one before it, ever more rarely; a queue
// or a cache gives one long rise, not steps.
const (
	stairSteps    = 6
	stairInterval = 1.6
	stairSize     = 3.0
	// stairFlat: a step rises over at most this many units; the steps are
	// at least twice as many apart.
	stairFlat = 3
	// stairSmall: rises below this fraction of the median step are not
	// steps (the floor settling after one).
	stairSmall = 0.25
	// stairRel: a unit's rise of the record below this fraction of its
	// level is not part of a step.
	stairRel = 0.005
	// stairNoises: a step rises more than this many scatters of the floor.
	stairNoises = 6.0
	// stairSpans: the steps span at least this many persistence spans.
	stairSpans = 1.5
	// stairLook: how many persistence spans of the record are read.
	stairLook = 4.0
)

// stair is one step of the floor's record.
type stair struct {
	at   int // index of its last rising unit
	size float64
}

// stairFit is the outcome of one evaluation of the stairs tier (a pass has
// confidence 1: its tests are met or not).
type stairFit struct {
	pass  bool
	slope float64 // bytes per second from the first step to the last
	from  float64 // when the first step was
}

// stepSizes lists the sizes of steps.
func stepSizes(steps []stair) []float64 {
	sizes := make([]float64, len(steps))
	for i, st := range steps {
		sizes[i] = st.size
	}
	return sizes
}

// evalStairs looks for the staircase in the record of the floor over the
// last stairLook persistence spans.
func (d *Detector) evalStairs(t float64) stairFit {
	unit := d.hist.unit()
	span := d.cfg.Persistence.Seconds()
	if span <= 0 {
		return stairFit{}
	}
	recs, below := d.hist.records(t, 0, d.lastUnitMin(t), runMinUnits, int(math.Ceil(stairLook*span/unit)))
	if len(recs) < 2 {
		return stairFit{}
	}
	// A unit rises when the record gains more than a fraction of its level
	// and more than the floor's own scatter allows: the record of a floor
	// that scatters about a slow rise (a collector's troughs caught between
	// two points or on one) also jumps now and then.
	_, floor := d.hist.floorSince(t, t-stairLook*span)
	diffs := make([]float64, 0, len(floor))
	for i := 1; i < len(floor); i++ {
		diffs = append(diffs, floor[i]-floor[i-1])
	}
	noise := max(gateNoises*d.noise, stairNoises*madScale(diffs)/math.Sqrt2)
	rising := func(i int) bool { return recs[i]-recs[i-1] > max(noise, stairRel*recs[i-1]) }
	var steps []stair
	for i := 1; i < len(recs); {
		if !rising(i) {
			i++
			continue
		}
		j := i
		for j+1 < len(recs) && rising(j+1) {
			j++
		}
		if j-i+1 > stairFlat {
			steps = steps[:0] // a long rise: only the steps after it count
		} else {
			steps = append(steps, stair{at: j, size: recs[j] - recs[i-1]})
		}
		i = j + 1
	}
	// Rises much smaller than the steps are the floor settling, not steps.
	small := stairSmall * median(stepSizes(steps))
	kept := steps[:0]
	for _, st := range steps {
		if st.size >= small {
			kept = append(kept, st)
		}
	}
	steps = kept
	// The longest run of steps up to now that is a staircase: the first
	// steps may be the program's start.
	for k := len(steps); k >= stairSteps; k-- {
		if f, ok := d.stairsOf(t, recs, below, steps[len(steps)-k:]); ok {
			return f
		}
	}
	return stairFit{}
}

// stairsOf judges steps, the last steps of the record recs (below: how far
// the floor now stands below it) at time t.
func (d *Detector) stairsOf(t float64, recs []float64, below float64, steps []stair) (stairFit, bool) {
	unit, span := d.hist.unit(), d.cfg.Persistence.Seconds()
	intervals := make([]float64, 0, len(steps))
	for i := 1; i < len(steps); i++ {
		intervals = append(intervals, float64(steps[i].at-steps[i-1].at))
	}
	lo, hi := slices.Min(intervals), slices.Max(intervals)
	med := median(intervals)
	first, last := steps[0], steps[len(steps)-1]
	sizes := stepSizes(steps)
	switch {
	case med < 2*stairFlat, hi > stairInterval*med, lo < med/stairInterval:
		return stairFit{}, false // irregular, or too close to be told from a ramp
	case float64(len(recs)-1-last.at) > stairInterval*med:
		return stairFit{}, false // it stopped
	case float64(last.at-first.at)*unit < stairSpans*span:
		return stairFit{}, false // not for long enough yet
	case slices.Max(sizes) > stairSize*slices.Min(sizes):
		return stairFit{}, false
	case below > slices.Min(sizes)/2:
		return stairFit{}, false // the floor fell back
	}
	rise := recs[last.at] - recs[first.at]
	return stairFit{
		pass:  true,
		slope: rise / (float64(last.at-first.at) * unit),
		from:  t - float64(len(recs)-1-first.at)*unit,
	}, true
}
