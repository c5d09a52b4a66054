package cgroups

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

const (
	burstableID  = "4f1c0d2e9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"
	besteffortID = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"
	dockerID     = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"

	v2BurstablePod  = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f9a2c4e_8b1d_4e6f_9a0b_c1d2e3f4a5b6.slice"
	v2BesteffortPod = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod7c2e9d10_5a3b_4c8d_b1e2_f3a4b5c6d7e8.slice"
	v1BurstablePod  = "/kubepods/burstable/pod3f9a2c4e-8b1d-4e6f-9a0b-c1d2e3f4a5b6"
	v1BesteffortPod = "/kubepods/besteffort/pod7c2e9d10-5a3b-4c8d-b1e2-f3a4b5c6d7e8"
)

func TestDetectFixtures(t *testing.T) {
	tests := []struct {
		root    string
		dir     string
		version Version
		layout  Layout
	}{
		{root: "testdata/v2", dir: "testdata/v2", version: V2, layout: LayoutUnified},
		{root: "testdata/v1", dir: "testdata/v1/memory", version: V1, layout: LayoutLegacy},
		{root: "testdata/v1/memory", dir: "testdata/v1/memory", version: V1, layout: LayoutLegacy},
	}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			h, err := Detect(tt.root)
			if err != nil {
				t.Fatal(err)
			}
			if h.Dir != tt.dir || h.Version != tt.version || h.Layout != tt.layout {
				t.Errorf("Detect(%q) = {%s %s %s}, want {%s %s %s}", tt.root, h.Dir, h.Version, h.Layout, tt.dir, tt.version, tt.layout)
			}
		})
	}
}

func TestDetectHybridAndMissing(t *testing.T) {
	touch := func(t *testing.T, path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("hybrid memory on v1", func(t *testing.T) {
		root := t.TempDir()
		touch(t, filepath.Join(root, "memory", "memory.limit_in_bytes"), "9223372036854771712\n")
		touch(t, filepath.Join(root, "cpu", "cpu.shares"), "1024\n")
		touch(t, filepath.Join(root, "unified", "cgroup.controllers"), "\n")
		h, err := Detect(root)
		if err != nil {
			t.Fatal(err)
		}
		if h.Version != V1 || h.Layout != LayoutHybrid || h.Dir != filepath.Join(root, "memory") {
			t.Errorf("got {%s %s %s}, want v1 hybrid at memory", h.Dir, h.Version, h.Layout)
		}
	})
	t.Run("memory symlinked to a combined mount", func(t *testing.T) {
		root := t.TempDir()
		touch(t, filepath.Join(root, "cpu,memory", "memory.limit_in_bytes"), "9223372036854771712\n")
		touch(t, filepath.Join(root, "cpu,memory", "docker", "memory.limit_in_bytes"), "9223372036854771712\n")
		if err := os.Symlink("cpu,memory", filepath.Join(root, "memory")); err != nil {
			t.Fatal(err)
		}
		h, err := Detect(root)
		if err != nil {
			t.Fatal(err)
		}
		if h.Version != V1 || h.Dir != filepath.Join(root, "cpu,memory") {
			t.Errorf("got {%s %s}, want v1 at cpu,memory", h.Dir, h.Version)
		}
		if groups, err := h.Scan(); err != nil || len(groups) != 2 {
			t.Errorf("Scan = %v, %v; want the root and /docker", groups, err)
		}
	})
	t.Run("hybrid memory on v2", func(t *testing.T) {
		root := t.TempDir()
		touch(t, filepath.Join(root, "cpu", "cpu.shares"), "1024\n")
		touch(t, filepath.Join(root, "unified", "cgroup.controllers"), "cpu io memory pids\n")
		h, err := Detect(root)
		if err != nil {
			t.Fatal(err)
		}
		if h.Version != V2 || h.Layout != LayoutHybrid || h.Dir != filepath.Join(root, "unified") {
			t.Errorf("got {%s %s %s}, want v2 hybrid at unified", h.Dir, h.Version, h.Layout)
		}
	})
	t.Run("v2 without memory", func(t *testing.T) {
		root := t.TempDir()
		touch(t, filepath.Join(root, "cgroup.controllers"), "cpu io pids\n")
		_, err := Detect(root)
		if err == nil || !strings.Contains(err.Error(), "does not offer the memory controller") {
			t.Errorf("err = %v, want a message about the memory controller", err)
		}
	})
	t.Run("nothing", func(t *testing.T) {
		root := t.TempDir()
		touch(t, filepath.Join(root, "unified", "cgroup.controllers"), "cpu\n")
		_, err := Detect(root)
		want := "no memory cgroup controller mounted under " + root + "; mount cgroup2 or the v1 memory controller"
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrNoController) {
			t.Errorf("err = %v, want ErrNoController saying %q", err, want)
		}
	})
	t.Run("missing root", func(t *testing.T) {
		_, err := Detect(filepath.Join(t.TempDir(), "absent"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want ErrNotExist", err)
		}
	})
}

func TestOpen(t *testing.T) {
	if _, err := Open("testdata/v1/memory", V1); err != nil {
		t.Error(err)
	}
	if _, err := Open("testdata/v2", V2); err != nil {
		t.Error(err)
	}
	if _, err := Open("testdata/v2", V1); err == nil {
		t.Error("Open(v2 tree, V1) succeeded")
	}
	if _, err := Open("testdata/v2", 3); err == nil {
		t.Error("Open(_, 3) succeeded")
	}
}

func TestScanFixtures(t *testing.T) {
	tests := []struct {
		root string
		want []string
	}{
		{root: "testdata/v1", want: []string{
			"/",
			"/docker",
			"/docker/" + dockerID,
			"/kubepods",
			"/kubepods/besteffort",
			v1BesteffortPod,
			v1BesteffortPod + "/" + besteffortID,
			"/kubepods/burstable",
			v1BurstablePod,
			v1BurstablePod + "/" + burstableID,
			"/system.slice",
			"/system.slice/nginx.service",
		}},
		{root: "testdata/v2", want: []string{
			"/",
			"/kubepods.slice",
			"/kubepods.slice/kubepods-besteffort.slice",
			v2BesteffortPod,
			v2BesteffortPod + "/cri-containerd-" + besteffortID + ".scope",
			"/kubepods.slice/kubepods-burstable.slice",
			v2BurstablePod,
			v2BurstablePod + "/cri-containerd-" + burstableID + ".scope",
			"/system.slice",
			"/system.slice/nginx.service",
			"/system.slice/nginx.service/payload",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			h, err := Detect(tt.root)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := h.Lookup(1); ok {
				t.Error("Lookup before Scan found something")
			}
			groups, err := h.Scan()
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, g := range groups {
				paths = append(paths, g.Path)
				if want := inode(t, filepath.Join(h.Dir, g.Path)); g.ID != want {
					t.Errorf("%s: ID %d, want inode %d", g.Path, g.ID, want)
				}
				if got, ok := h.Lookup(g.ID); !ok || got != g {
					t.Errorf("Lookup(%d) = %v, %v; want %v", g.ID, got, ok, g)
				}
				id, err := h.ID(g.Path)
				if err != nil || id != g.ID {
					t.Errorf("ID(%s) = %d, %v; want %d", g.Path, id, err, g.ID)
				}
			}
			if !slices.Equal(paths, tt.want) {
				t.Errorf("Scan paths:\n got %q\nwant %q", paths, tt.want)
			}
		})
	}
}

func TestScanSkipsVanished(t *testing.T) {
	// A removal in the middle of a walk cannot be timed from a test; a
	// removal between two scans checks that ID, Scan and the cache follow.
	root := t.TempDir()
	for _, d := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("memory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := Open(root, V2)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := h.Scan()
	if err != nil || len(groups) != 4 {
		t.Fatalf("Scan = %v, %v; want 4 groups", groups, err)
	}
	gone := groups[1] // "/a"
	if err := os.RemoveAll(filepath.Join(root, "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ID(gone.Path); !errors.Is(err, ErrGone) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ID(removed) err = %v, want ErrGone and ErrNotExist", err)
	}
	if groups, err = h.Scan(); err != nil || len(groups) != 2 {
		t.Fatalf("Scan after removal = %v, %v; want 2 groups", groups, err)
	}
	if _, ok := h.Lookup(gone.ID); ok {
		t.Error("Lookup found a removed cgroup after a new Scan")
	}
}

func TestReadMemoryFixtures(t *testing.T) {
	const unlimited = 0
	tests := []struct {
		root string
		path string
		want MemoryStats
	}{
		{root: "testdata/v1", path: v1BurstablePod + "/" + burstableID, want: MemoryStats{
			Usage: 419463168, Anon: 301989888, File: 104857600, Kernel: 12615680, Shmem: 4194304,
			WorkingSet: 419463168 - 62914560, Limit: 1 << 30, EffectiveLimit: 1 << 30,
			PageFaults: 1843226, MajorPageFaults: 112, OOMEvents: 1, OOMKills: 1,
		}},
		// The pod's local stats are zero: only total_* sees its container.
		{root: "testdata/v1", path: v1BurstablePod, want: MemoryStats{
			Usage: 419463168, Anon: 301989888, File: 104857600, Kernel: 12615680, Shmem: 4194304,
			WorkingSet: 419463168 - 62914560, Limit: 1342177280, EffectiveLimit: 1342177280,
			PageFaults: 1843226, MajorPageFaults: 112,
		}},
		// Unlimited itself, limited by /kubepods.
		{root: "testdata/v1", path: v1BesteffortPod + "/" + besteffortID, want: MemoryStats{
			Usage: 62914560, Anon: 52428800, File: 8388608, Kernel: 2097152,
			WorkingSet: 62914560 - 4194304, Limit: unlimited, EffectiveLimit: 8053063680,
			PageFaults: 20480, MajorPageFaults: 3,
		}},
		{root: "testdata/v1", path: "/system.slice/nginx.service", want: MemoryStats{
			Usage: 49283072, Anon: 20971520, File: 25165824, Kernel: 3145728, Shmem: 1048576,
			WorkingSet: 49283072 - 16777216, PageFaults: 31000, MajorPageFaults: 40,
		}},
		{root: "testdata/v1", path: "/docker/" + dockerID, want: MemoryStats{
			Usage: 155189248, Anon: 134217728, File: 16777216, Kernel: 4194304,
			WorkingSet: 155189248 - 12582912, Limit: 512 << 20, EffectiveLimit: 512 << 20,
			PageFaults: 65536, MajorPageFaults: 17,
		}},
		{root: "testdata/v2", path: v2BurstablePod + "/cri-containerd-" + burstableID + ".scope", want: MemoryStats{
			Usage: 419463168, Anon: 301989888, File: 104857600,
			Kernel: 3670016 + 589824 + 1916928 + 146400, Shmem: 4194304,
			WorkingSet: 419463168 - 62914560, Limit: 1 << 30, EffectiveLimit: 1 << 30,
			PageFaults: 1843226, MajorPageFaults: 112, OOMEvents: 2, OOMKills: 1,
		}},
		{root: "testdata/v2", path: v2BesteffortPod + "/cri-containerd-" + besteffortID + ".scope", want: MemoryStats{
			Usage: 62853120, Anon: 52428800, File: 8388608, Kernel: 524288 + 163840 + 262144 + 36600,
			WorkingSet: 62853120 - 4194304, Limit: unlimited, EffectiveLimit: 8053063680,
			PageFaults: 20480, MajorPageFaults: 3,
		}},
		{root: "testdata/v2", path: "/system.slice/nginx.service", want: MemoryStats{
			Usage: 49319936, Anon: 20971520, File: 25165824, Kernel: 786432 + 98304 + 180224 + 18300, Shmem: 1048576,
			WorkingSet: 49319936 - 16777216, PageFaults: 31000, MajorPageFaults: 40,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.root+tt.path, func(t *testing.T) {
			h, err := Detect(tt.root)
			if err != nil {
				t.Fatal(err)
			}
			got, err := h.ReadMemory(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ReadMemory(%s)\n got %+v\nwant %+v", tt.path, got, tt.want)
			}
			if got.LeakSignal() != tt.want.Anon+tt.want.Shmem+tt.want.Kernel {
				t.Errorf("LeakSignal = %d, want anon+shmem+kernel = %d", got.LeakSignal(), tt.want.Anon+tt.want.Shmem+tt.want.Kernel)
			}
		})
	}
}

func TestReadMemoryErrors(t *testing.T) {
	for _, root := range []string{"testdata/v1", "testdata/v2"} {
		h, err := Detect(root)
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.ReadMemory("/kubepods/gone")
		if !errors.Is(err, ErrGone) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: ReadMemory(missing) err = %v, want ErrGone and ErrNotExist", root, err)
		}
		for _, bad := range []string{"kubepods", "/kubepods/../..", "/a//b"} {
			if _, err := h.ReadMemory(bad); err == nil || errors.Is(err, ErrGone) {
				t.Errorf("%s: ReadMemory(%q) err = %v, want a path error", root, bad, err)
			}
		}
	}
	h, err := Detect("testdata/v2")
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.ReadMemory("/system.slice/nginx.service/payload")
	if !errors.Is(err, ErrNoController) || errors.Is(err, ErrGone) {
		t.Errorf("ReadMemory(no controller) err = %v, want ErrNoController only", err)
	}
}

func TestRootCgroupReadable(t *testing.T) {
	for _, root := range []string{"testdata/v1", "testdata/v2"} {
		h, err := Detect(root)
		if err != nil {
			t.Fatal(err)
		}
		s, err := h.ReadMemory("/")
		if err != nil {
			t.Fatalf("%s: %v", root, err)
		}
		if s.Anon == 0 || s.Limit != 0 || s.EffectiveLimit != 0 {
			t.Errorf("%s: root stats %+v: want anon > 0 and no limit", root, s)
		}
	}
}

func TestMemoryPathFromProcCgroup(t *testing.T) {
	hybrid := "12:pids:/user.slice\n4:memory:/kubepods/burstable/podx/abc\n1:name=systemd:/init.scope\n0::/init.scope\n"
	tests := []struct {
		data string
		v    Version
		want string
		ok   bool
	}{
		{hybrid, V1, "/kubepods/burstable/podx/abc", true},
		{hybrid, V2, "/init.scope", true},
		{"0::/system.slice/nginx.service\n", V2, "/system.slice/nginx.service", true},
		{"0::/system.slice/nginx.service\n", V1, "", false},
		{"7:cpu,memory:/docker/abc\n", V1, "/docker/abc", true},
		{"5:memoryx:/no\n", V1, "", false},
		{"", V2, "", false},
		{"garbage", V1, "", false},
	}
	for _, tt := range tests {
		got, ok := memoryPathFromProcCgroup(tt.data, tt.v)
		if got != tt.want || ok != tt.ok {
			t.Errorf("memoryPathFromProcCgroup(%q, %s) = %q, %v; want %q, %v", tt.data, tt.v, got, ok, tt.want, tt.ok)
		}
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestScanDuringRemoval(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("memory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		if err := os.MkdirAll(filepath.Join(root, "g"+strconv.Itoa(i), "child", "leaf"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h, err := Open(root, V2)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			_ = os.RemoveAll(filepath.Join(root, "g"+strconv.Itoa(i)))
		}
	}()
	for scans := 0; ; scans++ {
		if _, err := h.Scan(); err != nil {
			t.Fatalf("scan %d during removals: %v", scans, err)
		}
		select {
		case <-done:
			groups, err := h.Scan()
			if err != nil || len(groups) != 1 {
				t.Fatalf("final Scan = %v, %v; want only the root", groups, err)
			}
			return
		default:
		}
	}
}

func TestReadMemoryTrailingSlash(t *testing.T) {
	h, err := Detect("testdata/v2")
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.ReadMemory("/system.slice/nginx.service/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.ReadMemory("/system.slice/nginx.service")
	if err != nil || a != b {
		t.Errorf("trailing slash changed the result: %+v vs %+v (%v)", a, b, err)
	}
}
