package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/pprof/profile"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// The demo's leaking program is this binary, re-run with a hidden command,
// so the demo needs nothing but leakwatch itself.
const demoLeakerCommand = "__demo-leaker"

type demoConfig struct {
	Run      runConfig
	Rate     uint64 // bytes per second leaked
	Timeout  time.Duration
	KeepFile string
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := demoConfig{}
	fs := newFlagSet("demo", "demo [flags]", stderr)
	fs.Uint64Var(&cfg.Rate, "rate", 2<<20, "bytes per second the demo program leaks")
	fs.DurationVar(&cfg.Timeout, "timeout", 3*time.Minute, "give up if the leak is not found by then")
	fs.StringVar(&cfg.KeepFile, "o", "", "also keep the growth profile in `FILE`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Rate < 64<<10 || cfg.Rate > 64<<20 {
		return errors.New("--rate must be between 64 KiB/s and 64 MiB/s")
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo loads eBPF programs and makes a cgroup: run it as root (sudo leakwatch demo)")
	}
	// The agent, tuned to tell the story in about a minute: a 1 s interval,
	// a short warm-up and short windows. `leakwatch run` defaults are made
	// for hours-long slow leaks too. The full tier from the start: the
	// demo shows the inuse growth of the 30 s before the verdict, which
	// the auto mode would trace only from the verdict on.
	run, err := parseRunConfig([]string{
		"--listen", "127.0.0.1:0", "--interval", "1s", "--detect-warm-up", "10s", "--detect-window", "5s", "--detect-persistence", "20s", "--tracing=full",
	}, stderr)
	if err != nil {
		return err
	}
	cfg.Run = run
	log := newLogger(stderr, slog.LevelWarn)
	d, err := newDaemon(cfg.Run, log)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()

	cg, err := d.hier.MakeChild("leakwatch-demo-"+strconv.Itoa(os.Getpid()), 1<<30)
	if err != nil {
		return err
	}
	defer func() {
		if err := d.hier.RemoveChild(cg, 10*time.Second); err != nil {
			fmt.Fprintln(stderr, "leakwatch demo:", err)
		}
	}()
	leaker, err := startLeaker(d, cg, cfg.Rate, stderr)
	if err != nil {
		return err
	}
	defer func() {
		_ = leaker.Process.Kill()
		_ = leaker.Wait()
	}()
	select {
	case <-d.server.Listening():
	case err := <-runErr:
		return err
	}
	fmt.Fprintf(stdout, "leakwatch demo: the agent runs (API at http://%s), a program leaking %s/s runs in cgroup %s (pid %d).\n",
		d.server.Addr(), bytesString(cfg.Rate), cg, leaker.Process.Pid)
	fmt.Fprintln(stdout, "Watching it as `leakwatch run` does: memory, growth, and the verdict.")

	c, err := watchLeak(ctx, d, cg, cfg.Timeout, stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nLeak detected: %s/s with confidence %.2f. Its growth profile over the last 30 s, as `go tool pprof -top` shows it:\n\n",
		bytesString(uint64(c.Verdict.GrowthBytesPerSecond)), c.Verdict.Confidence)
	data, err := d.agent.Profile(ctx, c.ID, "inuse", 30*time.Second)
	if err != nil {
		return err
	}
	file := cfg.KeepFile
	if file == "" {
		dir, err := os.MkdirTemp("", "leakwatch-demo-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(dir) }()
		file = filepath.Join(dir, "growth.pb.gz")
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return err
	}
	if err := pprofTop(ctx, file, stdout); err != nil {
		return err
	}
	top, err := topFunction(data)
	switch {
	case err != nil:
		return err
	case top == "main.demoLeak":
		fmt.Fprintln(stdout, "\nThe leaking function, main.demoLeak, is on top.")
	default:
		fmt.Fprintf(stdout, "\nOn top is %q, not the leaking function main.demoLeak: symbols or stacks are missing on this host.\n", top)
	}
	fmt.Fprintf(stdout, "On a node, the same profile comes from\n"+
		"  leakwatch profile --seconds 30 %s     (or go tool pprof http://HOST:9753/api/v1/containers/%s/profile?seconds=30)\n", c.ID, c.ID)
	fmt.Fprintln(stdout, "Cleaning up: the demo program is stopped and its cgroup removed.")
	return nil
}

// startLeaker starts the leaking program and moves it into the cgroup
// before it allocates: it waits for a line on stdin first.
func startLeaker(d *daemon, cg string, rate uint64, stderr io.Writer) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, demoLeakerCommand, strconv.FormatUint(rate, 10))
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the demo program: %w", err)
	}
	if err := d.hier.AddProcess(cg, cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	_, _ = io.WriteString(stdin, "go\n")
	return cmd, nil
}

// watchLeak prints the container's state every second until it is leaking.
func watchLeak(ctx context.Context, d *daemon, cg string, timeout time.Duration, stdout io.Writer) (view.Container, error) {
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return view.Container{}, ctx.Err()
		case <-tick.C:
		}
		if time.Since(start) > timeout {
			return view.Container{}, fmt.Errorf("no leak found within %v; is the kernel side working? try `leakwatch trace`", timeout)
		}
		snap := d.agent.Snapshot()
		if snap == nil {
			continue
		}
		for _, c := range snap.Containers {
			if c.Cgroup != cg {
				continue
			}
			state := "not leaking"
			switch {
			case c.Verdict.Leaking:
				state = "LEAKING"
			case c.Verdict.WarmingUp:
				state = "warming up (start-up growth is not a leak)"
			}
			fmt.Fprintf(stdout, "  %3.0fs  memory %9s  growth %9s/s  %s\n", time.Since(start).Seconds(),
				bytesString(c.Memory.LeakSignal), bytesString(uint64(max(c.Verdict.GrowthBytesPerSecond, 0))), state)
			if c.Verdict.Leaking {
				return c, nil
			}
		}
	}
}

// pprofTop shows the profile with the real `go tool pprof -top` when Go is
// installed; otherwise it says how to.
func pprofTop(ctx context.Context, file string, stdout io.Writer) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintf(stdout, "(go is not installed here; on a machine with Go run: go tool pprof -top %s)\n", file)
		return nil
	}
	cmd := exec.CommandContext(ctx, goBin, "tool", "pprof", "-top", "-nodecount=8", file)
	cmd.Stdout = stdout
	cmd.Stderr = stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go tool pprof: %w", err)
	}
	return nil
}

// topFunction is the function with the most flat bytes in a profile, as
// the first line of `pprof -top`.
func topFunction(data []byte) (string, error) {
	p, err := profile.ParseData(data)
	if err != nil {
		return "", fmt.Errorf("reading the profile: %w", err)
	}
	// pprof's default: the named default sample type, else the last one.
	idx := len(p.SampleType) - 1
	for i, st := range p.SampleType {
		if st.Type == p.DefaultSampleType {
			idx = i
		}
	}
	flat := map[string]int64{}
	for _, s := range p.Sample {
		name := "<unknown>"
		if len(s.Location) > 0 && len(s.Location[0].Line) > 0 {
			name = s.Location[0].Line[0].Function.Name
		}
		flat[name] += s.Value[idx]
	}
	best, bestV := "", int64(0)
	for n, v := range flat {
		if v > bestV || (v == bestV && n < best) {
			best, bestV = n, v
		}
	}
	return best, nil
}

// demoLeaker is the demo's leaking program: it waits for the word to start,
// then keeps rate bytes per second alive forever, touched, in demoLeak.
func demoLeaker(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: leakwatch " + demoLeakerCommand + " BYTES_PER_SECOND")
	}
	rate, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil || rate == 0 {
		return fmt.Errorf("bad rate %q", args[0])
	}
	if _, err := fmt.Fscanln(os.Stdin, new(string)); err != nil {
		return fmt.Errorf("waiting to start: %w", err)
	}
	chunk := int(rate / 10)
	for {
		demoLeak(chunk)
		time.Sleep(100 * time.Millisecond)
	}
}

var demoRetained [][]byte

//go:noinline
func demoLeak(n int) {
	b := make([]byte, n)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	demoRetained = append(demoRetained, b)
}
