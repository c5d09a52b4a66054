// Package cgtest gives leakwatch's privileged tests memory cgroups of their
// own and workloads to run in them. Every cgroup is made beneath the test
// process's own memory cgroup (never elsewhere), every process it starts is
// ended by its pid, and every cgroup is removed when the test ends.
package cgtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Prefix names every cgroup this package makes, so leftovers can be found.
// Test binaries of several packages run at once, so each binary checks only
// the cgroups named with its own pid.
const Prefix = "leakwatch-test-"

func ownPrefix() string { return Prefix + strconv.Itoa(os.Getpid()) + "-" }

// RequirePrivileged skips a test that needs root, or fails it when
// LEAKWATCH_REQUIRE_PRIVILEGED=1 (as in CI), where a skip would hide it.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root (BPF, perf events and cgroups); run `sudo make test`"
	if os.Getenv("LEAKWATCH_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal(msg + "; LEAKWATCH_REQUIRE_PRIVILEGED=1 forbids skipping")
	}
	t.Skip(msg)
}

// Hierarchy is where this process's memory cgroup lives.
type Hierarchy struct {
	Mount   string // mount point of the hierarchy with the memory controller
	Own     string // this process's memory cgroup, relative to Mount
	Version int    // 1 or 2
}

// Dir is the absolute directory of this process's memory cgroup.
func (h Hierarchy) Dir() string { return filepath.Join(h.Mount, h.Own) }

// OwnHierarchy finds this process's memory cgroup, on v1, v2 and hybrid hosts.
func OwnHierarchy() (Hierarchy, error) {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return Hierarchy{}, err
	}
	var v1Path, v2Path string
	hasV2 := false
	for line := range strings.SplitSeq(strings.TrimSpace(string(cg)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2Path, hasV2 = parts[2], true
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			if c == "memory" {
				v1Path = parts[2]
			}
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return Hierarchy{}, err
	}
	var v1Mount, v2Mount string
	for line := range strings.SplitSeq(string(mi), "\n") {
		f := strings.Fields(line)
		sep := slicesIndex(f, "-")
		if sep < 0 || sep+3 > len(f) {
			continue
		}
		switch f[sep+1] {
		case "cgroup":
			for o := range strings.SplitSeq(f[sep+3], ",") {
				if o == "memory" {
					v1Mount = f[4]
				}
			}
		case "cgroup2":
			if v2Mount == "" {
				v2Mount = f[4]
			}
		}
	}
	if v1Path != "" && v1Mount != "" {
		return Hierarchy{Mount: v1Mount, Own: v1Path, Version: 1}, nil
	}
	if hasV2 && v2Mount != "" {
		ctrl, _ := os.ReadFile(filepath.Join(v2Mount, v2Path, "cgroup.controllers"))
		if strings.Contains(string(ctrl), "memory") {
			return Hierarchy{Mount: v2Mount, Own: v2Path, Version: 2}, nil
		}
	}
	return Hierarchy{}, errors.New("no memory cgroup controller is mounted (neither v1 memory nor cgroup2 with memory)")
}

func slicesIndex(f []string, s string) int {
	for i, v := range f {
		if v == s {
			return i
		}
	}
	return -1
}

// Group is a memory cgroup made for one test.
type Group struct {
	Dir     string // absolute path
	Rel     string // path relative to the hierarchy's mount, starting with /
	ID      uint64 // inode: the kernel's memory cgroup id
	Version int
	procs   []*Proc
}

// New makes a memory cgroup beneath this process's own, with a memory limit
// (bytes; 0 for none), removed when the test ends.
func New(t testing.TB, limit int64) *Group {
	t.Helper()
	RequirePrivileged(t)
	g, err := Make(t, limit)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// Make is New for goroutines other than the test's (a churn of many groups
// at once): it returns an error instead of failing the test. The caller
// must have called RequirePrivileged. The group is removed when the test
// ends, or earlier by Remove.
func Make(t testing.TB, limit int64) (*Group, error) {
	h, err := OwnHierarchy()
	if err != nil {
		return nil, fmt.Errorf("cgtest: %w", err)
	}
	if h.Version == 2 {
		// The parent must hand the memory controller down; a cgroup with
		// processes of its own cannot, so say so rather than move anything.
		sub := filepath.Join(h.Dir(), "cgroup.subtree_control")
		if b, _ := os.ReadFile(sub); !strings.Contains(string(b), "memory") {
			if err := os.WriteFile(sub, []byte("+memory"), 0o644); err != nil {
				return nil, fmt.Errorf("cgtest: enabling the memory controller below %s: %w (run the tests from a cgroup that delegates memory, e.g. `systemd-run --scope -p Delegate=yes`)", h.Dir(), err)
			}
		}
	}
	return makeIn(t, h.Dir(), filepath.Join("/", h.Own), h.Version, limit)
}

// Child makes a memory cgroup inside g with its own limit (0 for none),
// removed before g when the test ends: a container below a parent whose
// limit may be the lower one.
func (g *Group) Child(t testing.TB, limit int64) *Group {
	t.Helper()
	if g.Version == 2 {
		if err := g.writeErr("cgroup.subtree_control", "+memory"); err != nil {
			t.Fatal(err)
		}
	}
	c, err := makeIn(t, g.Dir, g.Rel, g.Version, limit)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// makeIn makes a cgroup in dir (rel relative to the mount), removed when
// the test ends.
func makeIn(t testing.TB, dir, rel string, version int, limit int64) (*Group, error) {
	dir, err := os.MkdirTemp(dir, ownPrefix())
	if err != nil {
		return nil, fmt.Errorf("cgtest: making a cgroup beneath %s: %w", dir, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("cgtest: %w", err)
	}
	g := &Group{Dir: dir, Rel: filepath.Join(rel, filepath.Base(dir)), ID: st.Ino, Version: version}
	t.Cleanup(func() { g.remove(t) })
	if limit > 0 {
		l := strconv.FormatInt(limit, 10)
		if version == 1 {
			err = g.writeErr("memory.limit_in_bytes", l)
			g.writeIfExists("memory.memsw.limit_in_bytes", l)
		} else {
			err = g.writeErr("memory.max", l)
			g.writeIfExists("memory.swap.max", "0")
		}
		if err != nil {
			return nil, err
		}
	}
	return g, nil
}

// OOMKills is the kernel's own count of OOM kills in the group and below
// it: oom_kill in memory.oom_control (v1) or memory.events (v2).
func (g *Group) OOMKills() (uint64, error) {
	file := "memory.events"
	if g.Version == 1 {
		file = "memory.oom_control"
	}
	b, err := os.ReadFile(filepath.Join(g.Dir, file))
	if err != nil {
		return 0, fmt.Errorf("cgtest: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("cgtest: no oom_kill in %s of %s", file, g.Rel)
}

func (g *Group) writeErr(file, value string) error {
	if err := os.WriteFile(filepath.Join(g.Dir, file), []byte(value), 0o644); err != nil {
		return fmt.Errorf("cgtest: writing %s to %s: %w", value, file, err)
	}
	return nil
}

func (g *Group) writeIfExists(file, value string) {
	_ = os.WriteFile(filepath.Join(g.Dir, file), []byte(value), 0o644)
}

// Remove ends the group's processes by their pids and removes the group now,
// rather than when the test ends (a churn of short-lived groups); the
// cleanup's removal after it is harmless. It reports a failure with
// t.Errorf, so any goroutine of the test may call it, but only one at a
// time for a given group.
func (g *Group) Remove(t testing.TB) { g.remove(t) }

// remove ends the group's processes and removes it, within a bound.
func (g *Group) remove(t testing.TB) {
	for _, p := range g.procs {
		p.Kill()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.killLeft()
		err := os.Remove(g.Dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("cgtest: removing %s: %v", g.Dir, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killLeft ends, by pid, the processes still in the group after its
// workloads were killed: only their descendants can be there (a workload's
// child that outlived it, such as the program perf record started), since
// the group is this package's own and only its workloads were moved in.
func (g *Group) killLeft() {
	data, err := os.ReadFile(filepath.Join(g.Dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Proc is a workload driven through its stdin, one command per line.
type Proc struct {
	Cmd   *exec.Cmd
	PID   int
	stdin io.WriteCloser
	lines chan string
	once  sync.Once
	done  chan struct{}
	state *os.ProcessState
}

// Start runs path with args inside the group and returns it. A shell that
// waits for one line execs the workload only after the move, so that all the
// workload does, its loader's mappings included, happens inside the group.
// Its stderr goes to the test log.
func (g *Group) Start(t testing.TB, path string, args ...string) *Proc {
	t.Helper()
	p, err := g.Launch(t, path, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Launch is Start for goroutines other than the test's: it returns an error
// instead of failing the test. The process is ended by the group's Remove
// or when the test ends.
func (g *Group) Launch(t testing.TB, path string, args ...string) (*Proc, error) {
	cmd := exec.Command("/bin/sh", append([]string{"-c", `read _ && exec "$0" "$@"`, path}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cgtest: starting %s: %w", path, err)
	}
	p := &Proc{Cmd: cmd, PID: cmd.Process.Pid, stdin: stdin, lines: make(chan string, 16), done: make(chan struct{})}
	g.procs = append(g.procs, p)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	if err := os.WriteFile(filepath.Join(g.Dir, "cgroup.procs"), []byte(strconv.Itoa(p.PID)), 0o644); err != nil {
		p.Kill()
		return nil, fmt.Errorf("cgtest: moving pid %d into %s: %w", p.PID, g.Dir, err)
	}
	if _, err := fmt.Fprintln(p.stdin, ""); err != nil {
		return nil, fmt.Errorf("cgtest: sending %q to pid %d: %w", "", p.PID, err)
	}
	return p, nil
}

// Do sends one command and returns the workload's answer, failing the test
// on an error answer or if none comes within 30 s.
func (p *Proc) Do(t testing.TB, command string) string {
	t.Helper()
	out, err := p.Call(command)
	if err != nil {
		t.Fatalf("cgtest: %v", err)
	}
	return out
}

// Call is Do for goroutines other than the test's: it returns the error.
func (p *Proc) Call(command string) (string, error) {
	if _, err := fmt.Fprintln(p.stdin, command); err != nil {
		return "", fmt.Errorf("sending %q to pid %d: %w", command, p.PID, err)
	}
	select {
	case line, ok := <-p.lines:
		if !ok {
			return "", fmt.Errorf("pid %d exited while running %q", p.PID, command)
		}
		if !strings.HasPrefix(line, "ok") {
			return "", fmt.Errorf("%q answered %q", command, line)
		}
		return strings.TrimSpace(strings.TrimPrefix(line, "ok")), nil
	case <-time.After(30 * time.Second):
		return "", fmt.Errorf("no answer to %q from pid %d within 30s", command, p.PID)
	}
}

// Send sends a command without waiting for an answer.
func (p *Proc) Send(t testing.TB, command string) {
	t.Helper()
	if _, err := fmt.Fprintln(p.stdin, command); err != nil {
		t.Fatalf("cgtest: sending %q to pid %d: %v", command, p.PID, err)
	}
}

// Wait waits for the workload to exit, up to timeout, and returns how.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) *os.ProcessState {
	t.Helper()
	select {
	case <-p.done:
		return p.state
	case <-time.After(timeout):
		t.Fatalf("cgtest: pid %d still running after %v", p.PID, timeout)
	}
	return nil
}

// Kill ends the workload by its pid (only ever a process this package
// started) and waits for it.
func (p *Proc) Kill() {
	p.once.Do(func() {
		_ = p.stdin.Close()
		_ = p.Cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("workload: %s", strings.TrimSpace(string(b)))
	return len(b), nil
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Workloads builds the test workloads once per test binary and returns the
// paths of memwork (C, frame pointers kept) and gowork (Go).
func Workloads(t testing.TB) (memwork, gowork string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "leakwatch-workloads-")
		if buildErr != nil {
			return
		}
		src := filepath.Join(moduleRoot(), "test", "workloads")
		out, err := exec.Command("cc", "-O1", "-g", "-fno-omit-frame-pointer", "-Wall",
			"-o", filepath.Join(buildDir, "memwork"), filepath.Join(src, "memwork.c")).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building memwork: %w\n%s", err, out)
			return
		}
		gob := exec.Command("go", "build", "-o", filepath.Join(buildDir, "gowork"), "./test/workloads/gowork")
		gob.Dir = moduleRoot()
		if out, err := gob.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building gowork: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("cgtest: %v", buildErr)
	}
	return filepath.Join(buildDir, "memwork"), filepath.Join(buildDir, "gowork")
}

// Main is TestMain for packages that use cgtest: it runs the tests, removes
// the built workloads, and fails the run when a cgroup was left behind.
func Main(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	if left := Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "cgroups left behind: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

// Leftovers lists cgroups this test binary made that still exist beneath
// its memory cgroup. TestMain fails the run when any remain.
func Leftovers() []string {
	h, err := OwnHierarchy()
	if err != nil {
		return nil
	}
	matches, _ := filepath.Glob(filepath.Join(h.Dir(), ownPrefix()+"*"))
	return matches
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Repeat sends command to the workload every interval, at most times
// times, from a goroutine of its own, until the returned stop is called or
// the test ends (both wait for it). A command that fails is reported with
// t.Errorf and ends the repetition.
func (p *Proc) Repeat(t testing.TB, command string, every time.Duration, times int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for range times {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := p.Call(command); err != nil {
					t.Errorf("cgtest: repeating %q: %v", command, err)
					return
				}
			}
		}
	})
	var once sync.Once
	stop = func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
	t.Cleanup(stop)
	return stop
}

// Anon reads the group's anonymous memory from memory.stat ("anon" on v2,
// "rss" on v1), in bytes.
func (g *Group) Anon(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(g.Dir, "memory.stat"))
	if err != nil {
		t.Fatal(err)
	}
	key := "anon"
	if g.Version == 1 {
		key = "rss"
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("cgtest: %s in %s/memory.stat: %v", key, g.Dir, err)
			}
			return v
		}
	}
	t.Fatalf("cgtest: no %s in %s/memory.stat", key, g.Dir)
	return 0
}
