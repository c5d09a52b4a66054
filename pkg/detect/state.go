package detect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/leakwatch/leakwatch/pkg/fifo"
)

// stateVersion numbers the layout MarshalBinary writes. A change of layout
// must bump it: UnmarshalBinary refuses any other version, and the agent
// then starts the container afresh rather than misread it.
const stateVersion = 7

// ErrConfigMismatch is returned by UnmarshalBinary when the state was saved
// by a detector with other settings: its rings and buckets would not mean
// the same thing under the new ones.
var ErrConfigMismatch = errors.New("detector state saved with other settings")

// MarshalBinary encodes the detector's whole state, settings included, so
// that UnmarshalBinary on a detector made with the same settings continues
// exactly where this one is: the same verdicts on the following points.
func (d *Detector) MarshalBinary() ([]byte, error) {
	var w stateWriter
	w.u8(stateVersion)
	w.config(d.cfg)
	w.boolean(d.seen)
	w.time(d.origin)
	w.f64(d.lastT)
	w.time(d.lastTime)
	w.verdict(d.last)
	w.f64(d.segStart)
	w.f64(d.analysisStart)
	w.ring(&d.raw)
	w.tier(&d.fast)
	for _, b := range []*bucketTier{&d.medium, &d.slow} {
		w.tier(&b.tierState)
		w.i64(b.cur.idx)
		w.f64(b.cur.min)
		w.i64(int64(b.cur.n))
		w.ring(&b.closed)
	}
	w.tier(&d.onset)
	w.f64(d.onsetTau)
	w.tier(&d.stairs)
	w.f64(d.stairsFrom)
	w.boolean(d.leaking)
	w.f64(d.leakingSince)
	w.f64(d.quietSince)
	w.f64(d.held)
	w.f64(d.noise)
	w.history(&d.hist)
	w.f64(d.segFirst)
	w.f64(d.segPeak)
	w.i64(int64(d.limitRestarts))
	w.f64(d.limitCycle)
	w.f64(d.limitSlope)
	return w.buf, nil
}

// UnmarshalBinary restores a state written by MarshalBinary into a detector
// made by New. It checks every size and flag and refuses trailing bytes; it
// returns ErrConfigMismatch when the settings differ from the detector's.
// On error the detector is left as it was.
func (d *Detector) UnmarshalBinary(data []byte) error {
	r := stateReader{buf: data}
	if v := r.u8(); r.err == nil && v != stateVersion {
		return fmt.Errorf("detector state version %d, want %d", v, stateVersion)
	}
	cfg := r.config()
	if r.err == nil && cfg != d.cfg {
		return ErrConfigMismatch
	}
	n := *d // rings are copied below, never shared with d until success
	n.raw = fifo.New[sample](d.raw.Bound())
	n.medium.closed = fifo.New[sample](d.medium.closed.Bound())
	n.slow.closed = fifo.New[sample](d.slow.closed.Bound())
	n.hist = newHistory(d.hist.unit())
	n.seen = r.boolean()
	n.origin = r.time()
	n.lastT = r.f64()
	n.lastTime = r.time()
	n.last = r.verdict()
	n.segStart = r.f64()
	n.analysisStart = r.f64()
	r.ring(&n.raw)
	r.tier(&n.fast)
	for _, b := range []*bucketTier{&n.medium, &n.slow} {
		r.tier(&b.tierState)
		b.cur.idx = r.i64()
		b.cur.min = r.f64()
		b.cur.n = r.count(math.MaxInt32)
		r.ring(&b.closed)
	}
	r.tier(&n.onset)
	n.onsetTau = r.f64()
	r.tier(&n.stairs)
	n.stairsFrom = r.f64()
	n.leaking = r.boolean()
	n.leakingSince = r.f64()
	n.quietSince = r.f64()
	n.held = r.f64()
	n.noise = r.f64()
	r.history(&n.hist)
	n.segFirst, n.segPeak = r.f64(), r.f64()
	n.limitRestarts = r.count(math.MaxInt32)
	n.limitCycle, n.limitSlope = r.f64(), r.f64()
	if r.err == nil && len(r.buf) > 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.buf))
	}
	if r.err == nil {
		r.err = n.checkState()
	}
	if r.err != nil {
		return fmt.Errorf("decoding detector state: %w", r.err)
	}
	n.fast.confirm, n.medium.confirm, n.slow.confirm, n.onset.confirm, n.stairs.confirm = d.fast.confirm, d.medium.confirm, d.slow.confirm, d.onset.confirm, d.stairs.confirm
	*d = n
	return nil
}

// maxBucketIndex bounds decoded history bucket indexes (2^40 units: far
// more than any series, far from overflow).
const maxBucketIndex = 1 << 40

// checkState rejects decoded values the detector's arithmetic does not
// expect: non-finite numbers, and raw points outside the current segment or
// after the last point (the fast tier indexes its windows by their age).
func (d *Detector) checkState() error {
	for _, v := range []float64{d.lastT, d.segStart, d.analysisStart, d.leakingSince, d.quietSince, d.medium.cur.min, d.slow.cur.min,
		d.noise, d.hist.lastY, d.hist.noise, d.hist.minutes.cur.min, d.hist.halfHours.cur.min,
		d.segFirst, d.segPeak, d.limitCycle, d.limitSlope, d.onsetTau, d.stairsFrom} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("non-finite time or level")
		}
	}
	for _, m := range []*minima{&d.hist.minutes, &d.hist.halfHours} {
		// Bucket indexes far beyond any series would overflow the gap
		// arithmetic of minima.close.
		if m.first < -maxBucketIndex || m.first > maxBucketIndex || m.cur.idx < -maxBucketIndex || m.cur.idx > maxBucketIndex {
			return errors.New("history bucket index out of range")
		}
	}
	if d.noise < 0 {
		return fmt.Errorf("noise %g below zero", d.noise)
	}
	for i, t := range d.hist.drops {
		if math.IsNaN(t) || math.IsInf(t, 0) || t > d.lastT || (i > 0 && t < d.hist.drops[i-1]) {
			return errors.New("drop times out of order or after the last point")
		}
	}
	if !(d.held >= 0 && d.held <= 1) {
		return fmt.Errorf("held confidence %g outside [0,1]", d.held)
	}
	for _, rg := range []*fifo.Ring[sample]{&d.raw, &d.medium.closed, &d.slow.closed} {
		for i := 0; i < rg.Len(); i++ {
			s := rg.At(i)
			if math.IsNaN(s.x) || math.IsInf(s.x, 0) || math.IsNaN(s.y) || math.IsInf(s.y, 0) || s.y < 0 {
				return errors.New("non-finite or negative sample")
			}
		}
	}
	for i := 0; i < d.raw.Len(); i++ {
		if x := d.raw.At(i).x; x < d.segStart || x > d.lastT {
			return fmt.Errorf("raw point at %gs outside the segment [%gs,%gs]", x, d.segStart, d.lastT)
		}
	}
	return nil
}

// stateWriter appends fixed-width little-endian fields.
type stateWriter struct{ buf []byte }

func (w *stateWriter) u8(v uint8)  { w.buf = append(w.buf, v) }
func (w *stateWriter) i64(v int64) { w.buf = binary.LittleEndian.AppendUint64(w.buf, uint64(v)) }
func (w *stateWriter) f64(v float64) {
	w.buf = binary.LittleEndian.AppendUint64(w.buf, math.Float64bits(v))
}

func (w *stateWriter) boolean(v bool) {
	if v {
		w.u8(1)
	} else {
		w.u8(0)
	}
}

// time keeps wall-clock nanoseconds; the zero time, which has none in
// range, is a flag.
func (w *stateWriter) time(t time.Time) {
	w.boolean(!t.IsZero())
	if !t.IsZero() {
		w.i64(t.UnixNano())
	}
}

func (w *stateWriter) config(c Config) {
	for _, v := range []time.Duration{c.Interval, c.WarmUp, c.MaxGap, c.EnvelopeWindow, c.MediumBucket, c.SlowBucket, c.ClearAfter, c.Persistence} {
		w.i64(int64(v))
	}
	for _, v := range []float64{c.RestartFraction, c.FastMinGrowth, c.MinGrowth, c.Significance, c.Consistency} {
		w.f64(v)
	}
}

func (w *stateWriter) verdict(v Verdict) {
	w.boolean(v.Leaking)
	w.f64(v.GrowthBytesPerSecond)
	w.f64(v.Confidence)
	w.i64(int64(v.TimeToLimit))
	w.i64(int64(v.Tier))
	w.time(v.LeakingSince)
	w.time(v.SegmentStart)
	w.boolean(v.NewSegment)
	w.boolean(v.WarmingUp)
}

// ring writes its capacity, its size and its samples oldest first.
func (w *stateWriter) ring(r *fifo.Ring[sample]) {
	w.i64(int64(r.Bound()))
	w.i64(int64(r.Len()))
	for i := 0; i < r.Len(); i++ {
		s := r.At(i)
		w.f64(s.x)
		w.f64(s.y)
	}
}

// history writes the minima, the drops and the last level.
func (w *stateWriter) history(h *history) {
	for _, m := range []*minima{&h.minutes, &h.halfHours} {
		w.i64(m.first)
		w.i64(int64(len(m.ys)))
		for _, v := range m.ys {
			w.buf = binary.LittleEndian.AppendUint32(w.buf, math.Float32bits(v))
		}
		w.i64(m.cur.idx)
		w.f64(m.cur.min)
		w.i64(int64(m.cur.n))
	}
	w.i64(int64(len(h.drops)))
	for _, t := range h.drops {
		w.f64(t)
	}
	w.f64(h.lastY)
	w.boolean(h.hasLast)
	w.f64(h.noise)
}

func (w *stateWriter) tier(s *tierState) {
	w.boolean(s.passing)
	w.i64(int64(s.streak))
	w.f64(s.slope)
	w.f64(s.conf)
	w.boolean(s.valid)
}

// stateReader consumes what stateWriter wrote. The first error sticks and
// every later read returns zero, so callers check once at the end.
type stateReader struct {
	buf []byte
	err error
}

func (r *stateReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.buf) < n {
		r.err = errors.New("truncated")
		return nil
	}
	b := r.buf[:n]
	r.buf = r.buf[n:]
	return b
}

func (r *stateReader) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *stateReader) i64() int64 {
	if b := r.take(8); b != nil {
		return int64(binary.LittleEndian.Uint64(b))
	}
	return 0
}

func (r *stateReader) f64() float64 {
	if b := r.take(8); b != nil {
		return math.Float64frombits(binary.LittleEndian.Uint64(b))
	}
	return 0
}

func (r *stateReader) boolean() bool {
	switch v := r.u8(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		if r.err == nil {
			r.err = fmt.Errorf("flag %d: want 0 or 1", v)
		}
		return false
	}
}

func (r *stateReader) time() time.Time {
	if !r.boolean() {
		return time.Time{}
	}
	return time.Unix(0, r.i64())
}

// count reads a non-negative integer no larger than limit.
func (r *stateReader) count(limit int) int {
	v := r.i64()
	if r.err == nil && (v < 0 || v > int64(limit)) {
		r.err = fmt.Errorf("count %d out of [0,%d]", v, limit)
		return 0
	}
	return int(v)
}

func (r *stateReader) config() Config {
	var c Config
	for _, p := range []*time.Duration{&c.Interval, &c.WarmUp, &c.MaxGap, &c.EnvelopeWindow, &c.MediumBucket, &c.SlowBucket, &c.ClearAfter, &c.Persistence} {
		*p = time.Duration(r.i64())
	}
	for _, p := range []*float64{&c.RestartFraction, &c.FastMinGrowth, &c.MinGrowth, &c.Significance, &c.Consistency} {
		*p = r.f64()
	}
	return c
}

func (r *stateReader) verdict() Verdict {
	var v Verdict
	v.Leaking = r.boolean()
	v.GrowthBytesPerSecond = r.f64()
	v.Confidence = r.f64()
	v.TimeToLimit = time.Duration(r.i64())
	tier := r.count(int(TierStairs))
	v.Tier = Tier(tier)
	v.LeakingSince = r.time()
	v.SegmentStart = r.time()
	v.NewSegment = r.boolean()
	v.WarmingUp = r.boolean()
	return v
}

// ring reads into dst, whose capacity must be the one written.
func (r *stateReader) ring(dst *fifo.Ring[sample]) {
	capacity := r.count(dst.Bound())
	if r.err == nil && capacity != dst.Bound() {
		r.err = fmt.Errorf("ring of %d samples, want %d", capacity, dst.Bound())
		return
	}
	size := r.count(capacity)
	for range size {
		x, y := r.f64(), r.f64()
		if r.err != nil {
			return
		}
		dst.Push(sample{x, y})
	}
}

// history reads into dst, made by newHistory: its limits bound what is
// read.
func (r *stateReader) history(h *history) {
	for _, m := range []*minima{&h.minutes, &h.halfHours} {
		m.first = r.i64()
		n := r.count(m.limit)
		for range n {
			b := r.take(4)
			if b == nil {
				return
			}
			v := math.Float32frombits(binary.LittleEndian.Uint32(b))
			if math.IsInf(float64(v), 0) || v < 0 {
				r.err = errors.New("history minimum out of range")
				return
			}
			m.ys = append(m.ys, v)
		}
		m.cur.idx = r.i64()
		m.cur.min = r.f64()
		m.cur.n = r.count(math.MaxInt32)
	}
	for range r.count(cap(h.drops)) {
		h.drops = append(h.drops, r.f64())
	}
	h.lastY = r.f64()
	h.hasLast = r.boolean()
	h.noise = r.f64()
}

func (r *stateReader) tier(s *tierState) {
	s.passing = r.boolean()
	s.streak = r.count(math.MaxInt32)
	s.slope = r.f64()
	s.conf = r.f64()
	s.valid = r.boolean()
}
