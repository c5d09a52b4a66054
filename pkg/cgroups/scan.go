package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxGroups bounds a Scan. Real nodes hold a few thousand cgroups at most;
// far more means a runaway creator, and walking it would stall the agent.
const MaxGroups = 100_000

// ErrTooManyGroups is returned by Scan when the hierarchy holds more than
// MaxGroups cgroups.
var ErrTooManyGroups = errors.New("too many cgroups")

// Group is one cgroup of the memory hierarchy.
type Group struct {
	// ID is the inode number of the cgroup's directory, which is the
	// kernfs id the kernel reports for the cgroup.
	ID uint64
	// Path is relative to the hierarchy root and starts with "/"; the root
	// cgroup is "/".
	Path string
}

// Scan walks the hierarchy and returns every cgroup in it, the root first
// and parents before children, siblings by name. Cgroups removed during
// the walk are left out. A successful Scan replaces the cache that Lookup
// reads. With more than MaxGroups cgroups Scan returns the first MaxGroups
// and an error matching ErrTooManyGroups, and leaves the cache as it was.
//
// The agent scans every collection round, so the walk is the kernel's
// listing and little else: each directory is read with getdents, and on
// cgroupfs the listing's inode number is the cgroup id, so no cgroup is
// stat'ed (see dirWalker).
func (h Hierarchy) Scan() ([]Group, error) {
	w := dirWalker{groups: make([]Group, 0, 64), buf: make([]byte, 8<<10)}
	walkErr := w.walkRoot(h)
	if walkErr != nil {
		return w.groups, fmt.Errorf("scanning cgroups under %s: %w", h.Dir, walkErr)
	}
	groups := w.groups
	if h.idx != nil {
		byID := make(map[uint64]string, len(groups))
		for _, g := range groups {
			byID[g.ID] = g.Path
		}
		h.idx.mu.Lock()
		h.idx.byID = byID
		h.idx.mu.Unlock()
	}
	return groups, nil
}

// Lookup returns the cgroup with the given id as of the last successful
// Scan. An id first seen after that Scan is not found until the next one.
func (h Hierarchy) Lookup(id uint64) (Group, bool) {
	if h.idx == nil {
		return Group{}, false
	}
	h.idx.mu.RLock()
	defer h.idx.mu.RUnlock()
	p, ok := h.idx.byID[id]
	return Group{ID: id, Path: p}, ok
}

// ID returns the id of the cgroup at path (relative to the hierarchy root).
// The error matches ErrGone when the cgroup does not exist.
func (h Hierarchy) ID(path string) (uint64, error) {
	_, dir, err := h.abs(path)
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, wrapGone(path, &os.PathError{Op: "stat", Path: dir, Err: err})
	}
	return st.Ino, nil
}

// PathOf returns the path, relative to the hierarchy root, of the memory
// cgroup of process pid, as /proc/<pid>/cgroup shows it. The agent must run
// in the host's cgroup namespace for this path to match Scan's paths. The
// error matches ErrGone when the process has exited.
func (h Hierarchy) PathOf(pid int) (string, error) {
	file := filepath.Join("/proc", strconv.Itoa(pid), "cgroup")
	b, err := os.ReadFile(file)
	if err != nil {
		return "", wrapGone(file, err)
	}
	p, ok := memoryPathFromProcCgroup(string(b), h.Version)
	if !ok {
		return "", fmt.Errorf("no %s memory cgroup in %s", h.Version, file)
	}
	return p, nil
}

// memoryPathFromProcCgroup picks the memory controller's line out of a
// /proc/<pid>/cgroup file: "hierarchy-ID:controller-list:path" per line,
// where v2 is the line "0::path".
func memoryPathFromProcCgroup(data string, v Version) (string, bool) {
	for line := range strings.Lines(data) {
		id, rest, ok := strings.Cut(strings.TrimRight(line, "\n"), ":")
		if !ok {
			continue
		}
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok || !strings.HasPrefix(path, "/") {
			continue
		}
		switch v {
		case V2:
			if id == "0" && controllers == "" {
				return path, true
			}
		case V1:
			for c := range strings.SplitSeq(controllers, ",") {
				if c == "memory" {
					return path, true
				}
			}
		}
	}
	return "", false
}

// abs checks a cgroup path and returns it cleaned (a trailing slash is
// allowed) and as a directory under h.Dir. Paths with "..", "." or "//"
// are refused rather than cleaned, as no reader of cgroups makes them.
func (h Hierarchy) abs(path string) (clean, dir string, err error) {
	if !strings.HasPrefix(path, "/") {
		return "", "", fmt.Errorf("cgroup path %q: must start with /", path)
	}
	clean = filepath.Clean(path)
	if clean != path && clean+"/" != path {
		return "", "", fmt.Errorf("cgroup path %q: not clean", path)
	}
	return clean, filepath.Join(h.Dir, clean), nil
}
