// Command leakwatch is a node-level eBPF memory leak detector.
//
// This file only dispatches subcommands; each subcommand parses its flags
// into one config, validates it, builds the pieces and runs them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/leakwatch/leakwatch/pkg/cgroups"
	"github.com/leakwatch/leakwatch/pkg/state"
	"github.com/leakwatch/leakwatch/pkg/tracer"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"run", "the daemon: watch every container, detect leaks, serve metrics and the API", runRun},
	{"analyze", "replay recorded memory series (CSV) through the leak detector", runAnalyze},
	{"top", "live view of a running agent's containers, ordered by growth", runTop},
	{"profile", "download a container's pprof profile from a running agent", runProfile},
	{"demo", "a self-contained tour: a leaking program, found live, and its profile", runDemo},
	{"trace", "print live per-cgroup figures from the kernel side (a debugging view)", runTrace},
	{"version", "print the version", runVersion},
}

// Exit codes: distinct per kind of failure so that scripts and Kubernetes
// events tell them apart. The README lists them.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitPrivileges  = 3 // not root, or lacking CAP_BPF/CAP_PERFMON
	exitNoBTF       = 4 // the kernel has no BTF
	exitLockdown    = 5 // kernel lockdown forbids reading kernel memory
	exitNoTracing   = 6 // no tracefs or missing tracepoints
	exitLoad        = 7 // the verifier rejected the programs (kernel too old)
	exitNoCgroups   = 8 // no memory cgroup controller
	exitStateLocked = 9 // another agent holds --state-dir
)

// hostExitCodes maps what the tracer found missing to its exit code.
var hostExitCodes = map[tracer.Requirement]int{
	tracer.RequirePrivileges:  exitPrivileges,
	tracer.RequireBTF:         exitNoBTF,
	tracer.RequireLockdown:    exitLockdown,
	tracer.RequireTracefs:     exitNoTracing,
	tracer.RequireTracepoints: exitNoTracing,
	tracer.RequireLoad:        exitLoad,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == demoLeakerCommand {
		if err := demoLeaker(args[1:]); err != nil {
			fmt.Fprintln(stderr, "leakwatch demo program:", err)
			return exitFailure
		}
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		if err == nil {
			return exitOK
		}
		return report(stderr, c.name, err)
	}
	fmt.Fprintf(stderr, "leakwatch: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "leakwatch finds memory leaks in every container of a node, with eBPF.")
	fmt.Fprintln(w, "\nUsage: leakwatch COMMAND [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `leakwatch COMMAND -h` for a command's flags.")
}

// errUsage marks an error in the command line; the flag package has already
// printed the details.
var errUsage = errors.New("usage")

func report(stderr io.Writer, cmd string, err error) int {
	switch {
	case errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	case errors.Is(err, errSomeFailed):
		return exitFailure
	}
	fmt.Fprintf(stderr, "leakwatch %s: %v\n", cmd, err)
	var host *tracer.HostError
	switch {
	case errors.As(err, new(invalidConfig)):
		return exitUsage
	case errors.As(err, &host):
		if code, ok := hostExitCodes[host.Requirement]; ok {
			return code
		}
	case errors.Is(err, cgroups.ErrNoController):
		return exitNoCgroups
	case errors.Is(err, state.ErrLocked):
		return exitStateLocked
	}
	return exitFailure
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
