// Package tracer owns leakwatch's BPF programs: it checks the host, loads and
// attaches them, reads their maps in batches and hands the rest of the agent
// plain Go values — per memory cgroup counters, outstanding bytes by
// allocating stack, page-fault samples by stack, OOM kills and the exits of
// processes it tracked. Nothing else touches the BPF objects.
//
// The kernel side records; this side cleans up. A process that exits or
// execs is reported through the ring buffer and its mappings are swept here,
// in batches, off the hot path. A periodic sweep removes what a lost event
// left behind (processes that no longer exist) and garbage-collects stacks
// that nothing references, so every map stays bounded.
package tracer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// eventPoll is how often the events reader drains the ring buffer without
// being woken: exits and execs do not wake it (see ringbuf_wakeup_bytes in
// the BPF program), since the mappings they end are removed at the next
// Snapshot anyway, and a wake-up per event cost more CPU than the events.
const eventPoll = time.Second

// stackPressureCheck is how often Run checks whether stacks are being
// dropped for lack of room, and if so sweeps.
const stackPressureCheck = 5 * time.Second

// Config sets the tracer's sampling and its bounds.
type Config struct {
	// FaultSampleBytes is the mean number of faulted bytes between two
	// page-fault samples; 0 turns fault sampling off.
	FaultSampleBytes uint64
	// MmapSampleBytes samples private anonymous mappings by size: one of
	// len bytes, if shorter, is tracked with probability
	// len/MmapSampleBytes and counted as MmapSampleBytes bytes, so
	// outstanding bytes per stack stay unbiased and longer mappings stay
	// exact. 0 tracks every mapping. At most 1 GiB.
	MmapSampleBytes uint64
	// MaxMappings bounds the live mappings tracked across the node.
	MaxMappings uint32
	// MaxStacks bounds the distinct user stacks kept.
	MaxStacks uint32
	// MaxFaultKeys bounds the (cgroup, process, stack) fault counters.
	MaxFaultKeys uint32
	// RingBufferBytes sizes the events ring buffer (OOM kills, exits,
	// execs, new processes): a power of two, at least a page.
	RingBufferBytes uint32
	// SweepInterval is how often state of vanished processes and
	// unreferenced stacks is collected.
	SweepInterval time.Duration
	// ProcRoot is where the host's /proc is mounted.
	ProcRoot string
	// Tier is what the tracer attaches: TierFull (the default) or
	// TierFaults.
	Tier Tier
	// StackCopyBytes is how much user stack a sampled event copies for
	// unwinding in user space (at most MaxStackCopyBytes); 0 copies none,
	// and every stack is the frame-pointer walk's.
	StackCopyBytes uint64
	// StackCopiesPerSecond is the node-wide budget of stack copies; events
	// over it keep their frame-pointer stack, counted.
	StackCopiesPerSecond uint64
	// StackRingBytes sizes the stack copy ring buffer: a power of two, at
	// least a page.
	StackRingBytes uint32
}

// Tier names what the tracer traces, by what it costs the node.
type Tier string

const (
	// TierFaults samples page faults and follows OOM kills, execs and
	// exits; no syscalls: tracepoint is attached, so the node's system
	// calls keep the kernel's fast path. Growth profiles, OOM records and
	// the cgroup-based verdicts work; the inuse (mapping) view does not.
	TierFaults Tier = "faults"
	// TierFull adds mmap, munmap, mremap, brk and mprotect: the inuse
	// view, exact to the byte for large mappings. Attaching any syscalls:
	// tracepoint sends every system call of every task on the node through
	// the kernel's slow path (docs/benchmarks.md has the cost).
	TierFull Tier = "full"
)

// DefaultConfig returns the settings leakwatch runs with unless told otherwise.
func DefaultConfig() Config {
	return Config{
		FaultSampleBytes: 512 << 10,
		MmapSampleBytes:  512 << 10,
		MaxMappings:      65536,
		MaxStacks:        16384,
		MaxFaultKeys:     16384,
		RingBufferBytes:  256 << 10,
		SweepInterval:    30 * time.Second,
		ProcRoot:         "/proc",
		Tier:             TierFull,
		// 16 KiB holds the C frames under an interpreter's deepest loops
		// we measured (python3, redis-server). 1,000 copies a second (a
		// second's worth may come at once) copy at most 16 MiB/s; the
		// reader is woken when half the ring is full and only moves
		// copies to the unwinder's queue (stackQueueLen), so the ring
		// need only hold what comes while the reader wakes. Its pages are
		// mapped into the agent twice: a 1 MiB ring is 2 MiB of RSS, the
		// 4 MiB one the reader needed while it also unwound was 8 MiB.
		// (Woken at each eighth, the 1 MiB ring's reader woke four times
		// as often as the 4 MiB ring's: agent CPU under a page-fault loop
		// 1.63-2.00% of a core, at a quarter 1.46-1.83%, at half
		// 1.00-1.43%; the 4 MiB ring without the queue 0.70-0.96%. On a
		// busy node, a burst kept frame pointers for 45 of 11,379 and 49
		// of 11,805 copies (ring or queue full); the 4 MiB ring without
		// the queue, 55 of 12,215 and 63 of 12,318.)
		StackCopyBytes:       MaxStackCopyBytes,
		StackCopiesPerSecond: 1000,
		StackRingBytes:       1 << 20,
	}
}

// Validate reports settings the tracer cannot run with.
func (c Config) Validate() error {
	switch {
	case c.MaxMappings < 64 || c.MaxStacks < 64 || c.MaxFaultKeys < 64:
		return errors.New("map sizes must be at least 64 entries")
	case c.MaxMappings > 1<<22 || c.MaxStacks > 1<<20 || c.MaxFaultKeys > 1<<22:
		return errors.New("map sizes too large: at most 4M mappings, 1M stacks, 4M fault keys")
	case c.FaultSampleBytes != 0 && c.FaultSampleBytes < uint64(os.Getpagesize()):
		return fmt.Errorf("fault sample bytes %d is below the page size %d", c.FaultSampleBytes, os.Getpagesize())
	case c.RingBufferBytes < uint32(os.Getpagesize()) || c.RingBufferBytes&(c.RingBufferBytes-1) != 0 || c.RingBufferBytes > 1<<30:
		return fmt.Errorf("ring buffer size %d must be a power of two from the page size to 1 GiB", c.RingBufferBytes)
	case c.StackCopyBytes > MaxStackCopyBytes:
		return fmt.Errorf("stack copy bytes %d is above %d", c.StackCopyBytes, MaxStackCopyBytes)
	case c.StackCopyBytes != 0 && (c.StackRingBytes < uint32(os.Getpagesize()) || c.StackRingBytes&(c.StackRingBytes-1) != 0 || c.StackRingBytes > 1<<30):
		return fmt.Errorf("stack ring buffer size %d must be a power of two from the page size to 1 GiB", c.StackRingBytes)
	case c.MmapSampleBytes > 1<<30:
		return fmt.Errorf("mmap sample bytes %d is above 1 GiB", c.MmapSampleBytes)
	case c.SweepInterval < time.Second:
		return errors.New("sweep interval must be at least 1s")
	case c.ProcRoot == "":
		return errors.New("proc root must be set")
	case c.Tier != TierFaults && c.Tier != TierFull:
		return fmt.Errorf("tracing tier %q: want %q or %q", c.Tier, TierFaults, TierFull)
	}
	return nil
}

// Tracer holds the loaded programs and their maps.
type Tracer struct {
	cfg   Config
	log   *slog.Logger
	objs  leakwatchObjects
	links []link.Link
	// mapLinks are the mapping system calls' programs, attached while the
	// tier is TierFull (SetTier); tierMu orders tier changes and Close.
	tierMu   sync.Mutex
	mapLinks []link.Link
	tier     Tier
	faults   *faultSampler
	// mapMem is MapMemory's last figure and when it was read.
	mapMem struct {
		sync.Mutex
		bytes uint64
		at    time.Time
	}
	ring   *ringbuf.Reader
	events chan Event
	// stackRing carries stack copies (nil when none are made); the
	// unwinder turns them into stacks. stackReading says its reader runs,
	// stackFlushed that it has read what was queued at a Flush.
	stackRing *ringbuf.Reader
	// stackRingMu orders the reader's AvailableBytes, which dereferences
	// a closed ring, with Close (stackRingClosed).
	stackRingMu     sync.RWMutex
	stackRingClosed bool
	unwinder        StackUnwinder
	stackReading    atomic.Bool
	stackFlushed    chan struct{}
	features        Features
	// monoToWall turns the kernel's CLOCK_MONOTONIC stamps into wall time.
	monoToWall time.Duration

	readMu sync.Mutex // one full map read at a time, sharing buf
	buf    readBuffers

	mu           sync.Mutex
	dead         map[uint32]deadProc // tgid -> exit/exec: mappings a Snapshot removes after deadGrace
	deadFault    map[uint32]uint64   // tgid -> exit stamp: fault keys to drop once read
	sweptExited  []uint32            // tgids whose mappings a Sweep removed: the next Snapshot's Exited
	handed       map[uint64]struct{} // stack ids whose frames a snapshot handed out
	unrefOnce    map[uint64]struct{} // stack ids unreferenced at the last sweep
	stackEntries int                 // stacks stored at the last sweep
	unwound      unwound             // stacks unwound in user space, and what refers to them

	stacksFullSeen uint64 // DropStacksFull at the last pressure check (Run's goroutine only)

	unconsumed atomic.Uint64
	closeOnce  sync.Once
	closeErr   error
}

// New checks the host, loads the programs and attaches them. On error nothing
// stays attached. The *HostError type says what the host lacks.
func New(cfg Config, logger *slog.Logger) (*Tracer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tracer config: %w", err)
	}
	tracefs, err := checkHost(cfg.ProcRoot)
	if err != nil {
		return nil, err
	}
	// Kernels since 5.11 charge BPF memory to the memory cgroup instead of
	// RLIMIT_MEMLOCK, so a failure here (no CAP_SYS_RESOURCE) is harmless there.
	if err := rlimit.RemoveMemlock(); err != nil {
		logger.Debug("memlock rlimit not raised; relying on memory cgroup accounting", logKeyErr, err)
	}

	t := &Tracer{
		cfg:       cfg,
		log:       logger,
		events:    make(chan Event, 1024),
		dead:      make(map[uint32]deadProc),
		deadFault: make(map[uint32]uint64),
		handed:    make(map[uint64]struct{}),
		unrefOnce: make(map[uint64]struct{}),
		features:  Features{Kernel: kernelRelease()},
		unwound:   newUnwound(),

		stackFlushed: make(chan struct{}, 1),
	}
	t.monoToWall = monotonicOffset()

	if err := t.load(); err != nil {
		return nil, err
	}
	if err := t.attach(); err != nil {
		return nil, errors.Join(err, t.Close())
	}
	ring, err := ringbuf.NewReader(t.objs.Events)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("opening events ring buffer: %w", err), t.Close())
	}
	t.ring = ring
	if cfg.StackCopyBytes > 0 {
		if t.stackRing, err = ringbuf.NewReader(t.objs.StackCopies); err != nil {
			return nil, errors.Join(fmt.Errorf("opening stack copy ring buffer: %w", err), t.Close())
		}
	}
	logger.Info("tracer attached",
		"tracefs", tracefs,
		"tier", cfg.Tier,
		"fault_sampling", t.features.FaultSampling,
		"fault_sample_bytes", cfg.FaultSampleBytes,
		"mmap_sample_bytes", cfg.MmapSampleBytes,
		"stack_copy_bytes", cfg.StackCopyBytes,
		"stack_copies_per_second", cfg.StackCopiesPerSecond,
	)
	return t, nil
}

func (t *Tracer) load() error {
	spec, err := loadLeakwatch()
	if err != nil {
		return fmt.Errorf("reading embedded BPF object: %w", err)
	}
	var specs leakwatchSpecs
	if err := spec.Assign(&specs); err != nil {
		return fmt.Errorf("assigning BPF specs: %w", err)
	}
	for name, v := range map[string]struct {
		c *ebpf.VariableSpec
		v uint64
	}{
		"page size":           {specs.PageSize, uint64(os.Getpagesize())},
		"mmap sample bytes":   {specs.MmapSampleBytes, t.cfg.MmapSampleBytes},
		"ring buffer wake-up": {specs.RingbufWakeupBytes, uint64(t.cfg.RingBufferBytes / 4)},
		"stack copy bytes":    {specs.StackCopyBytes, t.cfg.StackCopyBytes},
		"stack copy interval": {specs.CopyIntervalNs, copyInterval(t.cfg.StackCopiesPerSecond)},
		"stack copy burst":    {specs.CopyBurstNs, uint64(time.Second)},
		"stack ring wake-up":  {specs.StackWakeupBytes, uint64(t.cfg.StackRingBytes / 2)},
	} {
		if err := v.c.Set(v.v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	if text, err := memcgOOMText(filepath.Join(t.cfg.ProcRoot, "kallsyms")); err != nil {
		// Kills are still reported, their kind unknown.
		t.log.Warn("telling a memory cgroup's OOM from the node's", "err", err)
	} else if err := specs.MemcgOomText.Set(text); err != nil {
		return fmt.Errorf("setting memcg OOM text: %w", err)
	}
	specs.LiveMappings.MaxEntries = t.cfg.MaxMappings
	specs.MappingEnds.MaxEntries = t.cfg.MaxMappings
	specs.StackTraces.MaxEntries = t.cfg.MaxStacks
	specs.FaultSamples.MaxEntries = t.cfg.MaxFaultKeys
	specs.Events.MaxEntries = t.cfg.RingBufferBytes
	if t.cfg.StackCopyBytes > 0 {
		specs.StackCopies.MaxEntries = t.cfg.StackRingBytes
	} else {
		specs.StackCopies.MaxEntries = uint32(os.Getpagesize())
	}

	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			t.log.Error("BPF verifier rejected a program", "log", fmt.Sprintf("%+v", verr))
		}
		return &HostError{
			Requirement: RequireLoad,
			Problem:     "loading the BPF programs failed",
			Fix:         "check that the kernel is 5.15 or later with BTF; the log above has the verifier's words",
			Err:         err,
		}
	}
	return nil
}

func (t *Tracer) attach() error {
	o := &t.objs.leakwatchPrograms
	// Exit and exec first (the mapping hooks come with the tier): a
	// mapping recorded before them could otherwise outlive its process
	// unseen.
	links, err := t.attachTracepoints(false)
	t.links = links
	if err != nil {
		return err
	}
	if err := t.SetTier(t.cfg.Tier); err != nil {
		return err
	}
	t.features.Mappings = t.cfg.Tier == TierFull
	if !t.features.Mappings {
		t.features.MappingsNote = fmt.Sprintf("tracing tier %s: mmap, munmap, mremap and brk are not traced, so there is no inuse view (--tracing=%s)", t.cfg.Tier, TierFull)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: o.HandleMarkVictim})
	if err != nil {
		return fmt.Errorf("attaching tp_btf/mark_victim: %w", err)
	}
	t.links = append(t.links, l)

	if t.cfg.FaultSampleBytes == 0 {
		t.features.FaultNote = "disabled by configuration"
		return nil
	}
	fs, err := openFaultSampler(o.HandlePageFault, t.cfg.FaultSampleBytes)
	if err != nil {
		// Degraded, not fatal: the rest of the tracer works without it.
		t.features.FaultNote = err.Error()
		t.log.Warn("page-fault sampling unavailable; running without it", logKeyErr, err)
		return nil
	}
	t.faults = fs
	t.features.FaultSampling = true
	return nil
}

// Features says which parts of the tracer run on this host.
func (t *Tracer) Features() Features { return t.features }

// ProcRoot is where the tracer reads the host's /proc.
func (t *Tracer) ProcRoot() string { return t.cfg.ProcRoot }

// Events delivers OOM kills, and the first tracked state, exits and execs of
// processes.
// It is closed when Run returns. Events the reader does not take in time are
// counted as DropEventsUnconsumed, never blocking the tracer.
func (t *Tracer) Events() <-chan Event { return t.events }

// Run reads the kernel's events and keeps the maps clean until ctx ends or
// the tracer is closed. Call it once; Snapshot works with or without it.
func (t *Tracer) Run(ctx context.Context) error {
	defer close(t.events)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	readErr := make(chan error, 1)
	go func() { readErr <- t.readEvents() }()
	stackErr := make(chan error, 1)
	if t.stackRing != nil {
		t.stackReading.Store(true)
		go func() {
			defer t.stackReading.Store(false)
			stackErr <- t.readStackCopies()
		}()
	}

	sweepAll := time.NewTicker(t.cfg.SweepInterval)
	defer sweepAll.Stop()
	// A full stack map drops new stacks until a sweep frees the unused
	// ones, which takes two sweeps: under that pressure, sweep sooner.
	pressure := time.NewTicker(stackPressureCheck)
	defer pressure.Stop()
	for {
		select {
		case <-ctx.Done():
			// Closing the reader interrupts a blocked Read (it is idempotent,
			// so Close may close it again); Close frees the rest.
			err := t.ring.Close()
			if rerr := <-readErr; !errors.Is(rerr, errClosed) {
				err = errors.Join(err, rerr)
			}
			if t.stackRing != nil {
				err = errors.Join(err, t.closeStackRing())
				if serr := <-stackErr; !errors.Is(serr, errClosed) {
					err = errors.Join(err, serr)
				}
			}
			return err
		case err := <-readErr:
			if errors.Is(err, errClosed) {
				return nil
			}
			return err
		case err := <-stackErr:
			if errors.Is(err, errClosed) {
				return nil
			}
			return err
		case <-sweepAll.C:
			if err := t.Sweep(); err != nil {
				t.log.Warn("sweeping tracer state", logKeyErr, err)
			}
		case <-pressure.C:
			if t.stacksOverflowing() {
				if err := t.Sweep(); err != nil {
					t.log.Warn("sweeping tracer state", logKeyErr, err)
				}
			}
		}
	}
}

func (t *Tracer) readEvents() error {
	var (
		raw leakwatchEvent
		rec ringbuf.Record
	)
	t.ring.SetDeadline(time.Now().Add(eventPoll))
	for {
		err := t.ring.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.ring.SetDeadline(time.Now().Add(eventPoll))
			continue
		}
		if err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return errClosed
			}
			return fmt.Errorf("reading events: %w", err)
		}
		if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &raw); err != nil {
			t.log.Warn("malformed event from the kernel", logKeyErr, err)
			continue
		}
		ev := t.decodeEvent(&raw)
		switch ev.Type {
		case EventExit:
			t.mu.Lock()
			t.dead[ev.Process.PID] = deadProc{stamp: raw.Ts, seen: time.Now(), exited: true}
			t.deadFault[ev.Process.PID] = raw.Ts
			t.mu.Unlock()
		case EventExec:
			t.mu.Lock()
			t.dead[ev.Process.PID] = deadProc{stamp: raw.Ts, seen: time.Now()}
			t.mu.Unlock()
		}
		select {
		case t.events <- ev:
		default:
			t.unconsumed.Add(1)
		}
	}
}

// cString is the C string in a kernel-side char array, and whether it
// ended within it (false: it filled the array, perhaps cut).
func cString(raw []int8) (string, bool) {
	b := make([]byte, 0, len(raw))
	for _, c := range raw {
		if c == 0 {
			return string(b), true
		}
		b = append(b, byte(c))
	}
	return string(b), false
}

func (t *Tracer) decodeEvent(raw *leakwatchEvent) Event {
	comm, _ := cString(raw.Comm[:])
	return Event{
		Type:           EventType(raw.Type),
		Time:           t.wallTime(raw.Ts),
		PID:            raw.Pid,
		Process:        Process{PID: raw.Tgid, StartTime: raw.StartTime},
		Memcg:          raw.Memcg,
		ExecID:         raw.ExecId,
		TriggerMemcg:   raw.TriggerMemcg,
		TriggerFoundBy: TriggerFoundBy(raw.OomFoundBy),
		OOMKind:        OOMKind(raw.OomKind),
		Comm:           comm,
		TotalVMBytes:   raw.TotalVmBytes,
		AnonRSSBytes:   raw.AnonRssBytes,
		FileRSSBytes:   raw.FileRssBytes,
		ShmemRSSBytes:  raw.ShmemRssBytes,
	}
}

func (t *Tracer) wallTime(mono uint64) time.Time {
	return time.Unix(0, int64(mono)).Add(t.monoToWall)
}

// Close detaches every program and frees every map. It is safe to call more
// than once and from any goroutine.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() {
		var errs []error
		if t.ring != nil {
			errs = append(errs, t.ring.Close())
		}
		if t.stackRing != nil {
			errs = append(errs, t.closeStackRing())
		}
		if t.faults != nil {
			errs = append(errs, t.faults.Close())
		}
		t.tierMu.Lock()
		for _, l := range append(t.links, t.mapLinks...) {
			errs = append(errs, l.Close())
		}
		t.links, t.mapLinks = nil, nil
		t.tierMu.Unlock()
		errs = append(errs, t.objs.Close())
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// monotonicOffset is wall time minus CLOCK_MONOTONIC, the clock of
// bpf_ktime_get_ns.
func monotonicOffset() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(time.Now().UnixNano() - ts.Nano())
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

const logKeyErr = "err"

// syscallsGroup is the tracepoint group whose hooks only TierFull attaches.
const syscallsGroup = "syscalls"

// tracepointHook is a program and the tracepoint it is attached to.
type tracepointHook struct {
	group, name string
	prog        *ebpf.Program
}

// tracepoints lists the classic tracepoints the programs attach to (attach
// takes them last to first), for the preflight check too: on a zero
// leakwatchPrograms it still names every one.
func (o *leakwatchPrograms) tracepoints() []tracepointHook {
	return []tracepointHook{
		{"syscalls", "sys_enter_mmap", o.HandleSysEnterMmap},
		{"syscalls", "sys_exit_mmap", o.HandleSysExitMmap},
		{"syscalls", "sys_enter_munmap", o.HandleSysEnterMunmap},
		{"syscalls", "sys_enter_mremap", o.HandleSysEnterMremap},
		{"syscalls", "sys_exit_mremap", o.HandleSysExitMremap},
		{"syscalls", "sys_enter_brk", o.HandleSysEnterBrk},
		{"syscalls", "sys_exit_brk", o.HandleSysExitBrk},
		{"syscalls", "sys_enter_mprotect", o.HandleSysEnterMprotect},
		{"syscalls", "sys_exit_mprotect", o.HandleSysExitMprotect},
		{"sched", "sched_process_exit", o.HandleSchedProcessExit},
		{"sched", "sched_process_exec", o.HandleSchedProcessExec},
		{"cgroup", "cgroup_mkdir", o.HandleCgroupMkdir},
	}
}

// SyscallTracepoints names the syscalls: tracepoints the tracer attaches
// to. Attaching anything to any of them sends every system call of every
// task through the kernel's slow path; the benchmarks measure that floor.
func SyscallTracepoints() []string {
	var names []string
	for _, h := range new(leakwatchPrograms).tracepoints() {
		if h.group == syscallsGroup {
			names = append(names, h.name)
		}
	}
	return names
}

// copyInterval is the time between two stack copies on one CPU for a
// node-wide budget of perSecond: the budget is shared out over every CPU
// the kernel may run, so it is never exceeded. 0 copies nothing.
func copyInterval(perSecond uint64) uint64 {
	if perSecond == 0 {
		return math.MaxUint64 / 4
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil || cpus < 1 {
		cpus = runtime.NumCPU()
	}
	return uint64(cpus) * uint64(time.Second) / perSecond
}
