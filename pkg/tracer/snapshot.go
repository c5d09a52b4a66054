package tracer

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
)

// batchChunk is how many entries one BPF_MAP_LOOKUP_BATCH call asks for.
const batchChunk = 4096

// readAll reads every entry of a hash map in batches, straight into keys and
// vals, which are reused and grow only when the map holds more than they
// can.
func readAll[K, V any](m *ebpf.Map, keys []K, vals []V) ([]K, []V, error) {
	keys, vals = keys[:0], vals[:0]
	var cursor ebpf.MapBatchCursor
	for {
		keys, vals = slices.Grow(keys, batchChunk), slices.Grow(vals, batchChunk)
		n, err := m.BatchLookup(&cursor, keys[len(keys):len(keys)+batchChunk], vals[len(vals):len(vals)+batchChunk], nil)
		keys, vals = keys[:len(keys)+n], vals[:len(vals)+n]
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, vals, nil
		}
		if err != nil {
			return keys, vals, fmt.Errorf("reading map %s: %w", m, err)
		}
	}
}

// allocKey groups live mappings into Allocations.
type allocKey struct {
	memcg, stack uint64
	pid          uint32
	kind         Kind
}

// hash mixes the key into 64 bits, so that the index below can use Go's
// fast path for uint64 keys: a map keyed by the 24-byte struct itself spent
// a sixth of a 20,000-mapping read hashing it.
func (k allocKey) hash() uint64 {
	h := k.stack*0x9e3779b97f4a7c15 ^ (uint64(k.pid)<<8|uint64(k.kind))*0xc2b2ae3d27d4eb4f ^ k.memcg*0x165667b19e3779f9
	return h ^ h>>29
}

// allocIndex finds the Allocation of a key in a Snapshot being built: by
// hash, then along the chain of Allocations whose keys share it.
type allocIndex struct {
	first map[uint64]int32 // hash -> index of the newest Allocation with it
	next  []int32          // index -> the previous one with the same hash, or -1
}

func (x *allocIndex) reset() {
	if x.first == nil {
		x.first = make(map[uint64]int32)
	}
	clear(x.first)
	x.next = x.next[:0]
}

// find returns the index of k's Allocation in allocs, appending one if
// there is none yet.
func (x *allocIndex) find(allocs *[]Allocation, k allocKey) int {
	return x.findHashed(allocs, k, k.hash())
}

func (x *allocIndex) findHashed(allocs *[]Allocation, k allocKey, h uint64) int {
	head, ok := x.first[h]
	if !ok {
		head = -1
	}
	for j := head; j >= 0; j = x.next[j] {
		if a := &(*allocs)[j]; a.StackID == k.stack && a.PID == k.pid && a.Kind == k.kind && a.Memcg == k.memcg {
			return int(j)
		}
	}
	j := len(*allocs)
	*allocs = append(*allocs, Allocation{Memcg: k.memcg, PID: k.pid, StackID: k.stack, Kind: k.kind})
	x.next = append(x.next, head)
	x.first[h] = int32(j)
	return j
}

// readBuffers are the reused buffers of the full map reads, which Snapshot
// and the sweeps take turns with (readMu): a read of 20,000 mappings then
// allocates little beyond the Snapshot it returns.
type readBuffers struct {
	mkeys  []leakwatchMappingKey
	mvals  []leakwatchMapping
	fkeys  []leakwatchFaultKey
	fvals  []leakwatchFaultValue
	allocs allocIndex
}

// deadProc is a process reported gone: its exit or exec stamp (mappings made
// before it are its), when the report arrived, and whether it exited.
type deadProc struct {
	stamp  uint64
	seen   time.Time
	exited bool
}

// deadGrace is how long an exited process's mappings stay readable after
// the report: an OOM kill's forensics read the victim's mappings right after
// the kill, and its exit is reported a moment later. An exec's old image
// gets none: its memory went with the exec, and until swept its mappings
// would count for the new image under the same pid (an OOM victim's inuse
// profile held the shell's that exec'd it).
const deadGrace = 2 * time.Second

// weigh is the bytes a tracked mapping stands for (see struct mapping's
// sampled_len in bpf/leakwatch.h), and how many mappings.
func (t *Tracer) weigh(v *leakwatchMapping) (bytes, count uint64) {
	if v.SampledLen == 0 {
		return v.Len, 1
	}
	sl, s := uint64(v.SampledLen), t.cfg.MmapSampleBytes
	return v.Len/sl*s + v.Len%sl*s/sl, (s + sl/2) / sl
}

// Snapshot reads every map once. It also hands out the frames of stacks that
// no earlier snapshot handed out, removes the mappings of processes that the
// kernel reported exited at least deadGrace ago or exec'd, and then forgets
// the fault counters of processes that exited before the read (their last
// values are in this snapshot).
func (t *Tracer) Snapshot() (*Snapshot, error) {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	b := &t.buf

	t.mu.Lock()
	faultsToDrop := maps.Clone(t.deadFault)
	exited := t.sweptExited
	t.sweptExited = nil
	dead := make(map[uint32]deadProc, len(t.dead))
	for pid, d := range t.dead {
		if !d.exited || time.Since(d.seen) >= deadGrace {
			dead[pid] = d
		}
	}
	t.mu.Unlock()

	snap := &Snapshot{
		Taken:   time.Now(),
		Cgroups: make(map[uint64]CgroupCounters),
		Stacks:  make(map[uint64]Stack),
		Drops:   make(map[DropReason]uint64),
		Exited:  exited,
	}
	nowMono := uint64(time.Now().Add(-t.monoToWall).UnixNano())

	// Copies queued before the maps are read are unwound first, so that
	// the mappings read find their stacks.
	t.flushStackCopies()

	var err error
	b.mkeys, b.mvals, err = readAll(t.objs.LiveMappings, b.mkeys, b.mvals)
	if err != nil {
		return nil, err
	}
	snap.Allocations = make([]Allocation, 0, len(b.allocs.next)) // last time's count
	b.allocs.reset()
	var gone, goneEnds []leakwatchMappingKey
	seenAliases := make(map[uint64]struct{})
	t.mu.Lock() // for the aliases
	for i, k := range b.mkeys {
		v := &b.mvals[i]
		if d, ok := dead[k.Tgid]; ok && v.Ts <= d.stamp {
			if d.exited && !slices.Contains(snap.Exited, k.Tgid) {
				snap.Exited = append(snap.Exited, k.Tgid)
			}
			gone = append(gone, k)
			goneEnds = append(goneEnds, leakwatchMappingKey{Tgid: k.Tgid, Start: k.Start + v.Len})
			continue
		}
		bytes, count := t.weigh(v)
		stack := t.resolveAlias(v.StackId, seenAliases)
		j := b.allocs.find(&snap.Allocations, allocKey{memcg: v.Memcg, stack: stack, pid: k.Tgid, kind: Kind(v.Kind)})
		a := &snap.Allocations[j]
		a.Bytes += bytes
		a.Count += count
		if nowMono > v.Ts {
			a.Oldest = max(a.Oldest, time.Duration(nowMono-v.Ts))
		}
	}
	t.mu.Unlock()
	for i := range snap.Allocations {
		a := &snap.Allocations[i]
		c := snap.Cgroups[a.Memcg]
		if a.Kind == KindBrk {
			c.BrkBytes += a.Bytes
		} else {
			c.MappedBytes += a.Bytes
		}
		snap.Cgroups[a.Memcg] = c
	}
	if err := t.forgetDead(gone, goneEnds, dead); err != nil {
		return nil, err
	}

	b.fkeys, b.fvals, err = readAll(t.objs.FaultSamples, b.fkeys, b.fvals)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	snap.Faults = t.mergeFaults(b.fkeys, b.fvals)
	t.mu.Unlock()

	if err := t.readCounters(snap); err != nil {
		return nil, err
	}
	if err := t.readDrops(snap); err != nil {
		return nil, err
	}
	if err := t.readCopyCounts(snap); err != nil {
		return nil, err
	}
	t.handOutStacks(snap)
	snap.Maps = t.mapUsage(len(b.mkeys)-len(gone), len(b.fkeys), len(snap.Cgroups))

	// The exited processes' final fault counts are in snap; drop their keys.
	var drop []leakwatchFaultKey
	for _, k := range b.fkeys {
		if _, ok := faultsToDrop[k.Tgid]; ok {
			drop = append(drop, k)
		}
	}
	if err := deleteKeys(t.objs.FaultSamples, drop); err != nil {
		return snap, err
	}
	t.mu.Lock()
	t.forgetFaults(faultsToDrop)
	for pid, ts := range faultsToDrop {
		if t.deadFault[pid] == ts {
			delete(t.deadFault, pid)
		}
	}
	t.collectUnwound(seenAliases)
	t.mu.Unlock()
	return snap, nil
}

// forgetDead deletes the mappings (and their end-index entries) of processes
// reported gone, found by the read that preceded it, and then forgets those
// reports. A process reported during the read keeps its report for the next.
func (t *Tracer) forgetDead(mappings, ends []leakwatchMappingKey, dead map[uint32]deadProc) error {
	if err := deleteKeys(t.objs.LiveMappings, mappings); err != nil {
		return err
	}
	if err := deleteKeys(t.objs.MappingEnds, ends); err != nil {
		return err
	}
	t.mu.Lock()
	for pid, d := range dead {
		if t.dead[pid] == d {
			delete(t.dead, pid)
		}
	}
	t.mu.Unlock()
	return nil
}

func (t *Tracer) readCounters(snap *Snapshot) error {
	var (
		memcg uint64
		vals  []leakwatchCounters
	)
	it := t.objs.CgroupCounters.Iterate()
	for it.Next(&memcg, &vals) {
		c := snap.Cgroups[memcg]
		var faultBytes, fileBytes uint64
		for _, v := range vals {
			c.MmapCalls += v.MmapCalls
			c.MmapBytes += v.MmapBytes
			c.MunmapCalls += v.MunmapCalls
			c.MunmapBytes += v.MunmapBytes
			c.BrkGrowBytes += v.BrkGrowBytes
			c.BrkShrinkBytes += v.BrkShrinkBytes
			c.MremapCalls += v.MremapCalls
			c.MprotectGrowBytes += v.MprotectGrowBytes
			c.MprotectShrinkBytes += v.MprotectShrinkBytes
			c.FaultSamples += v.FaultSamples
			faultBytes += v.FaultBytes
			fileBytes += v.FaultFileBytes
		}
		// Per CPU, each part is counted on its own: the sums can cross.
		c.FileFaultBytes = min(fileBytes, faultBytes)
		c.FaultBytes = faultBytes - c.FileFaultBytes
		snap.Cgroups[memcg] = c
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading cgroup counters: %w", err)
	}
	return nil
}

func (t *Tracer) readDrops(snap *Snapshot) error {
	for i, reason := range kernelDropReasons {
		n, err := t.readDrop(i)
		if err != nil {
			return err
		}
		snap.Drops[reason] = n
	}
	snap.Drops[DropEventsUnconsumed] = t.unconsumed.Load()
	return nil
}

// readDrop sums one kernel drop counter over the CPUs.
func (t *Tracer) readDrop(i int) (uint64, error) {
	var perCPU []uint64
	if err := t.objs.Drops.Lookup(uint32(i), &perCPU); err != nil {
		return 0, fmt.Errorf("reading drop counter %s: %w", kernelDropReasons[i], err)
	}
	var sum uint64
	for _, v := range perCPU {
		sum += v
	}
	return sum, nil
}

// stacksOverflowing reports whether stacks were dropped for lack of room
// since it was last asked.
func (t *Tracer) stacksOverflowing() bool {
	n, err := t.readDrop(slices.Index(kernelDropReasons[:], DropStacksFull))
	if err != nil || n == t.stacksFullSeen {
		return false
	}
	t.stacksFullSeen = n
	return true
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
	var want []uint64
	t.mu.Lock()
	add := func(id uint64) {
		if id == 0 {
			return
		}
		if _, ok := t.handed[id]; ok {
			return
		}
		t.handed[id] = struct{}{} // undone below if the lookup fails
		want = append(want, id)
	}
	for _, a := range snap.Allocations {
		add(a.StackID)
	}
	for _, f := range snap.Faults {
		add(f.StackID)
	}
	t.mu.Unlock()

	var st leakwatchStackTrace
	var missing []uint64
	t.mu.Lock()
	for i := 0; i < len(want); i++ {
		if s, ok := t.unwound.stacks[want[i]]; ok {
			snap.Stacks[want[i]] = s
			want[i] = want[len(want)-1]
			want = want[:len(want)-1]
			i--
		}
	}
	t.mu.Unlock()
	for _, id := range want {
		if err := t.objs.StackTraces.Lookup(id, &st); err != nil {
			missing = append(missing, id) // collected meanwhile; the allocation shows stack id only
			continue
		}
		snap.Stacks[id] = toStack(&st)
	}
	if len(missing) > 0 {
		t.mu.Lock()
		for _, id := range missing {
			delete(t.handed, id)
		}
		t.mu.Unlock()
	}
}

// Stack returns one stack, if it is still stored.
func (t *Tracer) Stack(id uint64) (Stack, bool) {
	t.mu.Lock()
	s, ok := t.unwound.stacks[id]
	t.mu.Unlock()
	if ok {
		return s, true
	}
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

// removeMappings deletes the live mappings for which gone(tgid, created) is
// true, and the end-index entries that pointed at them, and returns the
// tgids it removed mappings of.
func (t *Tracer) removeMappings(gone func(pid uint32, created uint64) bool) (map[uint32]bool, error) {
	b := &t.buf
	var err error
	b.mkeys, b.mvals, err = readAll(t.objs.LiveMappings, b.mkeys, b.mvals)
	if err != nil {
		return nil, err
	}
	mkeys, mvals := b.mkeys, b.mvals
	var del []leakwatchMappingKey
	removed := make(map[uint32]bool)
	for i, k := range mkeys {
		if gone(k.Tgid, mvals[i].Ts) {
			del = append(del, k)
			removed[k.Tgid] = true
		}
	}
	if len(del) == 0 {
		return nil, nil
	}
	if err := deleteKeys(t.objs.LiveMappings, del); err != nil {
		return nil, err
	}
	// Ends of the processes touched whose start no longer exists.
	ekeys, evals, err := readAll[leakwatchMappingKey, uint64](t.objs.MappingEnds, nil, nil)
	if err != nil {
		return removed, err
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
	return removed, deleteKeys(t.objs.MappingEnds, delEnds)
}

// Sweep removes what lost events left behind — mappings and fault counters of
// processes that no longer exist — and frees stacks that nothing has
// referenced for two sweeps in a row. (Two, because a stack is stored a
// moment before the mapping that references it.) Run calls it every
// SweepInterval.
func (t *Tracer) Sweep() error {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	alive := t.aliveCache()
	removed, err := t.removeMappings(func(pid uint32, _ uint64) bool { return !alive(pid) })
	if len(removed) > 0 {
		// They no longer exist: they exited, their exit event was lost
		// or not yet acted on. The next Snapshot says so.
		t.mu.Lock()
		for pid := range removed {
			if !slices.Contains(t.sweptExited, pid) {
				t.sweptExited = append(t.sweptExited, pid)
			}
		}
		t.mu.Unlock()
	}
	if err != nil {
		return err
	}
	b := &t.buf
	b.fkeys, b.fvals, err = readAll(t.objs.FaultSamples, b.fkeys, b.fvals)
	if err != nil {
		return err
	}
	t.mu.Lock()
	for _, k := range b.fkeys {
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

// collectStacks runs under readMu, right after Sweep read both maps.
func (t *Tracer) collectStacks() error {
	b := &t.buf
	var err error
	b.mkeys, b.mvals, err = readAll(t.objs.LiveMappings, b.mkeys, b.mvals)
	if err != nil {
		return err
	}
	used := make(map[uint64]struct{}, len(b.mvals)+len(b.fkeys))
	for _, v := range b.mvals {
		used[v.StackId] = struct{}{}
	}
	for _, k := range b.fkeys {
		used[k.StackId] = struct{}{}
	}
	t.mu.Lock()
	t.kernelStacksUsed(used)
	t.mu.Unlock()

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
