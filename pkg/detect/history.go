package detect

import "math"

// history is what the detector remembers of the series beyond its tiers'
// windows, to judge their growth against the series' own behaviour: the
// minimum of every EnvelopeWindow (a minute by default; the "unit") for the
// last historyUnits, of every coarseUnits units for historyCoarse more, and
// the times of the last GC-like drops, from which the cycle of the series
// is estimated.
//
// A tier's pass is growth only if the floor now, taken over windows at least
// as long as the series' cycle, stands above every floor of the history
// before the tested window (newLevel). A garbage collector's sawtooth with a
// cycle of minutes, a queue that builds and drains, a daily load cycle after
// its first day, all return to levels they held before; a leak leaves them.
type history struct {
	minutes minima // per unit, the last historyUnits (8 h by default)
	// halfHours, per coarseUnits units, reach back historyCoarse buckets
	// (8 days by default), for cycles longer than the minutes hold: a
	// day's load.
	halfHours minima
	drops     []float64 // times of the last maxDrops drops, oldest first
	lastY     float64
	hasLast   bool
	// noise is the point-to-point noise at the first point of the current
	// unit, for floorCycle: taken once a unit, so that floorCycle is the
	// same whichever point of the unit asks first (it is cached per unit).
	noise float64
	// floorCyc caches floorCycle for the minutes and the least width it
	// was computed on.
	floorCyc struct {
		first       int64
		n, from     int
		period, amp float64
	}
}

// minima are the minima of consecutive buckets of width seconds, the
// newest capacity of them.
type minima struct {
	width float64
	limit int       // buckets kept
	ys    []float32 // oldest first, NaN for a bucket without points; grows to limit
	first int64     // bucket index of ys[0]
	cur   struct {
		idx int64
		min float64
		n   int
	}
}

const (
	historyUnits  = 8 * 60
	coarseUnits   = 30
	historyCoarse = 8 * 48
	maxDrops      = 8
	// A drop is a fall between two points by more than dropFraction of the
	// level and dropNoises times the point-to-point noise: a collection,
	// not noise.
	dropFraction = 0.02
	dropNoises   = 6
	// cycleFactor widens the floor's window beyond the longest recent
	// interval between drops: GC cycles jitter.
	cycleFactor = 1.5
	// cycleSpan is how far back drops count for the cycle, in units.
	cycleSpan = 120
	// minIntervals between drops make a cycle.
	minIntervals = 2
)

// newHistory returns a history whose unit is unit seconds.
func newHistory(unit float64) history {
	return history{
		minutes:   minima{width: unit, limit: historyUnits},
		halfHours: minima{width: coarseUnits * unit, limit: historyCoarse},
		drops:     make([]float64, 0, maxDrops),
	}
}

// unit is the width of the finest minima, in seconds.
func (h *history) unit() float64 { return h.minutes.width }

// units is how many units secs holds, at least one.
func (h *history) units(secs float64) int { return max(1, int(math.Round(secs/h.unit()))) }

func (h *history) reset() {
	h.minutes.reset()
	h.halfHours.reset()
	h.drops = h.drops[:0]
	h.hasLast = false
}

func (m *minima) reset() {
	m.ys = m.ys[:0]
	m.cur.n = 0
}

// add folds a point in; noise is the current point-to-point noise (0 when
// unknown).
func (h *history) add(t, y, noise float64) {
	if h.hasLast && h.lastY-y > max(dropFraction*h.lastY, dropNoises*noise) {
		if len(h.drops) == maxDrops {
			copy(h.drops, h.drops[1:])
			h.drops = h.drops[:maxDrops-1]
		}
		h.drops = append(h.drops, t)
	}
	h.lastY, h.hasLast = y, true
	if h.minutes.add(t, y) {
		h.noise = noise
	}
	h.halfHours.add(t, y)
}

// add folds a point into the current bucket; true when it began a bucket.
func (m *minima) add(t, y float64) bool {
	idx := int64(math.Floor(t / m.width))
	if m.cur.n > 0 && idx != m.cur.idx {
		m.close()
	}
	began := m.cur.n == 0
	if began {
		m.cur.idx, m.cur.min = idx, y
	}
	m.cur.min = min(m.cur.min, y)
	m.cur.n++
	return began
}

// close appends the current bucket (and NaN for buckets without points).
func (m *minima) close() {
	c := m.limit
	if len(m.ys) == 0 {
		m.first = m.cur.idx
	}
	if gap := m.cur.idx - (m.first + int64(len(m.ys))); gap >= int64(c) {
		m.ys, m.first = m.ys[:0], m.cur.idx
	}
	for next := m.first + int64(len(m.ys)); next < m.cur.idx; next++ {
		m.push(float32(math.NaN()))
	}
	m.push(float32(m.cur.min))
	m.cur.n = 0
}

func (m *minima) push(v float32) {
	if len(m.ys) == m.limit {
		copy(m.ys, m.ys[1:])
		m.ys = m.ys[:len(m.ys)-1]
		m.first++
	}
	m.ys = append(m.ys, v)
}

// cycle is the series' cycle at time t, in seconds, for judging growth at
// slope: the longest interval between drops in the last cycleSpan, the
// interval still open included (a cycle that has lengthened), or 0 without
// minIntervals+1 drops there (no sawtooth seen); and at least the floor's
// own cycle (floorCycle) where growth at slope over that cycle stays within
// floorAmpFactor of its amplitude. Growth beyond that is not the cycle's,
// whatever its length, and need not wait for it.
func (h *history) cycle(t, slope float64) float64 {
	done := h.dropCycle(t)
	if done == 0 {
		return h.floorCycleFor(t, slope)
	}
	return max(done, t-h.drops[len(h.drops)-1], h.floorCycleFor(t, slope))
}

// cycleDone is cycle without the interval still open: the longest cycle
// the series has completed lately.
func (h *history) cycleDone(t, slope float64) float64 {
	return max(h.dropCycle(t), h.floorCycleFor(t, slope))
}

// floorCycleFor is floorCycle where it bounds growth at slope, else 0.
func (h *history) floorCycleFor(t, slope float64) float64 {
	period, amp := h.floorCycle(t)
	if period == 0 || slope*period >= floorAmpFactor*amp {
		return 0
	}
	return period
}

// dropCycle is the longest interval between the drops of the last
// cycleSpan (0 without minIntervals of them).
func (h *history) dropCycle(t float64) float64 {
	longest, n := 0.0, 0
	for i := len(h.drops) - 1; i > 0; i-- {
		if t-h.drops[i-1] > cycleSpan*h.unit() {
			break
		}
		longest = max(longest, h.drops[i]-h.drops[i-1])
		n++
	}
	if n < minIntervals {
		return 0
	}
	return longest
}

// The floor's cycle. Drops between two points find a garbage collector,
// but not a queue that drains over minutes, nor a sawtooth on top of a
// longer cycle (the drops' intervals stay the short ones). floorCycle
// looks at the floor itself: the rolling minimum of the last floorSpan
// units over k units, for the widths k of the floorLadder beyond what the
// drops' cycle already covers. A floor taken over less than the series'
// cycle rises and falls back (a build, then a drain); over a whole cycle
// it stays level, or only rises (a leak under the cycle). A fall counts
// when the floor drops within floorFallUnits by more than a drop
// (dropFraction of the level, dropNoises noises), from a level it had
// risen to by as much within floorRiseUnits: a daily cycle falls too
// slowly, and a level left once (a step down) was not risen to.
var floorLadder = [...]int{2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96}

const (
	floorSpan      = 4 * 60
	floorFallUnits = 10
	floorRiseUnits = 128
	// floorAmpFactor: growth that rises more than this many of the floor
	// cycle's amplitudes over one of its cycles is not judged against it.
	floorAmpFactor = 2.0
)

// floorCycle is the period, in seconds, whose window (cycleFactor of it)
// is the narrowest width of the floorLadder over which the floor has not
// risen and fallen back lately, and the largest such fall at the widths
// below (the cycle's amplitude); 0 when the narrowest width beyond the
// drops' cycle is level. Where the history is too short to judge a width
// (fewer than 3 of it), the first width it cannot judge is returned: a
// young series that cycles at every width judged is given the next.
func (h *history) floorCycle(t float64) (period, amp float64) {
	from := int(math.Ceil(cycleFactor * h.dropCycle(t) / h.unit()))
	ys := h.minutes.ys
	if c := &h.floorCyc; c.n == len(ys) && c.first == h.minutes.first && c.from == from {
		return c.period, c.amp
	}
	if len(ys) > floorSpan {
		ys = ys[len(ys)-floorSpan:]
	}
	r := make([]float64, len(ys))
	width := 0
	for _, k := range floorLadder {
		if k < from {
			continue
		}
		fall := 0.0 // a width the history is too short to judge reads level
		if 3*k <= len(ys) {
			rollingMin(r, ys, k)
			fall = floorReturns(r[k-1:], h.noise)
		}
		if fall == 0 {
			if amp > 0 {
				width = k
			}
			break
		}
		amp, width = max(amp, fall), k // no level width found: at least this
	}
	if width > 0 {
		period = float64(width) * h.unit() / cycleFactor
	}
	h.floorCyc.first, h.floorCyc.n, h.floorCyc.from = h.minutes.first, len(h.minutes.ys), from
	h.floorCyc.period, h.floorCyc.amp = period, amp
	return period, amp
}

// rollingMin sets r[i] to the minimum of ys[i-k+1..i] (NaN buckets
// skipped; NaN when all are), for i >= k-1.
func rollingMin(r []float64, ys []float32, k int) {
	// A monotonic deque of indexes whose values increase.
	q := make([]int, 0, k)
	for i, v := range ys {
		if !math.IsNaN(float64(v)) {
			for len(q) > 0 && ys[q[len(q)-1]] >= v {
				q = q[:len(q)-1]
			}
			q = append(q, i)
		}
		for len(q) > 0 && q[0] <= i-k {
			q = q[1:]
		}
		if len(q) == 0 {
			r[i] = math.NaN()
		} else {
			r[i] = float64(ys[q[0]])
		}
	}
}

// floorReturns is the largest fall of the floor r, within floorFallUnits,
// from a level it had risen to by more than a drop (see floorCycle); 0
// when there is none.
func floorReturns(r []float64, noise float64) float64 {
	largest := 0.0
	for i, v := range r {
		if math.IsNaN(v) {
			continue
		}
		thr := max(dropFraction*v, dropNoises*noise)
		fall := 0.0
		for j := i + 1; j < len(r) && j <= i+floorFallUnits; j++ {
			if !math.IsNaN(r[j]) {
				fall = max(fall, v-r[j])
			}
		}
		if fall <= thr || fall <= largest {
			continue
		}
		for j := max(0, i-floorRiseUnits); j < i; j++ {
			if v-r[j] > thr {
				largest = fall
				break
			}
		}
	}
	return largest
}

// window is the floor's width in units at time t: at least minUnits, and
// at least the cycle widened by cycleFactor.
func (h *history) window(t, slope float64, minUnits int) int {
	return max(minUnits, int(math.Ceil(cycleFactor*h.cycle(t, slope)/h.unit())))
}

// newLevel reports whether the floor over the last k units (k from
// window; lastUnit is the minimum of the points of the last unit) stands
// above the floor of every k-unit window that ended at least span seconds ago,
// and every coarse minimum older than the units kept, by more than margin;
// true when there is no such block to compare with. It also returns the
// two floors.
func (h *history) newLevel(t, slope, span, margin, lastUnit float64, minUnits int) (ok bool, now, before float64) {
	k := h.window(t, slope, minUnits)
	mins := h.minutes.ys
	n := len(mins)
	if n < k {
		return true, math.NaN(), math.NaN()
	}
	// The last unit is the points of the last unit's time, not the last
	// closed bucket: a fast leak must not wait for a bucket to close.
	now = lastUnit
	if m := blockMin(mins[n-k+1:]); !math.IsNaN(m) {
		now = min(now, m)
	}
	if math.IsInf(now, 1) {
		now = math.NaN() // no point in the window
	}
	// Blocks ending at or before t-span, back from there.
	end := n - max(int(math.Ceil(span/h.unit())), k)
	before = math.Inf(-1)
	// Every k-unit window, not only those aligned with now: a ramp seen
	// before must be found whatever its phase against the units.
	for e := end; e-k >= 0; e-- {
		before = max(before, blockMin(mins[e-k:e]))
	}
	// Beyond the units, the coarse minima: the same hour of earlier days.
	before = max(before, h.coarseHigh())
	if math.IsInf(before, -1) || math.IsNaN(now) {
		return true, now, before
	}
	return now > before+margin, now, before
}

// blockMin is the minimum of the minutes that had points (NaN for none).
func blockMin[T float32 | float64](ms []T) float64 {
	m := math.Inf(1)
	for _, v := range ms {
		if !math.IsNaN(float64(v)) {
			m = min(m, float64(v))
		}
	}
	if math.IsInf(m, 1) {
		return math.NaN()
	}
	return m
}

// records follows the highest floor the series has held (over windows of
// window(t, minUnits) units, the last one ending with lastUnit): it returns
// that record at each of the last units+1 unit ends, oldest first (fewer
// when the history is shorter), and how far the floor now stands below the
// record.
func (h *history) records(t, slope, lastUnit float64, minUnits, units int) (recs []float64, below float64) {
	// The floor's width follows the cycle, but not an open interval more
	// than twice the longest completed one: the series has stopped
	// cycling, and a window that grew with it would lag behind it.
	k := max(minUnits, int(math.Ceil(cycleFactor*min(h.cycle(t, slope), 2*h.cycleDone(t, slope))/h.unit())))
	n := len(h.minutes.ys) + 1
	if n < k+1 {
		return nil, 0
	}
	vals := make([]float64, n)
	for i, v := range h.minutes.ys {
		vals[i] = float64(v)
	}
	vals[n-1] = lastUnit
	// Beyond the units, the coarse minima older than them.
	rec := h.coarseHigh()
	floor := math.NaN()
	recs = make([]float64, 0, units+1)
	for i := k - 1; i < n; i++ {
		if m := blockMin(vals[i-k+1 : i+1]); !math.IsNaN(m) {
			floor = m
			rec = max(rec, m)
		}
		if n-1-i <= units && !math.IsInf(rec, -1) {
			recs = append(recs, rec)
		}
	}
	if math.IsNaN(floor) {
		return nil, 0
	}
	return recs, rec - floor
}

// coarseHigh is the highest coarse minimum of the buckets that ended before
// the units kept begin (-Inf for none).
func (h *history) coarseHigh() float64 {
	high := math.Inf(-1)
	oldest := float64(h.minutes.first) * h.minutes.width
	for i, v := range h.halfHours.ys {
		if end := float64(h.halfHours.first+int64(i)+1) * h.halfHours.width; end <= oldest && !math.IsNaN(float64(v)) {
			high = max(high, float64(v))
		}
	}
	return high
}

// floorAt is the highest of the coarse minima around time when (the bucket
// that holds it and its neighbours): the floor the series held then, or NaN
// when the history does not reach back so far.
func (h *history) floorAt(when float64) float64 {
	i := int(math.Floor(when/h.halfHours.width)) - int(h.halfHours.first)
	v := math.Inf(-1)
	for j := max(i-1, 0); j <= i+1 && j < len(h.halfHours.ys); j++ {
		if y := float64(h.halfHours.ys[j]); !math.IsNaN(y) {
			v = max(v, y)
		}
	}
	if math.IsInf(v, -1) {
		return math.NaN()
	}
	return v
}

// lowest is the lowest unit minimum since time from (NaN when none).
func (h *history) lowest(from float64) float64 {
	skip := int(math.Ceil(from/h.unit())) - int(h.minutes.first)
	if skip >= len(h.minutes.ys) {
		return math.NaN()
	}
	return blockMin(h.minutes.ys[max(skip, 0):])
}

// floorSince is the floor the onset tier fits: at the end of each unit
// since from, the minimum over the window (window(t, 0, 1) units) ending
// there, skipping units without points. Times are unit ends, in seconds.
func (h *history) floorSince(t, from float64) (xs, ys []float64) {
	k := h.window(t, 0, 1)
	mins := h.minutes.ys
	r := make([]float64, len(mins))
	rollingMin(r, mins, k)
	for i := k - 1; i < len(mins); i++ {
		end := float64(h.minutes.first+int64(i)+1) * h.unit()
		if end-float64(k)*h.unit() < from || math.IsNaN(r[i]) {
			continue
		}
		xs = append(xs, end)
		ys = append(ys, r[i])
	}
	return xs, ys
}
