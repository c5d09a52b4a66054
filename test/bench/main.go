// Command bench measures what leakwatch's tracer costs the programs it
// watches: each micro-loop (test/bench/loops/loops.c) runs without and with the
// tracer attached, interleaved A B A B … after a warm-up, and the table gives
// median ns per iteration, the median of the per-round ratios and their
// spread. A second pass with the kernel's BPF statistics on gives each
// program's mean cost per run.
//
//	go run ./test/bench [-rounds 7] [-loops faults,faults2,mmap,getpid]
//
// It must run as root on an otherwise quiet machine.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/leakwatch/leakwatch/pkg/tracer"
)

// loop is one workload: how to run it, and how many copies at once.
type loop struct {
	name   string
	args   []string
	copies int
}

var allLoops = []loop{
	{name: "faults", args: []string{"faults", "256", "4"}, copies: 1},
	{name: "faults2", args: []string{"faults", "256", "4"}, copies: 2},
	{name: "mmap", args: []string{"mmap", "200000"}, copies: 1},
	{name: "malloc", args: []string{"malloc", "20000000"}, copies: 1},
	{name: "getpid", args: []string{"getpid", "3000000"}, copies: 1},
}

func main() {
	rounds := flag.Int("rounds", 7, "measured rounds (each: one run without, one with the tracer)")
	only := flag.String("loops", "faults,faults2,mmap,malloc,getpid", "loops to run, comma-separated")
	flag.Parse()
	if err := run(*rounds, strings.Split(*only, ","), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(rounds int, only []string, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to load the tracer")
	}
	if rounds < 3 {
		return errors.New("-rounds must be at least 3")
	}
	bin, cleanup, err := buildLoops()
	if err != nil {
		return err
	}
	defer cleanup()

	var loops []loop
	for _, l := range allLoops {
		if slices.Contains(only, l.name) {
			loops = append(loops, l)
		}
	}
	fmt.Fprintf(out, "machine: %s, %d CPUs, kernel %s; %d rounds after a warm-up, A=without B=with tracer\n\n",
		hostname(), runtime.NumCPU(), kernel(), rounds)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "loop\tA ns/iter\tB ns/iter\tratio B/A (median)\tratio min..max\t")
	for _, l := range loops {
		if _, err := runLoop(bin, l); err != nil { // warm-up
			return err
		}
		var as, bs, ratios []float64
		for range rounds {
			a, err := runLoop(bin, l)
			if err != nil {
				return err
			}
			b, err := withTracer(func() (float64, error) { return runLoop(bin, l) })
			if err != nil {
				return err
			}
			as, bs, ratios = append(as, a), append(bs, b), append(ratios, b/a)
		}
		slices.Sort(ratios)
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.3f\t%.3f..%.3f\t\n", l.name, median(as), median(bs),
			median(ratios), ratios[0], ratios[len(ratios)-1])
	}
	tw.Flush()

	fmt.Fprintln(out, "\nper-program cost (kernel.bpf_stats_enabled, one run of each loop with the tracer):")
	return programCosts(bin, loops, out)
}

// withTracer runs f with a freshly loaded tracer attached.
func withTracer(f func() (float64, error)) (float64, error) {
	tr, err := tracer.New(tracer.DefaultConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		return 0, err
	}
	v, err := f()
	return v, errors.Join(err, tr.Close())
}

func programCosts(bin string, loops []loop, out io.Writer) (err error) {
	stats, err := tracer.EnableStats()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stats.Close()) }()
	tr, err := tracer.New(tracer.DefaultConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tr.Close()) }()
	before, err := tr.ProgramStats()
	if err != nil {
		return err
	}
	for _, l := range loops {
		if _, err := runLoop(bin, l); err != nil {
			return err
		}
	}
	after, err := tr.ProgramStats()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "program\truns\tns/run\t")
	for i, a := range after {
		n := a.RunCount - before[i].RunCount
		if n == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t\n", a.Name, n, float64(a.RunTime-before[i].RunTime)/float64(n))
	}
	tw.Flush()
	if mem, err := tr.MapMemory(); err == nil {
		fmt.Fprintf(out, "\nBPF map memory (memlock): %.1f MiB\n", float64(mem)/(1<<20))
	}
	return nil
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

func buildLoops() (string, func(), error) {
	dir, err := os.MkdirTemp("", "leakwatch-bench-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(dir, "loops")
	cmd := exec.Command("cc", "-O2", "-fno-omit-frame-pointer", "-Wall", "-o", bin, filepath.Join(filepath.Dir(file), "loops", "loops.c"))
	if outb, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("building loops: %w\n%s", err, outb)
	}
	return bin, cleanup, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}
