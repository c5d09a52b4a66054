// Package series keeps a container's recent memory history within a fixed
// memory bound: the last points as sampled, and before them one point per
// bucket (its minimum, maximum, last value) for hours more. A slow leak needs
// hours of history to be seen by a person; a fast one needs detail. A raw
// point is 24 bytes and a downsampled one 40, so the defaults (30 min at
// 10 s, 12 h in 5-minute buckets) cost about 10 KiB per container once its
// history is full, and less before: buffers grow as points come.
package series

import (
	"time"

	"github.com/leakwatch/leakwatch/pkg/fifo"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// Config sizes a History.
type Config struct {
	Raw        int           // raw points kept
	Bucket     time.Duration // width of a downsampled point
	Downsample int           // downsampled points kept
}

// DefaultConfig keeps 30 minutes of raw points at a 10 s interval and 12 hours
// of 5-minute buckets.
func DefaultConfig() Config {
	return Config{Raw: 180, Bucket: 5 * time.Minute, Downsample: 144}
}

// point is a downsampled view.Point in 40 bytes.
type point struct {
	t                     int64 // unix milliseconds
	signal, usage, lo, hi uint64
}

func (p point) view() view.Point {
	return view.Point{T: time.UnixMilli(p.t), LeakSignal: p.signal, Usage: p.usage, Min: p.lo, Max: p.hi}
}

// rawPoint is a sample as taken, in 24 bytes: its minimum and maximum are
// its signal.
type rawPoint struct {
	t             int64 // unix milliseconds
	signal, usage uint64
}

func (p rawPoint) point() point {
	return point{t: p.t, signal: p.signal, usage: p.usage, lo: p.signal, hi: p.signal}
}

// History is one container's bounded history. Not safe for concurrent use.
type History struct {
	bucket  time.Duration
	raw     fifo.Ring[rawPoint]
	coarse  fifo.Ring[point]
	pending point // the bucket being filled
	filling bool
}

// New returns an empty history.
func New(cfg Config) *History {
	return &History{
		bucket: cfg.Bucket,
		raw:    fifo.New[rawPoint](max(cfg.Raw, 1)),
		coarse: fifo.New[point](cfg.Downsample),
	}
}

// Add appends a sample; samples must come in time order.
func (h *History) Add(t time.Time, signal, usage uint64) {
	r := rawPoint{t: t.UnixMilli(), signal: signal, usage: usage}
	h.raw.Push(r)
	p := r.point()
	if h.bucket <= 0 {
		return
	}
	start := t.Truncate(h.bucket).UnixMilli()
	if h.filling && start != time.UnixMilli(h.pending.t).Truncate(h.bucket).UnixMilli() {
		h.coarse.Push(h.pending)
		h.filling = false
	}
	if !h.filling {
		h.pending, h.filling = p, true
		return
	}
	h.pending.t, h.pending.signal, h.pending.usage = p.t, p.signal, p.usage
	h.pending.lo = min(h.pending.lo, signal)
	h.pending.hi = max(h.pending.hi, signal)
}

// Points returns the history oldest first: downsampled points older than
// the oldest raw point, then the raw points.
func (h *History) Points() []view.Point {
	out := make([]view.Point, 0, h.coarse.Len()+h.raw.Len())
	var oldestRaw int64 = 1<<63 - 1
	if h.raw.Len() > 0 {
		oldestRaw = h.raw.At(0).t
	}
	for i := range h.coarse.Len() {
		if p := h.coarse.At(i); p.t < oldestRaw {
			out = append(out, p.view())
		}
	}
	for i := range h.raw.Len() {
		out = append(out, h.raw.At(i).point().view())
	}
	return out
}
