package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/leakwatch/leakwatch/test/cgtest"
	"golang.org/x/sys/unix"
)

// skipUnprivileged skips, or fails when LEAKWATCH_REQUIRE_PRIVILEGED=1 as
// in CI, a test that needs what this host does not give.
func skipUnprivileged(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("LEAKWATCH_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("LEAKWATCH_REQUIRE_PRIVILEGED=1 but: %s", msg)
	}
	t.Skip(msg)
}

func hostHierarchy(t *testing.T) (Hierarchy, string) {
	t.Helper()
	h, err := Detect("")
	if err != nil {
		skipUnprivileged(t, "no memory cgroup hierarchy on this host: %v", err)
	}
	self, err := h.PathOf(os.Getpid())
	if err != nil {
		skipUnprivileged(t, "finding this process's memory cgroup: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.Dir, self)); err != nil {
		skipUnprivileged(t, "memory cgroup %s not visible under %s (another cgroup namespace?): %v", self, h.Dir, err)
	}
	return h, self
}

// TestHostSelf reads this process's own memory cgroup, read-only.
func TestHostSelf(t *testing.T) {
	h, self := hostHierarchy(t)
	id, err := h.ID(self)
	if err != nil {
		t.Fatal(err)
	}
	if want := inode(t, filepath.Join(h.Dir, self)); id != want {
		t.Fatalf("ID(%s) = %d, stat says inode %d", self, id, want)
	}
	s, err := h.ReadMemory(self)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("host: %s %s at %s; own memory cgroup id=%d path=%s", h.Version, h.Layout, h.Dir, id, self)
	t.Logf("stats: %+v leak signal %d", s, s.LeakSignal())
	if s.Usage == 0 || s.Anon == 0 {
		t.Errorf("own cgroup usage %d anon %d, want both > 0 for a running test binary", s.Usage, s.Anon)
	}
	if s.WorkingSet > s.Usage {
		t.Errorf("working set %d > usage %d", s.WorkingSet, s.Usage)
	}
	if s.Limit != 0 && (s.EffectiveLimit == 0 || s.EffectiveLimit > s.Limit) {
		t.Errorf("effective limit %d not within own limit %d", s.EffectiveLimit, s.Limit)
	}

	groups, err := h.Scan()
	if err != nil {
		t.Fatal(err)
	}
	g, ok := h.Lookup(id)
	if !ok || g.Path != self {
		t.Errorf("Lookup(%d) = %v, %v after Scan of %d groups; want %s", id, g, ok, len(groups), self)
	}
}

// TestHostChild makes a cgroup beneath this process's own memory cgroup,
// reads it, limits it, removes it and reads it again.
func TestHostChild(t *testing.T) {
	if os.Geteuid() != 0 {
		skipUnprivileged(t, "creating a cgroup needs root")
	}
	h, self := hostHierarchy(t)
	child := filepath.Join(self, "leakwatch-test-"+strconv.Itoa(os.Getpid()))
	dir := filepath.Join(h.Dir, child)
	if err := os.Mkdir(dir, 0o755); err != nil {
		skipUnprivileged(t, "creating %s: %v", dir, err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			if err := os.Remove(dir); err != nil {
				t.Errorf("removing %s: %v", dir, err)
			}
		}
	})

	const limit = 64 << 20
	limitFile := "memory.max"
	if h.Version == V1 {
		limitFile = "memory.limit_in_bytes"
	}
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.Itoa(limit)), 0o644); err != nil {
		if errors.Is(err, os.ErrNotExist) && h.Version == V2 {
			skipUnprivileged(t, "memory controller not enabled beneath %s", self)
		}
		t.Fatalf("setting limit: %v", err)
	}
	s, err := h.ReadMemory(child)
	if err != nil {
		t.Fatal(err)
	}
	if s.Limit != limit || s.EffectiveLimit != limit {
		t.Errorf("limit %d effective %d, want both %d", s.Limit, s.EffectiveLimit, limit)
	}
	if s.Usage != 0 || s.Anon != 0 {
		t.Errorf("empty cgroup has usage %d anon %d", s.Usage, s.Anon)
	}
	groups, err := h.Scan()
	if err != nil {
		t.Fatal(err)
	}
	want := inode(t, dir)
	found := false
	for _, g := range groups {
		if g.Path == child {
			found = g.ID == want
		}
	}
	if !found {
		t.Errorf("Scan did not return %s with id %d", child, want)
	}
	t.Logf("child cgroup id=%d path=%s", want, child)

	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	removed = true
	if _, err := h.ReadMemory(child); !errors.Is(err, ErrGone) {
		t.Errorf("ReadMemory of a removed cgroup: err = %v, want ErrGone", err)
	}
}

// TestHostRemovedMidRead removes a cgroup while the reader holds its
// directory open, as the agent may meet it: the next file is gone.
func TestHostRemovedMidRead(t *testing.T) {
	h, _ := hostHierarchy(t)
	g := cgtest.New(t, 0)
	r := h.NewMemoryReader()
	og := r.open(g.Rel, g.Dir)
	defer og.close()
	if _, err := readFile(og, "memory.stat", parseMemoryKeys); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(g.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := readFile(og, "memory.stat", parseMemoryKeys); !errors.Is(err, ErrGone) {
		t.Errorf("reading a file of a cgroup removed after its directory was opened: err = %v, want ErrGone", err)
	}
}

// TestHostScanIDsAreInodes checks Scan's ids, taken from the directory
// listing on cgroupfs, against stat's inode numbers: the kernel reports a
// cgroup by the latter.
func TestHostScanIDsAreInodes(t *testing.T) {
	h, self := hostHierarchy(t)
	groups, err := h.Scan()
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, g := range groups {
		pos[g.Path] = i
		if g.Path != "/" {
			if p, ok := pos[filepath.Dir(g.Path)]; !ok || p >= i {
				t.Errorf("%s listed before its parent", g.Path)
			}
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(h.Dir, g.Path), &st); err != nil {
			continue // removed since: the node is not ours
		}
		if st.Ino != g.ID {
			t.Errorf("%s: Scan id %d, inode %d", g.Path, g.ID, st.Ino)
		}
	}
	if _, ok := pos[self]; !ok {
		t.Errorf("own cgroup %s not in the %d scanned", self, len(groups))
	}
}

// TestHostScanListsEveryCgroupUnderSignals scans a directory whose listing
// takes several getdents batches, again and again while signals arrive:
// the kernel ends a batch
// early when a signal is pending, and a scan that took a short batch for
// the end of the listing lost cgroups (the agent then took live
// containers for gone).
func TestHostScanListsEveryCgroupUnderSignals(t *testing.T) {
	h, _ := hostHierarchy(t)
	parent := cgtest.New(t, 0)
	const n = 300
	for i := range n {
		// Long names, so the listing outgrows one 8 KiB batch.
		d := filepath.Join(parent.Dir, fmt.Sprintf("c%03d-%s", i, strings.Repeat("x", 40)))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(d) })
	}
	// SIGURG is the runtime's preemption signal, handled and harmless:
	// sent to the process, it lands on any of its threads, the scanning
	// one among them.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = syscall.Kill(os.Getpid(), syscall.SIGURG)
		}
	}()
	for round := range 200 {
		groups, err := h.Scan()
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, g := range groups {
			if filepath.Dir(g.Path) == parent.Rel {
				got++
			}
		}
		if got != n {
			t.Fatalf("scan %d listed %d of the %d cgroups below %s", round, got, n, parent.Rel)
		}
	}
}
