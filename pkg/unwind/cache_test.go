package unwind

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestCacheBuildsOnce asks for one table from many goroutines at once: the
// binary is read once and everyone gets the same table.
func TestCacheBuildsOnce(t *testing.T) {
	c := NewCache(64 << 20)
	var builds atomic.Int32
	release := make(chan struct{})
	c.build = func(root, path string) (*Table, error) {
		builds.Add(1)
		<-release // hold the build so the others arrive while it runs
		return BuildTable(root, path)
	}
	const n = 16
	tables := make([]*Table, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tab, err := c.Table("libc", "", "/lib/x86_64-linux-gnu/libc.so.6")
			if err != nil {
				t.Error(err)
			}
			tables[i] = tab
		}()
	}
	close(release)
	wg.Wait()
	if got := builds.Load(); got != 1 {
		t.Errorf("libc's table built %d times, want once", got)
	}
	for _, tab := range tables {
		if tab == nil || tab != tables[0] {
			t.Fatalf("goroutines got different tables")
		}
	}
	if c.Bytes() != tables[0].Size() {
		t.Errorf("cache holds %d bytes, the table is %d", c.Bytes(), tables[0].Size())
	}
}

// TestCacheEvictsByBytes fills a cache bounded below the three Debian
// tables: the least recently used goes, the bound holds, and a table asked
// for again is rebuilt.
func TestCacheEvictsByBytes(t *testing.T) {
	sizes := map[string]int{}
	for _, p := range debianBinaries {
		tab, err := BuildTable("", p)
		if err != nil {
			t.Fatal(err)
		}
		sizes[p] = tab.Size()
	}
	bound := sizes[debianBinaries[1]] + sizes[debianBinaries[2]] // python3 + redis
	c := NewCache(bound)
	var builds atomic.Int32
	c.build = func(root, path string) (*Table, error) {
		builds.Add(1)
		return BuildTable(root, path)
	}
	for _, p := range debianBinaries {
		if _, err := c.Table(p, "", p); err != nil {
			t.Fatal(err)
		}
		if c.Bytes() > bound {
			t.Fatalf("cache holds %d bytes, bound %d", c.Bytes(), bound)
		}
	}
	if want := sizes[debianBinaries[1]] + sizes[debianBinaries[2]]; c.Bytes() != want {
		t.Errorf("cache holds %d bytes, want python3 + redis-server = %d (libc evicted first)", c.Bytes(), want)
	}
	if _, err := c.Table(debianBinaries[2], "", debianBinaries[2]); err != nil || builds.Load() != 3 {
		t.Errorf("redis-server rebuilt although cached (builds %d, err %v)", builds.Load(), err)
	}
	if _, err := c.Table(debianBinaries[0], "", debianBinaries[0]); err != nil || builds.Load() != 4 {
		t.Errorf("evicted libc not rebuilt (builds %d, err %v)", builds.Load(), err)
	}
	t.Logf("table bytes: libc %d, python3 %d, redis-server %d", sizes[debianBinaries[0]], sizes[debianBinaries[1]], sizes[debianBinaries[2]])
}

// TestCacheKeepsFailures reads a file without CFI once, not per sample.
func TestCacheKeepsFailures(t *testing.T) {
	c := NewCache(1 << 20)
	var builds atomic.Int32
	c.build = func(root, path string) (*Table, error) {
		builds.Add(1)
		return BuildTable(root, path)
	}
	for range 3 {
		if _, err := c.Table("missing", "", "/nonexistent/binary"); err == nil {
			t.Fatal("no error for a missing binary")
		}
	}
	if builds.Load() != 1 {
		t.Errorf("a missing binary was read %d times, want once", builds.Load())
	}
	if _, err := BuildTable("", "/etc/hostname"); err == nil || errors.Is(err, errNoCFI) {
		t.Errorf("a non-ELF file: err %v, want an open error", err)
	}
}

// TestCacheOpenFailureIsPerPlace: a binary that one process's root no
// longer reaches (the process exited before its table was built) is still
// unwound for the next process that maps the same content; the failed
// place itself is tried once.
func TestCacheOpenFailureIsPerPlace(t *testing.T) {
	c := NewCache(1 << 30)
	var builds atomic.Int32
	c.build = func(root, path string) (*Table, error) {
		builds.Add(1)
		return BuildTable(root, path)
	}
	libc, gone := debianBinaries[0], t.TempDir()+"/proc/4242/root"
	for range 2 {
		if _, err := c.Table("build-id:libc", gone, libc); err == nil {
			t.Fatal("no error for a root that is gone")
		}
	}
	if builds.Load() != 1 {
		t.Errorf("the gone root was read %d times, want once", builds.Load())
	}
	if tab, err := c.Table("build-id:libc", "", libc); err != nil || tab == nil {
		t.Fatalf("libc from a live root after a gone one: table %v, err %v", tab, err)
	}
	if _, err := c.Table("build-id:libc", gone, libc); err != nil || builds.Load() != 2 {
		t.Errorf("once built, the content's table serves every root: err %v, builds %d (want 2)", err, builds.Load())
	}
}

// TestCacheRefusesATableOverHalf: in a 512 KiB cache, libc's table (about
// 170 KiB) is kept and python3's (about 380 KiB) is refused, with the sizes
// in the error, without evicting libc's; the refusal is remembered.
func TestCacheRefusesATableOverHalf(t *testing.T) {
	c := NewCache(1 << 19)
	libc, python := debianBinaries[0], debianBinaries[1]
	if _, err := c.Table("libc", "", libc); err != nil {
		t.Fatalf("libc: %v", err)
	}
	for range 2 {
		tab, err := c.Table("python3", "", python)
		var big *TooLargeError
		if !errors.As(err, &big) || tab != nil {
			t.Fatalf("python3 in a 512 KiB cache: table kept %v, err %v, want a TooLargeError", tab != nil, err)
		}
		if big.Limit != 1<<18 || big.Need <= big.Limit {
			t.Errorf("refusal says need %d, limit %d", big.Need, big.Limit)
		}
	}
	if _, ok := c.byKey["libc"]; !ok {
		t.Error("a refused table evicted libc's")
	}
	if c.Bytes() > 1<<19 {
		t.Errorf("cache holds %d bytes, bound 512 KiB", c.Bytes())
	}
	// Asked twice, refused once: the refusal is remembered.
	if n := c.Refused(); n != 1 {
		t.Errorf("refused %d builds, want 1 (python3's)", n)
	}
}

// TestGoDebugFrameNotCountedAgainstTheBound: a Go binary's .debug_frame
// is not read (its code is walked by frame pointer), so a large one must
// not get the binary refused: the refusal would also lose that its code is
// Go. The binary is a small Go program built with its DWARF, as go build
// leaves it by default; the bound is set below what its .debug_frame
// would count for.
func TestGoDebugFrameNotCountedAgainstTheBound(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	for name, text := range map[string]string{
		"go.mod":  "module hello\n\ngo 1.26\n",
		"main.go": "package main\n\nimport (\n\t\"net/http\"\n\t\"os\"\n)\n\nfunc main() { _ = http.ListenAndServe(os.Args[0], nil) }\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	df := f.Section(".debug_frame")
	f.Close()
	if df == nil {
		t.Fatal("the Go program has no .debug_frame")
	}
	limit := int(float64(df.Size) * cfiExpansion / 2)
	tab, err := buildTable("", bin, limit)
	if big := (*TooLargeError)(nil); errors.As(err, &big) || tab == nil || !tab.GoCode() {
		t.Errorf("a Go binary with %d bytes of .debug_frame under a %d-byte bound: table %v, err %v", df.Size, limit, tab, err)
	}
}

// FuzzParseFDEs feeds arbitrary sections to the parser and the table
// builder: outside input must never panic or loop.
func FuzzParseFDEs(f *testing.F) {
	// A real section's head seeds the corpus with well-formed CIEs and FDEs.
	lib, err := elf.Open("/lib/x86_64-linux-gnu/libc.so.6")
	if err != nil {
		f.Fatal(err)
	}
	eh, err := lib.Section(".eh_frame").Data()
	lib.Close()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(eh[:2048], true)
	f.Add([]byte{0x14, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 0x10, 1, 0x1b, 0x0c, 7, 8, 0x90, 1, 0, 0}, true)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}, false)
	f.Fuzz(func(t *testing.T, data []byte, eh bool) {
		fdes, _ := parseFDEs(frameSection{data: data, addr: 0x1000, eh: eh})
		rows := buildRows(fdes)
		for i := 1; i < len(rows); i++ {
			if rows[i].PC < rows[i-1].PC {
				t.Fatalf("rows out of order at %d", i)
			}
		}
	})
}

// TestTableMemory measures what the tables of libc, python3 and
// redis-server keep on the heap once built: Size, which the cache bounds,
// must account for it (the sections read while parsing are let go).
func TestTableMemory(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var tables []*Table
	sum := 0
	for _, p := range debianBinaries {
		tab, err := BuildTable("", p)
		if err != nil {
			t.Fatal(err)
		}
		tables = append(tables, tab)
		sum += tab.Size()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("3 tables: Size %d KiB, heap held %d KiB", sum>>10, held>>10)
	if held > int64(sum)*3/2+1<<20 {
		t.Errorf("tables hold %d bytes of heap, Size says %d: the cache bound undercounts", held, sum)
	}
	runtime.KeepAlive(tables)
}
