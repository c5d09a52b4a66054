package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/leakwatch/leakwatch/pkg/mountinfo"
	"golang.org/x/sys/unix"
)

// DefaultRoot is where cgroup file systems are mounted on every mainstream
// distribution.
const DefaultRoot = "/sys/fs/cgroup"

// mountinfoPath lists the mounts of this process's mount namespace.
const mountinfoPath = "/proc/self/mountinfo"

// Marker files: present in every cgroup (the root included) of a hierarchy
// of the given kind, so a plain directory holding recorded files can be
// recognised the same way as a mounted cgroup file system.
const (
	v1MemoryMarker = "memory.limit_in_bytes"
	v2Marker       = "cgroup.controllers"
)

// Version is the cgroup version of the hierarchy that holds the memory
// controller.
type Version int

// Cgroup versions.
const (
	V1 Version = 1
	V2 Version = 2
)

func (v Version) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	default:
		return "unknown(" + strconv.Itoa(int(v)) + ")"
	}
}

// Layout says how the host mounts its cgroup file systems.
type Layout int

// Layouts.
const (
	// LayoutUnknown is reported by [Open], which is told the version and
	// does not look at the host.
	LayoutUnknown Layout = iota
	// LayoutUnified: a single cgroup2 file system at the root.
	LayoutUnified
	// LayoutLegacy: v1 hierarchies only.
	LayoutLegacy
	// LayoutHybrid: v1 hierarchies plus a cgroup2 file system (usually
	// <root>/unified); the memory controller is on either.
	LayoutHybrid
)

func (l Layout) String() string {
	switch l {
	case LayoutUnified:
		return "unified"
	case LayoutLegacy:
		return "legacy"
	case LayoutHybrid:
		return "hybrid"
	default:
		return "unknown"
	}
}

// Hierarchy is the cgroup hierarchy that holds the memory controller. Build
// it with [Detect] or [Open]. Copies share the id cache filled by
// [Hierarchy.Scan], so a Hierarchy can be passed by value.
type Hierarchy struct {
	// Dir is the directory of the hierarchy's root cgroup, for example
	// /sys/fs/cgroup (v2) or /sys/fs/cgroup/memory (v1).
	Dir string
	// Version is the cgroup version of the memory controller.
	Version Version
	// Layout is how the host mounts cgroups.
	Layout Layout

	idx *index
}

// index maps cgroup ids to paths as of the last successful Scan.
type index struct {
	mu   sync.RWMutex
	byID map[uint64]string
}

// Open returns the hierarchy rooted at dir with the given version, without
// looking at how the host mounts cgroups. It is meant for fixture trees and
// for hosts where the memory hierarchy is mounted somewhere unusual.
func Open(dir string, v Version) (Hierarchy, error) {
	marker := v2Marker
	switch v {
	case V1:
		marker = v1MemoryMarker
	case V2:
	default:
		return Hierarchy{}, fmt.Errorf("opening cgroup hierarchy %s: unsupported version %d", dir, int(v))
	}
	if !exists(filepath.Join(dir, marker)) {
		return Hierarchy{}, fmt.Errorf("opening cgroup %s hierarchy %s: %s not found; is this the root of a memory hierarchy?", v, dir, marker)
	}
	return newHierarchy(dir, v, LayoutUnknown), nil
}

// Detect finds the hierarchy that holds the memory controller under root
// ([DefaultRoot] when empty).
//
// File system magic numbers tell a mounted cgroup2 or v1 hierarchy; for other
// directories, such as fixture trees of recorded files, the files decide:
// cgroup.controllers means v2 and memory.limit_in_bytes means the v1 memory
// controller. A v1 memory hierarchy is looked for at <root>/memory and then
// in /proc/self/mountinfo (for combined mounts such as "cpu,memory"); a
// cgroup2 file system at <root> itself, at <root>/unified, or in mountinfo.
func Detect(root string) (Hierarchy, error) {
	if root == "" {
		root = DefaultRoot
	}
	root = filepath.Clean(root)
	magic, err := fsMagic(root)
	if err != nil {
		return Hierarchy{}, fmt.Errorf("detecting cgroup hierarchies under %s: %w", root, err)
	}

	switch {
	case magic == unix.CGROUP2_SUPER_MAGIC || (!isCgroupFS(magic) && exists(filepath.Join(root, v2Marker))):
		ok, err := hasController(root, "memory")
		if err != nil {
			return Hierarchy{}, fmt.Errorf("detecting cgroup hierarchies under %s: %w", root, err)
		}
		if !ok {
			return Hierarchy{}, fmt.Errorf("%w: cgroup2 at %s does not offer the memory controller (see %s/cgroup.controllers); "+
				"boot without cgroup_no_v1/cgroup_disable=memory or mount the v1 memory controller", ErrNoController, root, root)
		}
		return newHierarchy(root, V2, LayoutUnified), nil
	case magic == unix.CGROUP_SUPER_MAGIC || (!isCgroupFS(magic) && exists(filepath.Join(root, v1MemoryMarker))):
		// root is itself one v1 hierarchy, e.g. /sys/fs/cgroup/memory.
		if !exists(filepath.Join(root, v1MemoryMarker)) {
			return Hierarchy{}, fmt.Errorf("%w: %s is a cgroup v1 hierarchy without the memory controller; pass the memory hierarchy (usually %s/memory)", ErrNoController, root, DefaultRoot)
		}
		return newHierarchy(root, V1, LayoutLegacy), nil
	}

	// root is a directory (tmpfs on real hosts) holding one mount per
	// hierarchy.
	mounts, err := mountinfo.Read(mountinfoPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Hierarchy{}, fmt.Errorf("detecting cgroup hierarchies under %s: %w", root, err)
	}
	v1Dir := findV1Memory(root, mounts)
	v2Dir := findUnified(root, mounts)
	layout := LayoutLegacy
	if v2Dir != "" {
		layout = LayoutHybrid
	}
	if v1Dir != "" {
		return newHierarchy(v1Dir, V1, layout), nil
	}
	if v2Dir != "" {
		ok, err := hasController(v2Dir, "memory")
		if err != nil {
			return Hierarchy{}, fmt.Errorf("detecting cgroup hierarchies under %s: %w", root, err)
		}
		if ok {
			return newHierarchy(v2Dir, V2, LayoutHybrid), nil
		}
	}
	return Hierarchy{}, fmt.Errorf("%w: no memory cgroup controller mounted under %s; mount cgroup2 or the v1 memory controller", ErrNoController, root)
}

func newHierarchy(dir string, v Version, l Layout) Hierarchy {
	// Some distributions make <root>/memory a symlink to a combined mount;
	// the walk in Scan does not descend into a symlinked root.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return Hierarchy{Dir: filepath.Clean(dir), Version: v, Layout: l, idx: &index{}}
}

// findV1Memory returns the directory of the v1 memory hierarchy under root,
// or "".
func findV1Memory(root string, mounts []mountinfo.Mount) string {
	isV1Memory := func(dir string) bool {
		magic, err := fsMagic(dir)
		if err != nil {
			return false
		}
		return (magic == unix.CGROUP_SUPER_MAGIC || !isCgroupFS(magic)) && exists(filepath.Join(dir, v1MemoryMarker))
	}
	if dir := filepath.Join(root, "memory"); isV1Memory(dir) {
		return dir
	}
	for _, m := range mounts {
		if m.FSType == "cgroup" && m.Root == "/" && under(root, m.Point) &&
			slices.Contains(strings.Split(m.Options, ","), "memory") && isV1Memory(m.Point) {
			return m.Point
		}
	}
	return ""
}

// findUnified returns the directory of the cgroup2 file system of a hybrid
// layout under root, or "".
func findUnified(root string, mounts []mountinfo.Mount) string {
	isUnified := func(dir string) bool {
		magic, err := fsMagic(dir)
		if err != nil {
			return false
		}
		return magic == unix.CGROUP2_SUPER_MAGIC || (!isCgroupFS(magic) && exists(filepath.Join(dir, v2Marker)))
	}
	if dir := filepath.Join(root, "unified"); isUnified(dir) {
		return dir
	}
	for _, m := range mounts {
		if m.FSType == "cgroup2" && m.Root == "/" && under(root, m.Point) && isUnified(m.Point) {
			return m.Point
		}
	}
	return ""
}

// hasController reports whether the cgroup2 root at dir offers controller.
func hasController(dir, controller string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, v2Marker))
	if err != nil {
		return false, fmt.Errorf("reading controllers: %w", err)
	}
	return slices.Contains(strings.Fields(string(b)), controller), nil
}

func fsMagic(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return int64(st.Type), nil //nolint:unconvert // int32 on some architectures
}

func isCgroupFS(magic int64) bool {
	return magic == unix.CGROUP_SUPER_MAGIC || magic == unix.CGROUP2_SUPER_MAGIC
}

// under reports whether path is dir or below it.
func under(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
