package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/leakwatch/leakwatch/test/cgtest"
)

// limitFile is the file that sets a cgroup's own limit.
func limitFile(g *cgtest.Group) string {
	if g.Version == 1 {
		return "memory.limit_in_bytes"
	}
	return "memory.max"
}

// TestHostOpenFilesFollowTheCgroup reads real cgroups through held files
// over several rounds: a changed limit is read, a cgroup removed and made
// again at the same path is read afresh, a removed one is gone, a group
// no round reads has its files closed, and the bound holds.
func TestHostOpenFilesFollowTheCgroup(t *testing.T) {
	h, _ := hostHierarchy(t)
	a, b := cgtest.New(t, 64<<20), cgtest.New(t, 64<<20)
	before := openFDs(t)
	o := h.NewOpenFiles(8)
	defer o.Close()
	read := func(g *cgtest.Group) (MemoryStats, error) {
		t.Helper()
		return o.NewMemoryReader().Read(g.Rel)
	}
	setLimit := func(g *cgtest.Group, v int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(g.Dir, limitFile(g)), []byte(strconv.Itoa(v)), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A changed limit is read through the held file.
	if s, err := read(a); err != nil || s.Limit != 64<<20 {
		t.Fatalf("round 1: limit %d, err %v; want %d", s.Limit, err, 64<<20)
	}
	if o.Held() != 1 || openFDs(t) <= before {
		t.Fatalf("after a read: %d groups held, %d descriptors (before %d)", o.Held(), openFDs(t), before)
	}
	setLimit(a, 32<<20)
	if s, err := read(a); err != nil || s.Limit != 32<<20 {
		t.Fatalf("round 2: limit %d, err %v; want the new %d", s.Limit, err, 32<<20)
	}

	// Removed and made again at the same path: the new cgroup is read.
	if err := os.Remove(a.Dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(a.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	setLimit(a, 48<<20)
	if s, err := read(a); err != nil || s.Limit != 48<<20 {
		t.Fatalf("after a remake: limit %d, err %v; want the new cgroup's %d", s.Limit, err, 48<<20)
	}

	// Removed: gone, through the held files as through fresh ones.
	if err := os.Remove(a.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := read(a); !errors.Is(err, ErrGone) {
		t.Fatalf("a removed cgroup: err %v, want ErrGone", err)
	}

	// A round that does not read a group closes its files at the next.
	if _, err := read(b); err != nil {
		t.Fatal(err)
	}
	o.NewMemoryReader()
	o.NewMemoryReader()
	if o.Held() != 0 {
		t.Errorf("%d groups held after rounds that read none", o.Held())
	}
	if n := openFDs(t); n != before {
		t.Errorf("%d descriptors open after the groups were let go, %d before", n, before)
	}

	// Past the bound, files are opened per read and the figures are the
	// same.
	small := h.NewOpenFiles(0)
	s, err := small.NewMemoryReader().Read(b.Rel)
	if err != nil || s.Limit != 64<<20 || small.Held() != 0 {
		t.Errorf("over the bound: limit %d, err %v, %d held; want %d, nil, 0", s.Limit, err, small.Held(), 64<<20)
	}
}

// TestHostHasProcessesThroughHeldFiles asks a real cgroup for processes
// over rounds of one OpenFiles, as the agent asks: empty, then holding a
// process, then empty again once it ended, each answer within a second of
// the last (a held v1 cgroup.procs would answer from the kernel's cached
// pid list).
func TestHostHasProcessesThroughHeldFiles(t *testing.T) {
	h, _ := hostHierarchy(t)
	g := cgtest.New(t, 64<<20)
	o := h.NewOpenFiles(8)
	defer o.Close()
	has := func() bool {
		t.Helper()
		v, err := o.NewMemoryReader().HasProcesses(g.Rel)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if has() {
		t.Fatal("a new cgroup has processes")
	}
	p := g.Start(t, "/bin/sleep", "60")
	if !has() {
		t.Fatalf("cgroup holding pid %d: no processes", p.PID)
	}
	p.Kill()
	if has() {
		t.Error("processes left after the only one was killed")
	}
	if o.Held() != 0 {
		t.Errorf("%d groups held open by questions about processes, want 0", o.Held())
	}
}
