package tracer

import (
	"math/rand/v2"
	"testing"
)

// The index finds each key's one Allocation, also for keys that differ in a
// single field and for keys whose hashes collide (forced by a hash table
// of one slot: every key chains behind the others).
func TestAllocIndexGroupsByWholeKey(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var keys []allocKey
	for range 2000 {
		k := allocKey{memcg: r.Uint64N(4), stack: r.Uint64N(8), pid: r.Uint32N(8), kind: Kind(r.IntN(2))}
		keys = append(keys, k, k) // each key twice
	}
	for _, collide := range []bool{false, true} {
		var x allocIndex
		x.reset()
		var allocs []Allocation
		want := map[allocKey]int{}
		for _, k := range keys {
			var j int
			if collide {
				j = x.findHashed(&allocs, k, 0)
			} else {
				j = x.find(&allocs, k)
			}
			if prev, ok := want[k]; ok && prev != j {
				t.Fatalf("collide=%v: key %+v found at %d, first at %d", collide, k, j, prev)
			}
			want[k] = j
			if a := allocs[j]; a.Memcg != k.memcg || a.StackID != k.stack || a.PID != k.pid || a.Kind != k.kind {
				t.Fatalf("collide=%v: key %+v found Allocation %+v", collide, k, a)
			}
		}
		if len(allocs) != len(want) {
			t.Errorf("collide=%v: %d Allocations for %d distinct keys", collide, len(allocs), len(want))
		}
	}
}
