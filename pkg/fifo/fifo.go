// Package fifo holds Ring, a first-in-first-out buffer of at most a bound
// of values, whose memory grows with what it holds: a new container's
// history costs what it has, not what it may come to hold.
package fifo

// Ring keeps the last Bound values pushed; the zero Ring keeps none. Not
// safe for concurrent use.
type Ring[T any] struct {
	buf   []T // buf[:n] until full; start is 0 until then
	bound int
	start int
	n     int
}

// New returns an empty ring of at most bound values.
func New[T any](bound int) Ring[T] { return Ring[T]{bound: max(bound, 0)} }

// Push appends v, dropping the oldest value when the ring is full.
func (r *Ring[T]) Push(v T) {
	if r.bound == 0 {
		return
	}
	if r.n < r.bound {
		if r.n == cap(r.buf) {
			grown := make([]T, r.n, min(r.bound, max(8, 2*r.n)))
			copy(grown, r.buf)
			r.buf = grown
		}
		r.buf = append(r.buf, v)
		r.n++
		return
	}
	r.buf[r.start] = v
	r.start = (r.start + 1) % r.bound
}

// At returns the i-th value, 0 being the oldest.
func (r *Ring[T]) At(i int) T { return r.buf[(r.start+i)%len(r.buf)] }

// Len is the number of values held.
func (r *Ring[T]) Len() int { return r.n }

// Bound is the most values the ring holds.
func (r *Ring[T]) Bound() int { return r.bound }

// Reset empties the ring and keeps its buffer.
func (r *Ring[T]) Reset() { r.buf, r.start, r.n = r.buf[:0], 0, 0 }

// Footprint is the number of values the ring's buffer has room for: what
// it costs, which grows to Bound as values come.
func (r *Ring[T]) Footprint() int { return cap(r.buf) }
