package tracer

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// Keys of the synthetic entries start far above any real pid, cgroup id or
// stack id, so the programs (attached, since New attaches) never touch them.
const (
	benchTgid  = 0x7f000000
	benchMemcg = 1 << 40
	benchStack = 1 << 50
)

// fillMaps writes n live mappings into the tracer's maps by batch update:
// 500 cgroups, n/10 processes, n/4 distinct stacks (each stored, with 24
// frames), and n/4 page-fault keys, the shape of a busy node.
func fillMaps(b *testing.B, t *Tracer, n int) {
	b.Helper()
	procs, stacks := max(n/10, 1), max(n/4, 1)
	mk := make([]leakwatchMappingKey, n)
	mv := make([]leakwatchMapping, n)
	for i := range n {
		pid := uint32(i % procs)
		mk[i] = leakwatchMappingKey{Tgid: benchTgid + pid, Start: 0x7f0000000000 + uint64(i)<<16}
		mv[i] = leakwatchMapping{
			Len: 16 << 10, Memcg: benchMemcg + uint64(pid%500), StackId: benchStack + uint64(i%stacks),
			Ts: 1, Kind: uint32(KindMmap),
		}
	}
	batchUpdate(b, t.objs.LiveMappings, mk, mv)

	sk := make([]uint64, stacks)
	sv := make([]leakwatchStackTrace, stacks)
	for i := range stacks {
		sk[i] = benchStack + uint64(i)
		for f := range 24 {
			sv[i].Ips[f] = 0x400000 + uint64(i)<<8 + uint64(f)
		}
	}
	batchUpdate(b, t.objs.StackTraces, sk, sv)

	fk := make([]leakwatchFaultKey, n/4)
	fv := make([]leakwatchFaultValue, n/4)
	for i := range fk {
		pid := uint32(i % procs)
		fk[i] = leakwatchFaultKey{Memcg: benchMemcg + uint64(pid%500), StackId: benchStack + uint64(i%stacks), Tgid: benchTgid + pid}
		fv[i] = leakwatchFaultValue{Bytes: 512 << 10, Samples: 1}
	}
	batchUpdate(b, t.objs.FaultSamples, fk, fv)
}

func batchUpdate[K, V any](b *testing.B, m *ebpf.Map, keys []K, vals []V) {
	b.Helper()
	for len(keys) > 0 {
		c := min(len(keys), batchChunk)
		if _, err := m.BatchUpdate(keys[:c], vals[:c], nil); err != nil {
			b.Fatalf("filling map: %v", err)
		}
		keys, vals = keys[c:], vals[c:]
	}
}

// BenchmarkSnapshot is one full read of the kernel maps (live mappings, fault
// keys, cgroup counters, drops) with n live mappings. "steady" is every read
// after the first: the stacks were handed out before. "first" also hands out
// every stack's frames, as the first read after they appear does.
func BenchmarkSnapshot(b *testing.B) {
	cgtest.RequirePrivileged(b)
	for _, n := range []int{5000, 20000, 60000} {
		for _, mode := range []string{"steady", "first"} {
			b.Run(fmt.Sprintf("mappings=%d/%s", n, mode), func(b *testing.B) {
				t, err := New(DefaultConfig(), slog.New(slog.DiscardHandler))
				if err != nil {
					b.Fatal(err)
				}
				defer func() { _ = t.Close() }()
				fillMaps(b, t, n)
				if _, err := t.Snapshot(); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if mode == "first" {
						b.StopTimer()
						t.mu.Lock()
						t.handed = make(map[uint64]struct{})
						t.mu.Unlock()
						b.StartTimer()
					}
					s, err := t.Snapshot()
					if err != nil {
						b.Fatal(err)
					}
					if len(s.Allocations) < n/4 {
						b.Fatalf("read %d allocations, want at least %d", len(s.Allocations), n/4)
					}
				}
			})
		}
	}
}
