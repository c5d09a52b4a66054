package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leakwatch/leakwatch/pkg/tracer"
)

// loop is one micro-workload of loops.c: how to run it, how many copies at once.
type loop struct {
	name   string
	desc   string
	args   []string
	copies int
	target float64 // largest B/A ratio allowed; 0: none
}

var allLoops = []loop{
	{name: "faults", desc: "page faults, 1 process (ns/fault)", args: []string{"faults", "256", "8"}, copies: 1, target: 1.03},
	{name: "faults2", desc: "page faults, 2 processes (ns/fault)", args: []string{"faults", "256", "8"}, copies: 2, target: 1.03},
	{name: "mmap", desc: "mmap+munmap 16 KiB (ns/pair)", args: []string{"mmap", "200000"}, copies: 1, target: 1.05},
	{name: "malloc", desc: "glibc malloc+free (ns/pair)", args: []string{"malloc", "20000000"}, copies: 1},
	{name: "getpid", desc: "getpid control (ns/call)", args: []string{"getpid", "3000000"}, copies: 1, target: 1.01},
}

// runLoop runs the loop's copies at once and returns their mean ns/iter.
func runLoop(bin string, l loop) (float64, error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		sum  float64
		errs []error
	)
	for range l.copies {
		wg.Go(func() {
			outb, err := exec.Command(bin, l.args...).Output()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", l.name, err))
				return
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(string(outb)), 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: output %q: %w", l.name, outb, err))
				return
			}
			sum += v
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	return sum / float64(l.copies), nil
}

// redis is a redis-server on loopback, in a cgroup of its own, loaded by
// redis-benchmark.
type redis struct {
	cg   *benchCgroup
	cmd  *exec.Cmd
	done chan struct{}
	port int
}

// redisTests are the redis-benchmark tests run, each a row of the table.
var redisTests = []string{"SET", "GET", "LPUSH"}

const redisRequests = 200000

func haveRedis() bool {
	_, e1 := exec.LookPath("redis-server")
	_, e2 := exec.LookPath("redis-benchmark")
	return e1 == nil && e2 == nil
}

func startRedis(h memHierarchy) (*redis, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cg, err := h.newCgroup(1 << 30)
	if err != nil {
		return nil, err
	}
	r := &redis{cg: cg, port: port, done: make(chan struct{})}
	// The server forks nothing (no persistence) and is moved into its cgroup
	// before it serves; its start-up allocations happen in ours, which is fine.
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", "--logfile", "")
	if err := r.cmd.Start(); err != nil {
		cg.stop()
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	if err := os.WriteFile(cg.dir+"/cgroup.procs", []byte(strconv.Itoa(r.cmd.Process.Pid)), 0o644); err != nil {
		r.stop()
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_ = c.Close()
			return r, nil
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("redis-server not listening within 10s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bench runs redis-benchmark once and returns, per test, ns per request
// (1e9 / throughput) and p99 latency in µs.
func (r *redis) bench() (map[string]float64, error) {
	cmd := exec.Command("redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(r.port),
		"-q", "--csv", "-n", strconv.Itoa(redisRequests), "-t", strings.ToLower(strings.Join(redisTests, ",")))
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark: %w", err)
	}
	recs, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark output %q: %w", out, err)
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("redis-benchmark output %q: no results", out)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	res := make(map[string]float64)
	for _, rec := range recs[1:] {
		test := strings.Fields(rec[0])[0] // "LPUSH (needed to benchmark LPOP)"
		rps, err1 := strconv.ParseFloat(rec[col["rps"]], 64)
		p99, err2 := strconv.ParseFloat(rec[col["p99_latency_ms"]], 64)
		if err1 != nil || err2 != nil || rps == 0 {
			return nil, fmt.Errorf("redis-benchmark row %q", rec)
		}
		res[test+" ns/req"] = 1e9 / rps
		res[test+" p99"] = p99 * 1000
	}
	for _, t := range redisTests {
		if _, ok := res[t+" ns/req"]; !ok {
			return nil, fmt.Errorf("redis-benchmark output lacks %s: %q", t, out)
		}
	}
	return res, nil
}

func (r *redis) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	r.cg.stop()
}

// bpftraceOneLiner is the classic page-fault stack one-liner.
const bpftraceOneLiner = `BEGIN { printf("ready\n"); } tracepoint:exceptions:page_fault_user { @[ustack] = count(); }`

func haveBpftrace() bool {
	_, err := exec.LookPath("bpftrace")
	return err == nil
}

// emptySyscallPrograms attaches a program that does nothing to each
// syscalls: tracepoint the agent uses: the cost of attaching there at all,
// the floor under any program leakwatch could run on them.
func emptySyscallPrograms() string {
	var b strings.Builder
	b.WriteString(`BEGIN { printf("ready\n"); }`)
	for _, name := range tracer.SyscallTracepoints() {
		fmt.Fprintf(&b, " tracepoint:syscalls:%s {}", name)
	}
	return b.String()
}

// withBpftrace runs f with the bpftrace program prog attached (its BEGIN
// prints "ready" once every probe is), and ends it by its pid.
func withBpftrace(prog string, f func() error) error {
	cmd := exec.Command("bpftrace", "-e", prog)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting bpftrace: %w", err)
	}
	done := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		once := false
		for sc.Scan() { // drain the map it prints at exit
			if !once && strings.TrimSpace(sc.Text()) == "ready" {
				once = true
				close(ready)
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	select {
	case <-ready:
	case <-done:
		return errors.New("bpftrace exited before attaching")
	case <-time.After(30 * time.Second):
		stop()
		return errors.New("bpftrace not attached within 30s")
	}
	err = f()
	stop()
	return err
}
