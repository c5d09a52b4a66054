package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// The frames of leakwatch's profiles must all have run: each stack is held
// against what an independent unwinder shows for the same workload (gdb
// for Go, whose DWARF CFI Debian's perf cannot use; perf's DWARF unwinding
// for C), and a frame that the reference does not show where leakwatch
// puts it fails the test. Frames leakwatch misses are allowed.

// stackSample is one sample of a profile: its function names innermost
// first (inlined frames expanded), its location addresses and mappings.
type stackSample struct {
	names []string
	addrs []uint64
	files []string // mapping file of each location, "" without one
	offs  []uint64 // offset in that file of each location
	value int64
	comm  string
}

// frameFiles names where the first n locations of s are (file base name
// and offset, "?" without a mapping), for failure messages: a stack with no
// function names says whether its addresses fell in a known file.
func frameFiles(s stackSample, n int) string {
	var out []string
	for i := range min(n, len(s.addrs)) {
		if s.files[i] == "" {
			out = append(out, fmt.Sprintf("?%#x", s.addrs[i]))
			continue
		}
		out = append(out, fmt.Sprintf("%s+%#x", filepath.Base(s.files[i]), s.offs[i]))
	}
	return strings.Join(out, " ← ")
}

// readStacks parses a downloaded profile into its samples.
func readStacks(t *testing.T, file, sampleType string) []stackSample {
	t.Helper()
	return stacksOf(t, readProfile(t, file), sampleType)
}

// stacksOf is the samples of profile p, with values of sampleType.
func stacksOf(t *testing.T, p *profile.Profile, sampleType string) []stackSample {
	t.Helper()
	idx := slices.IndexFunc(p.SampleType, func(v *profile.ValueType) bool { return v.Type == sampleType })
	if idx < 0 {
		t.Fatalf("profile has no %s", sampleType)
	}
	var out []stackSample
	for _, s := range p.Sample {
		st := stackSample{value: s.Value[idx]}
		if c := s.Label["comm"]; len(c) > 0 {
			st.comm = c[0]
		}
		for _, l := range s.Location {
			st.addrs = append(st.addrs, l.Address)
			file, off := "", l.Address
			if l.Mapping != nil {
				file, off = l.Mapping.File, l.Address-l.Mapping.Start+l.Mapping.Offset
			}
			st.files = append(st.files, file)
			st.offs = append(st.offs, off)
			for _, line := range l.Line {
				st.names = append(st.names, line.Function.Name)
			}
		}
		out = append(out, st)
	}
	return out
}

// pollStacks downloads a profile until done holds for its samples, for at
// most 30 s, and returns the last samples and whether done held: copies
// are unwound as they come and a profile waits a bounded time for them, so
// on a busy host a stack may show a few collections late, not never.
func (a *agent) pollStacks(t *testing.T, id, query, sampleType string, done func([]stackSample) bool) ([]stackSample, bool) {
	t.Helper()
	var samples []stackSample
	_, ok := a.pollProfile(t, id, query, func(p *profile.Profile) bool {
		samples = stacksOf(t, p, sampleType)
		return done(samples)
	})
	return samples, ok
}

// pollProfile downloads a profile until done holds for it, for at most
// 30 s, and returns the last one and whether done held: the agent collects
// once per interval and a busy host delays it, so a test waits for what it
// checks instead of sleeping a fixed time and reading once.
func (a *agent) pollProfile(t *testing.T, id, query string, done func(*profile.Profile) bool) (*profile.Profile, bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		p := readProfile(t, a.download(t, id, query))
		if done(p) {
			return p, true
		}
		if time.Now().After(deadline) {
			return p, false
		}
	}
}

// heldBy sums the values of the samples that match.
func heldBy(samples []stackSample, match func(stackSample) bool) int64 {
	var held int64
	for _, s := range samples {
		if match(s) {
			held += s.value
		}
	}
	return held
}

// waitStacks downloads a profile until the samples that match hold at
// least want of its sample type, for at most 30 s, and returns its samples.
func (a *agent) waitStacks(t *testing.T, id, query, sampleType string, want int64, match func(stackSample) bool) []stackSample {
	t.Helper()
	samples, ok := a.pollStacks(t, id, query, sampleType, func(s []stackSample) bool { return heldBy(s, match) >= want })
	if !ok {
		t.Fatalf("profile %s holds %d MiB of %s in the matching stacks after 30 s, want %d MiB", query, heldBy(samples, match)/mib, sampleType, want/mib)
	}
	return samples
}

// shownBy reports whether some reference stack (innermost first) shows
// every frame of stack in its order, from where the reference holds the
// stack's innermost function: frames may be missing from stack, none
// added. Past the reference's outermost frame nothing is compared (gdb
// stops at main.main, leakwatch goes on to runtime.goexit).
func shownBy(stack []string, refs [][]string) bool {
	if len(stack) == 0 {
		return false
	}
	for _, r := range refs {
		for j, name := range r {
			if name == stack[0] && isSubsequence(cutAfter(stack, r[len(r)-1]), r[j:]) {
				return true
			}
		}
	}
	return false
}

func cutAfter(s []string, last string) []string {
	if i := slices.Index(s, last); i >= 0 {
		return s[:i+1]
	}
	return s
}

func isSubsequence(s, of []string) bool {
	i := 0
	for _, name := range of {
		if i < len(s) && s[i] == name {
			i++
		}
	}
	return i == len(s)
}

// compareFrames holds every sample of comm against the reference stacks
// and returns the share of the value that the reference could check, and
// the samples it contradicts.
func compareFrames(samples []stackSample, comm string, refs [][]string) (checked float64, wrong, unchecked []stackSample) {
	hasRef := make(map[string]bool)
	for _, r := range refs {
		for _, n := range r {
			hasRef[n] = true
		}
	}
	var total, seen int64
	for _, s := range samples {
		if s.comm != comm || len(s.names) == 0 {
			continue
		}
		total += s.value
		if !hasRef[s.names[0]] {
			unchecked = append(unchecked, s) // the reference never stopped there
			continue
		}
		seen += s.value
		if !shownBy(s.names, refs) {
			wrong = append(wrong, s)
		}
	}
	slices.SortFunc(unchecked, func(a, b stackSample) int { return cmp.Compare(b.value, a.value) })
	if total == 0 {
		return 0, wrong, unchecked
	}
	return float64(seen) / float64(total), wrong, unchecked
}

// logUnchecked names the largest stacks whose leaf the reference never
// stopped at, so that a low checked share says where the bytes went.
func logUnchecked(t *testing.T, unchecked []stackSample) {
	t.Helper()
	for _, s := range unchecked[:min(len(unchecked), 5)] {
		t.Logf("unchecked: %d KiB under %v", s.value>>10, s.names[:min(len(s.names), 6)])
	}
}

// gdbStacks attaches gdb to a live process, puts a breakpoint on each
// address, runs during() and then stop() (which must end the process), and
// returns the backtraces gdb printed at the breakpoints, innermost first.
func gdbStacks(t *testing.T, pid int, addrs []uint64, during, stop func()) [][]string {
	t.Helper()
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		t.Fatalf("gdb not found (Debian package gdb; hack/install-deps.sh installs it): %v", err)
	}
	var script strings.Builder
	script.WriteString("set pagination off\nset confirm off\nhandle all nostop noprint pass\n")
	for _, a := range addrs {
		fmt.Fprintf(&script, "break *%#x\ncommands\nsilent\nbt 64\ncontinue\nend\n", a)
	}
	script.WriteString("echo LEAKWATCH-READY\\n\ncontinue\n")
	file := filepath.Join(t.TempDir(), "gdb.cmds")
	if err := os.WriteFile(file, []byte(script.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gdb, "-q", "-nx", "-batch", "-p", strconv.Itoa(pid), "-x", file)
	outFile := filepath.Join(t.TempDir(), "gdb.out")
	out, err := os.Create(outFile)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		b, _ := os.ReadFile(outFile)
		return string(b)
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(read(), "LEAKWATCH-READY") {
		if time.Now().After(deadline) {
			t.Fatalf("gdb did not attach within a minute:\n%s", read())
		}
		time.Sleep(50 * time.Millisecond)
	}
	during()
	stop()
	if err := cmd.Wait(); err != nil && ctx.Err() != nil {
		t.Fatalf("gdb did not end with the process: %v", err)
	}
	return parseBacktraces(read())
}

// parseBacktraces reads gdb's "#N  0xADDR in FUNC (args) at file:line" and
// "#N  FUNC (args) ..." lines; a "#0" starts a stack.
func parseBacktraces(s string) [][]string {
	var stacks [][]string
	for line := range strings.Lines(s) {
		num, rest, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || !strings.HasPrefix(num, "#") {
			continue
		}
		rest = strings.TrimSpace(rest)
		if strings.HasPrefix(rest, "0x") {
			if _, after, ok := strings.Cut(rest, " in "); ok {
				rest = after
			}
		}
		name, _, _ := strings.Cut(rest, " (")
		if num == "#0" || len(stacks) == 0 {
			stacks = append(stacks, nil)
		}
		stacks[len(stacks)-1] = append(stacks[len(stacks)-1], name)
	}
	return stacks
}

// perfFrame is one user frame of `perf script`: its address as perf
// prints it (the offset in the mapped file), symbol and file.
type perfFrame struct{ ip, sym, dso string }

// perfStacks reads `perf script` of a recording: the user stacks of comm,
// innermost first.
func perfStacks(t *testing.T, data, comm string) [][]perfFrame {
	t.Helper()
	out, err := exec.Command("perf", "script", "-i", data, "-F", "comm,ip,sym,dso", "--no-inline").Output()
	if err != nil {
		t.Fatalf("perf script: %v", err)
	}
	var stacks [][]perfFrame
	var cur []perfFrame
	keep := false
	flush := func() {
		if keep && len(cur) > 0 {
			stacks = append(stacks, cur)
		}
		cur, keep = nil, false
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " "):
			flush()
			keep = strings.TrimSpace(line) == comm
		default:
			// "\t<ip> <symbol> (<file>)", the symbol "[unknown]" when
			// perf has none.
			ip, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
			if strings.HasPrefix(ip, "ffffffff") { // user frames only
				continue
			}
			sym, dso := rest, ""
			if k := strings.LastIndex(rest, " ("); k >= 0 && strings.HasSuffix(rest, ")") {
				sym, dso = rest[:k], rest[k+2:len(rest)-1]
			}
			cur = append(cur, perfFrame{ip: ip, sym: sym, dso: dso})
		}
	}
	flush()
	return stacks
}

// perfNames are the symbol names of perf's stacks.
func perfNames(stacks [][]perfFrame) [][]string {
	out := make([][]string, len(stacks))
	for i, st := range stacks {
		for _, f := range st {
			// perf names a versioned symbol with its version
			// (__libc_start_main@@GLIBC_2.34); profiles name the function.
			name, _, _ := strings.Cut(f.sym, "@")
			out[i] = append(out[i], name)
		}
	}
	return out
}

// A Go program with frame pointers faults in main.retainBytes while its
// goroutines sleep: time.Sleep's frames leave return addresses where
// retainBytes's frame now is, and the word at the stack pointer is one of
// them. Every stack through retainBytes must be one gdb shows. Only those
// are judged: gdb sees what runs again while it is attached, and a path
// that ran once before (sync.Once starting the sleepers: newproc1 faulting
// in indexbytebody) shares leaf addresses with paths gdb does see, so a
// true stack of it would be called wrong (CI failed on one so).
func TestGoProfileHasNoFrameThatNeverRan(t *testing.T) {
	_, gowork := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "1s")
	g := cgtest.New(t, 512*mib)
	p := g.Start(t, gowork)
	p.Do(t, "nop")
	id := a.waitTracked(t, g.Rel)
	p.Do(t, "sleepy 64")

	retains := func(s stackSample) bool { return slices.Contains(s.names, "main.retainBytes") }
	samples := slices.DeleteFunc(a.waitStacks(t, id, "type=faults", "faulted_space", 48*mib, retains), func(s stackSample) bool { return !retains(s) })

	// gdb stops where leakwatch's stacks begin, in the workload's code.
	var addrs []uint64
	for _, s := range samples {
		if s.comm == "gowork" && strings.HasSuffix(s.files[0], "/gowork") && !slices.Contains(addrs, s.addrs[0]) {
			addrs = append(addrs, s.addrs[0])
		}
	}
	refs := gdbStacks(t, p.PID, addrs, func() { p.Do(t, "sleepy 2") }, func() {
		p.Send(t, "exit")
		p.Wait(t, time.Minute)
	})
	checked, wrong, unchecked := compareFrames(samples, "gowork", refs)
	logUnchecked(t, unchecked)
	t.Logf("%d samples, %d gdb backtraces at %d addresses; gdb checked %.0f%% of the faulted bytes; %d stacks show frames gdb does not",
		len(samples), len(refs), len(addrs), 100*checked, len(wrong))
	for _, s := range wrong {
		t.Errorf("%d MiB faulted under %v: frames that never ran there (gdb shows %v)", s.value/mib, s.names, refsWith(refs, s.names[0]))
	}
	if checked < 0.8 {
		t.Errorf("gdb checked %.0f%% of the faulted bytes, want at least 80%%", 100*checked)
	}
}

// refsWith returns the distinct reference stacks that hold name, for a
// failure message.
func refsWith(refs [][]string, name string) [][]string {
	var out [][]string
	for _, r := range refs {
		if slices.Contains(r, name) && !slices.ContainsFunc(out, func(o []string) bool { return slices.Equal(o, r) }) {
			out = append(out, r)
			if len(out) == 3 {
				break
			}
		}
	}
	return out
}

// memwork calls glibc's frameless mmap() wrapper from leak_step: the
// frame-pointer walk skips leak_step and only the leaf-return hint names
// it. perf's DWARF unwinding of the same mmap calls is the reference: the
// hint must still be taken there, and every stack must be one perf shows.
func TestNativeProfileKeepsTheSkippedCaller(t *testing.T) {
	perf, err := exec.LookPath("perf")
	if err != nil {
		t.Fatalf("perf not found (Debian package linux-perf; hack/install-deps.sh installs it): %v", err)
	}
	memwork, _ := cgtest.Workloads(t)
	a := startAgent(t, "--interval", "1s")
	g := cgtest.New(t, 512*mib)
	data := filepath.Join(t.TempDir(), "perf.data")
	// perf runs memwork as its child, inside the group, recording every
	// mmap() call (syscall 9 on x86-64; perf 6.1 records no sample of
	// syscalls:sys_enter_mmap on this kernel) from its start, with a copy
	// of its stack to unwind.
	p := g.Start(t, perf, "record", "-q", "-e", "raw_syscalls:sys_enter", "--filter", "id == 9", "--call-graph", "dwarf", "-o", data, "--", memwork)
	p.Do(t, "nop")
	id := a.waitTracked(t, g.Rel)
	p.Do(t, "leak 1024 32")

	samples := a.waitStacks(t, id, "type=inuse", "inuse_space", 32*mib, func(s stackSample) bool { return s.comm == "memwork" })
	p.Send(t, "exit")
	p.Wait(t, time.Minute)

	refs := perfNames(perfStacks(t, data, "memwork"))
	checked, wrong, unchecked := compareFrames(samples, "memwork", refs)
	logUnchecked(t, unchecked)
	var hinted, total int64
	for _, s := range samples {
		if s.comm != "memwork" {
			continue
		}
		total += s.value
		if len(s.names) > 0 && s.names[0] == "leak_step" {
			hinted += s.value
		}
	}
	t.Logf("%d samples, %d perf stacks; perf checked %.0f%% of the mapped bytes; %d stacks show frames perf does not; %.0f%% of the bytes name leak_step through the hint",
		len(samples), len(refs), 100*checked, len(wrong), 100*float64(hinted)/float64(max(total, 1)))
	for _, s := range wrong {
		t.Errorf("%d MiB mapped under %v: frames that never ran there (perf shows %v)", s.value/mib, s.names, refsWith(refs, s.names[0]))
	}
	if checked < 0.8 {
		t.Errorf("perf checked %.0f%% of the mapped bytes, want at least 80%%", 100*checked)
	}
	if hinted < 32*mib {
		t.Errorf("%d MiB under leak_step, want the 32 MiB it mapped: the hint through mmap() was not taken", hinted/mib)
	}
}

// Debian's prometheus (Go 1.19, stripped, frame pointers) in its own
// memory cgroup, scraping itself: the word at the stack pointer is never
// a hint for its Go code, so no stack of its faults or inuse profiles may
// hold a frame that its frame-pointer walk does not. perf's frame-pointer
// walk of every page fault and memory syscall the agent traces (mmap,
// mprotect, brk, mremap: glibc commits thread stacks and malloc arenas by
// mprotect, its main heap by brk) from exec on is the reference
// (perf cannot unwind Go by DWARF here, and the binary has no symbols to
// name frames by), compared by file offset: the check needs no names,
// which the symbolizer may get wrong in stripped binaries. Before the
// check, 1 to 4 stacks of ~60 per run held such a frame (a stale Go
// return address, once one in libc).
func TestStrippedGoProfileHasNoHintFrame(t *testing.T) {
	perf, err := exec.LookPath("perf")
	if err != nil {
		t.Fatalf("perf not found (Debian package linux-perf; hack/install-deps.sh installs it): %v", err)
	}
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not found (Debian package prometheus; hack/install-deps.sh installs it): %v", err)
	}
	a := startAgent(t, "--interval", "1s")
	dir := t.TempDir()
	listen := agenttest.FreePort(t)
	config := filepath.Join(dir, "prometheus.yml")
	// It scrapes itself each second, so that it keeps allocating.
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: [%q]\n", listen)
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g := cgtest.New(t, 512*mib)
	data := filepath.Join(dir, "perf.data")
	// The memory syscalls the agent traces: mmap, mprotect, brk, mremap.
	p := g.Start(t, perf, "record", "-q", "-c", "1", "--call-graph", "fp", "-o", data,
		"-e", "page-faults", "-e", "raw_syscalls:sys_enter", "--filter", "id == 9 || id == 10 || id == 12 || id == 25", "--",
		prom, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	id := a.waitTracked(t, g.Rel)
	samples := a.waitStacks(t, id, "type=faults", "faulted_space", 16*mib, func(s stackSample) bool { return s.comm == "prometheus" })
	inuse := readStacks(t, a.download(t, id, "type=inuse"), "inuse_space")
	// perf ends prometheus (SIGTERM) and writes its recording on SIGINT.
	if err := p.Cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	p.Wait(t, time.Minute)

	key := func(file string, off uint64) string { return fmt.Sprintf("%s@%x", file, off) }
	var refs [][]string
	for _, st := range perfStacks(t, data, "prometheus") {
		r := make([]string, 0, len(st))
		for _, f := range st {
			off, err := strconv.ParseUint(f.ip, 16, 64)
			if err != nil {
				t.Fatalf("perf frame address %q: %v", f.ip, err)
			}
			r = append(r, key(f.dso, off))
		}
		refs = append(refs, r)
	}
	// Stacks that begin in glibc or ld.so (thread stacks and malloc arenas
	// committed by mprotect, the brk heap, the loader's mappings) are not
	// held against perf's frame-pointer walk: they have no frame pointers,
	// so that walk skips their frameless functions, which the agent
	// unwinds from their call-frame information (that path is checked
	// against perf's DWARF unwinding in TestNativeProfileKeepsTheSkippedCaller).
	var byOffset, fromGo []stackSample
	for _, s := range append(samples, inuse...) {
		k := stackSample{value: s.value, comm: s.comm}
		for i := range s.addrs {
			k.names = append(k.names, key(s.files[i], s.offs[i]))
		}
		byOffset = append(byOffset, k)
		if len(s.files) > 0 && s.files[0] == prom {
			fromGo = append(fromGo, k)
		}
	}
	all, _, unchecked := compareFrames(byOffset, "prometheus", refs)
	checked, wrong, _ := compareFrames(fromGo, "prometheus", refs)
	logUnchecked(t, unchecked)
	t.Logf("%d faults and %d inuse samples, %d perf stacks; perf checked %.0f%% of the bytes of stacks that begin in prometheus, %.0f%% of all; %d stacks that begin in prometheus hold frames its frame-pointer walk does not",
		len(samples), len(inuse), len(refs), 100*checked, 100*all, len(wrong))
	for _, s := range wrong {
		t.Errorf("%d KiB under %v: a frame the walk does not show (perf shows %v)", s.value>>10, s.names, refsWith(refs, s.names[0]))
	}
	if checked < 0.95 {
		t.Errorf("perf checked %.0f%% of the bytes of stacks that begin in prometheus, want at least 95%%: the other stacks begin where no walk did", 100*checked)
	}
}
