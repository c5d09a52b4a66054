package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/profile"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// pyGrow speaks the cgtest protocol: "grow N" keeps N more bytearrays of
// 1 MiB, made three Python calls deep (glibc mmaps each: above its mmap
// threshold).
const pyGrow = `
import sys
kept = []
def leaf(n):
    for _ in range(n):
        kept.append(bytearray(1 << 20))
def middle(n):
    leaf(n)
def outer(n):
    middle(n)
for line in sys.stdin:
    w = line.split()
    if w and w[0] == "grow":
        outer(int(w[1]))
    print("ok", flush=True)
`

// Debian's python3 and libc are built without frame pointers: a
// frame-pointer walk from mmap stops in libc. Unwound from their
// call-frame information, the stacks of the mappings python makes reach
// the interpreter's loop and main. Held against the same agent with stack
// copies off, which must not reach them (else this test proves nothing).
func TestThirdPartyStacksUnwoundFromCFI(t *testing.T) {
	// Debian's, not another python3 first in PATH.
	python, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Fatalf("Debian's python3: %v (hack/install-deps.sh installs it)", err)
	}
	reach := func(copyBytes string) (share float64, samples []stackSample) {
		a := startAgent(t, "--interval", "1s", "--mmap-sample-bytes", "0", "--stack-copy-bytes", copyBytes)
		g := cgtest.New(t, 512*mib)
		p := g.Start(t, python, "-u", "-c", pyGrow)
		id := a.waitTracked(t, g.Rel)
		p.Do(t, "grow 64")
		reaches := func(s stackSample) bool {
			return slices.Contains(s.names, "_PyEval_EvalFrameDefault") && slices.Contains(s.names, "__libc_start_main")
		}
		samples, _ = a.pollStacks(t, id, "type=inuse", "inuse_space", func(s []stackSample) bool {
			all := heldBy(s, func(stackSample) bool { return true })
			return all >= 64*mib && (copyBytes == "0" || heldBy(s, reaches) >= all*9/10)
		})
		all, whole := heldBy(samples, func(stackSample) bool { return true }), heldBy(samples, reaches)
		if all < 64*mib {
			t.Fatalf("stack copies %s: inuse_space %.1f MiB, want the 64 MiB kept", copyBytes, float64(all)/mib)
		}
		g.Remove(t)
		return float64(whole) / float64(all), samples
	}
	logTop := func(what string, samples []stackSample) {
		slices.SortFunc(samples, func(a, b stackSample) int { return int(b.value - a.value) })
		for _, s := range samples[:min(3, len(samples))] {
			t.Logf("%s: %6.1f MiB %s", what, float64(s.value)/mib, strings.Join(s.names[:min(12, len(s.names))], " ← "))
			for i := range s.addrs[:min(4, len(s.addrs))] {
				t.Logf("   %#x %s+%#x", s.addrs[i], s.files[i], s.offs[i])
			}
		}
	}

	share, samples := reach("16384")
	logTop("unwound", samples)
	t.Logf("with stack copies: %.0f%% of inuse bytes reach _PyEval_EvalFrameDefault and __libc_start_main", 100*share)
	if share < 0.9 {
		t.Errorf("with stack copies: %.0f%% of inuse bytes reach the interpreter loop and __libc_start_main, want at least 90%%", 100*share)
	}
	base, samples := reach("0")
	logTop("frame pointers", samples)
	t.Logf("frame pointers only: %.0f%%", 100*base)
	if base > 0.5 {
		t.Errorf("frame pointers alone reached the interpreter loop for %.0f%% of bytes: this python3 has frame pointers, so it cannot tell unwinding works", 100*base)
	}
}

// Debian's redis-server (jemalloc, no frame pointers) filled with keys by
// DEBUG POPULATE: the pages it faults in are redis's own, under its command
// loop. Unwound, at least 80% of the faulted bytes reach debugCommand and
// main through jemalloc; the frame-pointer walk alone must not (else this
// test proves nothing).
func TestRedisFaultsUnwoundToItsCommand(t *testing.T) {
	redis, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server: %v (hack/install-deps.sh installs it)", err)
	}
	reach := func(copyBytes string) float64 {
		a := startAgent(t, "--interval", "1s", "--stack-copy-bytes", copyBytes)
		g := cgtest.New(t, 512*mib)
		_, conn := startRedis(t, g, redis)
		id := a.waitTracked(t, g.Rel)
		if _, err := fmt.Fprintf(conn, "DEBUG POPULATE 300000 key 256\r\n"); err != nil {
			t.Fatal(err)
		}
		reply := make([]byte, 64)
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		if n, err := conn.Read(reply); err != nil || !strings.HasPrefix(string(reply[:n]), "+OK") {
			t.Fatalf("DEBUG POPULATE: %q, %v", reply[:max(n, 0)], err)
		}
		reaches := func(s stackSample) bool {
			return slices.Contains(s.names, "debugCommand") && slices.Contains(s.names, "main")
		}
		samples, _ := a.pollStacks(t, id, "type=faults", "faulted_space", func(s []stackSample) bool {
			all := heldBy(s, func(stackSample) bool { return true })
			return all >= 32*mib && (copyBytes == "0" || heldBy(s, reaches) >= all*8/10)
		})
		all, whole := heldBy(samples, func(stackSample) bool { return true }), heldBy(samples, reaches)
		slices.SortFunc(samples, func(a, b stackSample) int { return int(b.value - a.value) })
		for _, s := range samples[:min(3, len(samples))] {
			t.Logf("copies %s: %6.1f MiB %s", copyBytes, float64(s.value)/mib, strings.Join(s.names[:min(14, len(s.names))], " ← "))
		}
		if all < 32*mib {
			t.Fatalf("stack copies %s: %.1f MiB faulted, want the tens of MiB redis filled", copyBytes, float64(all)/mib)
		}
		g.Remove(t)
		return float64(whole) / float64(all)
	}
	share := reach("16384")
	t.Logf("with stack copies: %.0f%% of faulted bytes reach debugCommand and main", 100*share)
	if share < 0.8 {
		t.Errorf("with stack copies: %.0f%% of faulted bytes reach debugCommand and main, want at least 80%%", 100*share)
	}
	base := reach("0")
	t.Logf("frame pointers only: %.0f%%", 100*base)
	if base > 0.5 {
		t.Errorf("frame pointers alone reached redis's command for %.0f%% of faulted bytes: this redis-server has frame pointers, so it cannot tell unwinding works", 100*base)
	}
}

// A C program without frame pointers, as compilers build it by default
// (gcc and clang at -O2; PIE, non-PIE and static), leaks through six
// noinline levels by a direct mmap, by malloc on the brk heap, and by malloc
// in a thread's arena: every level shows, in order, in the inuse and faults
// profiles, for at least 90% of the inuse bytes and 70% of the sampled
// faulted bytes (sampled every 512 KiB) that it leaked.
func TestOptimizedCLevelsUnwound(t *testing.T) {
	src := filepath.Join("..", "workloads", "deepleak.c")
	a := startAgent(t, "--interval", "1s", "--mmap-sample-bytes", "0")
	chain := []string{"level6", "level5", "level4", "level3", "level2", "level1"}
	for _, build := range []struct {
		name, cc string
		flags    []string
	}{
		{"gcc-O2-pie", "gcc", []string{"-O2", "-pie", "-fPIE"}},
		{"gcc-O2-nopie", "gcc", []string{"-O2", "-no-pie"}},
		{"gcc-O2-static", "gcc", []string{"-O2", "-static"}},
		{"clang-O2", "clang", []string{"-O2"}},
	} {
		t.Run(build.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "deepleak")
			args := append(append([]string{}, build.flags...), "-pthread", "-o", bin, src)
			compile(t, build.cc, args...)
			g := cgtest.New(t, 512*mib)
			p := g.Start(t, bin)
			p.Do(t, "nop")
			id := a.waitTracked(t, g.Rel)
			const kib = 16 << 10 // each way: 16 MiB
			for _, cmd := range []string{"mmap", "malloc", "arena"} {
				p.Do(t, fmt.Sprintf("%s %d", cmd, kib))
			}
			for _, view := range []struct {
				query, sampleType string
				want              float64
			}{
				{"type=inuse", "inuse_space", 0.9},
				{"type=faults", "faulted_space", 0.7},
			} {
				leaked := int64(3 * kib << 10)
				under := func(s stackSample) bool { return isSubsequence(chain, s.names) }
				samples, _ := a.pollStacks(t, id, view.query, view.sampleType, func(s []stackSample) bool {
					return float64(heldBy(s, under)) >= view.want*float64(leaked)
				})
				whole := heldBy(samples, under)
				t.Logf("%s: %.1f of %.0f MiB leaked under all six levels", view.sampleType, float64(whole)/mib, float64(leaked)/mib)
				if float64(whole) < view.want*float64(leaked) {
					slices.SortFunc(samples, func(a, b stackSample) int { return int(b.value - a.value) })
					for _, s := range samples[:min(4, len(samples))] {
						t.Logf("  %6.1f MiB %s", float64(s.value)/mib, strings.Join(s.names[:min(12, len(s.names))], " ← "))
						t.Logf("           at %s", frameFiles(s, 12))
					}
					for _, r := range []string{"copied", "over_budget", "ring_full", "unreadable", "unwound", "truncated", "fell_back", "over_limits", "queue_full"} {
						t.Logf("  stack copies %s: %.0f", r, a.metricSum(t, "leakwatch_stack_copies_total", `result="`+r+`"`))
					}
					t.Errorf("%s: %.1f MiB under level6 ← … ← level1, want at least %.0f%% of the %.0f MiB leaked", view.sampleType, float64(whole)/mib, 100*view.want, float64(leaked)/mib)
				}
			}
			g.Remove(t)
		})
	}
}

// A cgo program leaks through C called from Go: the C frames (cgo builds C
// at -O2, without frame pointers) come from the unwound stack; at least 90%
// of the inuse bytes show c_level2 ← c_level1 (the frame-pointer walk alone
// shows none). Its Go callers are on the goroutine's stack, which the C code
// does not run on (cgo switches to the system stack), so they are shown only
// where the kernel's frame-pointer walk reaches them: logged, not required.
func TestCgoStackShowsItsCFrames(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cgoleak")
	build := exec.Command("go", "build", "-o", bin, "./test/workloads/cgoleak")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(build.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	a := startAgent(t, "--interval", "1s", "--mmap-sample-bytes", "0")
	g := cgtest.New(t, 512*mib)
	p := g.Start(t, bin)
	id := a.waitTracked(t, g.Rel)
	p.Do(t, "leak 64")
	inC := func(s stackSample) bool { return isSubsequence([]string{"c_level2", "c_level1"}, s.names) }
	samples, _ := a.pollStacks(t, id, "type=inuse", "inuse_space", func(s []stackSample) bool { return heldBy(s, inC) >= 64*mib*9/10 })
	cFrames := heldBy(samples, inC)
	goToo := heldBy(samples, func(s stackSample) bool { return inC(s) && slices.Contains(s.names, "main.leakViaC") })
	t.Logf("%.1f of 64 MiB under c_level2 ← c_level1; %.1f MiB of it with main.leakViaC", float64(cFrames)/mib, float64(goToo)/mib)
	if cFrames < 64*mib*9/10 {
		slices.SortFunc(samples, func(a, b stackSample) int { return int(b.value - a.value) })
		for _, s := range samples[:min(4, len(samples))] {
			t.Logf("  %6.1f MiB %s", float64(s.value)/mib, strings.Join(s.names[:min(14, len(s.names))], " ← "))
		}
		t.Errorf("%.1f MiB under c_level2 ← c_level1, want at least 90%% of the 64 MiB leaked", float64(cFrames)/mib)
	}
}

// Edge cases of unwinding, on the -O2 C program: a stack deeper than the
// copied window ends with the truncation frame (a true prefix: grow and
// its recursion on top); a mapping made in a signal handler unwinds
// through the signal frame to main; a library loaded with dlopen after the
// process's maps were captured unwinds (the maps are read again); a process
// that exits right after allocating, from a binary whose table nothing has
// built yet, keeps its unwound stack in the growth profile.
func TestUnwindEdgeCases(t *testing.T) {
	dir := t.TempDir()
	bin, lib := filepath.Join(dir, "deepleak"), filepath.Join(dir, "deeplib.so")
	for _, args := range [][]string{
		{"-O2", "-pthread", "-o", bin, filepath.Join("..", "workloads", "deepleak.c"), "-ldl"},
		{"-O2", "-shared", "-fPIC", "-o", lib, filepath.Join("..", "workloads", "deeplib.c")},
	} {
		compile(t, "gcc", args...)
	}
	a := startAgent(t, "--interval", "1s", "--mmap-sample-bytes", "0")
	under := func(t *testing.T, samples []stackSample, chain []string) (whole int64) {
		for _, s := range samples {
			if isSubsequence(chain, s.names) {
				whole += s.value
			}
		}
		if whole == 0 {
			slices.SortFunc(samples, func(a, b stackSample) int { return int(b.value - a.value) })
			for _, s := range samples[:min(4, len(samples))] {
				t.Logf("  %6.1f MiB %s", float64(s.value)/mib, strings.Join(s.names[:min(14, len(s.names))], " ← "))
				for i := range s.addrs[:min(6, len(s.addrs))] {
					t.Logf("      %#x %s+%#x", s.addrs[i], s.files[i], s.offs[i])
				}
			}
		}
		return whole
	}
	for _, tc := range []struct {
		name, cmd string
		chain     []string
	}{
		{"deep recursion", "deep 2000 16384", []string{"grow", "recurse", "recurse", "recurse", profile.TruncatedFrame}},
		{"signal handler", "signal 16384", []string{"grow", "level6", "level1", "on_signal", "main"}},
		{"dlopen", "dlopen " + lib + " 16384", []string{"lib_level2", "lib_level1", "lib_leak", "main"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := cgtest.New(t, 512*mib)
			p := g.Start(t, bin)
			p.Do(t, "nop")
			id := a.waitTracked(t, g.Rel)
			p.Do(t, tc.cmd)
			time.Sleep(2500 * time.Millisecond) // two collections
			whole := under(t, readStacks(t, a.download(t, id, "type=inuse"), "inuse_space"), tc.chain)
			t.Logf("%.1f of 16 MiB under %v", float64(whole)/mib, tc.chain)
			if whole < 16*mib*9/10 {
				t.Errorf("%.1f MiB under %v, want at least 90%% of the 16 MiB", float64(whole)/mib, tc.chain)
			}
			g.Remove(t)
		})
	}
	t.Run("binary replaced on disk", func(t *testing.T) {
		// Another build (-O1: other code at other addresses) renamed over
		// the running binary: its table must come from what is mapped.
		running := filepath.Join(dir, "deepleak-replaced")
		other := filepath.Join(dir, "deepleak-O1")
		for _, args := range [][]string{
			{"-O2", "-pthread", "-o", running, filepath.Join("..", "workloads", "deepleak.c")},
			{"-O1", "-DFRESH=1", "-pthread", "-o", other, filepath.Join("..", "workloads", "deepleak.c")},
		} {
			compile(t, "gcc", args...)
		}
		g := cgtest.New(t, 512*mib)
		p := g.Start(t, running)
		p.Do(t, "nop")
		id := a.waitTracked(t, g.Rel)
		if err := os.Rename(other, running); err != nil {
			t.Fatal(err)
		}
		p.Do(t, "mmap 16384")
		time.Sleep(2500 * time.Millisecond) // two collections
		chain := []string{"grow", "level6", "level1", "main"}
		whole := under(t, readStacks(t, a.download(t, id, "type=inuse"), "inuse_space"), chain)
		t.Logf("%.1f of 16 MiB under %v with the binary replaced", float64(whole)/mib, chain)
		if whole < 16*mib*9/10 {
			t.Errorf("%.1f MiB under %v, want at least 90%% of the 16 MiB", float64(whole)/mib, chain)
		}
		g.Remove(t)
	})
	t.Run("OOM record", func(t *testing.T) {
		g := cgtest.New(t, 64*mib)
		p := g.Start(t, bin)
		p.Do(t, "nop")
		a.waitTracked(t, g.Rel)
		p.Send(t, "oom")
		if st := p.Wait(t, 60*time.Second); st.Success() {
			t.Fatal("deepleak exited cleanly, want OOM-killed")
		}
		k := a.waitOOMRecord(t, p.PID, "deepleak")
		t.Logf("top stacks:\n%s", strings.Join(k.TopStacks, "\n"))
		// A record's stacks show their four innermost frames: the fault
		// in memset, then the levels (the frame-pointer walk stopped in
		// memset).
		if len(k.TopStacks) == 0 || !strings.Contains(k.TopStacks[0], " < grow < level6 < level5") {
			t.Errorf("the record's top stack does not show grow and its callers: %q", k.TopStacks)
		}
	})
	t.Run("exit right after", func(t *testing.T) {
		fresh := filepath.Join(dir, "deepleak-fresh")
		args := []string{"-O2", "-DFRESH=1", "-pthread", "-o", fresh, filepath.Join("..", "workloads", "deepleak.c"), "-ldl"}
		compile(t, "gcc", args...)
		g := cgtest.New(t, 512*mib)
		p := g.Start(t, fresh)
		p.Do(t, "nop")
		id := a.waitTracked(t, g.Rel)
		p.Send(t, "mmapexit 16384")
		p.Wait(t, 30*time.Second)
		time.Sleep(2500 * time.Millisecond) // two collections
		chain := []string{"grow", "level6", "level1", "main"}
		whole := under(t, readStacks(t, a.download(t, id, "type=inuse&seconds=30"), "inuse_space"), chain)
		t.Logf("%.1f of 16 MiB under %v after the process exited", float64(whole)/mib, chain)
		if whole < 16*mib*9/10 {
			t.Errorf("%.1f MiB under %v, want at least 90%% of the 16 MiB", float64(whole)/mib, chain)
		}
	})
}

// A C++ program built by g++ -O2 (exceptions: its .eh_frame has personality
// routines and LSDAs; an inlined helper that may throw) leaks through a
// member function called in a try block: at least 90% of the inuse bytes
// show Store::grow ← handle ← main.
func TestCppStackUnwound(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cppleak")
	compile(t, "g++", "-O2", "-o", bin, filepath.Join("..", "workloads", "cppleak.cpp"))
	a := startAgent(t, "--interval", "1s", "--mmap-sample-bytes", "0")
	g := cgtest.New(t, 512*mib)
	p := g.Start(t, bin)
	p.Do(t, "nop")
	id := a.waitTracked(t, g.Rel)
	p.Do(t, "grow 32")
	time.Sleep(2500 * time.Millisecond) // two collections
	samples := readStacks(t, a.download(t, id, "type=inuse"), "inuse_space")
	var whole int64
	for _, s := range samples {
		i := slices.IndexFunc(s.names, func(n string) bool { return strings.HasPrefix(n, "Store::grow") })
		if i >= 0 && isSubsequence([]string{"handle", "main"}, trimArgs(s.names[i+1:])) {
			whole += s.value
		}
	}
	t.Logf("%.1f of 32 MiB under Store::grow ← handle ← main", float64(whole)/mib)
	if whole < 32*mib*9/10 {
		slices.SortFunc(samples, func(a, b stackSample) int { return int(b.value - a.value) })
		for _, s := range samples[:min(4, len(samples))] {
			t.Logf("  %6.1f MiB %s", float64(s.value)/mib, strings.Join(s.names[:min(12, len(s.names))], " ← "))
		}
		t.Errorf("%.1f MiB under Store::grow ← handle ← main, want at least 90%% of the 32 MiB", float64(whole)/mib)
	}
}

// trimArgs drops C++ parameter lists: "handle(Store&, long)" is handle.
func trimArgs(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i], _, _ = strings.Cut(n, "(")
	}
	return out
}

// compile runs a compiler (gcc, g++, clang) with args, failing the test
// with its output.
func compile(t *testing.T, cc string, args ...string) {
	t.Helper()
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", cc, args, err, out)
	}
}
