package tracer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
)

// batchChunk is how many entries one BPF_MAP_LOOKUP_BATCH call asks for.
const batchChunk = 4096

// readAll reads every entry of a hash map in batches. The slices are reused
// when their capacity allows.
func readAll[K, V any](m *ebpf.Map, keys []K, vals []V) ([]K, []V, error) {
	keys, vals = keys[:0], vals[:0]
	kbuf := make([]K, batchChunk)
	vbuf := make([]V, batchChunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, kbuf, vbuf, nil)
		keys = append(keys, kbuf[:n]...)
		vals = append(vals, vbuf[:n]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, vals, nil
		}
		if err != nil {
			return keys, vals, fmt.Errorf("reading map %s: %w", m, err)
		}
	}
}

// Snapshot reads every map once. It also hands out the frames of stacks that
// no earlier snapshot handed out, and then forgets the fault counters of
// processes that exited before the read (their last values are in this
// snapshot).
func (t *Tracer) Snapshot() (*Snapshot, error) {
	t.mu.Lock()
	faultsToDrop := make(map[uint32]uint64, len(t.deadFault))
	for pid, ts := range t.deadFault {
		faultsToDrop[pid] = ts
	}
	t.mu.Unlock()

	snap := &Snapshot{
		Taken:   time.Now(),
		Cgroups: make(map[uint64]CgroupCounters),
		Stacks:  make(map[uint64]Stack),
		Drops:   make(map[DropReason]uint64),
	}
	nowMono := uint64(time.Now().Add(-t.monoToWall).UnixNano())

	mkeys, mvals, err := readAll[leakwatchMappingKey, leakwatchMapping](t.objs.LiveMappings, nil, nil)
	if err != nil {
		return nil, err
	}
	type allocKey struct {
		memcg, stack uint64
		pid          uint32
		kind         Kind
	}
	allocs := make(map[allocKey]*Allocation)
	for i, k := range mkeys {
		v := mvals[i]
		ak := allocKey{memcg: v.Memcg, stack: v.StackId, pid: k.Tgid, kind: Kind(v.Kind)}
		a := allocs[ak]
		if a == nil {
			a = &Allocation{Memcg: v.Memcg, PID: k.Tgid, StackID: v.StackId, Kind: Kind(v.Kind)}
			allocs[ak] = a
		}
		a.Bytes += v.Len
		a.Count++
		if nowMono > v.Ts {
			a.Oldest = max(a.Oldest, time.Duration(nowMono-v.Ts))
		}
		c := snap.Cgroups[v.Memcg]
		if Kind(v.Kind) == KindBrk {
			c.BrkBytes += v.Len
		} else {
			c.MappedBytes += v.Len
		}
		snap.Cgroups[v.Memcg] = c
	}
	snap.Allocations = make([]Allocation, 0, len(allocs))
	for _, a := range allocs {
		snap.Allocations = append(snap.Allocations, *a)
	}

	fkeys, fvals, err := readAll[leakwatchFaultKey, leakwatchFaultValue](t.objs.FaultSamples, nil, nil)
	if err != nil {
		return nil, err
	}
	snap.Faults = make([]FaultSample, 0, len(fkeys))
	for i, k := range fkeys {
		v := fvals[i]
		anon, file := splitFaultBytes(v.Bytes, v.Checked, v.CheckedFile)
		snap.Faults = append(snap.Faults, FaultSample{
			Memcg: k.Memcg, PID: k.Tgid, StackID: k.StackId,
			Bytes: anon, FileBytes: file, Samples: v.Samples,
		})
	}

	if err := t.readCounters(snap); err != nil {
		return nil, err
	}
	if err := t.readDrops(snap); err != nil {
		return nil, err
	}
	t.handOutStacks(snap)
	snap.Maps = t.mapUsage(len(mkeys), len(fkeys), len(snap.Cgroups))

	// The exited processes' final fault counts are in snap; drop their keys.
	var drop []leakwatchFaultKey
	for _, k := range fkeys {
		if _, ok := faultsToDrop[k.Tgid]; ok {
			drop = append(drop, k)
		}
	}
	if err := deleteKeys(t.objs.FaultSamples, drop); err != nil {
		return snap, err
	}
	t.mu.Lock()
	for pid, ts := range faultsToDrop {
		if t.deadFault[pid] == ts {
			delete(t.deadFault, pid)
		}
	}
	t.mu.Unlock()
	return snap, nil
}

func (t *Tracer) readCounters(snap *Snapshot) error {
	var (
		memcg uint64
		vals  []leakwatchCounters
	)
	it := t.objs.CgroupCounters.Iterate()
	for it.Next(&memcg, &vals) {
		c := snap.Cgroups[memcg]
		var faultBytes, checked, checkedFile uint64
		for _, v := range vals {
			c.MmapCalls += v.MmapCalls
			c.MmapBytes += v.MmapBytes
			c.MunmapCalls += v.MunmapCalls
			c.MunmapBytes += v.MunmapBytes
			c.BrkGrowBytes += v.BrkGrowBytes
			c.BrkShrinkBytes += v.BrkShrinkBytes
			c.MremapCalls += v.MremapCalls
			c.FaultSamples += v.FaultSamples
			faultBytes += v.FaultBytes
			checked += v.FaultChecked
			checkedFile += v.FaultCheckedFile
		}
		c.FaultBytes, c.FileFaultBytes = splitFaultBytes(faultBytes, checked, checkedFile)
		snap.Cgroups[memcg] = c
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading cgroup counters: %w", err)
	}
	return nil
}

func (t *Tracer) readDrops(snap *Snapshot) error {
	var perCPU []uint64
	for i, reason := range kernelDropReasons {
		if err := t.objs.Drops.Lookup(uint32(i), &perCPU); err != nil {
			return fmt.Errorf("reading drop counter %s: %w", reason, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		snap.Drops[reason] = sum
	}
	snap.Drops[DropEventsUnconsumed] = t.unconsumed.Load()
	return nil
}

// splitFaultBytes splits sampled fault bytes into anonymous and file-backed
// by the share of file-backed faults among those whose VMA was checked.
func splitFaultBytes(total, checked, checkedFile uint64) (anon, file uint64) {
	if checked == 0 || checkedFile == 0 {
		return total, 0
	}
	file = uint64(float64(total) * float64(min(checkedFile, checked)) / float64(checked))
	return total - file, file
}

// handOutStacks adds to snap the frames of every referenced stack that was
// not handed out before.
func (t *Tracer) handOutStacks(snap *Snapshot) {
	want := func(id uint64) {
		if id == 0 {
			return
		}
		if _, ok := snap.Stacks[id]; ok {
			return
		}
		t.mu.Lock()
		_, done := t.handed[id]
		t.mu.Unlock()
		if done {
			return
		}
		var st leakwatchStackTrace
		if err := t.objs.StackTraces.Lookup(id, &st); err != nil {
			return // collected meanwhile; the allocation shows stack id only
		}
		snap.Stacks[id] = toStack(&st)
		t.mu.Lock()
		t.handed[id] = struct{}{}
		t.mu.Unlock()
	}
	for _, a := range snap.Allocations {
		want(a.StackID)
	}
	for _, f := range snap.Faults {
		want(f.StackID)
	}
}

// Stack returns one stack, if it is still stored.
func (t *Tracer) Stack(id uint64) (Stack, bool) {
	var st leakwatchStackTrace
	if err := t.objs.StackTraces.Lookup(id, &st); err != nil {
		return Stack{}, false
	}
	return toStack(&st), true
}

func toStack(st *leakwatchStackTrace) Stack {
	n := len(st.Ips)
	for n > 0 && st.Ips[n-1] == 0 {
		n--
	}
	return Stack{Frames: append([]uint64(nil), st.Ips[:n]...), LeafReturn: st.LeafReturn}
}

func (t *Tracer) mapUsage(mappings, faults, cgroups int) []MapUsage {
	usage := []MapUsage{
		{Name: "live_mappings", Entries: mappings, Capacity: int(t.objs.LiveMappings.MaxEntries())},
		{Name: "fault_samples", Entries: faults, Capacity: int(t.objs.FaultSamples.MaxEntries())},
		{Name: "cgroup_counters", Entries: cgroups, Capacity: int(t.objs.CgroupCounters.MaxEntries())},
	}
	// Counting stacks means walking their keys, so the figure is the last
	// sweep's, or the stacks handed out since if that is more.
	t.mu.Lock()
	stacks := max(t.stackEntries, len(t.handed))
	t.mu.Unlock()
	usage = append(usage, MapUsage{Name: "stack_traces", Entries: stacks, Capacity: int(t.objs.StackTraces.MaxEntries())})
	return usage
}

// ForgetCgroup drops the counters of a memory cgroup that no longer exists.
func (t *Tracer) ForgetCgroup(memcg uint64) error {
	err := t.objs.CgroupCounters.Delete(memcg)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("forgetting cgroup %d: %w", memcg, err)
	}
	return nil
}

// sweepDead removes the mappings of processes reported dead (or exec'd) by
// the kernel, in one pass over the map for all of them.
func (t *Tracer) sweepDead() error {
	t.mu.Lock()
	if len(t.dead) == 0 {
		t.mu.Unlock()
		return nil
	}
	dead := t.dead
	t.dead = make(map[uint32]uint64)
	t.mu.Unlock()
	return t.removeMappings(func(pid uint32, ts uint64) bool {
		stamp, ok := dead[pid]
		return ok && ts <= stamp
	})
}

// removeMappings deletes the live mappings for which gone(tgid, created) is
// true, and the end-index entries that pointed at them.
func (t *Tracer) removeMappings(gone func(pid uint32, created uint64) bool) error {
	mkeys, mvals, err := readAll[leakwatchMappingKey, leakwatchMapping](t.objs.LiveMappings, nil, nil)
	if err != nil {
		return err
	}
	var del []leakwatchMappingKey
	removed := make(map[uint32]bool)
	for i, k := range mkeys {
		if gone(k.Tgid, mvals[i].Ts) {
			del = append(del, k)
			removed[k.Tgid] = true
		}
	}
	if len(del) == 0 {
		return nil
	}
	if err := deleteKeys(t.objs.LiveMappings, del); err != nil {
		return err
	}
	// Ends of the processes touched whose start no longer exists.
	ekeys, evals, err := readAll[leakwatchMappingKey, uint64](t.objs.MappingEnds, nil, nil)
	if err != nil {
		return err
	}
	var delEnds []leakwatchMappingKey
	for i, k := range ekeys {
		if !removed[k.Tgid] {
			continue
		}
		var m leakwatchMapping
		if err := t.objs.LiveMappings.Lookup(leakwatchMappingKey{Tgid: k.Tgid, Start: evals[i]}, &m); err != nil {
			delEnds = append(delEnds, k)
		}
	}
	return deleteKeys(t.objs.MappingEnds, delEnds)
}

// Sweep removes what lost events left behind — mappings and fault counters of
// processes that no longer exist — and frees stacks that nothing has
// referenced for two sweeps in a row. (Two, because a stack is stored a
// moment before the mapping that references it.) Run calls it every
// SweepInterval.
func (t *Tracer) Sweep() error {
	alive := t.aliveCache()
	if err := t.removeMappings(func(pid uint32, _ uint64) bool { return !alive(pid) }); err != nil {
		return err
	}
	fkeys, _, err := readAll[leakwatchFaultKey, leakwatchFaultValue](t.objs.FaultSamples, nil, nil)
	if err != nil {
		return err
	}
	t.mu.Lock()
	for _, k := range fkeys {
		if !alive(k.Tgid) {
			if _, ok := t.deadFault[k.Tgid]; !ok {
				t.deadFault[k.Tgid] = 0 // dropped after the next snapshot reads it
			}
		}
	}
	t.mu.Unlock()
	return t.collectStacks()
}

func (t *Tracer) aliveCache() func(uint32) bool {
	seen := make(map[uint32]bool)
	return func(pid uint32) bool {
		if v, ok := seen[pid]; ok {
			return v
		}
		_, err := os.Stat(filepath.Join(t.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10)))
		v := err == nil || !errors.Is(err, os.ErrNotExist)
		seen[pid] = v
		return v
	}
}

func (t *Tracer) collectStacks() error {
	_, mvals, err := readAll[leakwatchMappingKey, leakwatchMapping](t.objs.LiveMappings, nil, nil)
	if err != nil {
		return err
	}
	fkeys, _, err := readAll[leakwatchFaultKey, leakwatchFaultValue](t.objs.FaultSamples, nil, nil)
	if err != nil {
		return err
	}
	used := make(map[uint64]struct{}, len(mvals)+len(fkeys))
	for _, v := range mvals {
		used[v.StackId] = struct{}{}
	}
	for _, k := range fkeys {
		used[k.StackId] = struct{}{}
	}

	// Walk keys only: the frames are 512 bytes each and not needed here.
	var (
		key, next uint64
		stale     []uint64
		unref     = make(map[uint64]struct{})
		first     = true
		total     int
	)
	for {
		var err error
		if first {
			err = t.objs.StackTraces.NextKey(nil, &next)
			first = false
		} else {
			err = t.objs.StackTraces.NextKey(key, &next)
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("walking stacks: %w", err)
		}
		key = next
		total++
		if _, ok := used[key]; ok {
			continue
		}
		unref[key] = struct{}{}
	}
	t.mu.Lock()
	for id := range unref {
		if _, before := t.unrefOnce[id]; before {
			stale = append(stale, id)
			delete(unref, id)
			delete(t.handed, id)
		}
	}
	t.unrefOnce = unref
	t.stackEntries = total - len(stale)
	t.mu.Unlock()
	return deleteKeys(t.objs.StackTraces, stale)
}

// deleteKeys deletes keys in batches; keys already gone are not an error.
func deleteKeys[K any](m *ebpf.Map, keys []K) error {
	for len(keys) > 0 {
		n := min(len(keys), batchChunk)
		if done, err := m.BatchDelete(keys[:n], nil); err != nil {
			// A key deleted meanwhile stops the batch; do the rest one by one.
			for _, k := range keys[min(done, n):n] {
				if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					return fmt.Errorf("deleting from %s: %w", m, err)
				}
			}
		}
		keys = keys[n:]
	}
	return nil
}
