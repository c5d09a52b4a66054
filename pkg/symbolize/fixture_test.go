package symbolize

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixtureDir holds the binaries the tests build, once per run.
var fixtureDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "symbolize-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtureDir = dir
	before := openFDs()
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		for fd, target := range openFDs() {
			if _, ok := before[fd]; !ok {
				fmt.Fprintf(os.Stderr, "file descriptor %s (%s) left open by the tests\n", fd, target)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// openFDs lists this process's file descriptors, without those of the Go
// runtime's poller, which it creates on first use and keeps.
func openFDs() map[string]string {
	fds := map[string]string{}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || strings.HasPrefix(target, "anon_inode:") {
			continue // err: the descriptor ReadDir itself used
		}
		fds[e.Name()] = target
	}
	return fds
}

var (
	buildMu sync.Mutex
	built   = map[string]error{}
)

// build compiles a fixture once per test run; tool is "cc", "g++", "go"
// (testdata/gofixture, without cgo, for GOARCH after a colon: "go:386") or
// "cgo" (testdata/cgofixture).
func build(t *testing.T, tool, name string, args ...string) string {
	t.Helper()
	tool, goarch, _ := strings.Cut(tool, ":")
	needs := []string{tool}
	if tool == "cgo" {
		needs = []string{"go", "cc"}
	}
	for _, n := range needs {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not found: the fixture binaries cannot be built", n)
		}
	}
	out := filepath.Join(fixtureDir, name)
	buildMu.Lock()
	defer buildMu.Unlock()
	if err, ok := built[out]; ok {
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var cmd *exec.Cmd
	if tool == "go" || tool == "cgo" {
		// A module of its own, so the build does not depend on this
		// repository's go.mod.
		src := filepath.Join(fixtureDir, name+"-src")
		err := os.MkdirAll(src, 0o755)
		if err == nil {
			err = os.WriteFile(filepath.Join(src, "go.mod"), []byte("module gofixture\n\ngo 1.20\n"), 0o644)
		}
		if err == nil {
			var data []byte
			if data, err = os.ReadFile("testdata/" + tool + "fixture/main.go"); err == nil {
				err = os.WriteFile(filepath.Join(src, "main.go"), data, 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command("go", append(append([]string{"build", "-o", out}, args...), ".")...)
		cmd.Dir = src
		cgo := "CGO_ENABLED=0"
		if tool == "cgo" {
			cgo = "CGO_ENABLED=1"
		}
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false", cgo)
		if goarch != "" {
			cmd.Env = append(cmd.Env, "GOARCH="+goarch)
		}
	} else {
		cmd = exec.Command(tool, append(args, "-o", out)...)
	}
	msg, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("building %s: %w\n%s", name, err, msg)
	}
	built[out] = err
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func buildC(t *testing.T, name string, flags ...string) string {
	return build(t, "cc", name, append([]string{"-O1", "-g0", "testdata/fixture.c"}, flags...)...)
}

// fixture is a running fixture process.
type fixture struct {
	cmd   *exec.Cmd
	pid   uint32
	start uint64
	vals  map[string]uint64 // what it printed: "addr", "ret"
}

// start runs a fixture and reads the addresses it prints; the process ends
// when the test does.
func start(t *testing.T, path string, want ...string) *fixture {
	t.Helper()
	cmd := exec.Command(path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &fixture{cmd: cmd, pid: uint32(cmd.Process.Pid), vals: map[string]uint64{}}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	timeout := time.After(10 * time.Second)
	for len(f.vals) < len(want) {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("%s exited before printing %v", path, want)
			}
			k, v, _ := strings.Cut(line, " ")
			n, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
			if err != nil {
				t.Fatalf("%s printed %q", path, line)
			}
			f.vals[k] = n
		case <-timeout:
			t.Fatalf("%s printed nothing within 10s", path)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", f.pid))
	if err != nil {
		t.Fatal(err)
	}
	ticks, err := statStartTime(stat)
	if err != nil {
		t.Fatal(err)
	}
	f.start = ticks * (1e9 / clockTicks)
	return f
}

func (f *fixture) stop(t *testing.T) {
	t.Helper()
	_ = f.cmd.Process.Kill()
	_ = f.cmd.Wait()
}

func newTestSymbolizer(t *testing.T, cfg Config) *Symbolizer {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func symbolize(t *testing.T, s *Symbolizer, f *fixture, addrs ...uint64) []Location {
	t.Helper()
	locs, err := s.Symbolize(f.pid, f.start, addrs)
	if err != nil {
		t.Fatal(err)
	}
	if len(locs) != len(addrs) {
		t.Fatalf("%d locations for %d addresses", len(locs), len(addrs))
	}
	for i, l := range locs {
		if l.Address != addrs[i] {
			t.Errorf("location %d has address %#x, want %#x", i, l.Address, addrs[i])
		}
	}
	return locs
}

func funcName(l Location) string {
	if len(l.Frames) == 0 {
		return fmt.Sprintf("<unknown %#x>", l.Address)
	}
	return l.Frames[len(l.Frames)-1].Function
}

func symbolSize(t *testing.T, path, name string) uint64 {
	t.Helper()
	for _, s := range elfSymbols(t, path) {
		if s.Name == name {
			return s.Size
		}
	}
	t.Fatalf("no symbol %s in %s", name, path)
	return 0
}

func fileBuildID(t *testing.T, path string) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readBuildID(f, func(uint64, uint64) bool { return true })
}

func TestNativeBinaries(t *testing.T) {
	tests := []struct {
		name, tool, src string
		flags           []string
		want, mangled   string
	}{
		{name: "c-pie", tool: "cc", src: "testdata/fixture.c", flags: []string{"-fPIE", "-pie"}, want: "leakwatch_grow"},
		{name: "c-nopie", tool: "cc", src: "testdata/fixture.c", flags: []string{"-fno-pie", "-no-pie"}, want: "leakwatch_grow"},
		{name: "c-pie-stripped", tool: "cc", src: "testdata/fixture.c", flags: []string{"-fPIE", "-pie", "-rdynamic", "-s"}, want: "leakwatch_grow"},
		{name: "c-nopie-stripped", tool: "cc", src: "testdata/fixture.c", flags: []string{"-fno-pie", "-no-pie", "-rdynamic", "-s"}, want: "leakwatch_grow"},
		{name: "cxx", tool: "g++", src: "testdata/fixture.cc", want: "lw::Widget::grow", mangled: "_ZN2lw6Widget4growEi"},
		{name: "cxx-stripped", tool: "g++", src: "testdata/fixture.cc", flags: []string{"-rdynamic", "-s"}, want: "lw::Widget::grow", mangled: "_ZN2lw6Widget4growEi"},
	}
	s := newTestSymbolizer(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := build(t, tt.tool, tt.name, append([]string{"-O1", "-g0", tt.src}, tt.flags...)...)
			f := start(t, bin, "addr")
			if err := s.Capture(f.pid, f.start); err != nil {
				t.Fatal(err)
			}
			addr := f.vals["addr"]
			// As the innermost frame the address itself is looked up; as a
			// return address the byte before it.
			locs := symbolize(t, s, f, addr, addr+1)
			for i, l := range locs {
				if got := funcName(l); got != tt.want {
					t.Errorf("frame %d at %#x: function %q, want %q", i, l.Address, got, tt.want)
				}
				if l.Mapping == nil {
					t.Fatalf("frame %d at %#x: no mapping", i, l.Address)
				}
				if l.Mapping.File != bin {
					t.Errorf("mapping file %q, want %q", l.Mapping.File, bin)
				}
				if want := fileBuildID(t, bin); l.Mapping.BuildID != want {
					t.Errorf("mapping build id %q, want %q", l.Mapping.BuildID, want)
				}
				if l.Address < l.Mapping.Start || l.Address >= l.Mapping.Limit {
					t.Errorf("address %#x outside its mapping %#x-%#x", l.Address, l.Mapping.Start, l.Mapping.Limit)
				}
			}
			if tt.mangled != "" && locs[0].Frames[0].SystemName != tt.mangled {
				t.Errorf("system name %q, want %q", locs[0].Frames[0].SystemName, tt.mangled)
			}
		})
	}
}

// A call that ends a function returns to the first byte after it; the
// frame must still name the caller.
func TestReturnAddressAtFunctionEnd(t *testing.T) {
	bin := buildC(t, "c-pie", "-fPIE", "-pie")
	f := start(t, bin, "addr")
	s := newTestSymbolizer(t, Config{})
	end := f.vals["addr"] + symbolSize(t, bin, "leakwatch_grow")
	locs := symbolize(t, s, f, 0, end)
	if got := funcName(locs[1]); got != "leakwatch_grow" {
		t.Errorf("return address %#x: function %q, want leakwatch_grow", end, got)
	}
}

func TestGoBinary(t *testing.T) {
	src, err := os.ReadFile("testdata/gofixture/main.go")
	if err != nil {
		t.Fatal(err)
	}
	mark := func(m string) int {
		for i, l := range strings.Split(string(src), "\n") {
			if strings.Contains(l, "MARK:"+m) {
				return i + 1
			}
		}
		t.Fatalf("no MARK:%s in the fixture", m)
		return 0
	}
	for _, tt := range []struct {
		name  string
		flags []string
	}{
		{"go", nil},
		{"go-stripped", []string{"-ldflags=-s -w"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bin := build(t, "go", tt.name, tt.flags...)
			f := start(t, bin, "addr", "ret")
			s := newTestSymbolizer(t, Config{})
			locs := symbolize(t, s, f, f.vals["addr"], f.vals["ret"])

			entry := locs[0]
			if len(entry.Frames) != 1 || entry.Frames[0].Function != "main.outer" || !strings.HasSuffix(entry.Frames[0].File, "/main.go") {
				t.Errorf("entry of outer: frames %+v, want main.outer in main.go", entry.Frames)
			}
			if entry.Mapping == nil || entry.Mapping.BuildID == "" || !entry.Mapping.HasLineNumbers {
				t.Errorf("mapping %+v: want a build id and line numbers", entry.Mapping)
			}

			want := []Frame{
				{Function: "main.grow", SystemName: "main.grow", Line: mark("callers"), Inlined: true},
				{Function: "main.outer", SystemName: "main.outer", Line: mark("grow")},
			}
			got := locs[1].Frames
			if len(got) != len(want) {
				t.Fatalf("return address in inlined grow: frames %+v, want %+v", got, want)
			}
			for i := range want {
				g := got[i]
				g.File, g.StartLine = "", 0
				if g != want[i] {
					t.Errorf("frame %d: %+v, want %+v", i, got[i], want[i])
				}
				if !strings.HasSuffix(got[i].File, "/main.go") || got[i].StartLine == 0 {
					t.Errorf("frame %d: file %q, start line %d", i, got[i].File, got[i].StartLine)
				}
			}
			if !locs[1].Mapping.HasInlineFrames {
				t.Error("mapping does not report inline frames")
			}
		})
	}
}

func TestExitedProcess(t *testing.T) {
	bin := buildC(t, "c-pie", "-fPIE", "-pie")
	f := start(t, bin, "addr")
	s := newTestSymbolizer(t, Config{})
	if err := s.Capture(f.pid, f.start); err != nil {
		t.Fatal(err)
	}
	// Unchanged: a second capture is a no-op.
	if err := s.Capture(f.pid, f.start); err != nil {
		t.Fatal(err)
	}
	f.stop(t)
	locs := symbolize(t, s, f, f.vals["addr"])
	if got := funcName(locs[0]); got != "leakwatch_grow" {
		t.Errorf("after exit: function %q, want leakwatch_grow", got)
	}
	if err := s.Capture(f.pid, f.start); !errors.Is(err, ErrGone) {
		t.Errorf("Capture of an exited process: %v, want ErrGone", err)
	}
	s.Forget(f.pid, f.start)
	if _, err := s.Symbolize(f.pid, f.start, []uint64{f.vals["addr"]}); !errors.Is(err, ErrGone) {
		t.Errorf("Symbolize after Forget: %v, want ErrGone", err)
	}
	if st := s.Stats(); st.Processes != 0 || st.ProcessHits == 0 || st.FilesOpened == 0 {
		t.Errorf("stats %+v", st)
	}
}

// A process that is exiting (here a zombie: killed, not reaped) still has
// its /proc entry, but its maps read empty. Capturing it again, as the agent
// does for an OOM kill's victim, must keep the map captured while it lived.
func TestCaptureOfExitingProcessKeepsMap(t *testing.T) {
	bin := buildC(t, "c-pie", "-fPIE", "-pie")
	f := start(t, bin, "addr")
	s := newTestSymbolizer(t, Config{})
	if err := s.Capture(f.pid, f.start); err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", f.pid))
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("killed fixture did not become a zombie within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", f.pid)); err != nil || len(maps) != 0 {
		t.Fatalf("a zombie's maps: %d bytes, %v; want empty", len(maps), err)
	}
	if err := s.Capture(f.pid, f.start); err != nil {
		t.Fatalf("capturing the zombie: %v", err)
	}
	locs := symbolize(t, s, f, f.vals["addr"])
	if got := funcName(locs[0]); got != "leakwatch_grow" {
		t.Errorf("after capturing the exiting process again: function %q, want leakwatch_grow", got)
	}
}

// An exiting process's maps stop short once its memory is gone: the kernel
// ends a read of /proc/PID/maps when the mm has no users left, so a capture
// as the process exits (the agent's of an OOM kill's victim, for its
// forensics) can get its first lines only, the program's own code without
// libc. Its stat then shows no memory (vsize 0), and the map captured while
// it lived must stay. That moment is too short to hit with a real exit, so
// files stand in for the process's maps and stat, and the rest of its /proc
// entry is its own.
func TestCaptureCutShortByExitKeepsMap(t *testing.T) {
	bin := build(t, "cc", "leafcall", "-O1", "-g0", "-fno-omit-frame-pointer", "-fPIE", "-pie", "testdata/leafcall.c")
	f := start(t, bin, "own_leaf", "getppid")
	proc := t.TempDir()
	dir := filepath.Join(proc, strconv.FormatUint(uint64(f.pid), 10))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"root", "map_files", "status"} {
		if err := os.Symlink(fmt.Sprintf("/proc/%d/%s", f.pid, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	readProc := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", f.pid, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	maps, stat := readProc("maps"), readProc("stat")
	libc := strings.Index(maps, "libc")
	if libc < 0 {
		t.Fatalf("no libc in the maps of %d:\n%s", f.pid, maps)
	}
	head := maps[:strings.LastIndexByte(maps[:libc], '\n')+1] // the lines before libc's
	write("maps", maps)
	write("stat", stat)
	s := newTestSymbolizer(t, Config{ProcRoot: proc})
	if err := s.Capture(f.pid, f.start); err != nil {
		t.Fatal(err)
	}
	want := funcName(symbolize(t, s, f, f.vals["getppid"])[0])
	if want != "getppid" {
		t.Fatalf("libc's getppid resolves to %q", want)
	}

	for _, c := range []struct {
		what, stat, want string
	}{
		{"cut short by its exit (vsize 0)", statWithField(t, stat, 23, "0"), want},
		// The control: with its memory, the same lines are a map that
		// changed while it lives, and replace the old one.
		{"read while it lives", stat, "<unknown"},
	} {
		write("maps", head)
		write("stat", c.stat)
		if err := s.Capture(f.pid, f.start); err != nil {
			t.Fatalf("capture %s: %v", c.what, err)
		}
		if got := funcName(symbolize(t, s, f, f.vals["getppid"])[0]); !strings.HasPrefix(got, c.want) {
			t.Errorf("after a capture %s: libc's getppid resolves to %q, want %q", c.what, got, c.want)
		}
	}
}

// statWithField returns a /proc/PID/stat line with field n set to v.
func statWithField(t *testing.T, stat string, n int, v string) string {
	t.Helper()
	i := strings.LastIndexByte(stat, ')')
	var fields []string
	if i >= 0 {
		fields = strings.Fields(stat[i+1:])
	}
	if len(fields) <= n-3 {
		t.Fatalf("stat %q has no field %d", stat, n)
	}
	fields[n-3] = v
	return stat[:i+1] + " " + strings.Join(fields, " ") + "\n"
}

func TestWrongStartTime(t *testing.T) {
	bin := buildC(t, "c-pie", "-fPIE", "-pie")
	f := start(t, bin, "addr")
	s := newTestSymbolizer(t, Config{})
	// An hour before it started: a previous process of the same pid.
	if err := s.Capture(f.pid, f.start-3600e9); !errors.Is(err, ErrGone) && f.start > 3600e9 {
		t.Errorf("Capture with the start time of another process: %v, want ErrGone", err)
	}
}

// A binary replaced at its path while it runs must be read through
// map_files, not through the path that now holds another file.
func TestReplacedAndDeletedBinary(t *testing.T) {
	old := buildC(t, "c-old", "-fPIE", "-pie")
	replacement := buildC(t, "c-new", "-fPIE", "-pie", "-DNAME=replacement_grow")
	dir := t.TempDir()
	path := filepath.Join(dir, "app")
	copyFile(t, old, path)
	// A second link keeps the old inode alive, so maps shows the path
	// without " (deleted)" although the path now names another file.
	if err := os.Link(path, filepath.Join(dir, "keep")); err != nil {
		t.Fatal(err)
	}
	f := start(t, path, "addr")
	copyFile(t, replacement, path+".new")
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	s := newTestSymbolizer(t, Config{})
	locs := symbolize(t, s, f, f.vals["addr"])
	if got := funcName(locs[0]); got != "leakwatch_grow" {
		t.Errorf("replaced binary: function %q, want leakwatch_grow", got)
	}

	// Deleted outright.
	g := start(t, path, "addr")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	locs = symbolize(t, s, g, g.vals["addr"])
	if got := funcName(locs[0]); got != "replacement_grow" {
		t.Errorf("deleted binary: function %q, want replacement_grow", got)
	}
	if m := locs[0].Mapping; m == nil || !m.Deleted || m.File != path {
		t.Errorf("deleted binary: mapping %+v, want %s marked deleted", m, path)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestPerfMap(t *testing.T) {
	bin := buildC(t, "c-pie", "-fPIE", "-pie")
	f := start(t, bin, "addr")
	// Addresses below vm.mmap_min_addr are never mapped, so no file can
	// claim them.
	perfPath := fmt.Sprintf("/tmp/perf-%d.map", f.pid)
	t.Cleanup(func() { _ = os.Remove(perfPath) })
	if err := os.WriteFile(perfPath, []byte("1000 100 jitted_loop\n0x2000 0x80 _ZN2lw6Widget4growEi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newTestSymbolizer(t, Config{})
	locs := symbolize(t, s, f, 0x1010, 0x2004, 0x3000)
	for i, want := range []string{"jitted_loop", "lw::Widget::grow", "<unknown 0x3000>"} {
		if got := funcName(locs[i]); got != want {
			t.Errorf("%#x: %q, want %q", locs[i].Address, got, want)
		}
		if locs[i].Mapping != nil {
			t.Errorf("%#x: mapping %+v, want none", locs[i].Address, locs[i].Mapping)
		}
	}
	// The JIT writes more; the next Symbolize sees it.
	fh, err := os.OpenFile(perfPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(fh, "3000 10 later_code\n")
	fh.Close()
	locs = symbolize(t, s, f, 0x3001)
	if got := funcName(locs[0]); got != "later_code" {
		t.Errorf("appended entry: %q, want later_code", got)
	}
}

// With room for one symbol table, two binaries take turns; a live process
// still symbolizes by reloading its file.
func TestFileCacheBound(t *testing.T) {
	a := start(t, buildC(t, "c-pie", "-fPIE", "-pie"), "addr")
	b := start(t, build(t, "g++", "cxx", "-O1", "-g0", "testdata/fixture.cc"), "addr")
	s := newTestSymbolizer(t, Config{MaxFiles: 1})
	for range 2 {
		if got := funcName(symbolize(t, s, a, a.vals["addr"])[0]); got != "leakwatch_grow" {
			t.Errorf("c: %q", got)
		}
		if got := funcName(symbolize(t, s, b, b.vals["addr"])[0]); got != "lw::Widget::grow" {
			t.Errorf("c++: %q", got)
		}
	}
	if st := s.Stats(); st.Files != 1 || st.FileEvictions == 0 {
		t.Errorf("stats %+v: want one file cached and evictions", st)
	}
}

// Concurrent users while tables are evicted under them: run with -race.
func TestConcurrentEviction(t *testing.T) {
	a := start(t, buildC(t, "c-pie", "-fPIE", "-pie"), "addr")
	b := start(t, build(t, "g++", "cxx", "-O1", "-g0", "testdata/fixture.cc"), "addr")
	s := newTestSymbolizer(t, Config{MaxFiles: 1, MaxProcesses: 1})
	var wg sync.WaitGroup
	for i := range 4 {
		f, want := a, "leakwatch_grow"
		if i%2 == 1 {
			f, want = b, "lw::Widget::grow"
		}
		wg.Go(func() {
			for range 50 {
				locs, err := s.Symbolize(f.pid, f.start, []uint64{f.vals["addr"]})
				if err != nil {
					t.Error(err)
					return
				}
				if got := funcName(locs[0]); got != want {
					t.Errorf("%q, want %q", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// In a cgo binary, Go code resolves through the pclntab and C code through
// the ELF symbols outside it.
func TestCgoBinary(t *testing.T) {
	bin := build(t, "cgo", "cgo")
	f := start(t, bin, "addr", "goaddr")
	s := newTestSymbolizer(t, Config{})
	locs := symbolize(t, s, f, f.vals["addr"], f.vals["goaddr"]+1)
	if fr := locs[0].Frames; len(fr) != 1 || fr[0].Function != "leakwatch_c_grow" || fr[0].File != "" {
		t.Errorf("C function: frames %+v, want leakwatch_c_grow", fr)
	}
	if fr := locs[1].Frames; len(fr) != 1 || fr[0].Function != "main.goGrow" || !strings.HasSuffix(fr[0].File, "/main.go") {
		t.Errorf("Go function: frames %+v, want main.goGrow in main.go", fr)
	}
}

// With room for one table's bytes, two binaries take turns however many
// files MaxFiles allows; a live process still symbolizes by reloading its
// file. With room for both, both stay.
func TestTableBytesBound(t *testing.T) {
	a := start(t, buildC(t, "c-pie", "-fPIE", "-pie"), "addr")
	b := start(t, build(t, "g++", "cxx", "-O1", "-g0", "testdata/fixture.cc"), "addr")
	for _, tt := range []struct {
		maxBytes  int64
		files     int
		evictions bool
	}{
		{maxBytes: 1, files: 1, evictions: true},
		{maxBytes: 1 << 20, files: 2},
	} {
		s := newTestSymbolizer(t, Config{MaxTableBytes: tt.maxBytes})
		for range 3 {
			if got := funcName(symbolize(t, s, a, a.vals["addr"])[0]); got != "leakwatch_grow" {
				t.Errorf("c: %q", got)
			}
			if got := funcName(symbolize(t, s, b, b.vals["addr"])[0]); got != "lw::Widget::grow" {
				t.Errorf("c++: %q", got)
			}
		}
		st := s.Stats()
		if st.Files != tt.files || (st.FileEvictions > 0) != tt.evictions {
			t.Errorf("MaxTableBytes %d: stats %+v: want %d files, evictions %t", tt.maxBytes, st, tt.files, tt.evictions)
		}
		if st.TableBytes <= 0 || st.MappedBytes <= 0 || (tt.maxBytes > 1 && st.TableBytes > tt.maxBytes) {
			t.Errorf("MaxTableBytes %d: %d table bytes, %d mapped", tt.maxBytes, st.TableBytes, st.MappedBytes)
		}
	}
	if _, err := New(Config{MaxTableBytes: -1}, nil); err == nil {
		t.Error("negative MaxTableBytes accepted")
	}
}
