package unwind

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/unwind/internal/perfdata"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

func TestMain(m *testing.M) { cgtest.Main(m) }

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
	cgtest.RequirePrivileged(t)
	if _, err := exec.LookPath("perf"); err != nil {
		t.Fatalf("perf: %v (linux-perf, installed by hack/install-deps.sh)", err)
	}
	out := filepath.Join(t.TempDir(), "perf.data")
	g := cgtest.New(t, 512<<20)
	perfArgs := append([]string{"record", "-q", "--call-graph", "dwarf,16384", "-F", "999", "-o", out, "--"}, args...)
	p := g.Start(t, "perf", perfArgs...)
	if st := p.Wait(t, time.Duration(seconds*float64(time.Second))+60*time.Second); !st.Success() {
		t.Fatalf("perf record %v: %v", args, st)
	}
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
func frames(pcs []uint64, maps []Mapping) []frame {
	out := make([]frame, 0, len(pcs))
	for i, pc := range pcs {
		if i > 0 {
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
		st := u.Unwind(Regs{IP: s.Regs[perfdata.RegIP], SP: s.Regs[perfdata.RegSP], BP: s.Regs[perfdata.RegBP]}, s.Stack, maps)
		got := frames(st.PCs, maps)
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
	t.Logf("%d samples, %.1f%% identical to perf; %d frames, %.1f%% identical", a.samples, sp, a.frames, fp)
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
	bin := filepath.Join(t.TempDir(), "sixlevels")
	cmd := exec.Command("gcc", "-O2", "-fomit-frame-pointer", "-o", bin, "testdata/sixlevels.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// TestUnwindMatchesPerfC replays perf's own samples of a gcc -O2 program
// (no frame pointers) through Unwind and compares with perf's unwinding.
func TestUnwindMatchesPerfC(t *testing.T) {
	bin := sixLevels(t)
	r := record(t, 2, bin, "2")
	u := New(64 << 20)
	a := compare(t, r, u)
	a.check(t, 95)
	// Every level of the program must be in the stacks that reach malloc.
	full := 0
	for _, s := range r.file.Samples {
		if chain := r.perf[s.Time]; len(chain) >= 9 {
			full++
		}
	}
	if full == 0 {
		t.Errorf("no sample reached main through the six levels")
	}
}

// TestUnwindMatchesPerfPython does the same for Debian's python3 growing a
// list: the interpreter's C chain, through libc.
func TestUnwindMatchesPerfPython(t *testing.T) {
	py := "/usr/bin/python3.11"
	if _, err := os.Stat(py); err != nil {
		t.Fatalf("%s: %v", py, err)
	}
	prog := "import time\nend = time.time() + 2\nl = []\nwhile time.time() < end:\n    l.append(str(len(l)) * 8)\n    if len(l) > 200000: l = []\n"
	r := record(t, 2, py, "-c", prog)
	u := New(64 << 20)
	compare(t, r, u).check(t, 95)
}
