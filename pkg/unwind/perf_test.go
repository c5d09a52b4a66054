package unwind

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/unwind/internal/perfdata"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// sharedDir holds what outlives one test: the six-level program, whose
// recording the later tests and the benchmark replay (its table is read
// from the binary then).
var sharedDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedDir != "" {
		_ = os.RemoveAll(sharedDir)
	}
	if left := cgtest.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "cgroups left behind: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

// frame is a PC as perf script prints it: the file and the offset in it,
// callers' return addresses less one (the call instruction).
type frame struct {
	dso  string
	addr uint64
}

type recording struct {
	file *perfdata.File
	perf map[uint64][]frame
}

// record runs args under perf in a memory cgroup of the test's own and reads
// the samples and perf's user callchains.
func record(t testing.TB, seconds float64, args ...string) *recording {
	t.Helper()
	requirePerf(t)
	out := filepath.Join(t.TempDir(), "perf.data")
	g := cgtest.New(t, 512<<20)
	p := g.Start(t, "perf", append(perfRecordArgs(out), append([]string{"--"}, args...)...)...)
	if st := p.Wait(t, time.Duration(seconds*float64(time.Second))+60*time.Second); !st.Success() {
		t.Fatalf("perf record %v: %v", args, st)
	}
	return readRecording(t, out)
}

func requirePerf(t testing.TB) {
	t.Helper()
	cgtest.RequirePrivileged(t)
	if _, err := exec.LookPath("perf"); err != nil {
		t.Fatalf("perf: %v (linux-perf, installed by hack/install-deps.sh)", err)
	}
}

// perfRecordArgs copies 16 KiB of user stack per sample, as the agent's
// window will, at about 1 kHz.
func perfRecordArgs(out string) []string {
	return []string{"record", "-q", "--call-graph", "dwarf,16384", "-F", "999", "-o", out}
}

func readRecording(t testing.TB, out string) *recording {
	t.Helper()
	f, err := perfdata.Read(out)
	if err != nil {
		t.Fatalf("reading %s: %v", out, err)
	}
	script, err := exec.Command("perf", "script", "-i", out, "-F", "time,ip,dso", "--ns", "--no-inline").Output()
	if err != nil {
		t.Fatalf("perf script: %v", err)
	}
	return &recording{file: f, perf: parseScript(t, script)}
}

// parseScript reads perf script's blocks: a "TIME:" line, then one
// "ADDR (DSO)" line per frame; kernel frames are dropped.
func parseScript(t testing.TB, out []byte) map[uint64][]frame {
	t.Helper()
	chains := map[uint64][]frame{}
	var cur uint64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if strings.HasSuffix(line, ":") {
			sec, ns, ok := strings.Cut(strings.TrimSuffix(line, ":"), ".")
			s, err1 := strconv.ParseUint(sec, 10, 64)
			n, err2 := strconv.ParseUint(ns, 10, 64)
			if !ok || err1 != nil || err2 != nil || len(ns) != 9 {
				t.Fatalf("perf script time line %q", line)
			}
			cur = s*1e9 + n
			chains[cur] = []frame{}
			continue
		}
		addr, dso, ok := strings.Cut(line, " ")
		a, err := strconv.ParseUint(addr, 16, 64)
		if !ok || err != nil {
			t.Fatalf("perf script frame line %q", line)
		}
		dso = strings.Trim(dso, "()")
		if dso == "[kernel.kallsyms]" || a >= 0xffff800000000000 {
			continue
		}
		chains[cur] = append(chains[cur], frame{dso: dso, addr: a})
	}
	return chains
}

// mappings are the executable mappings of pid, from the recording's mmap
// records, as Unwind takes them.
func (r *recording) mappings(pid uint32) []Mapping {
	var maps []Mapping
	for _, m := range r.file.Mmaps {
		if m.PID != pid || !m.Executable || (!strings.HasPrefix(m.Filename, "/") && m.Filename != VDSOPath) {
			continue
		}
		maps = append(maps, Mapping{Start: m.Start, End: m.Start + m.Len, Offset: m.Pgoff, Path: m.Filename})
	}
	sort.Slice(maps, func(i, j int) bool { return maps[i].Start < maps[j].Start })
	return maps
}

// frames turns unwound PCs into perf's notation.
func frames(st Stack, maps []Mapping) []frame {
	out := make([]frame, 0, len(st.PCs))
	for i, pc := range st.PCs {
		if i > 0 && !slices.Contains(st.Interrupted, i) {
			pc--
		}
		fr := frame{dso: "[unknown]", addr: pc}
		j := sort.Search(len(maps), func(j int) bool { return maps[j].End > pc })
		if j < len(maps) && pc >= maps[j].Start {
			fr = frame{dso: maps[j].Path, addr: pc - maps[j].Start + maps[j].Offset}
		}
		out = append(out, fr)
	}
	return out
}

type agreement struct {
	samples, sameSamples int
	frames, sameFrames   int
	firstDiffs           []string
	times                []time.Duration // per Unwind, tables already built
}

// compare unwinds every sample of pid's binary and compares with perf.
func compare(t testing.TB, r *recording, u *Unwinder) agreement {
	t.Helper()
	var a agreement
	mapsByPID := map[uint32][]Mapping{}
	for _, s := range r.file.Samples {
		ref, ok := r.perf[s.Time]
		if !ok || len(ref) == 0 || s.Regs == nil {
			continue // a kernel-only sample (no user regs) has nothing to unwind
		}
		maps, ok := mapsByPID[s.PID]
		if !ok {
			maps = r.mappings(s.PID)
			mapsByPID[s.PID] = maps
		}
		regs := Regs{IP: s.Regs[perfdata.RegIP], SP: s.Regs[perfdata.RegSP], BP: s.Regs[perfdata.RegBP]}
		u.Unwind(regs, s.Stack, maps) // builds the tables outside the timing
		start := time.Now()
		st := u.Unwind(regs, s.Stack, maps)
		a.times = append(a.times, time.Since(start))
		got := frames(st, maps)
		a.samples++
		n := max(len(got), len(ref))
		a.frames += n
		same := 0
		for i := 0; i < len(got) && i < len(ref); i++ {
			if got[i] == ref[i] {
				same++
			}
		}
		a.sameFrames += same
		if same == n {
			a.sameSamples++
		} else if len(a.firstDiffs) < 5 {
			a.firstDiffs = append(a.firstDiffs, fmt.Sprintf("unwound %v\n\tperf    %v", got, ref))
		}
	}
	return a
}

func (a agreement) check(t *testing.T, minPct float64) {
	t.Helper()
	if a.samples < 100 {
		t.Fatalf("only %d samples with user stacks; expected hundreds", a.samples)
	}
	sp := 100 * float64(a.sameSamples) / float64(a.samples)
	fp := 100 * float64(a.sameFrames) / float64(a.frames)
	slices.Sort(a.times)
	t.Logf("%d samples, %.1f%% identical to perf; %d frames, %.1f%% identical; unwinding %.2f µs per sample at the median",
		a.samples, sp, a.frames, fp, float64(a.times[len(a.times)/2].Nanoseconds())/1e3)
	for _, d := range a.firstDiffs {
		t.Logf("differs: %s", d)
	}
	if sp < minPct {
		t.Errorf("%.1f%% of samples identical to perf's unwinding; want >= %.0f%%", sp, minPct)
	}
}

// sixLevels builds testdata/sixlevels.c with gcc -O2 and no frame pointers.
func sixLevels(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "unwind-test-")
	if err != nil {
		t.Fatal(err)
	}
	sharedDir = dir
	bin := filepath.Join(dir, "sixlevels")
	cmd := exec.Command("gcc", "-O2", "-fomit-frame-pointer", "-o", bin, "testdata/sixlevels.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

var (
	sixLevelsOnce sync.Once
	sixLevelsRec  *recording
)

// sixLevelsRecording records the gcc -O2 program once for the tests and the
// benchmark that replay it; the samples stay in memory.
func sixLevelsRecording(t testing.TB) *recording {
	t.Helper()
	sixLevelsOnce.Do(func() { sixLevelsRec = record(t, 2, sixLevels(t), "2") })
	if sixLevelsRec == nil {
		t.Fatal("recording the six-level program failed in an earlier test")
	}
	return sixLevelsRec
}

// TestUnwindMatchesPerfC replays perf's own samples of a gcc -O2 program
// (no frame pointers) through Unwind and compares with perf's unwinding.
func TestUnwindMatchesPerfC(t *testing.T) {
	r := sixLevelsRecording(t)
	compare(t, r, New(64<<20)).check(t, 95)
	// The program's own chain must be there, not only agree: main and the
	// six levels, in order, above malloc.
	full := 0
	for _, s := range r.file.Samples {
		if chain := r.perf[s.Time]; len(chain) >= 9 && strings.HasSuffix(chain[len(chain)-1].dso, "/sixlevels") {
			full++
		}
	}
	if full == 0 {
		t.Errorf("no sample reached _start through the six levels")
	}
}

// TestUnwindTruncatedWindow cuts the recorded windows short: the stack must
// then be a prefix of the whole one, marked truncated, never other frames.
// Whole windows end at _start (RA undefined), not truncated.
func TestUnwindTruncatedWindow(t *testing.T) {
	r := sixLevelsRecording(t)
	u := New(64 << 20)
	var whole, cut int
	for _, s := range r.file.Samples {
		if s.Regs == nil || len(s.Stack) < 1024 {
			continue
		}
		maps := r.mappings(s.PID)
		regs := Regs{IP: s.Regs[perfdata.RegIP], SP: s.Regs[perfdata.RegSP], BP: s.Regs[perfdata.RegBP]}
		full := u.Unwind(regs, s.Stack, maps)
		if len(full.PCs) < 9 {
			continue // the loader's or _start's samples: too short to cut
		}
		if full.Truncated {
			t.Errorf("a %d-byte window of a %d-frame stack is marked truncated", len(s.Stack), len(full.PCs))
		}
		whole++
		short := u.Unwind(regs, s.Stack[:96], maps)
		if len(short.PCs) > len(full.PCs) || !slices.Equal(short.PCs, full.PCs[:len(short.PCs)]) {
			t.Fatalf("a cut window gave %x, not a prefix of %x", short.PCs, full.PCs)
		}
		if len(short.PCs) < len(full.PCs) {
			cut++
			if !short.Truncated {
				t.Errorf("a cut window lost %d frames without marking the stack truncated", len(full.PCs)-len(short.PCs))
			}
		}
	}
	if whole < 100 || cut < whole*9/10 {
		t.Fatalf("%d samples, %d shortened by a 96-byte window: the test checks too little", whole, cut)
	}
	t.Logf("%d samples; a 96-byte window cut %d of them", whole, cut)
}

// BenchmarkUnwind replays the six-level program's samples; it reports the
// median time per sample next to the mean.
func BenchmarkUnwind(b *testing.B) {
	r := sixLevelsRecording(b)
	u := New(64 << 20)
	type input struct {
		regs Regs
		win  []byte
		maps []Mapping
	}
	var in []input
	for _, s := range r.file.Samples {
		if s.Regs != nil {
			in = append(in, input{Regs{IP: s.Regs[perfdata.RegIP], SP: s.Regs[perfdata.RegSP], BP: s.Regs[perfdata.RegBP]}, s.Stack, r.mappings(s.PID)})
		}
	}
	for _, x := range in { // build the tables outside the timing
		u.Unwind(x.regs, x.win, x.maps)
	}
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x := in[i%len(in)]
		start := time.Now()
		u.Unwind(x.regs, x.win, x.maps)
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds())/1e3, "median-µs/sample")
	b.ReportMetric(float64(u.Cache().Bytes()), "table-bytes")
}

// TestUnwindMatchesPerfSignal samples a program that spends its time in a
// SIGPROF handler: stacks go handler -> __restore_rt (the kernel's signal
// frame) -> the interrupted six levels -> main.
func TestUnwindMatchesPerfSignal(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sixlevels")
	cmd := exec.Command("gcc", "-O2", "-fomit-frame-pointer", "-DWITH_SIGNAL", "-o", bin, "testdata/sixlevels.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	r := record(t, 2, bin, "2")
	u := New(64 << 20)
	compare(t, r, u).check(t, 95)
	through := 0
	for _, s := range r.file.Samples {
		if s.Regs == nil {
			continue
		}
		st := u.Unwind(Regs{IP: s.Regs[perfdata.RegIP], SP: s.Regs[perfdata.RegSP], BP: s.Regs[perfdata.RegBP]}, s.Stack, r.mappings(s.PID))
		if len(st.Interrupted) > 0 && len(st.PCs) > st.Interrupted[0]+3 {
			through++
		}
	}
	t.Logf("%d samples unwound through a signal frame", through)
	if through < 20 {
		t.Errorf("only %d samples unwound through the signal frame into the interrupted code", through)
	}
}

// TestUnwindMatchesPerfPython does the same for Debian's python3 growing a
// list: the interpreter's C chain, through libc.
func TestUnwindMatchesPerfPython(t *testing.T) {
	py := debianPython(t)
	prog := "import time\nend = time.time() + 2\nl = []\nwhile time.time() < end:\n    l.append(str(len(l)) * 8)\n    if len(l) > 200000: l = []\n"
	r := record(t, 2, py, "-c", prog)
	u := New(64 << 20)
	compare(t, r, u).check(t, 95)
}

// TestUnwindMatchesPerfRedis records Debian's redis-server (jemalloc) while
// redis-benchmark fills it, attaching perf to the running server.
func TestUnwindMatchesPerfRedis(t *testing.T) {
	requirePerf(t)
	redis, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server: %v (hack/install-deps.sh installs it)", err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	g := cgtest.New(t, 512<<20)
	p := g.Start(t, redis, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no",
		"--dir", dir, "--maxmemory", "128mb", "--maxmemory-policy", "allkeys-random")
	defer p.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not open %s within 20s", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := filepath.Join(dir, "perf.data")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rec := exec.CommandContext(ctx, "perf", append(perfRecordArgs(out), "-p", strconv.Itoa(p.PID), "--", "sleep", "3")...)
	rec.Stderr = os.Stderr
	if err := rec.Start(); err != nil {
		t.Fatalf("perf record: %v", err)
	}
	bench := exec.CommandContext(ctx, "redis-benchmark", "-s", sock, "-t", "set,lpush,sadd", "-n", "2000000", "-d", "256", "-r", "1000000", "-q")
	if err := bench.Start(); err != nil {
		t.Fatalf("redis-benchmark: %v", err)
	}
	if err := rec.Wait(); err != nil {
		t.Fatalf("perf record: %v", err)
	}
	_ = bench.Process.Kill() // only the client this test started
	_ = bench.Wait()
	r := readRecording(t, out)
	compare(t, r, New(64<<20)).check(t, 95)
}

// TestUnwindGo replays samples of a Go program. perf cannot unwind Go
// (one frame per sample), so the reference is the program's own structure:
// a sample in main.grow must unwind to exactly grow, level2, level1, main,
// runtime.main, runtime.goexit. With DWARF the rows come from Go's
// .debug_frame; built with -ldflags=-w there is no CFI and the frame
// pointers carry the walk.
func TestUnwindGo(t *testing.T) {
	requirePerf(t)
	for _, tc := range []struct {
		name    string
		ldflags string
		cfi     bool
	}{
		// Go's .debug_frame is not read (Table.goCode): with it or
		// without (-w), Go code is walked by frame pointer.
		{"debug_frame", "", false},
		{"frame pointers", "-w", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "gogrow")
			build := exec.Command("go", "build", "-ldflags="+tc.ldflags, "-o", bin, "./testdata/gogrow")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			checkGoChain(t, bin, tc.cfi)
		})
	}
}

func checkGoChain(t *testing.T, bin string, cfi bool) {
	r := record(t, 2, bin, "2")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	syms, err := f.Symbols()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	funcs := syms[:0]
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
			funcs = append(funcs, s)
		}
	}
	name := func(pc uint64) string {
		for _, s := range funcs {
			if pc >= s.Value && pc < s.Value+s.Size {
				return s.Name
			}
		}
		return "?"
	}
	want := []string{"main.grow", "main.level2", "main.level1", "main.main", "runtime.main", "runtime.goexit.abi0"}
	u := New(64 << 20)
	inGrow, same, cfiFrames, fpFrames := 0, 0, 0, 0
	for _, s := range r.file.Samples {
		if s.Regs == nil {
			continue
		}
		maps := r.mappings(s.PID)
		st := u.Unwind(Regs{IP: s.Regs[perfdata.RegIP], SP: s.Regs[perfdata.RegSP], BP: s.Regs[perfdata.RegBP]}, s.Stack, maps)
		var got []string
		for i, pc := range st.PCs {
			if i > 0 {
				pc--
			}
			// gogrow is not PIE: addresses are the ELF's own.
			got = append(got, name(pc))
		}
		if len(got) == 0 || got[0] != "main.grow" {
			continue
		}
		inGrow++
		if !st.GoCode {
			t.Errorf("a stack in main.grow not marked as Go code")
		}
		cfiFrames += st.CFIFrames
		fpFrames += st.FPFrames
		if slices.Equal(got, want) && !st.Truncated {
			same++
		} else if inGrow-same <= 3 {
			t.Logf("sample in main.grow unwound to %v (truncated %v)", got, st.Truncated)
		}
	}
	if inGrow < 20 {
		t.Fatalf("only %d samples in main.grow", inGrow)
	}
	t.Logf("%d samples in main.grow, %d unwound to the whole chain; callers found by CFI %d, by frame pointer %d", inGrow, same, cfiFrames, fpFrames)
	if cfi && fpFrames > cfiFrames || !cfi && cfiFrames > 0 {
		t.Errorf("callers found by CFI %d, by frame pointer %d: not the path this binary should take", cfiFrames, fpFrames)
	}
	if same*100 < inGrow*95 {
		t.Errorf("%d of %d samples in main.grow unwound to %v", same, inGrow, want)
	}
}
