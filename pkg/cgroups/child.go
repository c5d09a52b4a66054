package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// MakeChild makes a memory cgroup named name beneath this process's own
// memory cgroup, with a memory limit (bytes; 0 for none), and returns its
// path. It never touches a cgroup other than the one it makes. On v2 the
// parent must already hand the memory controller down (a cgroup with
// processes of its own cannot enable it), and the error says so.
func (h Hierarchy) MakeChild(name string, limit uint64) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("bad cgroup name %q", name)
	}
	own, err := h.PathOf(os.Getpid())
	if err != nil {
		return "", err
	}
	if h.Version == V2 {
		ctl, _ := os.ReadFile(filepath.Join(h.Dir, own, "cgroup.subtree_control"))
		if !strings.Contains(string(ctl), "memory") {
			return "", fmt.Errorf("%w: %s does not enable the memory controller for its children; run from a delegated cgroup (e.g. `systemd-run --scope -p Delegate=yes ...`)",
				ErrNoController, filepath.Join(h.Dir, own))
		}
	}
	path := filepath.Join(own, name)
	dir := filepath.Join(h.Dir, path)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("making cgroup %s: %w", dir, err)
	}
	if limit > 0 {
		file, v := "memory.max", strconv.FormatUint(limit, 10)
		if h.Version == V1 {
			file = "memory.limit_in_bytes"
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644); err != nil {
			_ = os.Remove(dir)
			return "", fmt.Errorf("setting the memory limit of %s: %w", dir, err)
		}
	}
	return path, nil
}

// AddProcess moves process pid into the cgroup at path.
func (h Hierarchy) AddProcess(path string, pid int) error {
	_, dir, err := h.abs(path)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("moving pid %d into %s: %w", pid, dir, err)
	}
	return nil
}

// RemoveChild removes a cgroup made by MakeChild once its processes have
// gone, waiting up to timeout for them to be reaped.
func (h Hierarchy) RemoveChild(path string, timeout time.Duration) error {
	_, dir, err := h.abs(path)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
