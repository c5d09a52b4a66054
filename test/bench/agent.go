package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture leakwatch builds for.
const clockTicks = 100

// agent is a running `leakwatch run`, the real binary, on a port of its own.
type agent struct {
	cmd     *exec.Cmd
	base    string
	started time.Time
	done    chan struct{} // closed when the process has exited
	exitErr error
	logFile *os.File
}

// buildAgent builds the leakwatch binary as `make build` and the image do
// (stripped: the file pages of its text count in its RSS).
func buildAgent(dir string) (string, error) {
	bin := filepath.Join(dir, "leakwatch")
	cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/leakwatch")
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building leakwatch: %w\n%s", err, out)
	}
	return bin, nil
}

// startAgent starts the agent and waits until /readyz answers 200 (the first
// collection is done, the tracer attached).
func startAgent(bin, logPath string, extra ...string) (*agent, error) {
	return startAgentIn(bin, logPath, "", nil, extra...)
}

// startAgentIn is startAgent with the agent inside the cgroup directory
// cgroupDir (when not empty: a shell writes its own pid there and execs the
// agent, so that all the agent allocates is charged there, as in its pod)
// and env added to its environment.
func startAgentIn(bin, logPath, cgroupDir string, env []string, extra ...string) (*agent, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"run", "--listen", addr, "--log-level", "warn"}
	if !slices.ContainsFunc(extra, func(f string) bool { return strings.HasPrefix(f, "--tracing") }) {
		// The "leakwatch" rows are the full tier's; the other tiers are
		// asked for by name.
		args = append(args, "--tracing=full")
	}
	args = append(args, extra...)
	cmd := exec.Command(bin, args...)
	if cgroupDir != "" {
		procs := filepath.Join(cgroupDir, "cgroup.procs")
		cmd = exec.Command("/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, procs, bin}, args...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	a := &agent{cmd: cmd, base: "http://" + addr, done: make(chan struct{}), logFile: lf}
	a.cmd.Stdout, a.cmd.Stderr = lf, lf
	a.started = time.Now()
	if err := a.cmd.Start(); err != nil {
		_ = lf.Close()
		return nil, fmt.Errorf("starting leakwatch: %w", err)
	}
	go func() { a.exitErr = a.cmd.Wait(); close(a.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			_ = lf.Close()
			return nil, fmt.Errorf("leakwatch exited at start (%w); see %s", a.exitErr, logPath)
		default:
		}
		resp, err := httpClient.Get(a.base + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.stop()
	return nil, fmt.Errorf("leakwatch not ready within 30s; see %s", logPath)
}

// stop ends the agent by its pid: SIGTERM, then SIGKILL after 10 s.
func (a *agent) stop() {
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
	_ = a.logFile.Close()
}

// procSample is the agent's CPU time and memory at one moment.
type procSample struct {
	at       time.Time
	cpu      time.Duration // utime + stime
	rss, hwm uint64        // VmRSS, VmHWM in bytes
	anon     uint64        // RssAnon: the part of VmRSS that is not file pages
}

func (a *agent) sample() (procSample, error) {
	return sampleProc(a.cmd.Process.Pid)
}

func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command (which may hold spaces) start at state (3).
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64) // field 14
	st, _ := strconv.ParseUint(f[12], 10, 64) // field 15
	s.cpu = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.rss = kb << 10
		case "VmHWM":
			s.hwm = kb << 10
		case "RssAnon":
			s.anon = kb << 10
		}
	}
	return s, sc.Err()
}

// cpuPercent is the CPU the process used between two samples, in percent of
// one core.
func cpuPercent(a, b procSample) float64 {
	return 100 * float64(b.cpu-a.cpu) / float64(b.at.Sub(a.at))
}

// metrics reads the agent's /metrics and returns the leakwatch_ samples
// wanted, by their text (name with labels).
func (a *agent) metrics() (map[string]float64, error) {
	resp, err := httpClient.Get(a.base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "leakwatch_bpf_") && !strings.HasPrefix(line, "leakwatch_drops_total") &&
			!strings.HasPrefix(line, "go_memstats_heap_inuse_bytes") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// containerIDs returns the agent's container ids by cgroup path.
func (a *agent) containerIDs() (map[string]string, error) {
	resp, err := httpClient.Get(a.base + "/api/v1/containers")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list []struct {
		ID     string `json:"id"`
		Cgroup string `json:"cgroup"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("decoding container list: %w", err)
	}
	out := make(map[string]string, len(list))
	for _, c := range list {
		out[c.Cgroup] = c.ID
	}
	return out, nil
}

// profile downloads one container's profile and returns its size.
func (a *agent) profile(id, typ string) (int64, error) {
	resp, err := httpClient.Get(a.base + "/api/v1/containers/" + id + "/profile?type=" + typ)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("profile of %s: HTTP %d", id, resp.StatusCode)
	}
	return n, err
}

// saveHeapProfile writes the agent's heap profile, taken after a garbage
// collection so that its in-use figures are what is live, to path.
func (a *agent) saveHeapProfile(path string) error {
	resp, err := httpClient.Get(a.base + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: HTTP %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

var httpClient = &http.Client{Timeout: 60 * time.Second}

func freePort() (int, error) {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("no TCP address")
	}
	return addr.Port, nil
}

// escalate asks an agent in the auto tier for an inuse profile of any
// container, which escalates it to the full tier, and checks that it did.
func (a *agent) escalate() error {
	ids, err := a.containerIDs()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := a.profile(id, "inuse"); err != nil {
			return err
		}
		break
	}
	// /metrics is built at most once in 2 s and shared.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		resp, err := httpClient.Get(a.base + "/metrics")
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if strings.Contains(string(body), "\nleakwatch_tracing_tier{tier=\"full\"} 1\n") {
			return nil
		}
	}
	return errors.New("an inuse profile request did not escalate the agent to the full tier in 10 s")
}
