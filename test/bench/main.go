// Command bench measures what leakwatch costs: the slowdown of the programs
// it watches, its own footprint as the node grows, and its hot user-space
// paths. It prints one table and writes every raw number, with the machine,
// to a JSON file in the output directory (out/bench by default).
//
//  1. Overhead: each workload runs without (A) and with (B) the real agent
//     (`leakwatch run`, started for each B run and stopped after it),
//     interleaved A B A B … after a warm-up round. Where bpftrace is
//     installed, a reference (C) runs in the same rounds: the page-fault loop
//     under the classic stack one-liner, and the mmap and getpid loops with
//     empty programs on the agent's syscalls: tracepoints (the floor under
//     anything attached there). Rows give median A and B, the median of the per-round
//     ratios and their spread. The workloads: the micro-loops of
//     test/bench/loops/loops.c, and redis-benchmark against a redis-server
//     on loopback in a cgroup of its own.
//
//  2. Per-program cost with kernel.bpf_stats_enabled on.
//
//  3. Footprint: one agent through a sequence — start-up and idle, 10, 100
//     and 500 cgroups each holding a small live workload, 20,000 distinct
//     allocating stacks (and their profile downloaded), a sustained
//     page-fault loop — with its CPU time and peak RSS from /proc and its BPF
//     map memory from its /metrics. Each step but the first waits one
//     collection interval before it measures; CPU is the mean of three
//     windows, beside that of a process that only wakes once a second
//     (loops tick), and the agent's heap profile is saved at each step's end.
//
//  4. Storm: 50 clients scraping /metrics for a minute, with 1,800
//     cgroups added, the agent inside the DaemonSet's 256 MiB limit and
//     GOMEMLIMIT: its peak RSS, OOM kills, and /metrics and /healthz
//     latencies (test/storm, which the end-to-end test shares).
//
//  5. Go benchmarks: a full read of the kernel maps (pkg/tracer
//     BenchmarkSnapshot), a /metrics collection and scrape (pkg/metrics),
//     and the memory of one container's full history (pkg/series).
//
//     go run ./test/bench [-rounds 7] [-sections overhead,programs,footprint,storm,go] [-loops faults,…,redis] [-out DIR]
//
// It must run as root; `make bench` runs it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/leakwatch/leakwatch/pkg/tracer"
)

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 7, "measured rounds after the warm-up (each runs A, then B, then C where there is one)")
	sections := flag.String("sections", "overhead,programs,footprint,storm,go", "sections to run, comma-separated")
	loops := flag.String("loops", "faults,faults2,mmap,malloc,redis,getpid", "overhead workloads, comma-separated")
	flag.StringVar(&o.out, "out", filepath.Join(moduleRoot(), "out", "bench"), "directory for the raw numbers, logs and profiles")
	flag.DurationVar(&o.window, "window", 10*time.Second, "length of one CPU measurement window of the footprint section (3 per step)")
	flag.Parse()
	o.sections = strings.Split(*sections, ",")
	o.loops = strings.Split(*loops, ",")
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	rounds   int
	sections []string
	loops    []string
	out      string
	window   time.Duration
}

// row is one line of the table. Overhead rows have A and B samples and their
// per-round ratios; the others have values only.
type row struct {
	Section string    `json:"section"`
	Measure string    `json:"measure"`
	Unit    string    `json:"unit"`
	A       []float64 `json:"a,omitempty"`
	B       []float64 `json:"b,omitempty"`
	Ratios  []float64 `json:"ratios,omitempty"`
	Values  []float64 `json:"values,omitempty"`
	Note    string    `json:"note,omitempty"`
	// Limit is the target: the ratio (overhead rows) or the value must be at
	// most Limit. 0: no target.
	Limit  float64 `json:"limit,omitempty"`
	Target string  `json:"target,omitempty"`
}

func (r row) result() float64 {
	if len(r.Ratios) > 0 {
		return median(r.Ratios)
	}
	return median(r.Values)
}

func (r row) verdict() string {
	switch {
	case r.Limit == 0:
		return ""
	case len(r.Ratios) == 0 && len(r.Values) == 0:
		return "n/a"
	case r.result() <= r.Limit:
		return "met"
	}
	return "MISSED"
}

// report is what the raw file holds.
type report struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Command  string    `json:"command"`
	Host     string    `json:"host"`
	CPUs     int       `json:"cpus"`
	CPUModel string    `json:"cpu_model"`
	Kernel   string    `json:"kernel"`
	Go       string    `json:"go"`
	Rounds   int       `json:"rounds"`
	Rows     []row     `json:"rows"`
	// AgentCPU is the agent's CPU time during each B run of the overhead
	// section, from ready to the end of the workload, per workload.
	AgentCPU map[string][]float64 `json:"agent_cpu_percent_during_b"`
}

func run(o options, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to run the agent and make cgroups")
	}
	if o.rounds < 3 {
		return errors.New("-rounds must be at least 3 (7 or more for figures to quote)")
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	rep := &report{
		Started: time.Now().UTC(), Command: strings.Join(os.Args, " "), Host: hostname(),
		CPUs: runtime.NumCPU(), CPUModel: cpuModel(), Kernel: kernel(), Go: runtime.Version(),
		Rounds: o.rounds, AgentCPU: map[string][]float64{},
	}
	dir, err := os.MkdirTemp("", "leakwatch-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	loopsBin, err := buildLoops(dir)
	if err != nil {
		return err
	}
	agentBin, err := buildAgent(dir)
	if err != nil {
		return err
	}
	h, err := ownMemoryCgroup()
	if err != nil {
		return err
	}
	b := &bench{o: o, rep: rep, bins: dir, loops: loopsBin, agent: agentBin, h: h, log: filepath.Join(o.out, "agent.log")}
	_ = os.Remove(b.log)

	steps := []struct {
		name string
		f    func() error
	}{
		{"overhead", b.overhead},
		{"programs", b.programCosts},
		{"footprint", b.footprint},
		{"storm", b.storm},
		{"go", b.goBenchmarks},
	}
	var errs []error
	for _, s := range steps {
		if slices.Contains(o.sections, s.name) {
			progress("== %s", s.name)
			if err := s.f(); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
				progress("%s failed: %v", s.name, err)
			}
		}
	}
	rep.Finished = time.Now().UTC()

	var table strings.Builder
	printTable(&table, rep)
	fmt.Fprint(out, table.String())
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	stamp := rep.Started.Format("20060102T150405Z")
	rawPath := filepath.Join(o.out, "raw-"+stamp+".json")
	errs = append(errs,
		os.WriteFile(rawPath, raw, 0o644),
		os.WriteFile(filepath.Join(o.out, "table-"+stamp+".txt"), []byte(table.String()), 0o644))
	fmt.Fprintf(out, "\nraw numbers: %s\n", rawPath)
	return errors.Join(errs...)
}

type bench struct {
	o     options
	rep   *report
	bins  string // where the bench builds its binaries
	loops string // loops.c binary
	agent string // leakwatch binary
	h     memHierarchy
	log   string // agent log
	// refPID is the footprint's reference process (loops tick), while it runs.
	refPID int
}

func (b *bench) add(r row) { b.rep.Rows = append(b.rep.Rows, r) }

// faultsTierTarget is what the faults tier may cost each loop (issue 17).
var faultsTierTarget = map[string]float64{"getpid": 1.01, "faults": 1.02, "faults2": 1.02, "mmap": 1.01, "malloc": 1.02}

// variant is one arm of an overhead round.
type variant struct {
	name string
	wrap func(name string, f func() error) error
}

func (b *bench) withAgent(name string, f func() error) error {
	return b.withAgentArgs(name, f)
}

// withFaultsTier runs f beside an agent in the faults tier, which attaches
// no syscalls: tracepoint.
func (b *bench) withFaultsTier(name string, f func() error) error {
	return b.withAgentArgs(name+" (faults tier)", f, "--tracing=faults")
}

// withEscalated runs f beside an agent in the auto tier that an inuse
// profile request has escalated to the full tier: the cost while a leak is
// chased.
func (b *bench) withEscalated(name string, f func() error) error {
	return b.withAgentSetUp(name+" (auto, escalated)", f, (*agent).escalate, "--tracing=auto")
}

func (b *bench) withAgentArgs(name string, f func() error, args ...string) error {
	return b.withAgentSetUp(name, f, nil, args...)
}

// withAgentSetUp runs f beside an agent started with args, after setUp
// (when not nil) has run on it.
func (b *bench) withAgentSetUp(name string, f func() error, setUp func(*agent) error, args ...string) error {
	a, err := startAgent(b.agent, b.log, args...)
	if err != nil {
		return err
	}
	if setUp != nil {
		if err := setUp(a); err != nil {
			a.stop()
			return err
		}
	}
	time.Sleep(200 * time.Millisecond) // let the first collection's work end
	s0, err0 := a.sample()
	err = f()
	s1, err1 := a.sample()
	a.stop()
	if err0 == nil && err1 == nil {
		b.rep.AgentCPU[name] = append(b.rep.AgentCPU[name], cpuPercent(s0, s1))
	}
	return err
}

func (b *bench) overhead() error {
	none := variant{"none", func(_ string, f func() error) error { return f() }}
	lw := variant{"leakwatch", b.withAgent}
	faults := variant{"faults", b.withFaultsTier}
	// Stack copies off: what unwinding's copies cost each loop.
	noCopies := variant{"nocopies", func(name string, f func() error) error {
		return b.withAgentArgs(name+" (no stack copies)", f, "--stack-copy-bytes=0")
	}}
	escalated := variant{"escalated", b.withEscalated}
	bt := variant{"bpftrace", func(_ string, f func() error) error { return withBpftrace(bpftraceOneLiner, f) }}
	floor := variant{"empty", func(_ string, f func() error) error { return withBpftrace(emptySyscallPrograms(), f) }}
	for _, name := range b.o.loops {
		if name == "redis" {
			if err := b.overheadRedis(none, lw, faults); err != nil {
				return err
			}
			continue
		}
		i := slices.IndexFunc(allLoops, func(l loop) bool { return l.name == name })
		if i < 0 {
			return fmt.Errorf("unknown workload %q", name)
		}
		l := allLoops[i]
		vs := []variant{none, lw, faults}
		if l.name == "faults" || l.name == "mmap" {
			vs = append(vs, noCopies)
		}
		if l.name == "getpid" || l.name == "mmap" {
			vs = append(vs, escalated)
		}
		var ref, refDesc string
		switch {
		case !haveBpftrace():
		case l.name == "faults":
			vs, ref, refDesc = append(vs, bt), "bpftrace", ", bpftrace one-liner instead"
		case l.name == "mmap" || l.name == "getpid":
			vs, ref, refDesc = append(vs, floor), "empty", ", empty programs on the agent's syscall tracepoints instead"
		}
		samples, err := b.rounds(l.name, vs, func() (map[string]float64, error) {
			v, err := runLoop(b.loops, l)
			return map[string]float64{"": v}, err
		})
		if err != nil {
			return err
		}
		target := ""
		if l.target > 0 {
			target = fmt.Sprintf("≤%.2fx", l.target)
		}
		b.add(overheadRow(l.desc, "ns", samples, "none", "leakwatch", "", l.target, target))
		if t := faultsTierTarget[l.name]; t > 0 {
			b.add(overheadRow(l.desc+", --tracing=faults", "ns", samples, "none", "faults", "", t, fmt.Sprintf("≤%.3fx", t)))
		}
		if l.name == "faults" || l.name == "mmap" {
			b.add(overheadRow(l.desc+", --stack-copy-bytes=0", "ns", samples, "none", "nocopies", "", 0, "reference"))
		}
		if l.name == "getpid" || l.name == "mmap" {
			b.add(overheadRow(l.desc+", --tracing=auto escalated", "ns", samples, "none", "escalated", "", 0, "reference: the full tier's"))
		}
		if ref != "" {
			b.add(overheadRow(l.desc+refDesc, "ns", samples, "none", ref, "", 0, "reference"))
		}
	}
	return nil
}

func (b *bench) overheadRedis(none, lw, faults variant) error {
	if !haveRedis() {
		progress("redis-server/redis-benchmark not installed (make deps); skipping the service rows")
		b.add(row{Section: "overhead", Measure: "redis: not installed", Limit: 1.01, Target: "≤1.01x"})
		return nil
	}
	r, err := startRedis(b.h)
	if err != nil {
		return err
	}
	defer r.stop()
	samples, err := b.rounds("redis", []variant{none, lw, faults}, r.bench)
	if err != nil {
		return err
	}
	for _, t := range redisTests {
		b.add(overheadRow(fmt.Sprintf("redis %s, %d req, 50 clients (ns/req)", t, redisRequests), "ns", samples, "none", "leakwatch", t+" ns/req", 1.01, "≤1.01x"))
	}
	for _, t := range redisTests {
		b.add(overheadRow(fmt.Sprintf("redis %s, %d req, 50 clients (ns/req), --tracing=faults", t, redisRequests), "ns", samples, "none", "faults", t+" ns/req", 1.005, "≤1.005x"))
	}
	for _, t := range redisTests {
		b.add(overheadRow(fmt.Sprintf("redis %s p99 latency (µs)", t), "µs", samples, "none", "leakwatch", t+" p99", 0, ""))
	}
	return nil
}

// samples holds, per variant and metric, one value per measured round.
type samples map[string]map[string][]float64

// rounds runs a warm-up round and then o.rounds measured rounds, each
// running the variants in order.
func (b *bench) rounds(name string, vs []variant, f func() (map[string]float64, error)) (samples, error) {
	s := samples{}
	for round := 0; round <= b.o.rounds; round++ {
		for _, v := range vs {
			var res map[string]float64
			err := v.wrap(name, func() error {
				var err error
				res, err = f()
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("%s with %s: %w", name, v.name, err)
			}
			if round == 0 {
				continue // warm-up
			}
			if s[v.name] == nil {
				s[v.name] = map[string][]float64{}
			}
			for k, x := range res {
				s[v.name][k] = append(s[v.name][k], x)
			}
		}
		if round == 0 {
			delete(b.rep.AgentCPU, name)
		}
		progress("%s: round %d/%d", name, round, b.o.rounds)
	}
	return s, nil
}

func overheadRow(measure, unit string, s samples, a, bName, metric string, limit float64, target string) row {
	r := row{Section: "overhead", Measure: measure, Unit: unit, A: s[a][metric], B: s[bName][metric], Limit: limit, Target: target}
	for i := range r.A {
		r.Ratios = append(r.Ratios, r.B[i]/r.A[i])
	}
	return r
}

// programCosts runs each loop once with the tracer loaded in-process and
// the kernel's BPF statistics on, and adds each program's mean cost.
func (b *bench) programCosts() (err error) {
	stats, err := tracer.EnableStats()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stats.Close()) }()
	for _, l := range allLoops {
		if !slices.Contains([]string{"faults", "mmap", "malloc", "getpid"}, l.name) {
			continue
		}
		// Each loop with the default stack copies, then without: what a
		// copy adds to a program's run (issue 14: at most 3 µs with it).
		for _, copyBytes := range []uint64{tracer.DefaultConfig().StackCopyBytes, 0} {
			if err := b.programCost(l, copyBytes); err != nil {
				return err
			}
		}
	}
	return nil
}

// programCost runs one loop beside an in-process tracer (run, so that its
// stack copies are read) and adds each program's mean cost.
func (b *bench) programCost(l loop, copyBytes uint64) (err error) {
	cfg := tracer.DefaultConfig()
	cfg.StackCopyBytes = copyBytes
	tr, err := tracer.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- tr.Run(ctx) }()
	defer func() {
		cancel()
		err = errors.Join(err, <-ran, tr.Close())
	}()
	before, err := tr.ProgramStats()
	if err != nil {
		return err
	}
	copies0, err := tr.Snapshot()
	if err != nil {
		return err
	}
	if _, err = runLoop(b.loops, l); err != nil {
		return err
	}
	after, err := tr.ProgramStats()
	if err != nil {
		return err
	}
	copies1, err := tr.Snapshot()
	if err != nil {
		return err
	}
	if l.name == "faults" && copyBytes > 0 {
		if mem, err := tr.MapMemory(); err == nil {
			b.add(row{Section: "programs", Measure: "BPF map memory, tracer in-process (MiB)", Unit: "MiB", Values: []float64{float64(mem) / (1 << 20)}, Limit: 32, Target: "≤32 MiB"})
		}
	}
	mode := fmt.Sprintf("stack copies of %d B", copyBytes)
	if copyBytes == 0 {
		mode = "no stack copies"
	}
	made := copies1.StackCopies[tracer.CopyMade] - copies0.StackCopies[tracer.CopyMade]
	for i, a := range after {
		n := a.RunCount - before[i].RunCount
		if n < 100 { // stray runs from other processes
			continue
		}
		b.add(row{
			Section: "programs", Measure: fmt.Sprintf("%s: %s, %s (ns/run)", l.name, a.Name, mode), Unit: "ns",
			Values: []float64{float64(a.RunTime-before[i].RunTime) / float64(n)},
			Note:   fmt.Sprintf("%d runs, %d copies", n, made),
		})
	}
	return nil
}

func printTable(w io.Writer, rep *report) {
	fmt.Fprintf(w, "leakwatch bench — %s, %d CPUs (%s), kernel %s, %s; %d rounds after a warm-up, interleaved\n",
		rep.Host, rep.CPUs, rep.CPUModel, rep.Kernel, rep.Go, rep.Rounds)
	fmt.Fprintf(w, "A = without, B = with `leakwatch run` (defaults); result = median of per-round B/A ratios, or median value\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "section\tmeasure\tA median\tB median\tresult\tspread (min..max)\ttarget\tverdict\t")
	for _, r := range rep.Rows {
		var a, b, res, spread string
		switch {
		case len(r.Ratios) > 0:
			a, b = num(median(r.A)), num(median(r.B))
			res = fmt.Sprintf("%.3fx", median(r.Ratios))
			spread = fmt.Sprintf("%.3f..%.3f", slices.Min(r.Ratios), slices.Max(r.Ratios))
		case len(r.Values) > 0:
			a, b = "", ""
			res = num(median(r.Values))
			if len(r.Values) > 1 {
				spread = num(slices.Min(r.Values)) + ".." + num(slices.Max(r.Values))
			}
		default:
			res = "-"
		}
		if r.Note != "" {
			spread = strings.TrimPrefix(spread+"; "+r.Note, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Section, r.Measure, a, b, res, spread, r.Target, r.verdict())
	}
	tw.Flush()
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "-"
	case a >= 1e5:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func buildLoops(dir string) (string, error) {
	bin := filepath.Join(dir, "loops")
	cmd := exec.Command("cc", "-O2", "-fno-omit-frame-pointer", "-Wall", "-o", bin,
		filepath.Join(moduleRoot(), "test", "bench", "loops", "loops.c"))
	if outb, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building loops: %w\n%s", err, outb)
	}
	return bin, nil
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// goTool is the go command on PATH, or where the Go tarball installs it.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
