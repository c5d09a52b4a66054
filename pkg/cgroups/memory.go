package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrGone matches errors about a cgroup (or process) that was removed while
// it was being read.
var ErrGone = errors.New("cgroup is gone")

// ErrNoController matches errors about a v2 cgroup whose parent does not
// enable the memory controller for it, so it has no memory files. The
// kernel never reports such a cgroup as a memory cgroup id: its tasks are
// charged to the nearest ancestor that has the controller.
var ErrNoController = errors.New("memory controller not enabled")

// v1Unlimited: v1 reports "no limit" as the largest page-aligned signed
// value (9223372036854771712 with 4 KiB pages, a little less with larger
// pages). Nothing real comes close to 2^62 bytes.
const v1Unlimited = 1 << 62

// MemoryStats is a snapshot of one cgroup's memory, in bytes, descendants
// included.
type MemoryStats struct {
	// Usage is what the cgroup is charged for: memory.current (v2) or
	// memory.usage_in_bytes (v1). Kernel memory is included on both.
	Usage uint64
	// Anon is anonymous memory (heaps, stacks, private mappings), shmem
	// excluded on v1 and v2.
	Anon uint64
	// File is page cache, shmem and tmpfs included.
	File uint64
	// Kernel is kernel memory that reclaim cannot free. On v2: unreclaimable
	// slab, kernel stacks, page tables and per-cpu memory. On v1 the kernel
	// does not split slab, so this is all charged kernel memory
	// (memory.kmem.usage_in_bytes), reclaimable slab included, and 0 where
	// kernel memory accounting is off.
	Kernel uint64
	// Shmem is shared memory and tmpfs, a part of File.
	Shmem uint64
	// WorkingSet is Usage minus inactive page cache, as cAdvisor's
	// container_memory_working_set_bytes.
	WorkingSet uint64
	// Limit is the cgroup's own hard limit; 0 means unlimited.
	Limit uint64
	// EffectiveLimit is the smallest hard limit of the cgroup and its
	// ancestors, the one whose excess fires the OOM killer; 0 means
	// unlimited all the way up.
	EffectiveLimit uint64
	// PageFaults and MajorPageFaults are cumulative counts.
	PageFaults      uint64
	MajorPageFaults uint64
	// OOMEvents counts the times the cgroup hit its limit and the OOM killer
	// was invoked (v2 memory.events "oom"). v1 does not count these, so
	// there it equals OOMKills.
	OOMEvents uint64
	// OOMKills counts processes the OOM killer killed in the cgroup
	// (v2 memory.events "oom_kill", v1 memory.oom_control "oom_kill").
	OOMKills uint64
}

// LeakSignal is the memory a leak can hold: anonymous memory, shared
// memory (shmem, tmpfs, memfd) and unreclaimable kernel memory. Page cache
// is left out because reclaim frees it under pressure, so its growth is no
// sign of a leak; shared memory is not page cache reclaim can drop (only
// swap can take it), and it is where some runtimes keep their heap: a JVM
// with ZGC maps its heap from a memfd, so a ZGC heap's leak grew usage by
// 424 MiB in an hour and anon + kernel by 22 MiB (test/corpus/real/second).
func (s MemoryStats) LeakSignal() uint64 {
	return s.Anon + s.Shmem + s.Kernel
}

// MemoryReader reads the memory statistics of cgroups of one hierarchy,
// one collection round's worth: it reuses one buffer for all the files it
// reads, and reads the limit of each ancestor once, however many cgroups
// below it are read. Limits change at runtime, so take a new reader for
// each round. A MemoryReader is not safe for concurrent use.
type MemoryReader struct {
	h   Hierarchy
	buf []byte
	// files holds cgroup files open across rounds; nil: each read opens
	// and closes its file.
	files *OpenFiles
	// limits maps a cgroup path to the smallest limit of that cgroup and
	// its ancestors below the root (0: none), as read by this reader.
	limits map[string]uint64
	// noKmem is set once the v1 root turned out to have no
	// memory.kmem.usage_in_bytes (kernel memory accounting off or gone).
	noKmem bool
}

// readBufSize holds any memory file in one read: v2 memory.stat, the
// largest, is about 2 KiB.
const readBufSize = 8 << 10

// maxFileSize bounds what a reader reads of one file.
const maxFileSize = 1 << 20

// NewMemoryReader returns a reader for one collection round.
func (h Hierarchy) NewMemoryReader() *MemoryReader {
	return &MemoryReader{h: h, buf: make([]byte, readBufSize)}
}

// ReadMemory reads the memory statistics of the cgroup at path, as
// [MemoryReader.Read] does with a reader of its own. To read many cgroups,
// use one [MemoryReader].
func (h Hierarchy) ReadMemory(path string) (MemoryStats, error) {
	return h.NewMemoryReader().Read(path)
}

// Read reads the memory statistics of the cgroup at path (relative to the
// hierarchy root, as in Group.Path). The error matches ErrGone when the
// cgroup is removed before or during the read, and ErrNoController for a v2
// cgroup without memory files. The v2 root cgroup has no memory.current,
// memory.max or memory.events: its Usage, WorkingSet, limits and OOM counts
// read 0.
//
// It reads memory.stat, memory.usage_in_bytes, memory.limit_in_bytes,
// memory.kmem.usage_in_bytes and memory.oom_control on v1; memory.stat,
// memory.current, memory.max and memory.events on v2, plus the limit file
// of ancestors the reader has not read yet where the kernel does not give
// the effective limit (v2, and v1 kernels older than 2.6.31).
func (r *MemoryReader) Read(path string) (MemoryStats, error) {
	path, dir, err := r.h.abs(path)
	if err != nil {
		return MemoryStats{}, err
	}
	var s MemoryStats
	switch r.h.Version {
	case V1:
		s, err = r.readV1(path, dir)
	case V2:
		s, err = r.readV2(path, dir)
	default:
		err = fmt.Errorf("unsupported cgroup version %d", int(r.h.Version))
	}
	if err != nil {
		if errors.Is(err, ErrGone) && r.h.Version == V2 && exists(dir) {
			err = fmt.Errorf("%w: no memory files in %s", ErrNoController, dir)
		}
		return MemoryStats{}, fmt.Errorf("reading memory of cgroup %s: %w", path, err)
	}
	return s, nil
}

func (r *MemoryReader) readV1(path, dir string) (MemoryStats, error) {
	g := r.open(path, dir)
	defer g.close()
	st, err := readFile(g, "memory.stat", parseMemoryKeys)
	if err != nil {
		return MemoryStats{}, err
	}
	s := MemoryStats{
		Anon:            st.totalRSS,
		File:            st.totalCache,
		Shmem:           st.totalShmem,
		PageFaults:      st.totalPgfault,
		MajorPageFaults: st.totalPgmajfault,
	}
	if s.Usage, err = readFile(g, "memory.usage_in_bytes", parseValue); err != nil {
		return MemoryStats{}, err
	}
	limit, err := readFile(g, "memory.limit_in_bytes", parseValue)
	if err != nil {
		return MemoryStats{}, err
	}
	s.Limit = v1Limit(limit)
	if s.Kernel, err = r.v1Kernel(g); err != nil {
		return MemoryStats{}, err
	}
	oom, err := readFile(g, "memory.oom_control", parseMemoryKeys)
	if err != nil {
		return MemoryStats{}, err
	}
	s.OOMKills = oom.oomKill
	s.OOMEvents = s.OOMKills
	s.WorkingSet = subFloor(s.Usage, st.totalInactiveFile)
	s.EffectiveLimit = v1Limit(st.hierLimit)
	if !st.hasHierLimit {
		if s.EffectiveLimit, err = r.effectiveLimit(path, s.Limit, "memory.limit_in_bytes"); err != nil {
			return MemoryStats{}, err
		}
	}
	return s, nil
}

// HasProcesses says whether the cgroup at path has processes of its own
// (its cgroup.procs is not empty), reading at most one pid's worth. The
// error matches ErrGone when the cgroup is gone.
func (r *MemoryReader) HasProcesses(path string) (bool, error) {
	path, dir, err := r.h.abs(path)
	if err != nil {
		return false, err
	}
	g := r.open(path, dir)
	defer g.close()
	// One pid is enough to know.
	b, err := g.readUpTo("cgroup.procs", 32)
	if err != nil {
		return false, wrapGone(path, err)
	}
	return len(b) > 0, nil
}

// v1Kernel reads memory.kmem.usage_in_bytes, 0 on kernels without it.
func (r *MemoryReader) v1Kernel(g *openGroup) (uint64, error) {
	const file = "memory.kmem.usage_in_bytes"
	if r.noKmem {
		return 0, nil
	}
	v, err := readFile(g, file, parseValue)
	if errors.Is(err, fs.ErrNotExist) && !exists(filepath.Join(r.h.Dir, file)) {
		r.noKmem = true
		return 0, nil
	}
	return v, err
}

func (r *MemoryReader) readV2(path, dir string) (MemoryStats, error) {
	g := r.open(path, dir)
	defer g.close()
	// memory.stat first: where it is missing, so is the controller (or
	// the cgroup), and the caller is told which.
	st, err := readFile(g, "memory.stat", parseMemoryKeys)
	if err != nil {
		return MemoryStats{}, err
	}
	s := MemoryStats{
		Anon:            st.anon,
		File:            st.file,
		Kernel:          st.slabUnreclaimable + st.kernelStack + st.pagetables + st.secPagetables + st.percpu,
		Shmem:           st.shmem,
		PageFaults:      st.pgfault,
		MajorPageFaults: st.pgmajfault,
	}
	// The root has none of the other files; below it, a missing file means
	// the cgroup went away after memory.stat was read.
	rootOnly := func(err error) error {
		if path == "/" && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if s.Usage, err = readFile(g, "memory.current", parseValue); rootOnly(err) != nil {
		return MemoryStats{}, err
	}
	limit, err := readFile(g, "memory.max", parseValue)
	if rootOnly(err) != nil {
		return MemoryStats{}, err
	}
	s.Limit = v2Limit(limit)
	oom, err := readFile(g, "memory.events", parseMemoryKeys)
	if rootOnly(err) != nil {
		return MemoryStats{}, err
	}
	s.OOMEvents, s.OOMKills = oom.oom, oom.oomKill
	s.WorkingSet = subFloor(s.Usage, st.inactiveFile)
	if s.EffectiveLimit, err = r.effectiveLimit(path, s.Limit, "memory.max"); err != nil {
		return MemoryStats{}, err
	}
	return s, nil
}

// effectiveLimit folds into own (0: none) the limits of path's ancestors
// below the root.
func (r *MemoryReader) effectiveLimit(path string, own uint64, file string) (uint64, error) {
	if path == "/" {
		return own, nil
	}
	up, err := r.chainLimit(filepath.Dir(path), file)
	if err != nil {
		return 0, err
	}
	return minLimit(own, up), nil
}

// chainLimit is the smallest limit of cgroup p and its ancestors below the
// root (0: none). Each cgroup's limit file is read once per reader, so the
// siblings of a round share their ancestors' reads. The root has no limit
// file, and neither has a v2 cgroup whose parent does not enable the memory
// controller for it; both count as unlimited.
func (r *MemoryReader) chainLimit(p, file string) (uint64, error) {
	if p == "/" {
		return 0, nil
	}
	if v, ok := r.limits[p]; ok {
		return v, nil
	}
	dir := filepath.Join(r.h.Dir, p)
	g := r.open(p, dir)
	own, err := readFile(g, file, parseValue)
	g.close()
	switch {
	case errors.Is(err, fs.ErrNotExist) && exists(dir):
		own = 0
	case err != nil:
		return 0, err
	case own >= v1Unlimited:
		own = 0
	}
	up, err := r.chainLimit(filepath.Dir(p), file)
	if err != nil {
		return 0, err
	}
	v := minLimit(own, up)
	if r.limits == nil {
		r.limits = make(map[string]uint64)
	}
	r.limits[p] = v
	return v, nil
}

// openGroup is one cgroup being read: its directory, opened when a file
// must be and then held while the others are read (the kernel finds each
// file in it rather than walking the whole path), and its held files where
// the reader keeps them.
type openGroup struct {
	r    *MemoryReader
	fd   int        // the directory (O_PATH), -1 until needed
	path string     // cgroup path, for ErrGone
	dir  string     // directory, for messages
	held *heldGroup // its held files, once one is read
}

// open begins the reading of a cgroup; its directory is opened when a file
// must be, so a cgroup read wholly through held files opens nothing.
func (r *MemoryReader) open(path, dir string) *openGroup {
	return &openGroup{r: r, fd: -1, path: path, dir: dir}
}

func (g *openGroup) close() {
	if g.fd >= 0 {
		closeFD(g.fd)
	}
}

// openFile opens the file name of g, and g's directory first if needed.
func (g *openGroup) openFile(name string) (int, error) {
	if g.fd < 0 {
		fd, err := openat(unix.AT_FDCWD, g.dir, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: g.dir, Err: err}
		}
		g.fd = fd
	}
	fd, err := openat(g.fd, name, unix.O_RDONLY)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: filepath.Join(g.dir, name), Err: err}
	}
	return fd, nil
}

// readFile reads the file name of g and parses it. Errors name the file,
// and match ErrGone when the file (and so, mostly, the cgroup) is gone.
func readFile[T any](g *openGroup, name string, parse func([]byte) (T, error)) (T, error) {
	b, err := g.read(name)
	if err != nil {
		var zero T
		return zero, wrapGone(g.path, err)
	}
	v, err := parse(b)
	if err != nil {
		return v, fmt.Errorf("parsing %s: %w", filepath.Join(g.dir, name), err)
	}
	return v, nil
}

// read returns the content of the file name of g in the reader's buffer,
// valid until the next read. A held file is read again from its start; one
// that reports its cgroup removed (the path may now name a new cgroup) has
// its group's files closed, and is opened afresh.
func (g *openGroup) read(name string) ([]byte, error) {
	return g.readUpTo(name, maxFileSize)
}

// readUpTo is read of at most limit bytes of the file.
func (g *openGroup) readUpTo(name string, limit int) ([]byte, error) {
	slot := -1
	if g.r.files != nil {
		if slot = heldSlot(name); slot >= 0 && g.held == nil {
			g.held = g.r.files.group(g.path)
			if g.held == nil {
				slot = -1 // over the bound
			}
		}
	}
	if slot >= 0 && g.held.fds[slot] >= 0 {
		b, err := g.r.readAll(g.held.fds[slot], g.dir, name, limit)
		if err == nil || !isGoneErr(err) {
			return b, err
		}
		g.held.closeAll()
	}
	fd, err := g.openFile(name)
	if err != nil {
		return nil, err
	}
	if slot >= 0 {
		g.held.fds[slot] = fd
	} else {
		defer closeFD(fd)
	}
	return g.r.readAll(fd, g.dir, name, limit)
}

// readAll reads the open file fd from its start, at most limit bytes (a
// file longer than maxFileSize is an error). A cgroup file gives all it has
// to the first read that has room for it, so a file takes one read: a short
// read is the end (as it is for the regular files of fixture trees).
func (r *MemoryReader) readAll(fd int, dir, name string, limit int) ([]byte, error) {
	buf := r.buf
	if limit < len(buf) {
		buf = buf[:limit]
	}
	n := 0
	for {
		m, err := unix.Pread(fd, buf[n:], int64(n))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: filepath.Join(dir, name), Err: err}
		}
		n += m
		if m == 0 || n < len(buf) || n >= limit && limit < maxFileSize {
			return buf[:n], nil
		}
		if len(buf) >= maxFileSize {
			return nil, fmt.Errorf("reading %s: larger than %d bytes", filepath.Join(dir, name), maxFileSize)
		}
		buf = append(buf, make([]byte, len(buf))...)
		r.buf = buf
	}
}

func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// closeFD closes a descriptor only read from, which cannot lose data.
func closeFD(fd int) { _ = unix.Close(fd) }

func v1Limit(v uint64) uint64 {
	if v >= v1Unlimited {
		return 0
	}
	return v
}

// v2Limit maps "max" (math.MaxUint64) to 0.
func v2Limit(v uint64) uint64 {
	if v == math.MaxUint64 {
		return 0
	}
	return v
}

// minLimit is the smaller of two limits, where 0 means none.
func minLimit(a, b uint64) uint64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

func subFloor(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// goneError wraps the error that showed a cgroup to be gone. It matches
// ErrGone and, through Unwrap, the underlying error (often fs.ErrNotExist).
type goneError struct {
	path string
	err  error
}

func (e *goneError) Error() string        { return "cgroup " + e.path + " is gone: " + e.err.Error() }
func (e *goneError) Unwrap() error        { return e.err }
func (e *goneError) Is(target error) bool { return target == ErrGone }

// wrapGone marks err as ErrGone when it says the cgroup disappeared:
// ENOENT for files and directories, ENODEV for files of a cgroup removed
// while open, ESRCH for a /proc entry of an exited process.
func wrapGone(path string, err error) error {
	if err == nil || !isGoneErr(err) {
		return err
	}
	return &goneError{path: path, err: err}
}

func isGoneErr(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ESRCH)
}
