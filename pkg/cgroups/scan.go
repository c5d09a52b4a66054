package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

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
// and parents before children. Cgroups removed during the walk are left out.
// A successful Scan replaces the cache that Lookup reads. With more than
// MaxGroups cgroups Scan returns the first MaxGroups and an error matching
// ErrTooManyGroups, and leaves the cache as it was.
func (h Hierarchy) Scan() ([]Group, error) {
	groups := make([]Group, 0, 64)
	walkErr := filepath.WalkDir(h.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != h.Dir && isGoneErr(err) {
				return nil // removed between listing its parent and reading it
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if len(groups) >= MaxGroups {
			return fmt.Errorf("%w: more than %d under %s", ErrTooManyGroups, MaxGroups, h.Dir)
		}
		info, err := d.Info()
		if err != nil {
			if p != h.Dir && isGoneErr(err) {
				return fs.SkipDir
			}
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("no inode for %s", p)
		}
		groups = append(groups, Group{ID: st.Ino, Path: h.rel(p)})
		return nil
	})
	if walkErr != nil {
		return groups, fmt.Errorf("scanning cgroups under %s: %w", h.Dir, walkErr)
	}
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

// rel turns a directory under h.Dir into a cgroup path.
func (h Hierarchy) rel(dir string) string {
	r, err := filepath.Rel(h.Dir, dir)
	if err != nil || r == "." {
		return "/"
	}
	return "/" + filepath.ToSlash(r)
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
