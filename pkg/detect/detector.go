package detect

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/leakwatch/leakwatch/pkg/fifo"
)

// Point is one memory reading of one container.
type Point struct {
	T     time.Time
	Bytes float64 // the leak signal: anonymous, shared and unreclaimable memory
	Limit float64 // memory limit in bytes; 0 when there is none
}

// Tier names the evidence behind a verdict.
type Tier int

// Tiers, from the fastest to the slowest.
const (
	TierNone   Tier = iota
	TierFast        // successive EnvelopeWindow minima of raw points
	TierMedium      // MediumBucket minima, windows of 8 and 16 buckets
	TierSlow        // SlowBucket minima, windows of 12, 24 and 48 buckets
	// TierRestarts: the series climbed to its memory limit and restarted,
	// limitRestartsLeak times in a row (an OOM kill loop), which no tier
	// can see: each restart begins a new segment and its warm-up.
	TierRestarts
	// TierOnset: the floor held a level, then rose at a steady pace for an
	// hour and a half and more, in a shape no load cycle draws (onset.go).
	TierOnset
	// TierStairs: the floor rose in six or more alike steps at regular
	// intervals over one and a half persistence spans and more, as a heap
	// that leaks grows in a runtime that keeps what it takes (stairs.go).
	TierStairs
)

func (t Tier) String() string {
	switch t {
	case TierFast:
		return "fast"
	case TierMedium:
		return "medium"
	case TierSlow:
		return "slow"
	case TierRestarts:
		return "restarts"
	case TierOnset:
		return "onset"
	case TierStairs:
		return "stairs"
	}
	return "none"
}

// LeakingConfidence is where Verdict.Confidence divides the two verdicts:
// while Leaking is true, Confidence is at least LeakingConfidence; while it
// is false, Confidence is below it. So the flag and the number never
// disagree, and an alert on either (leakwatch_container_leaking == 1, or
// leakwatch_container_leak_confidence >= LeakingConfidence) is the same
// alert.
//
// Below it, Confidence is the evidence of the latest evaluations, weighed
// by how far each tier's streak has gone towards confirmation: at most
// confirm/(1+confirm), 0.75, before any tier confirms. When a tier confirms,
// the verdict turns leaking and takes that tier's confidence (1-p of its
// Mann-Kendall test and more, 0.99 or above with the default Significance,
// 1 for the fast tier) and keeps it while any tier still passes, since an
// evaluation that merely does not confirm again (a streak broken by one
// sample, a tier with too few points, a JVM growing its heap in steps that
// the fast tier reads as a step) does not contradict the growth that was
// confirmed. Only quiet contradicts it: while no tier passes, Confidence
// falls linearly from the held value to LeakingConfidence over ClearAfter,
// the verdict's own hysteresis, and drops to the current evidence when
// Leaking clears.
const LeakingConfidence = 0.8

// unconfirmedCap is the most Confidence says while the verdict is not
// leaking: what an unconfirmed tier's streak weighting gives at most
// (confirm/(1+confirm) with confirm 3).
const unconfirmedCap = 0.75

// UnknownTimeToLimit is Verdict.TimeToLimit when there is no projection: no
// limit, no leak, or no growth.
const UnknownTimeToLimit time.Duration = -1

// Verdict is the detector's view after a point.
type Verdict struct {
	// Leaking has hysteresis: it turns on once a tier has confirmed growth
	// over several evaluations and turns off only after ClearAfter without
	// growth in any tier, or when a new segment starts.
	Leaking bool
	// GrowthBytesPerSecond is the robust slope of the lower envelope from
	// Tier (0 before any tier had enough data).
	GrowthBytesPerSecond float64
	// Confidence in [0,1] that the envelope grows like a leak. It is at
	// least LeakingConfidence exactly while Leaking is true: it holds the
	// confidence of the evidence that turned Leaking on and falls only while
	// no tier finds growth (see LeakingConfidence).
	Confidence float64
	// TimeToLimit projects the peak of the last EnvelopeWindow to the limit
	// at GrowthBytesPerSecond; UnknownTimeToLimit unless Leaking and a limit
	// is set. 0 when the peak is already at the limit.
	TimeToLimit time.Duration
	Tier        Tier
	// LeakingSince is when Leaking last turned on (zero when not leaking).
	LeakingSince time.Time
	// SegmentStart is when the current segment began; NewSegment is set on
	// the point that began it because of a restart or a gap.
	SegmentStart time.Time
	NewSegment   bool
	// WarmingUp is set while the segment is younger than WarmUp.
	WarmingUp bool
	// Why explains the verdict's figures while a tier passes or the verdict
	// is leaking; nil otherwise. It is not kept across a restore.
	Why *Explanation
}

// Explanation is what a person judging an alert needs: which evidence
// spoke, over what span, at what slope, and how the floor it measured
// compares with what the series held before.
type Explanation struct {
	Tier Tier
	// Window is the span of the tier's evidence: three EnvelopeWindows for
	// the fast tier, the shortest window of buckets for the others.
	Window time.Duration
	// GrowthBytesPerSecond is the tier's robust slope of the floor.
	GrowthBytesPerSecond float64
	// Cycle is the series' cycle for this growth: the longest interval
	// between the last GC-like drops the series showed, or the floor's own
	// cycle where it is longer and the growth within its amplitude (0:
	// none seen; see history.cycle); FloorWidth is the width of the minima
	// the floor is taken over, at least the cycle and a half.
	Cycle, FloorWidth time.Duration
	// FloorBytes is the floor now; PreviousHighBytes the highest floor of
	// the series before the window (NaN without history to compare).
	FloorBytes, PreviousHighBytes float64
	// LeakingSince is when the verdict turned leaking (zero if it is not).
	LeakingSince time.Time
	// Persistence is the persistence test's span for this growth now (0:
	// the test is off): a leaking verdict's growth rose evenly over two
	// of them. HeldBack, on a verdict that is not leaking while a tier
	// finds growth, says why the test holds it back ("" when it does not).
	Persistence time.Duration
	HeldBack    string
}

// Detector follows one container. It keeps a fixed amount of memory (about
// 3 KiB with the default settings: a raw ring of at most 2*3*EnvelopeWindow/
// Interval+8 points, 32 medium and 96 slow bucket minima), whatever the length
// of the series. It is not safe for concurrent use.
type Detector struct {
	cfg      Config
	origin   time.Time // time of the first point ever; all times are seconds since
	seen     bool
	lastT    float64   // seconds since origin
	lastTime time.Time // the same, exact, for ordering
	limit    float64
	last     Verdict

	segStart      float64
	analysisStart float64           // segStart + WarmUp
	raw           fifo.Ring[sample] // points of the segment, newest last

	fast         tierState
	medium, slow bucketTier
	onset        tierState
	onsetTau     float64 // when the onset tier's growth began
	stairs       tierState
	stairsFrom   float64 // when the stairs tier's first step was
	hist         history
	noise        float64 // point-to-point noise, from the fast tier's ring

	leaking      bool
	leakingSince float64
	quietSince   float64 // <0 while some tier finds growth
	// held is the confidence of the evidence that confirmed the leaking
	// verdict: the effective confidence of the confirmed tiers at the last
	// evaluation where one was confirmed. Verdict.Confidence carries it
	// while Leaking holds (see LeakingConfidence).
	held float64
	// holdReason is why the persistence test held back the tiers'
	// confirmation at the last point ("" when none confirmed or it did
	// not): derived at every point, for the explanation.
	holdReason string

	// segFirst and segPeak are the first (-1 before it) and the highest
	// point of the segment. limitRestarts counts the segments in a row that climbed to
	// within limitHit of the limit and ended in a restart; limitCycle and
	// limitSlope are the last such segment's length and climb.
	segFirst, segPeak      float64
	limitRestarts          int
	limitCycle, limitSlope float64
}

// The limit-restart rule (TierRestarts). A segment ends at the limit when
// its peak stood within limitHit of the limit before a restart: the OOM
// killer ends a process whose memory reached its limit. limitRestartsLeak
// such segments in a row are a leak (or a limit the workload outgrows,
// which the same alert must report): no healthy service restarts at its
// limit twice running. The verdict stays while each segment keeps ending
// there; a segment that runs limitQuietCycles of the last cycle's length
// without reaching the limit ends the chain, and the usual quiet period
// clears the verdict. restartsConfidence is the verdict's confidence.
const (
	limitHit           = 0.9
	limitRestartsLeak  = 2
	limitQuietCycles   = 2
	restartsConfidence = 0.95
)

// tierState is the outcome of a tier's latest evaluation.
type tierState struct {
	passing bool
	streak  int // consecutive passing evaluations
	confirm int // streak that confirms growth
	slope   float64
	conf    float64
	valid   bool // evaluated at least once in this segment
}

// bucketTier keeps minima of fixed-width buckets and evaluates the newest
// windows of them each time a bucket closes.
type bucketTier struct {
	tierState
	width   float64
	windows []int
	cur     struct {
		idx int64
		min float64
		n   int
	}
	closed fifo.Ring[sample] // x = bucket middle, y = minimum
}

type sample struct{ x, y float64 }

// New returns a detector for one container.
func New(cfg Config) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rawCap := 2*int(math.Ceil(float64(3*cfg.EnvelopeWindow)/float64(cfg.Interval))) + 8
	d := &Detector{
		cfg: cfg,
		raw: fifo.New[sample](min(rawCap, 1024)),
		medium: bucketTier{
			width:   cfg.MediumBucket.Seconds(),
			windows: []int{8, 16},
			closed:  fifo.New[sample](32),
		},
		slow: bucketTier{
			width:   cfg.SlowBucket.Seconds(),
			windows: []int{12, 24, 48},
			closed:  fifo.New[sample](96),
		},
		hist: newHistory(cfg.EnvelopeWindow.Seconds()),
	}
	// The slow tier's windows move by one bucket in 12 to 48 per evaluation,
	// so two passes in a row are nearly one; a third (five minutes more of
	// the same slope) is what keeps a chance trend in noise from confirming.
	d.fast.confirm = 3
	d.medium.confirm = 2
	d.slow.confirm = 3
	d.onset.confirm = onsetConfirm
	d.stairs.confirm = 1 // its span is its persistence
	// A tier short of confirmation weighs its confidence by at most
	// confirm/(1+confirm) (effectiveConf), which must stay below
	// LeakingConfidence so that a verdict that is not leaking never reads
	// as one; TestUnconfirmedConfidenceBelowLeaking holds these to it.
	return d, nil
}

// Observe feeds the next point and returns the verdict after it. Points
// must come in time order: a point not after the previous one, or with a
// negative or non-finite byte count, is ignored and the previous verdict
// returned.
func (d *Detector) Observe(p Point) Verdict {
	if math.IsNaN(p.Bytes) || math.IsInf(p.Bytes, 0) || p.Bytes < 0 {
		return d.last
	}
	if !d.seen {
		d.seen = true
		d.origin = p.T
		d.lastT = 0
		d.startSegment(0)
	} else if !p.T.After(d.lastTime) {
		return d.last
	}
	d.lastTime = p.T
	t := p.T.Sub(d.origin).Seconds()
	newSeg := false
	if restart := d.isRestart(p.Bytes); restart || t-d.lastT > d.cfg.MaxGap.Seconds() {
		d.endSegment(restart)
		d.startSegment(t)
		newSeg = true
	}
	if d.segFirst < 0 {
		d.segFirst = p.Bytes
	}
	d.segPeak = max(d.segPeak, p.Bytes)
	unitClosed := math.Floor(t/d.hist.unit()) != math.Floor(d.lastT/d.hist.unit())
	d.lastT = t
	d.raw.Push(sample{t, p.Bytes})
	d.limit = p.Limit
	d.hist.add(t, p.Bytes, d.noise)

	if t >= d.analysisStart {
		if d.evalFast(t) {
			d.gate(t, TierFast, &d.fast)
		}
		if d.medium.add(t-d.analysisStart, p.Bytes, d.cfg) {
			d.gate(t, TierMedium, &d.medium.tierState)
		}
		if d.slow.add(t-d.analysisStart, p.Bytes, d.cfg) {
			d.gate(t, TierSlow, &d.slow.tierState)
			f := d.evalOnset(t)
			d.onset.record(f.pass, f.slope, f.conf)
			d.onsetTau = f.tau
			d.gate(t, TierOnset, &d.onset)
		}
		if unitClosed {
			f := d.evalStairs(t)
			conf := 0.0
			if f.pass {
				conf = 1
			}
			d.stairs.record(f.pass, f.slope, conf)
			d.stairsFrom = f.from
			d.gate(t, TierStairs, &d.stairs)
		}
	}
	d.updateState(t)
	d.last = d.verdict(t, p, newSeg)
	return d.last
}

// isRestart reports whether b is a drop to near zero from the recent level
// of the segment: a new process, whose growth must not be compared with the
// old one's. The level is the median of the raw ring (the last 3
// EnvelopeWindows), which stays on the old process's level for half the fifo.Ring[sample]
// after a drop, so a restart is still caught when its first point lands high
// on a GC ramp.
func (d *Detector) isRestart(b float64) bool {
	if d.raw.Len() < 3 {
		return false
	}
	ys := make([]float64, d.raw.Len())
	for i := range ys {
		ys[i] = d.raw.At(i).y
	}
	return b < d.cfg.RestartFraction*median(ys)
}

// endSegment counts a segment that ended in a restart at the limit
// (limitRestarts), or ends the chain of them on any other restart. A gap
// leaves the chain as it is: nothing was seen.
func (d *Detector) endSegment(restart bool) {
	if !restart {
		return
	}
	if d.limit <= 0 || d.segPeak < limitHit*d.limit {
		d.limitRestarts = 0
		return
	}
	d.limitRestarts++
	d.limitCycle = d.lastT - d.segStart
	if d.limitCycle > 0 {
		d.limitSlope = max(0, d.segPeak-d.segFirst) / d.limitCycle
	}
}

func (d *Detector) startSegment(t float64) {
	d.segStart = t
	d.analysisStart = t + d.cfg.WarmUp.Seconds()
	d.raw.Reset()
	d.fast = tierState{confirm: d.fast.confirm}
	d.onset = tierState{confirm: d.onset.confirm}
	d.stairs = tierState{confirm: d.stairs.confirm}
	d.medium.reset()
	d.slow.reset()
	d.hist.reset()
	d.leaking = false
	d.quietSince = -1
	d.held = 0
	d.segFirst, d.segPeak = -1, 0
}

// The fast tier accepts a newer slope at least fastMaxSlowdown times the
// older one (a cache filling up slows down from one minute to the next, a
// leak does not) and an older slope at least fastMinOnset times the newer one
// (the older minute may straddle the start of the leak; a step leaves one of
// the two flat). The slowdown is forgiven fastNoiseTol times the
// point-to-point noise: a window minimum of a noisy series is about one
// sample, so an increment between two of them is off by about 1.4 noise
// either way, which is what made steep noisy leaks miss three passes in a
// row. The size test already demands a newer increment of four noises, so
// the allowance moves the slowdown bar by at most half of it, and by little
// for a cache filling steeply next to its noise; a cache filling about as
// slowly as its noise gets through more easily (see the package doc). The
// onset test gets no allowance, since a step must keep failing it.
const (
	fastMaxSlowdown = 0.7
	fastMinOnset    = 0.5
	fastNoiseTol    = 2.0
)

// evalFast compares the minima of the last three EnvelopeWindows. Each
// minimum sits on a GC trough (cycles up to EnvelopeWindow), so the
// increments between them measure the growth of the floor. (They are divided
// by the window width, not by the time between the minima: under a GC cycle
// two minima may be one sample apart, and a slope over one sample is noise.)
// A leak gives two similar slopes (the
// older one smaller while the leak is starting); a step or a spike gives one;
// a filling cache gives a newer slope well below the older one.
func (d *Detector) evalFast(t float64) bool {
	w := d.cfg.EnvelopeWindow.Seconds()
	var m [3]float64
	var n [3]int
	for i := range m {
		m[i] = math.Inf(1)
	}
	diffs := make([]float64, 0, d.raw.Len())
	diffs2 := make([]float64, 0, d.raw.Len())
	prev, prev2 := math.NaN(), math.NaN()
	for i := 0; i < d.raw.Len(); i++ {
		s := d.raw.At(i)
		if s.x < d.analysisStart {
			continue
		}
		if !math.IsNaN(prev) {
			diffs = append(diffs, s.y-prev)
		}
		if !math.IsNaN(prev2) {
			diffs2 = append(diffs2, s.y-2*prev+prev2)
		}
		prev, prev2 = s.y, prev
		age := t - s.x
		k := int(age / w) // 0: (t-w, t], 1: (t-2w, t-w], 2: (t-3w, t-2w]
		if age/w == float64(k) && k > 0 {
			k-- // a point exactly on a boundary belongs to the newer window
		}
		if k > 2 {
			continue
		}
		m[k] = min(m[k], s.y)
		n[k]++
	}
	need := max(2, int(d.cfg.EnvelopeWindow/d.cfg.Interval)/2)
	if n[0] < need || n[1] < need || n[2] < need {
		return false
	}
	older, newer := m[1]-m[2], m[0]-m[1]
	sOld, sNew := older/w, newer/w
	// The noise is the smaller of two robust estimates from first and
	// second differences: a change of slope inside the ring (a leak
	// starting) widens the first, the drops of a GC sawtooth widen the
	// second, white noise gives both the same.
	noise := 0.0
	if len(diffs2) >= 5 {
		noise = min(madScale(diffs)/math.Sqrt2, madScale(diffs2)/math.Sqrt(6))
	}
	d.noise = noise
	size := clamp01(min(sNew/d.cfg.FastMinGrowth, newer/(4*noise)))
	shape := 0.0
	if sOld > 0 && sNew > 0 {
		shape = clamp01(older/(fastMinOnset*newer)) * clamp01((newer+fastNoiseTol*noise)/(fastMaxSlowdown*older))
	}
	slope := (m[0] - m[2]) / (2 * w)
	d.fast.record(size >= 1 && shape >= 1, slope, size*shape)
	return true
}

// A tier's growth counts only where the floor stands above the history's
// by gateNoises point-to-point noises and by gateRise of the rise the
// tier's slope gives over its window: a ramp that only climbs back to a
// level the series held before (the next GC cycle's, the next queue's)
// stays below it. Tuned on the production family's seeds 1-20.
const (
	gateNoises = 3.0
	gateRise   = 0.25
)

// gate takes back a tier's pass when the floor at the series' own cycle
// has been as high before (history.newLevel), over the tier's span.
func (d *Detector) gate(t float64, tier Tier, s *tierState) {
	if !s.passing {
		return
	}
	span, minUnits := d.tierSpan(tier)
	margin := max(gateNoises*d.noise, gateRise*s.slope*span)
	if ok, _, _ := d.hist.newLevel(t, s.slope, span, margin, d.lastUnitMin(t), minUnits); ok {
		return
	}
	s.passing = false
	s.streak = 0
	s.conf *= 0.5
}

func (s *tierState) record(pass bool, slope, conf float64) {
	s.valid = true
	s.passing = pass
	s.slope = slope
	s.conf = conf
	if pass {
		s.streak++
	} else {
		s.streak = 0
	}
}

func (s *tierState) confirmed() bool { return s.streak >= s.confirm }

// effectiveConf weighs a tier's confidence by how far its streak has gone
// towards confirmation, so one lucky evaluation does not read as certainty.
func (s *tierState) effectiveConf() float64 {
	if !s.valid {
		return 0
	}
	return s.conf * float64(1+min(s.streak, s.confirm)) / float64(1+s.confirm)
}

func (b *bucketTier) reset() {
	b.tierState = tierState{confirm: b.confirm}
	b.cur.n = 0
	b.closed.Reset()
}

// add folds a point (x seconds since the analysis start) into the current
// bucket and evaluates the tier when a bucket closes.
func (b *bucketTier) add(x, y float64, cfg Config) (evaluated bool) {
	idx := int64(x / b.width)
	if b.cur.n > 0 && idx != b.cur.idx {
		b.closed.Push(sample{(float64(b.cur.idx) + 0.5) * b.width, b.cur.min})
		b.cur.n = 0
		b.evaluate(cfg)
		evaluated = true
	}
	if b.cur.n == 0 {
		b.cur.idx, b.cur.min = idx, y
	}
	b.cur.min = min(b.cur.min, y)
	b.cur.n++
	return evaluated
}

// evaluate tests the newest windows of closed buckets; the tier passes when
// any window does, and reports the best window's slope and confidence.
func (b *bucketTier) evaluate(cfg Config) {
	bestConf, bestSlope, pass := -1.0, 0.0, false
	for _, n := range b.windows {
		if b.closed.Len() < n {
			break
		}
		xs := make([]float64, n)
		ys := make([]float64, n)
		for i := 0; i < n; i++ {
			s := b.closed.At(b.closed.Len() - n + i)
			xs[i], ys[i] = s.x, s.y
		}
		ok, slope, conf := windowTest(xs, ys, cfg)
		if ok && !b.keepsPace(n, cfg) {
			ok, conf = false, conf*cfg.Consistency
		}
		if (ok && !pass) || (ok == pass && conf > bestConf) {
			bestConf, bestSlope = conf, slope
		}
		pass = pass || ok
	}
	if bestConf < 0 {
		return
	}
	b.record(pass, bestSlope, bestConf)
}

// keepsPace is the bucket tiers' deceleration test against the history
// before a window of n buckets: over the newest 2n buckets kept (fewer when
// the segment is younger), the Theil-Sen slope of the newer half must reach
// Consistency times that of the older half. A leak keeps its pace (or
// starts within the history, making the older half slower, which passes); a
// cache filling up with a time constant up to about the history's length
// slows down between the halves even when it still looks linear inside the
// window itself.
func (b *bucketTier) keepsPace(n int, cfg Config) bool {
	h := min(b.closed.Len(), 2*n)
	if h < n+n/2 {
		return true // too little history before the window to compare
	}
	xs := make([]float64, h)
	ys := make([]float64, h)
	for i := range h {
		s := b.closed.At(b.closed.Len() - h + i)
		xs[i], ys[i] = s.x, s.y
	}
	older, newer := theilSen(xs[:h/2], ys[:h/2]), theilSen(xs[h/2:], ys[h/2:])
	return older <= 0 || newer >= cfg.Consistency*older
}

// windowTest is the bucket tiers' test of one window of minima: a
// significant monotonic trend (Mann-Kendall), a Theil-Sen slope of at least
// MinGrowth, a rise well above the scatter of the minima around that slope,
// and similar positive Theil-Sen slopes in each third of the window.
func windowTest(xs, ys []float64, cfg Config) (pass bool, slope, conf float64) {
	n := len(xs)
	p := mannKendall(ys)
	slope = theilSen(xs, ys)

	res := make([]float64, n)
	for i := range xs {
		res[i] = ys[i] - slope*xs[i]
	}
	scatter := madScale(res)
	rise := slope * (xs[n-1] - xs[0])
	sizeOK := 1.0
	if scatter > 0 {
		sizeOK = clamp01(rise / (4 * scatter))
	} else if rise <= 0 {
		sizeOK = 0
	}

	b1, b2 := int(math.Round(float64(n-1)/3)), int(math.Round(2*float64(n-1)/3))
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range [][2]int{{0, b1}, {b1, b2}, {b2, n - 1}} {
		s := theilSen(xs[r[0]:r[1]+1], ys[r[0]:r[1]+1])
		lo, hi = min(lo, s), max(hi, s)
	}
	ratio := 0.0
	if lo > 0 && hi > 0 {
		ratio = lo / hi
	}
	conf = (1 - p) * clamp01(slope/cfg.MinGrowth) * clamp01(ratio/cfg.Consistency) * sizeOK
	pass = p <= cfg.Significance && slope >= cfg.MinGrowth && ratio >= cfg.Consistency && sizeOK >= 1
	return pass, slope, conf
}

// updateState applies the hysteresis: on when a tier confirms, off after
// ClearAfter during which no tier's latest evaluation passed. It holds the
// confirming evidence's confidence for the verdict.
func (d *Detector) updateState(t float64) {
	if d.limitRestarts > 0 && d.segPeak < limitHit*d.limit && t-d.segStart > limitQuietCycles*d.limitCycle {
		d.limitRestarts = 0 // this segment lives on below the limit
	}
	if d.limitRestarts >= limitRestartsLeak {
		if !d.leaking {
			d.leaking = true
			d.leakingSince = t
		}
		d.quietSince = -1
		d.held = max(d.held, restartsConfidence)
		d.holdReason = ""
		return
	}
	confirmed, slope := 0.0, 0.0
	for _, s := range d.tiers() {
		if s.confirmed() && s.effectiveConf() > confirmed {
			confirmed, slope = s.effectiveConf(), s.slope
		}
	}
	if confirmed > 0 {
		d.held = confirmed
	}
	passing := d.fast.passing || d.medium.passing || d.slow.passing || d.onset.passing || d.stairs.passing
	d.holdReason = ""
	if !d.leaking && confirmed > 0 {
		d.holdReason = d.heldBack(t, slope)
		// A confirmed onset is its own persistence (onset.go).
		if d.holdReason != "" && d.onset.confirmed() && !d.onsetHeld(t) {
			d.holdReason, d.held = "", d.onset.effectiveConf()
		}
		// So is a staircase (stairs.go).
		if d.holdReason != "" && d.stairs.confirmed() {
			d.holdReason, d.held = "", d.stairs.effectiveConf()
		}
	}
	if !d.leaking {
		if confirmed > 0 && d.holdReason == "" {
			d.leaking = true
			d.leakingSince = t
			d.quietSince = -1
		}
		return
	}
	switch {
	case passing:
		d.quietSince = -1
	case d.quietSince < 0:
		d.quietSince = t
	case t-d.quietSince >= d.cfg.ClearAfter.Seconds():
		d.leaking = false
		d.quietSince = -1
		d.held = 0
	}
}

// heldBack is the persistence test (Config.Persistence): the floor's
// record (the highest floor the series has held, history.records) must
// have risen over each of the last two spans, evenly within each (neither
// half of a span below runSteady of the other: a step, a ramp that stopped
// or a queue that began building inside the span fails), by more than the
// noise and no slower in the newer span than runPace of the older (a cache
// slows down as it fills, a leak keeps its pace), and the floor now must
// stand near that record. The span is Config.Persistence, at least
// runCycles of the series' GC cycles and long enough for growth at slope to
// rise runNoises noises; when growth at slope would reach the container's
// limit sooner, it is that time (at least four units): a verdict after the
// OOM kill is of no use. Slow growth that a load cycle could explain waits
// for the cycle's history (likeLoadCycle). It returns "" when growth at
// slope has persisted, else why not.
func (d *Detector) heldBack(t, slope float64) string {
	span := d.persistenceSpan(t, slope)
	if span == 0 {
		return ""
	}
	if d.likeLoadCycle(t, slope) {
		return heldLoadCycle
	}
	if !d.rose(t, slope, span) {
		return heldSpans
	}
	return ""
}

// persistenceSpan is the persistence test's span for growth at slope at
// time t, in seconds (0 when the test is off).
func (d *Detector) persistenceSpan(t, slope float64) float64 {
	if d.cfg.Persistence == 0 {
		return 0
	}
	span := max(d.cfg.Persistence.Seconds(), runCycles*d.hist.cycleDone(t, slope))
	if slope > 0 {
		span = max(span, runNoises*d.noise/slope)
		if ttl := d.timeToLimit(t, d.limit, slope); d.limit > 0 && ttl >= 0 && ttl.Seconds() < span {
			span = max(4*d.hist.unit(), ttl.Seconds())
		}
	}
	return span
}

// Why the persistence test holds a verdict back (Explanation.HeldBack).
const (
	heldLoadCycle = "slow growth that a daily or weekly load cycle could explain: waiting for the same hours of the cycle before"
	heldSpans     = "growth has not yet risen evenly and at a kept pace for two persistence spans"
)

// rose is heldBack's record test over spans of span seconds.
func (d *Detector) rose(t, slope, span float64) bool {
	s := 4 * int(math.Ceil(span/d.hist.unit()/4))
	recs, below := d.hist.records(t, slope, d.lastUnitMin(t), runMinUnits, 2*s)
	if len(recs) != 2*s+1 {
		return false
	}
	// rises is the record's rise over the two halves of the last n units.
	rises := func(n int) (h1, h2 float64) {
		r := recs[len(recs)-1-n:]
		return r[n/2] - r[0], r[n] - r[n/2]
	}
	even := func(h1, h2, ratio float64) bool { return min(h1, h2) >= ratio*max(h1, h2) }
	n1, n2 := rises(s)
	newer := n1 + n2
	if !even(n1, n2, runSteady) || newer <= gateNoises*d.noise || below > newer/4 {
		return false
	}
	// Growth that has gone on for two spans: the older was even too, and
	// the newer keeps its pace.
	o1, o2 := recs[s/2]-recs[0], recs[s]-recs[s/2]
	if older := o1 + o2; older > gateNoises*d.noise && even(o1, o2, runSteady) && newer >= runPace*older {
		return true
	}
	// Growth that began within the last two spans has lasted long enough
	// when the last span and a half rose about as much in each of its
	// halves, the newer no less: a queue's first build or a cache's first
	// fill, shorter than that or slowing down, puts most of its rise in one.
	// The half span before it must have been flat: growth that was going
	// on already is the two-span test's to judge.
	w1, w2 := rises(3 * s / 2)
	return recs[s/2]-recs[0] <= gateNoises*d.noise && even(w1, w2, runOnsetEven) && w2 >= runPace*w1
}

// likeLoadCycle reports whether growth at slope is within what a daily or
// weekly load cycle shows, while the segment is too young to hold the same
// hours of the cycle before: up to runRel times the floor per day in the
// first runDayAge days, and up to runWeekRel in the first runWeekAge. Growth
// that has taken the floor beyond runRange times its lowest since the
// warm-up is past any such cycle.
func (d *Detector) likeLoadCycle(t, slope float64) bool {
	floor := d.lastUnitMin(t)
	if floor >= runRange*d.hist.lowest(d.analysisStart) {
		return false
	}
	perDay, age := slope*86400/floor, (t-d.segStart)/86400
	switch {
	case perDay >= runRel || age >= runWeekAge:
		return false
	case age < runDayAge:
		return true
	}
	// Within the first week, the same hours of the day before are in the
	// history, but not those of the same weekday: a weekday climbing back
	// from a quieter weekend stands above yesterday by up to a tenth or
	// so; a leak of this pace adds more than runDayGrowth a day.
	return floor-d.hist.floorAt(t-86400) < runDayGrowth*floor
}

// The persistence test (heldBack) beyond Config.Persistence, tuned on the
// production family's seeds 0-39 (make bench-detect reports 1000-1099):
const (
	// runCycles: the span covers at least this many of the series' GC
	// cycles, so a ramp is never the whole span.
	runCycles = 2.0
	// runNoises: the span is long enough for the growth to rise this many
	// point-to-point noises.
	runNoises = 12.0
	// runMinUnits is the least width of the floor's windows, in units.
	runMinUnits = 2
	// runSteady: neither half of a span rises less than this fraction of
	// the other; a step or a ramp that stopped puts its rise in one half.
	runSteady = 0.3
	// runOnsetEven: for growth that began within the last two spans, the
	// least ratio of the halves of the last span and a half (growth for
	// at least 1.1 spans of it).
	runOnsetEven = 0.67
	// runPace: the newer span rises at least this fraction of the older;
	// a cache filling up slows down, a leak does not.
	runPace = 0.75
	// runRel and runDayAge: growth slower than runRel times the floor per
	// day is what a daily load cycle of up to ±25% shows on its rising
	// half; it is not called a leak before the segment is runDayAge days
	// old, when the same hours of the day before are in the history.
	runRel    = 2.0
	runDayAge = 1.1
	// runWeekAge and runDayGrowth: in the first week, such growth must
	// also stand runDayGrowth of the floor above the same hours of the day
	// before (a weekday climbing back from a quieter weekend does not).
	runWeekAge   = 7.1
	runDayGrowth = 0.15
	// runRange: a floor this many times the lowest since the warm-up is
	// beyond a ±25% daily cycle's range (1.25/0.75) with room to spare:
	// slow growth that has gone this far is a leak on the first day too.
	runRange = 1.8
)

// tiers lists the tiers' states, the slowest first.
func (d *Detector) tiers() [5]*tierState {
	return [5]*tierState{&d.stairs, &d.onset, &d.slow.tierState, &d.medium.tierState, &d.fast}
}

// confidence is Verdict.Confidence at time t (see LeakingConfidence): the
// best tier's effective confidence, and while leaking at least the held
// confidence, lowered linearly towards LeakingConfidence as a quiet period
// runs out the ClearAfter that will clear the verdict.
func (d *Detector) confidence(t float64) float64 {
	evidence := 0.0
	for _, s := range d.tiers() {
		evidence = max(evidence, s.effectiveConf())
	}
	if !d.leaking {
		// A tier may have confirmed while the persistence test holds the
		// verdict back: the evidence stays below a leaking verdict's.
		return min(evidence, unconfirmedCap)
	}
	held := max(d.held, LeakingConfidence)
	if d.quietSince >= 0 {
		quiet := min(1, (t-d.quietSince)/d.cfg.ClearAfter.Seconds())
		held -= (held - LeakingConfidence) * quiet
	}
	return max(evidence, held)
}

func (d *Detector) verdict(t float64, p Point, newSeg bool) Verdict {
	v := Verdict{
		Leaking:      d.leaking,
		TimeToLimit:  UnknownTimeToLimit,
		SegmentStart: d.at(d.segStart),
		NewSegment:   newSeg,
		WarmingUp:    t < d.analysisStart,
	}
	if d.leaking {
		v.LeakingSince = d.at(d.leakingSince)
	}
	// Prefer a passing tier, then the more confident, then the slower one
	// (more data behind its slope). The onset tier comes last: it fits a
	// hinge to every series, and its slope means something only when it is
	// the better evidence, never on a tie of quiet tiers.
	tiers := []struct {
		tier Tier
		s    *tierState
	}{{TierSlow, &d.slow.tierState}, {TierMedium, &d.medium.tierState}, {TierFast, &d.fast}, {TierOnset, &d.onset}, {TierStairs, &d.stairs}}
	best := -1
	for i, c := range tiers {
		// The stairs tier has no evidence short of a pass: a quiet
		// container must not read as its slope of 0.
		if !c.s.valid || (c.tier == TierStairs && !c.s.passing) {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		b := tiers[best].s
		if (c.s.passing && !b.passing) || (c.s.passing == b.passing && c.s.effectiveConf() > b.effectiveConf()) {
			best = i
		}
	}
	switch {
	case d.limitRestarts >= limitRestartsLeak && (best < 0 || !tiers[best].s.passing):
		v.Tier = TierRestarts
		v.GrowthBytesPerSecond = d.limitSlope
		v.Why = d.explain(t, v)
	case best >= 0:
		v.Tier = tiers[best].tier
		v.GrowthBytesPerSecond = tiers[best].s.slope
		if d.leaking || tiers[best].s.passing {
			v.Why = d.explain(t, v)
		}
	}
	v.Confidence = d.confidence(t)
	if d.leaking && p.Limit > 0 && v.GrowthBytesPerSecond > 0 {
		v.TimeToLimit = d.timeToLimit(t, p.Limit, v.GrowthBytesPerSecond)
	}
	return v
}

// explain fills in the Explanation of verdict v at time t.
func (d *Detector) explain(t float64, v Verdict) *Explanation {
	span, minUnits := d.tierSpan(v.Tier)
	e := &Explanation{
		Tier:                 v.Tier,
		Window:               secs(span),
		GrowthBytesPerSecond: v.GrowthBytesPerSecond,
		Cycle:                secs(d.hist.cycle(t, v.GrowthBytesPerSecond)),
		FloorWidth:           secs(float64(d.hist.window(t, v.GrowthBytesPerSecond, minUnits)) * d.hist.unit()),
		LeakingSince:         v.LeakingSince,
		Persistence:          secs(d.persistenceSpan(t, v.GrowthBytesPerSecond)),
	}
	e.HeldBack = d.holdReason
	_, e.FloorBytes, e.PreviousHighBytes = d.hist.newLevel(t, v.GrowthBytesPerSecond, span, 0, d.lastUnitMin(t), minUnits)
	return e
}

// tierSpan is the span of a tier's evidence in seconds and its least floor
// width in history units, as the gate judges it.
func (d *Detector) tierSpan(tier Tier) (span float64, minUnits int) {
	switch tier {
	case TierMedium:
		return float64(d.medium.windows[0]) * d.medium.width, d.hist.units(d.medium.width)
	case TierSlow:
		return float64(d.slow.windows[0]) * d.slow.width, d.hist.units(d.slow.width)
	case TierRestarts:
		return d.limitCycle, 1
	case TierOnset:
		return max(d.lastT-d.onsetTau, d.hist.unit()), 1
	case TierStairs:
		return max(d.lastT-d.stairsFrom, d.hist.unit()), 1
	}
	return 3 * d.hist.unit(), 1
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// lastUnitMin is the minimum of the raw points of the last history unit.
func (d *Detector) lastUnitMin(t float64) float64 {
	last := math.Inf(1)
	for i := 0; i < d.raw.Len(); i++ {
		if s := d.raw.At(i); t-s.x < d.hist.unit() {
			last = min(last, s.y)
		}
	}
	return last
}

// timeToLimit projects the peak of the last EnvelopeWindow, since the OOM
// killer fires on the peak of a GC cycle, not on its floor.
func (d *Detector) timeToLimit(t, limit, growth float64) time.Duration {
	peak := 0.0
	for i := 0; i < d.raw.Len(); i++ {
		if s := d.raw.At(i); t-s.x < d.cfg.EnvelopeWindow.Seconds() {
			peak = max(peak, s.y)
		}
	}
	secs := (limit - peak) / growth
	switch {
	case secs <= 0:
		return 0
	case secs > float64(math.MaxInt64/int64(time.Second)):
		return UnknownTimeToLimit
	}
	return time.Duration(secs * float64(time.Second))
}

func (d *Detector) at(secs float64) time.Time {
	return d.origin.Add(time.Duration(secs * float64(time.Second)))
}

// String is for debugging and test failures.
func (v Verdict) String() string {
	return fmt.Sprintf("leaking=%v growth=%.0fB/s conf=%.3f tier=%v ttl=%v", v.Leaking, v.GrowthBytesPerSecond, v.Confidence, v.Tier, v.TimeToLimit)
}

// Tune changes what a workload's policy may set (see pkg/podpolicy):
// WarmUp, FastMinGrowth, MinGrowth and Significance; every other field of
// cfg must be the detector's own. A new warm-up applies to the current
// segment only while its analysis has not begun (the bucket tiers count
// from that start); otherwise from the next segment, after a restart.
func (d *Detector) Tune(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	own := d.cfg
	own.WarmUp, own.FastMinGrowth, own.MinGrowth, own.Significance = cfg.WarmUp, cfg.FastMinGrowth, cfg.MinGrowth, cfg.Significance
	if own != cfg {
		return errors.New("detect: Tune may change only WarmUp, FastMinGrowth, MinGrowth and Significance")
	}
	if d.seen && d.lastT < d.analysisStart {
		d.analysisStart = d.segStart + cfg.WarmUp.Seconds()
	}
	d.cfg = cfg
	return nil
}
