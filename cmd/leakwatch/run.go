package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/leakwatch/leakwatch/pkg/agent"
	"github.com/leakwatch/leakwatch/pkg/buildinfo"
	"github.com/leakwatch/leakwatch/pkg/cgroups"
	"github.com/leakwatch/leakwatch/pkg/cri"
	"github.com/leakwatch/leakwatch/pkg/events"
	"github.com/leakwatch/leakwatch/pkg/metrics"
	"github.com/leakwatch/leakwatch/pkg/server"
	"github.com/leakwatch/leakwatch/pkg/tiering"
	"github.com/leakwatch/leakwatch/pkg/tracer"
)

// runConfig is everything `leakwatch run` is told, validated as one.
type runConfig struct {
	Listen       string
	WebConfig    string
	EnablePprof  bool
	CgroupRoot   string
	CRIEndpoints []string
	NoTracer     bool
	// UnwindTableBytes bounds the unwinding tables (see pkg/unwind).
	UnwindTableBytes int
	LogLevel         slog.Level
	LogFormat        string
	Agent            agent.Config
	Tracer           tracer.Config
	// Tracing is the tier mode; TracingHold the auto mode's hold.
	Tracing     tiering.Mode
	TracingHold time.Duration
}

func (c runConfig) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("--listen must not be empty"))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: must be text or json", c.LogFormat))
	}
	errs = append(errs, c.Agent.Validate(), c.server().Validate())
	if !c.NoTracer {
		errs = append(errs, c.Tracer.Validate())
	}
	if c.TracingHold <= 0 {
		errs = append(errs, fmt.Errorf("--tracing-hold %v: must be above 0", c.TracingHold))
	}
	if c.UnwindTableBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("--unwind-table-bytes %d: at least 1 MiB", c.UnwindTableBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return invalidConfig{err}
	}
	return nil
}

func (c runConfig) server() server.Config {
	return server.Config{Listen: c.Listen, WebConfigFile: c.WebConfig, EnablePprof: c.EnablePprof}
}

// invalidConfig marks a configuration refused after parsing (a value out of
// range, a web config file that protects nothing): a usage error like a bad
// flag, but one whose reason still has to be printed.
type invalidConfig struct{ error }

func (e invalidConfig) Unwrap() error { return e.error }

// listFlag is a comma-separated list flag.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	*l.v = nil
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l.v = append(*l.v, part)
		}
	}
	return nil
}

// levelFlag is a log level written as it is typed: info, not INFO.
type levelFlag struct{ l *slog.Level }

func (f levelFlag) String() string {
	if f.l == nil {
		return ""
	}
	return strings.ToLower(f.l.String())
}

func (f levelFlag) Set(s string) error { return f.l.UnmarshalText([]byte(s)) }

func parseRunConfig(args []string, stderr io.Writer) (runConfig, error) {
	cfg := runConfig{Agent: agent.DefaultConfig(), Tracer: tracer.DefaultConfig(), UnwindTableBytes: 8 << 20, Tracing: tiering.ModeAuto, TracingHold: tiering.DefaultHold}
	fs := newFlagSet("run", "run [flags]", stderr)
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:9753", "address of the HTTP server (metrics, API); in Kubernetes the pod IP and port")
	fs.StringVar(&cfg.WebConfig, "web.config.file", "", "web configuration file (Prometheus exporter toolkit format) that turns on TLS, client certificates and basic auth for every endpoint")
	fs.BoolVar(&cfg.EnablePprof, "web.enable-pprof", false, "serve the agent's own Go profiles under /debug/pprof/, behind the same web config")
	fs.DurationVar(&cfg.Agent.Interval, "interval", cfg.Agent.Interval, "time between two collections of every cgroup")
	fs.DurationVar(&cfg.Agent.Retention, "retention", cfg.Agent.Retention, "how long a gone container's record, series, profile and OOM kill counter are kept")
	fs.IntVar(&cfg.Agent.MaxContainers, "max-containers", cfg.Agent.MaxContainers, "most live containers tracked; more are counted and left out")
	fs.IntVar(&cfg.Agent.MaxGoneContainers, "max-gone-containers", cfg.Agent.MaxGoneContainers, "most gone containers retained, apart from the live ones; beyond it the longest gone are forgotten early")
	fs.DurationVar(&cfg.Agent.Detect.WarmUp, "detect-warm-up", cfg.Agent.Detect.WarmUp, "start-up time of a container that the detector ignores")
	fs.DurationVar(&cfg.Agent.Detect.Persistence, "detect-persistence", cfg.Agent.Detect.Persistence, persistenceUsage)
	fs.DurationVar(&cfg.Agent.Detect.EnvelopeWindow, "detect-window", cfg.Agent.Detect.EnvelopeWindow, "width of the detector's shortest window; longer GC cycles are left to slower tiers")
	fs.StringVar(&cfg.Agent.StateDir, "state-dir", "", "directory of the state store (series, detector state, OOM kills) kept across restarts; empty: none")
	fs.StringVar(&cfg.CgroupRoot, "cgroup-root", cgroups.DefaultRoot, "where the host's cgroup hierarchies are mounted")
	fs.StringVar(&cfg.Tracer.ProcRoot, "proc-root", cfg.Tracer.ProcRoot, "where the host's /proc is mounted")
	fs.Var(listFlag{&cfg.CRIEndpoints}, "cri-endpoint", "CRI sockets to ask for pod names, comma-separated (default: containerd, CRI-O, cri-dockerd)")
	fs.Func("tracing", "what the tracer traces: faults (page-fault samples, OOM kills, execs and exits; system calls keep full speed), full (also mmap/munmap/mremap/brk/mprotect: the inuse view; every system call on the node takes the kernel's slow path) or auto (faults, escalating to full while a container is judged leaking or an inuse profile is asked for, until --tracing-hold after the last reason) (default auto)", func(v string) error {
		m, err := tiering.ParseMode(v)
		cfg.Tracing = m
		return err
	})
	fs.DurationVar(&cfg.TracingHold, "tracing-hold", cfg.TracingHold, "with --tracing=auto, how long the full tier stays after its last reason (a leaking verdict, an inuse profile request)")
	fs.Uint64Var(&cfg.Tracer.FaultSampleBytes, "fault-sample-bytes", cfg.Tracer.FaultSampleBytes, "faulted bytes between two page-fault samples (0: off)")
	fs.Uint64Var(&cfg.Tracer.MmapSampleBytes, "mmap-sample-bytes", cfg.Tracer.MmapSampleBytes, "private anonymous mappings shorter than this are sampled by size, the rest tracked exactly (0: track all)")
	fs.Uint64Var(&cfg.Tracer.StackCopyBytes, "stack-copy-bytes", cfg.Tracer.StackCopyBytes, fmt.Sprintf("user stack copied per sampled event, unwound in the agent from the binaries' call-frame information (at most %d; 0: frame pointers only)", tracer.MaxStackCopyBytes))
	fs.Uint64Var(&cfg.Tracer.StackCopiesPerSecond, "stack-copies-per-second", cfg.Tracer.StackCopiesPerSecond, "node-wide budget of stack copies; events over it keep their frame-pointer stack (counted in leakwatch_stack_copies_total)")
	fs.IntVar(&cfg.UnwindTableBytes, "unwind-table-bytes", cfg.UnwindTableBytes, "memory for the unwinding tables built from binaries' call-frame information, least recently used out first; one binary's table may take half (a larger one is logged and its frames walked by frame pointer)")
	fs.BoolVar(&cfg.NoTracer, "no-tracer", false, "run on cgroup statistics only, without the eBPF programs")
	cfg.LogLevel = slog.LevelInfo
	fs.Var(levelFlag{&cfg.LogLevel}, "log-level", "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "text or json")
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	cfg.Tracer.Tier = tracer.Tier(cfg.Tracing.InitialTier())
	// The slower tiers' buckets follow the shortest window, keeping their ratio.
	scale := float64(cfg.Agent.Detect.EnvelopeWindow) / float64(time.Minute)
	def := agent.DefaultConfig().Detect
	cfg.Agent.Detect.MediumBucket = time.Duration(float64(def.MediumBucket) * scale)
	cfg.Agent.Detect.SlowBucket = time.Duration(float64(def.SlowBucket) * scale)
	cfg.Agent.Detect.MaxGap = max(def.MaxGap, 3*cfg.Agent.Interval)
	return cfg, cfg.Validate()
}

func runRun(ctx context.Context, args []string, _, stderr io.Writer) error {
	// SIGHUP's default action ends the process at once, without the final
	// save, and operators send it to reload exporters: catch it before the
	// slow start-up (the tracer loads for seconds) and reload instead.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := parseRunConfig(args, stderr)
	if err != nil {
		return err
	}
	var log *slog.Logger
	if cfg.LogFormat == "json" {
		log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	} else {
		log = newLogger(stderr, cfg.LogLevel)
	}
	d, err := newDaemon(cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	d.reloads = hup
	return d.Run(ctx)
}

// daemon is every part of `leakwatch run`, built from one config.
type daemon struct {
	log     *slog.Logger
	hier    cgroups.Hierarchy
	tracer  *tracer.Tracer // nil with --no-tracer
	cri     *cri.Client
	agent   *agent.Agent
	server  *server.Server
	events  *events.Exporter // nil when no OTLP endpoint is set
	closers []func()
	// reloads delivers SIGHUP; nil (demo) never reloads.
	reloads   <-chan os.Signal
	webConfig server.Config
}

func newDaemon(cfg runConfig, log *slog.Logger) (_ *daemon, err error) {
	d := &daemon{log: log}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	bi := buildinfo.Get()
	log.Info("starting leakwatch", "version", bi.Version, "revision", bi.Revision, "listen", cfg.Listen, "gogc", setDefaultGOGC())

	if d.hier, err = cgroups.Detect(cfg.CgroupRoot); err != nil {
		return nil, err
	}
	log.Info("memory cgroups", "layout", d.hier.Layout.String(), "dir", d.hier.Dir)

	degraded := map[string]string{}
	if cfg.NoTracer {
		degraded[agent.PartTracer] = "disabled by --no-tracer"
	} else {
		if d.tracer, err = tracer.New(cfg.Tracer, log); err != nil {
			return nil, err
		}
		d.closers = append(d.closers, func() { closeLogged(log, "tracer", d.tracer) })
		if f := d.tracer.Features(); !f.FaultSampling {
			degraded[agent.PartFaultSampling] = f.FaultNote
		}
		if f := d.tracer.Features(); !f.Mappings && cfg.Tracing == tiering.ModeFaults {
			degraded[agent.PartMappings] = f.MappingsNote
		}
	}
	if d.cri, err = cri.New(cri.Config{Endpoints: cfg.CRIEndpoints}, log); err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { closeLogged(log, "CRI client", d.cri) })

	parts := agent.Parts{Tracer: d.tracer, CRI: d.cri}
	if d.tracer != nil {
		sym, res, err := newSymbolizer(cfg.Tracer.ProcRoot, log)
		if err != nil {
			return nil, err
		}
		if cfg.Tracer.StackCopyBytes > 0 {
			u := newStackUnwinder(sym, cfg.Tracer.ProcRoot, cfg.UnwindTableBytes, d.tracer.Stack)
			u.uw.Cache().SetLogger(log)
			d.tracer.SetUnwinder(u)
			d.closers = append(d.closers, u.Close)
			// Tables are built when a process is captured, while its files
			// can still be opened: its stack copies may be read after it
			// exited.
			res = resolver{s: sym, captured: u.Prepare}
		}
		parts.Symbolizer = res
	}
	cfg.Agent.FaultSampleBytes = cfg.Tracer.FaultSampleBytes
	if d.tracer != nil {
		if parts.Tiers, err = tiering.New(cfg.Tracing, cfg.TracingHold, tracerTiers{d.tracer}, log, time.Now()); err != nil {
			return nil, err
		}
	}
	if d.agent, err = agent.New(cfg.Agent, d.hier, parts, degraded, log); err != nil {
		return nil, err
	}
	// Closed after the parts made later (the server first): the agent has
	// saved its state when Run ended, Close only releases the store.
	d.closers = append(d.closers, func() { closeLogged(log, "agent state store", d.agent) })
	srvCfg := cfg.server()
	d.webConfig = srvCfg
	scheme, err := srvCfg.Scheme()
	if err != nil {
		return nil, err
	}
	if d.events, err = events.New(events.Config{BaseURL: events.BaseURL(scheme, cfg.Listen), Version: bi.Version}, d.agent, log); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	if d.events != nil {
		d.closers = append(d.closers, func() { closeLogged(log, "events exporter", d.events) })
		reg.MustRegister(d.events.Collector())
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	page, err := metrics.NewExposition(d.agent, bi, reg)
	if err != nil {
		return nil, err
	}
	if d.server, err = server.New(srvCfg, d.agent, page, log); err != nil {
		return nil, err
	}
	reg.MustRegister(d.server.Collector())
	d.closers = append(d.closers, func() { closeLogged(log, "HTTP server", d.server) })
	return d, nil
}

// Run runs every part until ctx ends or one fails. A stop is logged with
// its reason (the signal, from main's context) as soon as it comes, so that
// a log shows why the agent went away.
func (d *daemon) Run(ctx context.Context) error {
	logged := make(chan struct{})
	stopLog := context.AfterFunc(ctx, func() {
		d.log.Info("stopping", "reason", context.Cause(ctx).Error())
		close(logged)
	})
	err := runAll(ctx, d.log, map[string]func(context.Context) error{
		"agent":  d.agent.Run,
		"server": d.server.Run,
		"cri":    d.cri.Run,
		"events": d.events.Run, // waits for ctx when events are off
		"reload": d.reloadOnSignal,
		"tracer": func(ctx context.Context) error {
			if d.tracer == nil {
				<-ctx.Done()
				return nil
			}
			return d.tracer.Run(ctx)
		},
	})
	if !stopLog() { // the stop was logged, or is being: keep the order
		<-logged
	}
	if err == nil {
		d.log.Info("stopped")
	}
	return err
}

// reloadOnSignal reloads on each signal from d.reloads until ctx ends. A
// reload never stops the agent: what cannot be taken up is logged.
//
// What a reload can take up is the web config file, which the server reads
// again on each request and connection anyway: the reload checks it now,
// so that an edit's mistake is in the log when it is made, not at the next
// scrape. Everything else comes from flags, which a running process cannot
// read again; changing them takes a restart, which saves and restores the
// state.
func (d *daemon) reloadOnSignal(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig := <-d.reloads:
			d.log.Info("reloading", "signal", sig.String())
			if d.webConfig.WebConfigFile == "" {
				d.log.Info("reloaded; nothing to reload without --web.config.file")
				continue
			}
			if err := d.webConfig.Validate(); err != nil {
				d.log.Error("web config file refused on reload; the last good one stays in force", "path", d.webConfig.WebConfigFile, "err", err)
				continue
			}
			d.log.Info("reloaded", "web_config", d.webConfig.WebConfigFile)
		}
	}
}

// Close closes the parts in reverse order of making.
func (d *daemon) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// runAll runs every part until ctx ends or one of them fails, then stops the
// others and returns the first failure.
func runAll(ctx context.Context, log *slog.Logger, parts map[string]func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for name, run := range parts {
		wg.Go(func() {
			err := run(ctx)
			if err != nil && ctx.Err() == nil {
				once.Do(func() { first = fmt.Errorf("%s: %w", name, err) })
				log.Error("part failed; stopping", "part", name, "err", err)
			}
			cancel()
		})
	}
	wg.Wait()
	return first
}

func closeLogged(log *slog.Logger, what string, c io.Closer) {
	if err := c.Close(); err != nil {
		log.Warn("closing "+what, "err", err)
	}
}

// tracerTiers lets the tier policy switch the tracer.
type tracerTiers struct{ t *tracer.Tracer }

func (s tracerTiers) SetTier(full bool) error {
	if full {
		return s.t.SetTier(tracer.TierFull)
	}
	return s.t.SetTier(tracer.TierFaults)
}

// defaultGOGC is the agent's garbage collection target when GOGC is not set:
// the heap may grow to 1.25 times what is live, not Go's default of twice.
// The agent's live heap is mostly per-container history (about 10 KiB a
// container, 18 MiB at 1,800) and its allocation rate is low (a /metrics
// page is written without a message per series), so a tight target costs
// little CPU. Under a scrape storm at 1,800 containers (`make bench`,
// section storm; bound 96 MiB) the peak RSS was 112-128 MiB with Go's
// default, 90-102 MiB with 50, 79-86 MiB with 25.
const defaultGOGC = 25

// setDefaultGOGC applies defaultGOGC unless the GOGC environment variable
// says otherwise, and returns the setting in force.
func setDefaultGOGC() string {
	if v, ok := os.LookupEnv("GOGC"); ok {
		return v
	}
	debug.SetGCPercent(defaultGOGC)
	return strconv.Itoa(defaultGOGC)
}

// persistenceUsage is the --detect-persistence flag's text, for run and
// analyze alike.
const persistenceUsage = "least time the floor must rise steadily before a verdict turns leaking (0: off, verdicts within minutes); 20m keeps queues, caches, heaps growing to a cap and daily load from being flagged, at the cost of later verdicts"
