package cgroups

import (
	"testing"

	"github.com/leakwatch/leakwatch/test/cgtest"
)

// BenchmarkReadMemory measures one cgroup's read through ReadMemory, a
// reader of its own each time: v1 on a real cgroup made beneath this
// process's own (a sleeping process in it), v2 on the fixture tree's
// deepest container, four levels down.
func BenchmarkReadMemory(b *testing.B) {
	for _, tree := range benchTrees {
		b.Run(tree.name, func(b *testing.B) {
			h, path := tree.open(b)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.ReadMemory(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMemoryReader measures the agent's way: one reader for a round
// of 100 reads, so ancestors' limits are read once a round; held, with
// the files kept open across rounds (OpenFiles), as the agent reads.
func BenchmarkMemoryReader(b *testing.B) {
	for _, tree := range benchTrees {
		for _, held := range []bool{false, true} {
			name := tree.name
			if held {
				name += "-held"
			}
			b.Run(name, func(b *testing.B) {
				h, path := tree.open(b)
				o := h.NewOpenFiles(100)
				defer o.Close()
				b.ReportAllocs()
				var r *MemoryReader
				for i := 0; b.Loop(); i++ {
					if i%100 == 0 {
						r = h.NewMemoryReader()
						if held {
							r = o.NewMemoryReader()
						}
					}
					if _, err := r.Read(path); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

var benchTrees = []struct {
	name string
	open func(b *testing.B) (Hierarchy, string)
}{
	{name: "v1-host", open: func(b *testing.B) (Hierarchy, string) {
		cgtest.RequirePrivileged(b)
		own, err := cgtest.OwnHierarchy()
		if err != nil || own.Version != 1 {
			b.Skipf("no v1 memory cgroup here (%v)", err)
		}
		h, err := Detect("")
		if err != nil || h.Version != V1 {
			b.Skipf("memory controller not on v1: %v", err)
		}
		g := cgtest.New(b, 256<<20)
		g.Start(b, "/bin/sleep", "3600")
		return h, g.Rel
	}},
	{name: "v2-fixture", open: func(b *testing.B) (Hierarchy, string) {
		h, err := Open("testdata/v2", V2)
		if err != nil {
			b.Fatal(err)
		}
		return h, v2BurstablePod + "/cri-containerd-" + burstableID + ".scope"
	}},
}

// BenchmarkScan measures one Scan of the whole hierarchy: on v1 the host's
// real memory hierarchy (whatever cgroups it holds; the ns/op is per scan,
// the note says how many it found), on v2 the fixture tree.
func BenchmarkScan(b *testing.B) {
	for _, tree := range benchTrees {
		b.Run(tree.name, func(b *testing.B) {
			h, _ := tree.open(b)
			b.ReportAllocs()
			var n int
			for b.Loop() {
				groups, err := h.Scan()
				if err != nil {
					b.Fatal(err)
				}
				n = len(groups)
			}
			b.ReportMetric(float64(n), "cgroups")
		})
	}
}
