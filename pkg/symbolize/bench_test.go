package symbolize

import (
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// The benchmarks symbolize a live process of a large Go binary (the
// toolchain's compiler, 26 MB, waiting on its stdin) and of a C program
// (cat, whose functions are libc's). They use the public API only, so the
// same file measures an older tree.
//
//	go test -run '^$' -bench . -benchmem -count 10 ./pkg/symbolize/
//
// Cold loads the tables anew each op (New, Symbolize, Close); Warm
// symbolizes with the tables loaded. Both report retained-heap-B: the
// HeapInuse that one Symbolizer holding the tables adds, after a GC.

// benchStackDepth is how many addresses one Symbolize resolves.
const benchStackDepth = 64

type benchTarget struct {
	pid   uint32
	addrs []uint64 // inside functions of file, one stack of benchStackDepth
}

type namedTarget struct {
	name string
	benchTarget
}

func benchTargets(b *testing.B) []namedTarget {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root to read another process's maps")
	}
	tooldir, err := exec.Command("go", "env", "GOTOOLDIR").Output()
	if err != nil {
		b.Fatalf("go env GOTOOLDIR: %v", err)
	}
	compile := filepath.Join(strings.TrimSpace(string(tooldir)), "compile")
	cat, err := exec.LookPath("cat")
	if err != nil {
		b.Fatal(err)
	}
	return []namedTarget{
		// compile removes its output when it fails, as it does once its
		// stdin closes: never let that be /dev/null.
		{"go-compile", startBenchTarget(b, compile, "compile", compile, "-o", filepath.Join(b.TempDir(), "x.o"), "-p", "x", "/dev/stdin")},
		{"c-libc", startBenchTarget(b, "libc.so", "libc", cat)},
	}
}

// startBenchTarget runs argv waiting on its stdin and picks addresses in
// the functions of the mapped file whose path contains file.
func startBenchTarget(b *testing.B, file, name string, argv ...string) benchTarget {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := uint32(cmd.Process.Pid)
	// The dynamic loader maps libraries after exec: wait for the file.
	var exe []mapsEntry
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			b.Fatal(err)
		}
		entries, err := parseMaps(data)
		if err != nil {
			b.Fatal(err)
		}
		exe = slices.DeleteFunc(entries, func(e mapsEntry) bool { return !e.executable() || !strings.Contains(e.Path, file) })
		if len(exe) > 0 {
			break
		}
	}
	if len(exe) == 0 {
		b.Fatalf("%s does not map %s", argv[0], file)
	}
	path := exe[0].Path
	f, err := elf.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	syms, _ := f.Symbols()
	dyn, _ := f.DynamicSymbols()
	var addrs []uint64
	for _, s := range append(syms, dyn...) {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size < 2 {
			continue
		}
		for _, p := range f.Progs {
			if p.Type != elf.PT_LOAD || s.Value < p.Vaddr || s.Value-p.Vaddr >= p.Filesz {
				continue
			}
			off := s.Value + s.Size/2 - p.Vaddr + p.Off
			for _, e := range exe {
				if off >= e.Offset && off-e.Offset < e.End-e.Start {
					addrs = append(addrs, e.Start+off-e.Offset)
				}
			}
		}
	}
	if len(addrs) < benchStackDepth {
		b.Fatalf("%s: %d functions", path, len(addrs))
	}
	// Spread over the whole table.
	stack := make([]uint64, benchStackDepth)
	for i := range stack {
		stack[i] = addrs[i*(len(addrs)/benchStackDepth)]
	}
	b.Logf("%s: %s, pid %d, %d functions", name, path, pid, len(addrs))
	return benchTarget{pid: pid, addrs: stack}
}

func benchSymbolize(b *testing.B, s *Symbolizer, t benchTarget) {
	b.Helper()
	locs, err := s.Symbolize(t.pid, 0, t.addrs)
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range locs {
		if len(l.Frames) == 0 {
			b.Fatalf("%#x unsymbolized", l.Address)
		}
	}
}

// retainedHeap is the heap one Symbolizer holds with t's tables loaded.
func retainedHeap(b *testing.B, t benchTarget) uint64 {
	b.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := New(Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchSymbolize(b, s, t)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	_ = s.Close()
	return after.HeapInuse - min(after.HeapInuse, before.HeapInuse)
}

func BenchmarkSymbolizeCold(b *testing.B) {
	for _, t := range benchTargets(b) {
		b.Run(t.name, func(b *testing.B) {
			retained := retainedHeap(b, t.benchTarget)
			b.ReportAllocs()
			for b.Loop() {
				s, err := New(Config{}, nil)
				if err != nil {
					b.Fatal(err)
				}
				benchSymbolize(b, s, t.benchTarget)
				_ = s.Close()
			}
			b.ReportMetric(float64(retained), "retained-heap-B")
		})
	}
}

func BenchmarkSymbolizeWarm(b *testing.B) {
	for _, t := range benchTargets(b) {
		b.Run(t.name, func(b *testing.B) {
			retained := retainedHeap(b, t.benchTarget)
			s, err := New(Config{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			benchSymbolize(b, s, t.benchTarget)
			b.ReportAllocs()
			for b.Loop() {
				benchSymbolize(b, s, t.benchTarget)
			}
			b.ReportMetric(float64(retained), "retained-heap-B")
		})
	}
}
