// Package profile turns what the tracer records into per-container pprof
// profiles, in the Go heap tradition: inuse_objects/inuse_space
// (outstanding anonymous mappings and heap by allocating stack) and
// faulted_space (sampled page-fault bytes by faulting stack), each sample
// labelled with pid and comm.
//
// inuse_space is committed memory: private anonymous mappings, heap grown by
// brk and reservations made accessible by mprotect, counted whole whether or
// not a page of them was ever touched (a VM's committed heap, a glibc arena
// that gave pages back with MADV_DONTNEED). inuse_resident_space, present in
// a current inuse profile when the caller supplies it (Meta.Resident), is the
// part of those bytes resident in RAM when the profile was built.
// faulted_space is bytes faulted in (a read of never-written memory and the
// write after it count twice: docs/architecture.md). With a window
// (?seconds=N) a profile is the growth over the last N seconds, as Go's
// /debug/pprof/heap?seconds=N, so a
// leak is not drowned by what the container allocated at start. Unlike Go's,
// no figure is negative: inuse_* hold what grew, and memory released in the
// window has its own released_objects/released_space; a process that exited
// in the window counts up to its exit, its memory not taken as released.
//
// Store keeps the data (bounded); Build makes a profile, symbolizing on
// demand through a Resolver, so nothing is symbolized unless asked for.
package profile

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/google/pprof/profile"
)

// Mapping is a region of a process's address space backed by a file.
type Mapping struct {
	Start, Limit, Offset uint64
	File                 string // as the process sees it
	BuildID              string
	Executable           bool
}

// Frame is one function at a location; a location has several when
// functions were inlined into it.
type Frame struct {
	Function string
	File     string
	Line     int64
}

// Location is a resolved address. Frames is empty when no symbol is known:
// the address stays as it is, nothing is made up.
type Location struct {
	Address uint64
	Mapping *Mapping
	Frames  []Frame // innermost first
}

// Resolver symbolizes addresses of one process, identified by pid and start
// time. pkg/symbolize implements it.
type Resolver interface {
	Resolve(pid uint32, startTime uint64, addrs []uint64) ([]Location, error)
	// SkippedCaller reports whether a stack's leaf-return hint ret is
	// provably the return address of the call into the function at leaf,
	// the caller that the frame-pointer walk skipped; false when that
	// cannot be shown.
	SkippedCaller(pid uint32, startTime uint64, leaf, ret uint64) bool
}

// Meta describes the profile being built.
type Meta struct {
	Container string // a name for the container, in comments
	Cgroup    string
	Now       time.Time
	// FaultSampleBytes is the tracer's sampling distance, the period of a
	// faults profile.
	FaultSampleBytes uint64
	// Resident is the resident part of each stack's inuse bytes, read when
	// the profile is built; nil leaves inuse_resident_space out. Used only
	// for a current inuse profile (window 0): residency has no history.
	Resident map[ResidentKey]int64
	// InuseSince is when the tracer began tracing mappings (its full
	// tier), if it did after the tracer started: an inuse profile holds
	// only what was mapped since, and says so. Zero: from the start.
	InuseSince time.Time
}

// ResidentKey names one stack of one process (pid and start time, as the
// tracer and /proc name it) in Meta.Resident.
type ResidentKey struct {
	PID       uint32
	StartTime uint64
	Stack     uint64
}

// ErrWindow reports a window longer than the history kept.
var ErrWindow = errors.New("window exceeds the history kept")

// allocatorFrames match functions that only pass an allocation on: the
// runtime's and libc's allocators and syscall wrappers, cgo's trampolines
// (a cgo-built Go binary maps its heap through x_cgo_mmap), and memory
// fills.
// They are trimmed from the innermost end of a stack (never the whole
// stack), so a profile's flat view names the code that asked for memory,
// as Go's heap profiles hide runtime.mallocgc.
var allocatorFrames = regexp.MustCompile(`^(runtime\.|runtime/internal/|internal/runtime/|` +
	`(__)?(libc_)?(malloc|calloc|realloc|reallocarray|memalign|posix_memalign|aligned_alloc|valloc|pvalloc)$|` +
	`_int_(malloc|realloc|memalign)$|sysmalloc$|tcache_init$|` +
	`(__)?(GI___)?(mmap|mmap64|mremap|mprotect|brk|sbrk)$|` +
	`(__)?(memset|memcpy|memmove)(_[a-z0-9_]+)?$|` +
	`x_cgo_|_cgo_|crosscall|operator new|je_|tc_|mi_)`)

type sampleKey struct {
	pid    uint32
	starts uint64
	stack  uint64
}

// sampleVal is what one process's stack shows: what it holds (or grew by,
// in a window) and, in an inuse window, what it released; both are never
// negative.
type sampleVal struct {
	bytes, count       int64
	relBytes, relCount int64
	exited             bool
}

// Build makes the profile of one memory cgroup. window 0 is the current
// state (inuse) or everything since the tracer started (faults); otherwise
// the change over the last window.
func (s *Store) Build(memcg uint64, typ Type, window time.Duration, res Resolver, meta Meta) (*profile.Profile, error) {
	return s.build(memcg, nil, typ, window, res, meta)
}

// BuildImage is Build restricted to the program one process of the cgroup
// runs, named by pid, the kernel's start time of it (ns since boot) and its
// exec generation: an OOM kill's victim, apart from earlier processes with
// the same pid or in the same cgroup, and from what it faulted before its
// exec (a shell's start-up), which its memory at the kill did not hold.
// Mappings need no such filter: the tracer drops them at an exec.
func (s *Store) BuildImage(memcg uint64, img Image, typ Type, window time.Duration, res Resolver, meta Meta) (*profile.Profile, error) {
	return s.build(memcg, &img, typ, window, res, meta)
}

// startTolerance is how far a process start time read from /proc (clock
// ticks of 10 ms, on the boot clock) may lie from the kernel's own.
const startTolerance = 20 * time.Millisecond

// isImage says whether a key belongs to img. An unknown start time
// (0: the process was gone before /proc could be read) matches any.
func isImage(k key, img Image) bool {
	if k.pid != img.PID || (k.typ == Faults && k.exec != img.ExecID) {
		return false
	}
	d := int64(k.starts) - int64(img.StartTime)
	return k.starts == 0 || img.StartTime == 0 || (d > -int64(startTolerance) && d < int64(startTolerance))
}

func (s *Store) build(memcg uint64, only *Image, typ Type, window time.Duration, res Resolver, meta Meta) (*profile.Profile, error) {
	if window > s.cfg.Horizon {
		return nil, fmt.Errorf("%w: %v asked, %v kept", ErrWindow, window, s.cfg.Horizon)
	}
	samples, stacks, comms := s.collect(memcg, only, typ, window)

	b := newBuilder(res)
	p := &profile.Profile{
		TimeNanos: meta.Now.UnixNano(),
		Comments: []string{
			"leakwatch profile of " + meta.Container + " (cgroup " + meta.Cgroup + ")",
		},
	}
	released := typ == Inuse && window > 0
	resident := meta.Resident
	if typ != Inuse || window > 0 {
		resident = nil
	}
	switch typ {
	case Inuse:
		p.SampleType = []*profile.ValueType{{Type: "inuse_objects", Unit: "count"}, {Type: "inuse_space", Unit: "bytes"}}
		if released {
			// Before inuse_*: the default sample type stays last, where
			// pprof (and Go's heap profiles) put it.
			p.SampleType = append([]*profile.ValueType{{Type: "released_objects", Unit: "count"}, {Type: "released_space", Unit: "bytes"}}, p.SampleType...)
		}
		p.DefaultSampleType = "inuse_space"
		p.PeriodType = &profile.ValueType{Type: "space", Unit: "bytes"}
		p.Period = 1
		p.Comments = append(p.Comments, "inuse_objects, inuse_space: committed ranges and bytes (mapped, heap grown, reservations made accessible), touched or not")
		if !meta.InuseSince.IsZero() {
			p.Comments = append(p.Comments, fmt.Sprintf("covers mappings made since %s (%v before this profile), when the tracer escalated to its full tier; what was mapped before is not in it",
				meta.InuseSince.UTC().Format(time.RFC3339), meta.Now.Sub(meta.InuseSince).Truncate(time.Second)))
		}
		if resident != nil {
			// Before inuse_*, as released_* are: inuse_space stays last.
			p.SampleType = append([]*profile.ValueType{{Type: "inuse_resident_space", Unit: "bytes"}}, p.SampleType...)
			p.Comments = append(p.Comments, "inuse_resident_space: the bytes of those resident in RAM when this profile was built (Rss per tracked range from /proc/PID/smaps)")
		}
	case Faults:
		p.SampleType = []*profile.ValueType{{Type: "faulted_samples", Unit: "count"}, {Type: "faulted_space", Unit: "bytes"}}
		p.DefaultSampleType = "faulted_space"
		p.Comments = append(p.Comments, "faulted_samples, faulted_space: sampled page faults on anonymous memory and the bytes they stand for; a read of memory never written (the zero page, nothing charged) and the write after it are two faults for one page")
		p.PeriodType = &profile.ValueType{Type: "space", Unit: "bytes"}
		p.Period = int64(meta.FaultSampleBytes)
	default:
		return nil, fmt.Errorf("unknown profile type %q", typ)
	}
	if window > 0 {
		p.DurationNanos = int64(window)
		p.Comments = append(p.Comments, fmt.Sprintf("growth over the last %v; a process that exited in it counts up to its exit (label exited=true)", window))
		if released {
			p.Comments = append(p.Comments, "released_objects/released_space: what was unmapped or returned in the window, by the stack that had allocated it")
		}
	}

	keys := make([]sampleKey, 0, len(samples))
	for k := range samples {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].pid != keys[j].pid {
			return keys[i].pid < keys[j].pid
		}
		return keys[i].stack < keys[j].stack
	})
	// A process's samples share its label maps (nothing writes to them once
	// built): with thousands of stacks, maps per sample were most of the
	// garbage of a build.
	type labels struct {
		str map[string][]string
		num map[string][]int64
	}
	type procKey struct {
		pid    uint32
		starts uint64
	}
	byProc := make(map[procKey]labels)
	p.Sample = make([]*profile.Sample, 0, len(keys))
	n := len(p.SampleType)
	values := make([]int64, n*len(keys))
	for i, k := range keys {
		v := samples[k]
		locs := b.locations(k, stacks[k.stack])
		l, ok := byProc[procKey{k.pid, k.starts}]
		if !ok {
			l = labels{map[string][]string{"comm": {comms[k.pid]}}, map[string][]int64{"pid": {int64(k.pid)}}}
			if v.exited {
				l.str["exited"] = []string{"true"}
			}
			byProc[procKey{k.pid, k.starts}] = l
		}
		val := values[n*i : n*i+n : n*i+n]
		val[n-2], val[n-1] = v.count, v.bytes
		if released {
			val[0], val[1] = v.relCount, v.relBytes
		}
		if resident != nil {
			val[0] = resident[ResidentKey{PID: k.pid, StartTime: k.starts, Stack: k.stack}]
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: locs, Value: val, Label: l.str, NumLabel: l.num})
	}
	p.Location, p.Mapping, p.Function = b.locs, b.maps, b.funcs
	if err := p.CheckValid(); err != nil {
		return nil, fmt.Errorf("building profile: %w", err)
	}
	return p, nil
}

// collect gathers the samples of one cgroup under the read lock.
func (s *Store) collect(memcg uint64, only *Image, typ Type, window time.Duration) (map[sampleKey]sampleVal, map[uint64]stackFrames, map[uint32]string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	since := s.now - int64(window/s.cfg.Step)
	samples := make(map[sampleKey]sampleVal)
	stacks := make(map[uint64]stackFrames)
	comms := make(map[uint32]string)
	for k, sr := range s.keys {
		if k.memcg != memcg || k.typ != typ || (only != nil && !isImage(k, *only)) {
			continue
		}
		if window == 0 && typ == Inuse && sr.exited {
			continue // its memory went with it
		}
		var v sampleVal
		if window == 0 {
			v.bytes, v.count = sr.cur.bytes, sr.cur.count
		} else {
			v = growth(sr.cur, sr.at(since), typ)
		}
		if v == (sampleVal{}) {
			continue
		}
		sk := sampleKey{pid: k.pid, starts: k.starts, stack: k.stack}
		acc := samples[sk]
		acc.bytes += v.bytes
		acc.count += v.count
		acc.relBytes += v.relBytes
		acc.relCount += v.relCount
		acc.exited = acc.exited || sr.exited
		samples[sk] = acc
		if st, ok := s.stacks[k.stack]; ok {
			stacks[k.stack] = stackFrames{frames: st.Frames, leafReturn: st.LeafReturn, truncated: st.Truncated}
		}
		if p, ok := s.procs[k.pid]; ok && p.startTime == k.starts {
			comms[k.pid] = p.comm
		} else if _, ok := comms[k.pid]; !ok {
			comms[k.pid] = "?"
		}
	}
	return samples, stacks, comms
}

// growth splits the change of one key over a window into what grew and, for
// inuse, what was released, so that no figure is negative: a released
// mapping is not a negative allocation. Bytes and objects split apart (a
// window may unmap one large mapping and add two small ones). A cumulative
// faults count only falls if the kernel's counter restarted, which undoes
// no fault: such a fall is left out.
func growth(cur, old value, typ Type) sampleVal {
	var v sampleVal
	split := func(d int64) (grown, released int64) {
		if d >= 0 {
			return d, 0
		}
		return 0, -d
	}
	v.bytes, v.relBytes = split(cur.bytes - old.bytes)
	v.count, v.relCount = split(cur.count - old.count)
	if typ != Inuse {
		v.relBytes, v.relCount = 0, 0
	}
	return v
}

type stackFrames struct {
	frames     []uint64
	leafReturn uint64
	truncated  bool
}

// builder dedupes locations, functions and mappings while a profile is
// built, and resolves each process's addresses once.
type builder struct {
	res      Resolver
	resolved map[sampleKey]map[uint64]Location // per process (stack 0)
	hints    map[hintKey]bool
	locByKey map[locKey]*profile.Location
	fnByKey  map[fnKey]*profile.Function
	mapByKey map[mapKey]*profile.Mapping
	locs     []*profile.Location
	funcs    []*profile.Function
	maps     []*profile.Mapping
	unknown  *profile.Location
	// truncated ends stacks whose callers were not copied.
	truncated *profile.Location
}

func newBuilder(res Resolver) *builder {
	return &builder{
		res:      res,
		resolved: make(map[sampleKey]map[uint64]Location),
		hints:    make(map[hintKey]bool),
		locByKey: make(map[locKey]*profile.Location),
		fnByKey:  make(map[fnKey]*profile.Function),
		mapByKey: make(map[mapKey]*profile.Mapping),
	}
}

// locations returns the pprof locations of one stack of one process,
// innermost first, with the leaf-return hint applied and allocator frames
// trimmed.
func (b *builder) locations(k sampleKey, st stackFrames) []*profile.Location {
	if len(st.frames) == 0 {
		return []*profile.Location{b.unknownStack()}
	}
	addrs := st.frames
	if b.skippedCaller(k, st) {
		addrs = append([]uint64{addrs[0], st.leafReturn}, addrs[1:]...)
	}
	resolved := b.resolve(k, addrs)
	addrs = addrs[:walkedFrames(resolved, addrs)]
	locs := make([]*profile.Location, 0, len(addrs))
	for i, a := range addrs {
		locs = append(locs, b.location(k.pid, resolved[lookupAddr(a, i)], a))
	}
	// Trim allocator frames from the innermost end, keeping at least one.
	for len(locs) > 1 && isAllocator(locs[0]) {
		locs = locs[1:]
	}
	if st.truncated {
		locs = append(locs, b.truncatedStack())
	}
	return locs
}

// walkedFrames is how many of a stack's frames are callers that ran. A
// frame-pointer walk through code built without frame pointers (redis, most
// distribution C) reads whatever the register points at as the next frame:
// once it yields a word in no executable mapping of the process (a heap
// address, 0, a non-canonical value), it has left the stack, and every
// frame after is made up. That is known only when the process's mappings
// are (some frame lies in one); otherwise the stack is kept whole.
func walkedFrames(resolved map[uint64]Location, addrs []uint64) int {
	inCode := func(i int) bool {
		l := resolved[lookupAddr(addrs[i], i)]
		return l.Mapping != nil && l.Mapping.Executable
	}
	known := false
	for i := range addrs {
		if inCode(i) {
			known = true
			break
		}
	}
	if !known {
		return len(addrs)
	}
	for i := 1; i < len(addrs); i++ {
		if !inCode(i) {
			return i
		}
	}
	return len(addrs)
}

func isAllocator(l *profile.Location) bool {
	if len(l.Line) == 0 {
		return false
	}
	// The innermost function at the address decides: pprof lists a
	// location's inlined frames callee first.
	return allocatorFrames.MatchString(l.Line[0].Function.Name)
}

// skippedCaller reports whether a stack's leaf-return hint is to be
// inserted as its second frame: only where the resolver shows it is the
// return address of the innermost function's call. Anything else at the
// stack pointer (a saved register, a local, a stale slot) would add a
// frame that never ran. Answers are kept per process for the build, as
// many stacks share a leaf and its caller.
func (b *builder) skippedCaller(k sampleKey, st stackFrames) bool {
	if st.leafReturn == 0 || b.res == nil || (len(st.frames) > 1 && st.leafReturn == st.frames[1]) {
		return false
	}
	hk := hintKey{pid: k.pid, starts: k.starts, leaf: st.frames[0], ret: st.leafReturn}
	ok, seen := b.hints[hk]
	if !seen {
		ok = b.res.SkippedCaller(k.pid, k.starts, hk.leaf, hk.ret)
		b.hints[hk] = ok
	}
	return ok
}

// resolve symbolizes every address of one process once per profile.
func (b *builder) resolve(k sampleKey, addrs []uint64) map[uint64]Location {
	pk := sampleKey{pid: k.pid, starts: k.starts}
	m := b.resolved[pk]
	if m == nil {
		m = make(map[uint64]Location)
		b.resolved[pk] = m
	}
	var missing []uint64
	want := func(a uint64) {
		if _, ok := m[a]; !ok && a != 0 {
			m[a] = Location{Address: a}
			missing = append(missing, a)
		}
	}
	for i, a := range addrs {
		want(lookupAddr(a, i))
	}
	if len(missing) == 0 || b.res == nil {
		return m
	}
	locs, err := b.res.Resolve(k.pid, k.starts, missing)
	for i, a := range missing {
		if err == nil && i < len(locs) {
			m[a] = locs[i]
		} else {
			m[a] = Location{Address: a}
		}
	}
	return m
}

// lookupAddr is the address to symbolize for the i-th frame of a stack: a
// return address (every frame after the innermost) points just past its
// call instruction, which may be the first byte of the next function or
// line, so the byte before it is looked up.
func lookupAddr(addr uint64, i int) uint64 {
	if i > 0 && addr > 0 {
		return addr - 1
	}
	return addr
}

// Keys of the builder's dedup maps: comparable structs, so that a lookup per
// frame allocates nothing. A location is keyed by its file offset when it
// resolved to a function in a known file (one location across processes),
// else by process and address.
type (
	locKey struct {
		pid           uint32
		file, buildID string
		addr          uint64
	}
	fnKey   struct{ name, file string }
	hintKey struct {
		pid       uint32
		starts    uint64
		leaf, ret uint64
	}
	mapKey struct {
		pid   uint32
		start uint64
	}
)

func (b *builder) location(pid uint32, l Location, addr uint64) *profile.Location {
	var pm *profile.Mapping
	if l.Mapping != nil {
		pm = b.mapping(pid, l.Mapping)
	}
	key := locKey{pid: pid, addr: addr}
	if pm != nil && len(l.Frames) > 0 {
		// Same file, same address: one location across processes.
		key = locKey{file: l.Mapping.File, buildID: l.Mapping.BuildID, addr: addr - l.Mapping.Start + l.Mapping.Offset}
	}
	if loc, ok := b.locByKey[key]; ok {
		return loc
	}
	loc := &profile.Location{ID: uint64(len(b.locs) + 1), Address: addr, Mapping: pm}
	for _, f := range l.Frames {
		loc.Line = append(loc.Line, profile.Line{Function: b.function(f), Line: f.Line})
	}
	b.locByKey[key] = loc
	b.locs = append(b.locs, loc)
	return loc
}

func (b *builder) function(f Frame) *profile.Function {
	key := fnKey{f.Function, f.File}
	if fn, ok := b.fnByKey[key]; ok {
		return fn
	}
	fn := &profile.Function{ID: uint64(len(b.funcs) + 1), Name: f.Function, SystemName: f.Function, Filename: f.File}
	b.fnByKey[key] = fn
	b.funcs = append(b.funcs, fn)
	return fn
}

func (b *builder) mapping(pid uint32, m *Mapping) *profile.Mapping {
	key := mapKey{pid, m.Start}
	if pm, ok := b.mapByKey[key]; ok {
		return pm
	}
	pm := &profile.Mapping{
		ID: uint64(len(b.maps) + 1), Start: m.Start, Limit: m.Limit, Offset: m.Offset,
		File: m.File, BuildID: m.BuildID, HasFunctions: true,
	}
	b.mapByKey[key] = pm
	b.maps = append(b.maps, pm)
	return pm
}

// unknownStack is the one location of samples whose stack was not recorded
// (the kernel's stack map was full, or the walk failed); saying so is
// better than dropping their bytes.
// truncatedStack is the outermost location of a stack deeper than the copy
// of it that was unwound: its callers are missing.
func (b *builder) truncatedStack() *profile.Location {
	if b.truncated == nil {
		b.truncated = &profile.Location{ID: uint64(len(b.locs) + 1)}
		b.truncated.Line = []profile.Line{{Function: b.function(Frame{Function: TruncatedFrame})}}
		b.locs = append(b.locs, b.truncated)
	}
	return b.truncated
}

// TruncatedFrame names the location that ends a stack whose callers were
// beyond the copied stack window.
const TruncatedFrame = "[truncated: callers beyond the copied stack]"

func (b *builder) unknownStack() *profile.Location {
	if b.unknown == nil {
		b.unknown = &profile.Location{ID: uint64(len(b.locs) + 1)}
		b.unknown.Line = []profile.Line{{Function: b.function(Frame{Function: "[stack not recorded]"})}}
		b.locs = append(b.locs, b.unknown)
	}
	return b.unknown
}
