package symbolize

import (
	"slices"
	"testing"
)

func TestLRUWeight(t *testing.T) {
	var evicted []string
	c := newLRU(10, func(k string, _ int64) { evicted = append(evicted, k) }).
		limitWeight(100, func(v int64) int64 { return v })
	check := func(step string, weight int64, want ...string) {
		t.Helper()
		if c.weight != weight || !slices.Equal(evicted, want) {
			t.Errorf("%s: weight %d, evicted %q; want %d, %q", step, c.weight, evicted, weight, want)
		}
	}
	c.add("a", 40)
	c.add("b", 40)
	c.get("a")
	c.add("c", 40)
	check("over the bound", 80, "b")
	c.add("d", 500)
	check("alone over the bound", 500, "b", "a", "c")
	c.add("d", 10)
	check("replaced", 10, "b", "a", "c")
	c.add("e", 95)
	check("replaced, then over", 95, "b", "a", "c", "d")
	c.remove("e")
	check("removed", 0, "b", "a", "c", "d", "e")

	// Without a weight bound, only the count counts.
	n := newLRU[string, int](2, nil)
	n.add("a", 1)
	n.add("b", 2)
	n.add("c", 3)
	if n.len() != 2 || n.weight != 0 {
		t.Errorf("count bound: %d entries, weight %d", n.len(), n.weight)
	}
}
