package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// Every cgroup of both fixture trees reads the same through the reader as
// through containerd's cgroups library, which ReadMemory used before it
// read the files itself.
func TestReadMemoryMatchesLibrary(t *testing.T) {
	for _, root := range []string{"testdata/v1", "testdata/v2"} {
		h, groups := scanTree(t, root)
		r := h.NewMemoryReader()
		for _, g := range groups {
			got, err := r.Read(g.Path)
			want, werr := libraryStats(h, g.Path)
			if (err == nil) != (werr == nil) {
				t.Errorf("%s%s: reader error %v, library error %v", root, g.Path, err, werr)
				continue
			}
			if got != want {
				t.Errorf("%s%s:\n reader  %+v\n library %+v", root, g.Path, got, want)
			}
		}
	}
}

// A reader reads each ancestor's limit once; a new reader (a new round)
// sees a changed limit.
func TestReaderReadsAncestorLimitsOncePerRound(t *testing.T) {
	h := fixtureCopy(t, "testdata/v2", V2)
	container := v2BurstablePod + "/cri-containerd-" + burstableID + ".scope"
	r := h.NewMemoryReader()
	if s, err := r.Read(container); err != nil || s.EffectiveLimit != 1<<30 {
		t.Fatalf("Read = %+v, %v; want the container's own limit of 1 GiB", s, err)
	}
	writeFile(t, filepath.Join(h.Dir, "kubepods.slice", "memory.max"), "536870912\n")
	if s, err := r.Read(container); err != nil || s.EffectiveLimit != 1<<30 {
		t.Errorf("same reader: effective limit %d, %v; want 1 GiB as read earlier in the round", s.EffectiveLimit, err)
	}
	if s, err := h.NewMemoryReader().Read(container); err != nil || s.EffectiveLimit != 512<<20 || s.Limit != 1<<30 {
		t.Errorf("new reader: limit %d effective %d, %v; want 1 GiB limited to 512 MiB by kubepods.slice", s.Limit, s.EffectiveLimit, err)
	}
}

// Kernels before 2.6.31 have no hierarchical_memory_limit: the ancestors'
// limits give the same answer.
func TestV1WithoutHierarchicalLimit(t *testing.T) {
	want := readAll(t, "testdata/v1")
	h := fixtureCopy(t, "testdata/v1/memory", V1)
	editFiles(t, h.Dir, "memory.stat", func(s string) string {
		var out []string
		for line := range strings.Lines(s) {
			if !strings.HasPrefix(line, "hierarchical_") {
				out = append(out, line)
			}
		}
		return strings.Join(out, "")
	})
	if got := readAll(t, h.Dir); !maps.Equal(got, want) {
		t.Errorf("without hierarchical_memory_limit:\n got %v\nwant %v", got, want)
	}
}

// Kernel memory reads 0 where the kernel has no kmem files; where the root
// has them, a cgroup without them is gone.
func TestV1WithoutKmem(t *testing.T) {
	h := fixtureCopy(t, "testdata/v1/memory", V1)
	path := "/docker/" + dockerID
	if err := os.Remove(filepath.Join(h.Dir, path, "memory.kmem.usage_in_bytes")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ReadMemory(path); !errors.Is(err, ErrGone) {
		t.Errorf("kmem file missing below a root that has it: err = %v, want ErrGone", err)
	}
	editFiles(t, h.Dir, "memory.kmem.usage_in_bytes", nil)
	r := h.NewMemoryReader()
	for range 2 { // the second read knows already
		s, err := r.Read(path)
		if err != nil || s.Kernel != 0 || s.Anon != 134217728 {
			t.Errorf("no kmem files: %+v, %v; want Kernel 0 and the rest read", s, err)
		}
	}
}

// A file larger than the buffer is read whole, and the buffer keeps its
// new size.
func TestReadLargeFile(t *testing.T) {
	h := fixtureCopy(t, "testdata/v2", V2)
	stat := filepath.Join(h.Dir, "system.slice", "nginx.service", "memory.stat")
	b := readFixture(t, stat)
	var pad strings.Builder
	for i := 0; pad.Len() < 3*readBufSize; i++ {
		fmt.Fprintf(&pad, "padding_key_%d %d\n", i, i)
	}
	writeFile(t, stat, pad.String()+string(b))
	r := h.NewMemoryReader()
	s, err := r.Read("/system.slice/nginx.service")
	if err != nil || s.Anon != 20971520 || s.MajorPageFaults != 40 {
		t.Fatalf("padded memory.stat: %+v, %v", s, err)
	}
	if len(r.buf) <= 3*readBufSize {
		t.Errorf("buffer %d bytes after reading a file of %d", len(r.buf), pad.Len()+len(b))
	}
	writeFile(t, stat, strings.Repeat("k 1\n", maxFileSize/4+1))
	if _, err := r.Read("/system.slice/nginx.service"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("file over %d bytes: err = %v", maxFileSize, err)
	}
}

// The reader opens descriptors itself: none may stay open, on success or
// on any error.
func TestReadMemoryClosesFiles(t *testing.T) {
	before := openFDs(t)
	for _, root := range []string{"testdata/v1", "testdata/v2"} {
		h, groups := scanTree(t, root)
		r := h.NewMemoryReader()
		for _, g := range groups {
			_, _ = r.Read(g.Path)
		}
		_, _ = r.Read("/kubepods/gone")
	}
	h := fixtureCopy(t, "testdata/v2", V2)
	writeFile(t, filepath.Join(h.Dir, "system.slice", "memory.max"), "garbage\n")
	if _, err := h.ReadMemory("/system.slice/nginx.service"); err == nil {
		t.Error("a bad ancestor limit read without error")
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after reading, %d before", after, before)
	}
}

// TestHostReaderMatchesFiles reads real cgroups made beneath this process's
// own and compares the reader with what their files say: one with a limit
// and a workload that touched memory, where another was OOM-killed, and one
// with no limit below a limited parent.
func TestHostReaderMatchesFiles(t *testing.T) {
	h, _ := hostHierarchy(t)
	memwork, _ := cgtest.Workloads(t)
	g := cgtest.New(t, 64<<20)
	p := g.Start(t, memwork)
	p.Do(t, "touch 8192")
	oom := g.Start(t, memwork)
	oom.Send(t, "oom")
	oom.Wait(t, 30*time.Second)

	// v2 lets only leaves hold processes, so the parent stays empty.
	parent := cgtest.New(t, 32<<20)
	if h.Version == V2 {
		writeFile(t, filepath.Join(parent.Dir, "cgroup.subtree_control"), "+memory")
	}
	inner := filepath.Join(parent.Rel, "inner")
	if err := os.Mkdir(filepath.Join(h.Dir, inner), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(filepath.Join(h.Dir, inner)); err != nil {
			t.Errorf("removing %s: %v", inner, err)
		}
	})

	for _, path := range []string{g.Rel, inner} {
		got, want := readStable(t, h, path)
		if got != want {
			t.Errorf("%s:\n reader %+v\n files  %+v", path, got, want)
		}
	}
	if s, _ := readStable(t, h, g.Rel); s.Anon < 8<<20 || s.OOMKills != 1 || s.Limit != 64<<20 || s.EffectiveLimit != 64<<20 {
		t.Errorf("%s: %+v; want anon ≥ 8 MiB (touched), one OOM kill, limit 64 MiB", g.Rel, s)
	}
	if s, _ := readStable(t, h, inner); s.Limit != 0 || s.EffectiveLimit != 32<<20 {
		t.Errorf("%s: limit %d, effective %d; want none of its own, 32 MiB from its parent", inner, s.Limit, s.EffectiveLimit)
	}
}

// readStable reads a live cgroup through the reader between two reads of
// its files, until both file reads agree.
func readStable(t *testing.T, h Hierarchy, path string) (got, want MemoryStats) {
	t.Helper()
	for range 10 {
		before := filesStats(t, h, path)
		s, err := h.ReadMemory(path)
		if err != nil {
			t.Fatal(err)
		}
		if filesStats(t, h, path) == before {
			return s, before
		}
	}
	t.Fatalf("%s: statistics kept changing", path)
	return
}

// filesStats is what Read must return, from the files read whole and split
// with strings.Fields.
func filesStats(t *testing.T, h Hierarchy, path string) MemoryStats {
	t.Helper()
	dir := filepath.Join(h.Dir, path)
	stat := fileKV(t, filepath.Join(dir, "memory.stat"))
	var s MemoryStats
	if h.Version == V1 {
		oom := fileKV(t, filepath.Join(dir, "memory.oom_control"))
		var kmem uint64
		if exists(filepath.Join(h.Dir, "memory.kmem.usage_in_bytes")) {
			kmem = fileValue(t, filepath.Join(dir, "memory.kmem.usage_in_bytes"))
		}
		s = MemoryStats{
			Usage: fileValue(t, filepath.Join(dir, "memory.usage_in_bytes")),
			Anon:  stat["total_rss"], File: stat["total_cache"], Shmem: stat["total_shmem"],
			Kernel:         kmem,
			Limit:          v1Limit(fileValue(t, filepath.Join(dir, "memory.limit_in_bytes"))),
			EffectiveLimit: v1Limit(stat["hierarchical_memory_limit"]),
			PageFaults:     stat["total_pgfault"], MajorPageFaults: stat["total_pgmajfault"],
			OOMEvents: oom["oom_kill"], OOMKills: oom["oom_kill"],
		}
		s.WorkingSet = subFloor(s.Usage, stat["total_inactive_file"])
		return s
	}
	events := fileKV(t, filepath.Join(dir, "memory.events"))
	s = MemoryStats{
		Usage: fileValue(t, filepath.Join(dir, "memory.current")),
		Anon:  stat["anon"], File: stat["file"], Shmem: stat["shmem"],
		Kernel: stat["slab_unreclaimable"] + stat["kernel_stack"] + stat["pagetables"] +
			stat["sec_pagetables"] + stat["percpu"],
		Limit:      v2Limit(fileValue(t, filepath.Join(dir, "memory.max"))),
		PageFaults: stat["pgfault"], MajorPageFaults: stat["pgmajfault"],
		OOMEvents: events["oom"], OOMKills: events["oom_kill"],
	}
	s.WorkingSet = subFloor(s.Usage, stat["inactive_file"])
	s.EffectiveLimit = s.Limit
	for p := filepath.Dir(path); p != "/"; p = filepath.Dir(p) {
		if l := v2Limit(fileValue(t, filepath.Join(h.Dir, p, "memory.max"))); l != 0 {
			s.EffectiveLimit = minLimit(s.EffectiveLimit, l)
		}
	}
	return s
}

// libraryStats reads a cgroup as ReadMemory did through containerd's
// cgroups library, with memory.stat read again for the keys the library
// drops.
func libraryStats(h Hierarchy, path string) (MemoryStats, error) {
	dir := filepath.Join(h.Dir, path)
	kv, err := flatKeyedFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return MemoryStats{}, err
	}
	if h.Version == V1 {
		var missing []string
		for _, mod := range []string{"memsw", "kmem", "kmem.tcp"} {
			if !exists(filepath.Join(h.Dir, "memory."+mod+".usage_in_bytes")) {
				missing = append(missing, mod)
			}
		}
		var m v1stats.Metrics
		if err := cgroup1.NewMemory(h.Dir, cgroup1.IgnoreModules(missing...)).Stat(filepath.Join("..", path), &m); err != nil {
			return MemoryStats{}, err
		}
		mem := m.GetMemory()
		s := MemoryStats{
			Usage: mem.GetUsage().GetUsage(), Anon: mem.GetTotalRSS(), File: mem.GetTotalCache(),
			Kernel: mem.GetKernel().GetUsage(), Shmem: kv["total_shmem"],
			Limit: v1Limit(mem.GetUsage().GetLimit()), EffectiveLimit: v1Limit(mem.GetHierarchicalMemoryLimit()),
			PageFaults: mem.GetTotalPgFault(), MajorPageFaults: mem.GetTotalPgMajFault(),
			OOMEvents: m.GetMemoryOomControl().GetOomKill(), OOMKills: m.GetMemoryOomControl().GetOomKill(),
		}
		s.WorkingSet = subFloor(s.Usage, mem.GetTotalInactiveFile())
		return s, nil
	}
	mgr, err := cgroup2.Load(path, cgroup2.WithMountpoint(h.Dir))
	if err != nil {
		return MemoryStats{}, err
	}
	m, err := mgr.StatFiltered(cgroup2.StatMemory | cgroup2.StatMemoryEvents)
	if err != nil {
		return MemoryStats{}, err
	}
	mem := m.GetMemory()
	s := MemoryStats{
		Usage: mem.GetUsage(), Anon: mem.GetAnon(), File: mem.GetFile(),
		Kernel: mem.GetSlabUnreclaimable() + mem.GetKernelStack() +
			kv["pagetables"] + kv["sec_pagetables"] + kv["percpu"],
		Shmem: mem.GetShmem(), Limit: v2Limit(mem.GetUsageLimit()),
		PageFaults: mem.GetPgfault(), MajorPageFaults: mem.GetPgmajfault(),
		OOMEvents: m.GetMemoryEvents().GetOom(), OOMKills: m.GetMemoryEvents().GetOomKill(),
	}
	s.WorkingSet = subFloor(s.Usage, mem.GetInactiveFile())
	s.EffectiveLimit = s.Limit
	for p := filepath.Dir(path); p != "/" && p != "."; p = filepath.Dir(p) {
		b, err := os.ReadFile(filepath.Join(h.Dir, p, "memory.max"))
		if err != nil {
			continue
		}
		if l, err := parseValue(b); err == nil && l < v1Unlimited {
			s.EffectiveLimit = minLimit(s.EffectiveLimit, l)
		}
	}
	return s, nil
}

func flatKeyedFile(path string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return flatKeyedMap(b)
}

func fileKV(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	kv := map[string]uint64{}
	for line := range strings.Lines(string(readFixture(t, path))) {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("%s: line %q", path, line)
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if f[1] == "max" {
			v, err = 1<<64-1, nil
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		kv[f[0]] = v
	}
	return kv
}

func fileValue(t *testing.T, path string) uint64 {
	t.Helper()
	s := strings.TrimSpace(string(readFixture(t, path)))
	if s == "max" {
		return 1<<64 - 1
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// readAll reads every cgroup of the tree at root, by path.
func readAll(t *testing.T, root string) map[string]MemoryStats {
	t.Helper()
	h, groups := scanTree(t, root)
	all := map[string]MemoryStats{}
	r := h.NewMemoryReader()
	for _, g := range groups {
		s, err := r.Read(g.Path)
		if err != nil {
			t.Fatal(err)
		}
		all[g.Path] = s
	}
	return all
}

func scanTree(t *testing.T, root string) (Hierarchy, []Group) {
	t.Helper()
	h, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := h.Scan()
	if err != nil {
		t.Fatal(err)
	}
	return h, groups
}

// fixtureCopy copies a fixture tree into a temporary directory, for tests
// that change files.
func fixtureCopy(t *testing.T, src string, v Version) Hierarchy {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	h, err := Open(dir, v)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// editFiles rewrites every file called name below dir, or removes it when
// edit is nil.
func editFiles(t *testing.T, dir, name string, edit func(string) string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != name {
			return err
		}
		if edit == nil {
			return os.Remove(p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(p, []byte(edit(string(b))), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("counting descriptors: %v", err)
	}
	return len(entries)
}
