// Command record runs one workload in a memory cgroup of its own and writes
// the cgroup's memory, every interval, as a series file that `leakwatch
// analyze` and test/benchdetect read:
//
//	t,bytes,limit,usage,anon,file,kernel
//
// bytes is the signal the agent feeds the detector (cgroups.MemoryStats
// LeakSignal: anonymous and shared memory plus unreclaimable kernel memory,
// page cache left out; the first set was recorded before shared memory was
// part of it, which changes nothing for its runtimes, whose shmem is flat), limit the cgroup's effective limit; the other columns are there for
// a reader and are ignored by the CSV reader.
//
//	go run ./test/corpus/real/record -name go-leak -out go-leak.csv \
//	    -duration 60m -mem-limit 1100Mi -cpu 0.10 -- ./goservice -leak-rate 65536
//
// The cgroup is made beneath this process's own memory cgroup (on v1 also a
// cpu cgroup beneath its own, capped at -cpu of one core, so a recording
// stays light on a shared host). The workload is moved into both by a shell
// that then execs it, so every byte it allocates is charged there. At the
// end, or on SIGINT/SIGTERM, the workload's process group is sent SIGTERM,
// then SIGKILL, and both cgroups are removed.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/leakwatch/leakwatch/pkg/cgroups"
)

func main() {
	name := flag.String("name", "", "run name; the cgroups are named leakwatch-trace-<name>")
	out := flag.String("out", "", "CSV file to write")
	logFile := flag.String("log", "", "file for the workload's stdout and stderr (default: <out> with .log)")
	duration := flag.Duration("duration", time.Hour, "how long to record")
	interval := flag.Duration("interval", 10*time.Second, "time between points")
	memLimit := flag.String("mem-limit", "1Gi", "memory limit of the workload's cgroup (bytes, or with a Ki/Mi/Gi suffix)")
	cpu := flag.Float64("cpu", 0.10, "CPU cap of the workload in cores (v1 cpu cgroup; 0: none)")
	flag.Parse()
	if *name == "" || *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: record -name NAME -out FILE.csv [flags] -- workload [args]")
		os.Exit(2)
	}
	limit, err := parseBytes(*memLimit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "record: -mem-limit:", err)
		os.Exit(2)
	}
	if *logFile == "" {
		*logFile = strings.TrimSuffix(*out, ".csv") + ".log"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("run", *name)
	r := recording{name: "leakwatch-trace-" + *name, limit: limit, cpu: *cpu, interval: *interval, duration: *duration, log: log}
	if err := r.run(ctx, *out, *logFile, flag.Args()); err != nil {
		log.Error("recording failed", "err", err)
		stop()
		os.Exit(1)
	}
}

type recording struct {
	name               string
	limit              uint64
	cpu                float64
	interval, duration time.Duration
	log                *slog.Logger

	h      cgroups.Hierarchy
	memCg  string // relative to h.Dir
	cpuDir string // absolute; "" without a cpu cgroup
}

func (r *recording) run(ctx context.Context, out, logFile string, argv []string) (err error) {
	if r.h, err = cgroups.Detect(""); err != nil {
		return err
	}
	if r.memCg, err = r.h.MakeChild(r.name, r.limit); err != nil {
		return err
	}
	defer func() {
		if rmErr := r.h.RemoveChild(r.memCg, 30*time.Second); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
	}()
	if r.cpu > 0 {
		if r.cpuDir, err = makeCPUChild(r.name, r.cpu); err != nil {
			return err
		}
		// Deferred calls run last first: this one after the workload
		// has been reaped. Its children (a server the workload's shell
		// started) may still be exiting from the group's SIGTERM: the
		// cgroup is busy until they have, so removal is retried.
		defer func() {
			if rmErr := removeWhenEmpty(r.cpuDir, 30*time.Second); rmErr != nil {
				err = errors.Join(err, fmt.Errorf("removing cpu cgroup: %w", rmErr))
			}
		}()
	}

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	lf, err := os.Create(logFile)
	if err != nil {
		return err
	}
	defer lf.Close()

	// The shell moves itself into the cgroups, then becomes the workload.
	memProcs := filepath.Join(r.h.Dir, r.memCg, "cgroup.procs")
	cpuProcs := ""
	if r.cpuDir != "" {
		cpuProcs = filepath.Join(r.cpuDir, "cgroup.procs")
	}
	script := `echo $$ > "$0" && { [ -z "$1" ] || echo $$ > "$1"; } && shift && exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, memProcs, cpuProcs}, argv...)...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	start := time.Now()
	r.log.Info("recording", "cgroup", r.memCg, "pid", cmd.Process.Pid, "workload", strings.Join(argv, " "), "until", start.Add(r.duration).UTC().Format(time.RFC3339))
	// exited is closed once the workload has been reaped; waitErr is then
	// its exit status.
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		if stopErr := stopGroup(cmd.Process.Pid, exited); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
	}()

	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "# %s: %s\n# started %s, every %s, memory limit %d, cpu cap %.2f cores\n",
		r.name, strings.Join(argv, " "), start.UTC().Format(time.RFC3339), r.interval, r.limit, r.cpu)
	fmt.Fprintln(w, "t,bytes,limit,usage,anon,file,kernel")
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	// The first point is one interval in: before that the shell may not
	// have joined the cgroup, which would read as 0 bytes.
	for {
		select {
		case <-ctx.Done():
			r.log.Info("interrupted; stopping the workload", "after", time.Since(start).Round(time.Second))
			return nil
		case <-exited:
			return fmt.Errorf("workload exited after %s (see %s): %w", time.Since(start).Round(time.Second), logFile, waitErr)
		case <-tick.C:
		}
		st, err := r.h.ReadMemory(r.memCg)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%.1f,%d,%d,%d,%d,%d,%d\n", time.Since(start).Seconds(), st.LeakSignal(), st.EffectiveLimit, st.Usage, st.Anon, st.File, st.Kernel)
		if err := w.Flush(); err != nil {
			return err
		}
		if time.Since(start) >= r.duration {
			return nil
		}
	}
}

// stopGroup ends the workload's process group (its pid is the group id):
// SIGTERM, then SIGKILL after 10 s.
func stopGroup(pid int, exited <-chan struct{}) error {
	select {
	case <-exited:
		return nil
	default:
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("workload %d did not exit after SIGKILL", pid)
	}
}

// makeCPUChild makes a v1 cpu cgroup beneath this process's own, capped at
// cores of CPU time.
func makeCPUChild(name string, cores float64) (string, error) {
	const mount = "/sys/fs/cgroup/cpu"
	own, err := ownV1Path("cpu")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(mount, own, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("making cpu cgroup: %w", err)
	}
	period := 100000
	quota := max(1000, int(cores*float64(period)))
	for file, v := range map[string]int{"cpu.cfs_period_us": period, "cpu.cfs_quota_us": quota} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(strconv.Itoa(v)), 0o644); err != nil {
			_ = os.Remove(dir)
			return "", fmt.Errorf("setting %s of %s: %w", file, dir, err)
		}
	}
	return dir, nil
}

// ownV1Path is this process's cgroup in the v1 hierarchy of controller.
func ownV1Path(controller string) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			if c == controller {
				return parts[2], nil
			}
		}
	}
	return "", fmt.Errorf("no v1 %s cgroup in /proc/self/cgroup", controller)
}

func parseBytes(s string) (uint64, error) {
	mult := uint64(1)
	for suffix, m := range map[string]uint64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
			break
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	return v * mult, nil
}

// removeWhenEmpty removes the cgroup directory dir, retrying while it is
// busy (processes still leaving it) for at most wait.
func removeWhenEmpty(dir string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := os.Remove(dir)
		if err == nil || !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
