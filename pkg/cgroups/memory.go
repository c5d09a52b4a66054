package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/cgroups/v3/cgroup2"
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

// LeakSignal is the memory a leak can hold: anonymous plus unreclaimable
// kernel memory. Page cache is left out because reclaim frees it under
// pressure, so its growth is no sign of a leak.
func (s MemoryStats) LeakSignal() uint64 {
	return s.Anon + s.Kernel
}

// ReadMemory reads the memory statistics of the cgroup at path (relative to
// the hierarchy root, as in Group.Path). The error matches ErrGone when the
// cgroup is removed before or during the read, and ErrNoController for a v2
// cgroup without memory files. The v2 root cgroup has no memory.current or
// memory.max: its Usage, WorkingSet and limits read 0.
//
// The containerd cgroups library does the reading; it works on any
// directory, so fixture trees go through the same code as real hosts. It
// drops a few keys of memory.stat that leakwatch needs (v1 total_shmem; v2
// pagetables, sec_pagetables and percpu), so memory.stat is read once more
// for those. That second read comes last on purpose: on v2 the library
// turns missing files into zeros, and the second read is what notices a
// cgroup that vanished meanwhile.
func (h Hierarchy) ReadMemory(path string) (MemoryStats, error) {
	path, dir, err := h.abs(path)
	if err != nil {
		return MemoryStats{}, err
	}
	var s MemoryStats
	switch h.Version {
	case V1:
		s, err = h.readV1(path, dir)
	case V2:
		s, err = h.readV2(path, dir)
	default:
		err = fmt.Errorf("unsupported cgroup version %d", int(h.Version))
	}
	if err != nil {
		if errors.Is(err, ErrGone) && h.Version == V2 && exists(dir) {
			err = fmt.Errorf("%w: no memory files in %s", ErrNoController, dir)
		}
		return MemoryStats{}, fmt.Errorf("reading memory of cgroup %s: %w", path, err)
	}
	return s, nil
}

func (h Hierarchy) readV1(path, dir string) (MemoryStats, error) {
	// cgroup1.NewMemory appends "memory" to the root it is given, expecting
	// /sys/fs/cgroup/memory. Our hierarchy may sit elsewhere (a combined
	// "cpu,memory" mount, a fixture), so hand it h.Dir and step back out of
	// the "memory" it appends: the join is lexical.
	mc := cgroup1.NewMemory(h.Dir, cgroup1.IgnoreModules(h.v1MissingModules()...))
	var m v1stats.Metrics
	if err := mc.Stat(filepath.Join("..", path), &m); err != nil {
		return MemoryStats{}, wrapGone(path, err)
	}
	extra, err := readFlatKeyed(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return MemoryStats{}, wrapGone(path, err)
	}
	mem := m.GetMemory()
	s := MemoryStats{
		Usage:           mem.GetUsage().GetUsage(),
		Anon:            mem.GetTotalRSS(),
		File:            mem.GetTotalCache(),
		Kernel:          mem.GetKernel().GetUsage(),
		Shmem:           extra["total_shmem"],
		Limit:           v1Limit(mem.GetUsage().GetLimit()),
		EffectiveLimit:  v1Limit(mem.GetHierarchicalMemoryLimit()),
		PageFaults:      mem.GetTotalPgFault(),
		MajorPageFaults: mem.GetTotalPgMajFault(),
		OOMKills:        m.GetMemoryOomControl().GetOomKill(),
	}
	s.OOMEvents = s.OOMKills
	s.WorkingSet = subFloor(s.Usage, mem.GetTotalInactiveFile())
	if _, ok := extra["hierarchical_memory_limit"]; !ok {
		// Very old kernels: no hierarchical limit in memory.stat.
		if s.EffectiveLimit, err = h.effectiveLimit(path, s.Limit, "memory.limit_in_bytes"); err != nil {
			return MemoryStats{}, err
		}
	}
	return s, nil
}

// v1MissingModules names the optional v1 file groups this kernel lacks
// (memsw without swap accounting, kmem on kernels that dropped it), which
// the library must not try to read.
func (h Hierarchy) v1MissingModules() []string {
	var missing []string
	for _, mod := range []string{"memsw", "kmem", "kmem.tcp"} {
		if !exists(filepath.Join(h.Dir, "memory."+mod+".usage_in_bytes")) {
			missing = append(missing, mod)
		}
	}
	return missing
}

func (h Hierarchy) readV2(path, dir string) (MemoryStats, error) {
	mgr, err := cgroup2.Load(path, cgroup2.WithMountpoint(h.Dir))
	if err != nil {
		return MemoryStats{}, err
	}
	m, err := mgr.StatFiltered(cgroup2.StatMemory | cgroup2.StatMemoryEvents)
	if err != nil {
		return MemoryStats{}, wrapGone(path, err)
	}
	extra, err := readFlatKeyed(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return MemoryStats{}, wrapGone(path, err)
	}
	mem := m.GetMemory()
	s := MemoryStats{
		Usage: mem.GetUsage(),
		Anon:  mem.GetAnon(),
		File:  mem.GetFile(),
		Kernel: mem.GetSlabUnreclaimable() + mem.GetKernelStack() +
			extra["pagetables"] + extra["sec_pagetables"] + extra["percpu"],
		Shmem:           mem.GetShmem(),
		Limit:           v2Limit(mem.GetUsageLimit()),
		PageFaults:      mem.GetPgfault(),
		MajorPageFaults: mem.GetPgmajfault(),
		OOMEvents:       m.GetMemoryEvents().GetOom(),
		OOMKills:        m.GetMemoryEvents().GetOomKill(),
	}
	s.WorkingSet = subFloor(s.Usage, mem.GetInactiveFile())
	if s.EffectiveLimit, err = h.effectiveLimit(path, s.Limit, "memory.max"); err != nil {
		return MemoryStats{}, err
	}
	return s, nil
}

// effectiveLimit folds the limits of path's ancestors into own. The root
// cgroup has no limit file, and neither has a v2 cgroup whose parent does
// not enable the memory controller for it; both count as unlimited.
func (h Hierarchy) effectiveLimit(path string, own uint64, file string) (uint64, error) {
	limit := own
	for p := filepath.Dir(path); p != "/" && p != "."; p = filepath.Dir(p) {
		b, err := os.ReadFile(filepath.Join(h.Dir, p, file))
		if errors.Is(err, fs.ErrNotExist) && exists(filepath.Join(h.Dir, p)) {
			continue
		}
		if err != nil {
			return 0, wrapGone(path, err)
		}
		v, err := parseValue(b)
		if err != nil {
			return 0, fmt.Errorf("parsing %s of %s: %w", file, p, err)
		}
		if v >= v1Unlimited {
			continue
		}
		if limit == 0 || v < limit {
			limit = v
		}
	}
	return limit, nil
}

func v1Limit(v uint64) uint64 {
	if v >= v1Unlimited {
		return 0
	}
	return v
}

// v2Limit maps "max" (the library's math.MaxUint64) and a missing file (0)
// to 0.
func v2Limit(v uint64) uint64 {
	if v == math.MaxUint64 {
		return 0
	}
	return v
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
