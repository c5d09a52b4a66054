package fifo

import "testing"

// The ring keeps the last bound values in order however many come, grows
// its buffer only as it fills, and starts over on Reset.
func TestRingKeepsTheNewestInOrder(t *testing.T) {
	for _, bound := range []int{1, 5, 8, 180} {
		r := New[int](bound)
		for i := range 3 * bound {
			r.Push(i)
			if want := min(i+1, bound); r.Len() != want {
				t.Fatalf("bound %d, after %d pushes: %d held, want %d", bound, i+1, r.Len(), want)
			}
			for j := range r.Len() {
				if got, want := r.At(j), i+1-r.Len()+j; got != want {
					t.Fatalf("bound %d, after %d pushes: At(%d) = %d, want %d", bound, i+1, j, got, want)
				}
			}
			if r.Footprint() > bound || (r.Len() < bound && r.Footprint() > max(8, 2*r.Len())) {
				t.Fatalf("bound %d, %d held: room for %d", bound, r.Len(), r.Footprint())
			}
		}
		r.Reset()
		r.Push(-1)
		if r.Len() != 1 || r.At(0) != -1 {
			t.Errorf("bound %d: after Reset and a push, %d held, first %d", bound, r.Len(), r.At(0))
		}
	}
	var zero Ring[int]
	zero.Push(1)
	if zero.Len() != 0 {
		t.Errorf("the zero ring held %d", zero.Len())
	}
}
